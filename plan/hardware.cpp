#include "plan/hardware.h"

#include "core/check.h"

namespace llamarl {
namespace {

// Sources: NVIDIA H100 / H200 / A100 datasheets (SXM parts, dense figures), DGX H100/H200 (8x
// ConnectX-7 400 Gb/s = 50 GB/s per GPU) and DGX A100 (8x HDR 200 Gb/s = 25 GB/s per GPU).
// NVLink figures are the datasheets' bidirectional totals halved; PCIe Gen5/Gen4 x16 per direction.
HardwareProfile Make(const char* name, double tflops, bool fp8, double hbm_gb, double hbm_gbps,
                     double nvlink_gbps, double network_gbps, double pcie_gbps) {
  HardwareProfile p;
  p.name = name;
  p.peak_bf16_tflops = tflops;
  p.fp8 = fp8;
  p.hbm_gb = hbm_gb;
  p.hbm_gbps = hbm_gbps;
  p.nvlink_gbps = nvlink_gbps;
  p.network_gbps = network_gbps;
  p.pcie_gbps = pcie_gbps;
  return p;
}

}  // namespace

std::vector<std::string> HardwareProfileNames() { return {"h100", "h200", "a100"}; }

HardwareProfile HardwareProfileByName(const std::string& name) {
  if (name == "h100") return Make("h100", 989, true, 80, 3350, 450, 50, 64);
  if (name == "h200") return Make("h200", 989, true, 141, 4800, 450, 50, 64);
  if (name == "a100") return Make("a100", 312, false, 80, 2039, 300, 25, 32);
  std::string known;
  for (const auto& n : HardwareProfileNames()) known += (known.empty() ? "" : ", ") + n;
  LLAMARL_FAIL("unknown GPU profile '", name, "'; known: ", known, " (or a JSON file {\"base\": \"h100\", ...})");
}

HardwareProfile HardwareProfile::FromJson(const Json& json, const std::string& path, HardwareProfile base) {
  ConfigReader r(json, path);
  HardwareProfile& p = base;
  r.Read("name", &p.name, {}, "profile name shown in reports");
  r.Read("peak_bf16_tflops", &p.peak_bf16_tflops, Range::Positive(), "dense bf16 TFLOP/s per GPU");
  r.Read("fp8", &p.fp8, "tensor cores take fp8 weights");
  r.Read("hbm_gb", &p.hbm_gb, Range::Positive(), "GPU memory, GB");
  r.Read("hbm_gbps", &p.hbm_gbps, Range::Positive(), "GPU memory bandwidth, GB/s");
  r.Read("nvlink_gbps", &p.nvlink_gbps, Range::Positive(), "intra-node GB/s per GPU per direction");
  r.Read("network_gbps", &p.network_gbps, Range::Positive(), "inter-node GB/s per GPU per direction");
  r.Read("pcie_gbps", &p.pcie_gbps, Range::Positive(), "host<->device GB/s per direction");
  r.Read("gpus_per_node", &p.gpus_per_node, Range::AtLeast(1), "GPUs per node");
  r.Raw("base");  // consumed by LoadHardwareProfile
  r.Finish();
  p.Validate();
  return p;
}

Json HardwareProfile::ToJson() const {
  return Json{{"name", name},         {"peak_bf16_tflops", peak_bf16_tflops}, {"fp8", fp8},
              {"hbm_gb", hbm_gb},     {"hbm_gbps", hbm_gbps},                 {"nvlink_gbps", nvlink_gbps},
              {"network_gbps", network_gbps}, {"pcie_gbps", pcie_gbps},      {"gpus_per_node", gpus_per_node}};
}

void HardwareProfile::Validate() const {
  LLAMARL_CHECK(peak_bf16_tflops > 0 && hbm_gb > 0 && hbm_gbps > 0 && nvlink_gbps > 0 && network_gbps > 0 &&
                    pcie_gbps > 0,
                "GPU profile '", name, "': every rate and size must be positive; got ", ToJson().dump());
  LLAMARL_CHECK(gpus_per_node >= 1, "GPU profile '", name, "': gpus_per_node (", gpus_per_node, ") must be >= 1");
}

HardwareProfile LoadHardwareProfile(const std::string& name_or_file) {
  bool is_file = name_or_file.size() > 5 && name_or_file.substr(name_or_file.size() - 5) == ".json";
  if (!is_file) return HardwareProfileByName(name_or_file);
  Json json = ReadJsonFile(name_or_file);
  LLAMARL_CHECK(json.is_object() && json.contains("base") && json["base"].is_string(), name_or_file,
                ": expected an object with \"base\": one of h100, h200, a100 and the fields to override");
  return HardwareProfile::FromJson(json, name_or_file, HardwareProfileByName(json["base"].get<std::string>()));
}

}  // namespace llamarl
