#include "plan/plan_cost.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace llamarl {
namespace {

std::string Gb(double bytes) {
  std::ostringstream s;
  s.precision(bytes >= 1e10 ? 4 : 3);
  s << bytes / 1e9 << " GB";
  return s.str();
}

}  // namespace

PlanAssumptions PlanAssumptions::FromJson(const Json& json, const std::string& path, PlanAssumptions base) {
  ConfigReader r(json, path);
  PlanAssumptions& a = base;
  r.Read("num_prompts", &a.num_prompts, Range::AtLeast(1), "prompts per RL step");
  r.Read("samples_per_prompt", &a.samples_per_prompt, Range::AtLeast(1), "responses sampled per prompt");
  r.Read("prompt_tokens", &a.prompt_tokens, Range::AtLeast(1), "tokens per prompt");
  r.Read("response_tokens_mean", &a.response_tokens_mean, Range::AtLeast(1), "mean response length");
  r.Read("response_tokens_max", &a.response_tokens_max, Range::AtLeast(1), "longest response (max_new_tokens)");
  r.Read("train_mfu", &a.train_mfu, Range::OpenClosed(0, 1), "trainer model FLOPs utilisation");
  r.Read("prefill_mfu", &a.prefill_mfu, Range::OpenClosed(0, 1), "generator prefill FLOPs utilisation");
  r.Read("hbm_efficiency", &a.hbm_efficiency, Range::OpenClosed(0, 1), "achieved / peak HBM bandwidth in decode");
  r.Read("network_efficiency", &a.network_efficiency, Range::OpenClosed(0, 1), "achieved / peak link bandwidth");
  r.Read("tp_allreduce_latency_s", &a.tp_allreduce_latency_s, Range::AtLeast(0), "one decode all-reduce");
  r.Read("max_decode_batch", &a.max_decode_batch, Range::AtLeast(1), "sequences per replica decoded at once");
  r.Read("micro_batch_tokens", &a.micro_batch_tokens, Range::AtLeast(1), "trainer tokens per GPU per micro-batch");
  r.Read("reference_forward_passes", &a.reference_forward_passes, Range::AtLeast(0), "extra forwards per step");
  r.Read("memory_reserve_gb", &a.memory_reserve_gb, Range::AtLeast(0), "per-GPU memory kept free");
  r.Read("max_policy_lag", &a.max_policy_lag, Range::AtLeast(1), "async staleness bound");
  r.Finish();
  a.Validate();
  return a;
}

Json PlanAssumptions::ToJson() const {
  return Json{{"num_prompts", num_prompts},
              {"samples_per_prompt", samples_per_prompt},
              {"prompt_tokens", prompt_tokens},
              {"response_tokens_mean", response_tokens_mean},
              {"response_tokens_max", response_tokens_max},
              {"train_mfu", train_mfu},
              {"prefill_mfu", prefill_mfu},
              {"hbm_efficiency", hbm_efficiency},
              {"network_efficiency", network_efficiency},
              {"tp_allreduce_latency_s", tp_allreduce_latency_s},
              {"max_decode_batch", max_decode_batch},
              {"micro_batch_tokens", micro_batch_tokens},
              {"reference_forward_passes", reference_forward_passes},
              {"memory_reserve_gb", memory_reserve_gb},
              {"max_policy_lag", max_policy_lag}};
}

void PlanAssumptions::Validate() const {
  LLAMARL_CHECK(num_prompts >= 1 && samples_per_prompt >= 1 && prompt_tokens >= 1 && response_tokens_mean >= 1,
                "plan assumptions: prompts, samples and token counts must be >= 1; got ", ToJson().dump());
  LLAMARL_CHECK(response_tokens_max >= response_tokens_mean, "plan assumptions: response_tokens_max (",
                response_tokens_max, ") must be >= response_tokens_mean (", response_tokens_mean,
                "); raise the max or lower the mean");
  LLAMARL_CHECK(micro_batch_tokens >= prompt_tokens + response_tokens_max, "plan assumptions: micro_batch_tokens (",
                micro_batch_tokens, ") must hold one whole sequence of prompt_tokens + response_tokens_max = ",
                prompt_tokens + response_tokens_max, " tokens; raise micro_batch_tokens");
  LLAMARL_CHECK(train_mfu > 0 && train_mfu <= 1 && prefill_mfu > 0 && prefill_mfu <= 1 && hbm_efficiency > 0 &&
                    hbm_efficiency <= 1 && network_efficiency > 0 && network_efficiency <= 1,
                "plan assumptions: utilisations and efficiencies must be in (0, 1]; got ", ToJson().dump());
}

const char* WeightDtypeName(WeightDtype dtype) { return dtype == WeightDtype::kFp8 ? "fp8" : "bf16"; }
int64_t WeightDtypeBytes(WeightDtype dtype) { return dtype == WeightDtype::kFp8 ? 1 : 2; }

double TrainerStateBytesPerGpu(const PlanModel& model, int64_t shard_group) {
  LLAMARL_ASSERT(shard_group >= 1, "shard_group ", shard_group);
  return 16.0 * double(model.num_params) / double(shard_group);
}

double ActivationBytesPerToken(const LlamaConfig& c, bool checkpointing) {
  double kv = double(c.num_key_value_heads * c.head_dim);
  double layer = 2.0 * (6.0 * double(c.hidden_size) + 2.0 * kv + 4.0 * double(c.intermediate_size));
  if (!checkpointing) return layer * double(c.num_hidden_layers);
  return 2.0 * double(c.hidden_size) * double(c.num_hidden_layers) + layer;
}

double GeneratorWeightBytes(const PlanModel& model, WeightDtype dtype) {
  double other = double(model.num_params - model.layer_linear_params);
  return double(model.layer_linear_params) * double(WeightDtypeBytes(dtype)) + 2.0 * other;
}

double KvBytesPerTokenPerGpu(const PlanModel& model, int64_t tp) {
  int64_t kv_heads = model.config.num_key_value_heads;
  // With TP wider than the KV heads, each KV head is replicated on tp / kv_heads GPUs.
  double heads_per_gpu = kv_heads >= tp ? double(kv_heads) / double(tp) : 1.0;
  return double(model.KvBytesPerToken(2)) * heads_per_gpu / double(kv_heads);
}

double GroupBandwidth(const HardwareProfile& hw, const PlanAssumptions& a, int64_t group) {
  double gbps = group <= hw.gpus_per_node ? hw.nvlink_gbps : hw.network_gbps;
  return gbps * 1e9 * a.network_efficiency;
}

GeneratorCost EstimateGenerator(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                                const GeneratorSetup& setup) {
  LLAMARL_ASSERT(setup.tp >= 1 && setup.num_gpus >= setup.tp && setup.num_gpus % setup.tp == 0, "generator gpus ",
                 setup.num_gpus, " tp ", setup.tp);
  GeneratorCost g;
  g.weight_bytes_per_gpu = GeneratorWeightBytes(model, setup.dtype) / double(setup.tp);
  double kv_token = KvBytesPerTokenPerGpu(model, setup.tp);
  g.kv_bytes_per_sequence_per_gpu = kv_token * double(a.prompt_tokens + a.response_tokens_max);
  g.kv_budget_bytes_per_gpu =
      hw.HbmBytes() - a.memory_reserve_gb * 1e9 - g.weight_bytes_per_gpu - setup.resident_bytes_per_gpu;
  if (g.kv_budget_bytes_per_gpu < g.kv_bytes_per_sequence_per_gpu) {
    g.why_not = "generator TP=" + std::to_string(setup.tp) + " " + WeightDtypeName(setup.dtype) + ": " +
                Gb(g.weight_bytes_per_gpu) + " weights" +
                (setup.resident_bytes_per_gpu > 0 ? " + " + Gb(setup.resident_bytes_per_gpu) + " trainer state" : "") +
                " + " + Gb(a.memory_reserve_gb * 1e9) + " reserve leave " + Gb(std::max(0.0, g.kv_budget_bytes_per_gpu)) +
                " per GPU, less than one sequence's KV cache (" + Gb(g.kv_bytes_per_sequence_per_gpu) + ") of " +
                Gb(hw.HbmBytes());
    return g;
  }
  g.fits = true;
  g.replicas = setup.num_gpus / setup.tp;
  g.sequences_per_replica = (a.NumSequences() + g.replicas - 1) / g.replicas;
  auto by_memory = int64_t(g.kv_budget_bytes_per_gpu / g.kv_bytes_per_sequence_per_gpu);
  g.concurrent_sequences = std::min({by_memory, g.sequences_per_replica, a.max_decode_batch});
  double c = double(g.concurrent_sequences);
  double r_mean = double(a.response_tokens_mean), r_max = double(a.response_tokens_max);
  g.decode_steps = std::max(r_max, double(g.sequences_per_replica) * r_mean / c + r_max - r_mean);
  // Live sequences are on average halfway through a mean-length response.
  double kv_read = c * (double(a.prompt_tokens) + r_mean / 2.0) * kv_token;
  double memory_s = (g.weight_bytes_per_gpu + kv_read) / (hw.hbm_gbps * 1e9 * a.hbm_efficiency);
  double gpu_flops = hw.PeakFlops() * a.prefill_mfu * double(setup.tp);
  double compute_s = 2.0 * double(model.num_params) * c / gpu_flops;
  double tp_s = setup.tp > 1 ? 2.0 * double(model.config.num_hidden_layers) * a.tp_allreduce_latency_s : 0.0;
  g.decode_step_s = std::max(memory_s, compute_s) + tp_s;
  g.prefill_s = 2.0 * double(model.num_params) * double(g.sequences_per_replica * a.prompt_tokens) / gpu_flops;
  g.time_s = g.prefill_s + g.decode_steps * g.decode_step_s;
  return g;
}

TrainerCost EstimateTrainer(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                            const TrainerSetup& setup) {
  const int64_t n = setup.num_gpus, s = setup.shard_group;
  LLAMARL_ASSERT(n >= 1 && s >= 1 && n % s == 0, "trainer gpus ", n, " shard group ", s);
  TrainerCost t;
  double params = double(model.num_params);
  t.state_bytes_per_gpu = TrainerStateBytesPerGpu(model, s);
  t.gathered_bytes_per_gpu = s > 1 ? 2.0 * 2.0 * double(model.largest_unit_params) : 0.0;
  double tokens_per_gpu = a.TrainTokens() / double(n);
  double micro_tokens = std::min(double(a.micro_batch_tokens), std::ceil(tokens_per_gpu));
  t.activation_bytes_per_gpu = ActivationBytesPerToken(model.config, setup.checkpointing) * micro_tokens;
  t.total_bytes_per_gpu = t.state_bytes_per_gpu + t.gathered_bytes_per_gpu + t.activation_bytes_per_gpu +
                          a.memory_reserve_gb * 1e9;
  t.fits = t.total_bytes_per_gpu <= hw.HbmBytes();
  if (!t.fits) {
    t.why_not = "trainer on " + std::to_string(n) + " GPUs, ZeRO-3 over " + std::to_string(s) +
                (setup.checkpointing ? ", checkpointing" : ", no checkpointing") + ": " + Gb(t.state_bytes_per_gpu) +
                " states + " + Gb(t.gathered_bytes_per_gpu) + " gathered + " + Gb(t.activation_bytes_per_gpu) +
                " activations + " + Gb(a.memory_reserve_gb * 1e9) + " reserve = " + Gb(t.total_bytes_per_gpu) +
                " > " + Gb(hw.HbmBytes());
  }
  t.micro_batches = std::max<int64_t>(1, int64_t(std::ceil(tokens_per_gpu / double(a.micro_batch_tokens))));
  // Checkpointing recomputes the forward during backward: +2 N FLOPs per token on the hardware.
  double passes = 6.0 + 2.0 * double(a.reference_forward_passes) + (setup.checkpointing ? 2.0 : 0.0);
  double flops = passes * params * a.TrainTokens();
  t.compute_s = flops / (double(n) * hw.PeakFlops() * a.train_mfu);
  // Per micro-batch ZeRO-3 gathers bf16 params for forward and backward and reduce-scatters grads.
  double ring = double(s - 1) / double(s);
  double gather_s = double(t.micro_batches) * 3.0 * 2.0 * params * ring / GroupBandwidth(hw, a, s);
  // HSDP: shard-group replicas all-reduce their gradient shards once per step (not overlapped).
  int64_t replicas = n / s;
  double allreduce_s = replicas > 1 ? 2.0 * (2.0 * params / double(s)) * double(replicas - 1) /
                                          double(replicas) / GroupBandwidth(hw, a, n)
                                    : 0.0;
  // AdamW reads and writes the f32 master, m and v and the bf16 params and grads once.
  double optimizer_s = 2.0 * t.state_bytes_per_gpu / (hw.hbm_gbps * 1e9 * a.hbm_efficiency);
  t.comm_s = gather_s + allreduce_s;
  t.time_s = std::max(t.compute_s, gather_s) + allreduce_s + optimizer_s;
  return t;
}

WeightSyncCost EstimateWeightSync(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                                  const TrainerSetup& trainer, const GeneratorSetup& generator) {
  WeightSyncCost w;
  w.bytes = GeneratorWeightBytes(model, generator.dtype);
  double bandwidth = hw.network_gbps * 1e9 * a.network_efficiency;
  double replicas = double(generator.num_gpus / generator.tp);
  double send_per_trainer_gpu = replicas * w.bytes / double(trainer.num_gpus);
  double receive_per_generator_gpu = w.bytes / double(generator.tp);
  w.ddma_s = std::max(send_per_trainer_gpu, receive_per_generator_gpu) / bandwidth;
  w.gather_broadcast_s = 2.0 * w.bytes / bandwidth;
  return w;
}

}  // namespace llamarl
