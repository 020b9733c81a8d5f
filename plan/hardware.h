// Accelerator profiles for `llamarl plan`: the vendors' published per-GPU figures that the cost
// model (plan/plan_cost.h) needs. Units follow the datasheets: GB = 1e9 bytes, bandwidths in
// GB/s per GPU and per direction, TFLOP/s dense (without 2:4 sparsity).
// A profile is a plain value; any field can be overridden from JSON (`--hardware FILE.json`), e.g.
//   {"base": "h100", "network_gbps": 25}   // a cluster with 200 Gb/s per GPU instead of 400 Gb/s
// LibTorch-free.
#pragma once

#include "core/config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace llamarl {

struct HardwareProfile {
  std::string name;
  double peak_bf16_tflops = 0;  // dense bf16 tensor-core peak
  bool fp8 = false;             // tensor cores take fp8 (e4m3) weights
  double hbm_gb = 0;            // memory per GPU
  double hbm_gbps = 0;          // memory bandwidth per GPU
  double nvlink_gbps = 0;       // intra-node GPU-to-GPU, per direction
  double network_gbps = 0;      // inter-node (InfiniBand/RoCE NIC share), per direction
  double pcie_gbps = 0;         // host <-> device, per direction (offloading)
  int64_t gpus_per_node = 8;

  // Reads overrides onto `base`; unknown keys are errors listing the known ones.
  static HardwareProfile FromJson(const Json& json, const std::string& path, HardwareProfile base);
  Json ToJson() const;
  void Validate() const;

  double HbmBytes() const { return hbm_gb * 1e9; }
  double PeakFlops() const { return peak_bf16_tflops * 1e12; }
};

// "h100" (SXM5 80 GB), "h200" (SXM 141 GB), "a100" (SXM4 80 GB); unknown names list the known ones.
HardwareProfile HardwareProfileByName(const std::string& name);
std::vector<std::string> HardwareProfileNames();
// `name_or_file`: a profile name, or a JSON file {"base": NAME, ...overrides}.
HardwareProfile LoadHardwareProfile(const std::string& name_or_file);

}  // namespace llamarl
