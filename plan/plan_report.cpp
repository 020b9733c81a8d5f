#include "plan/plan_report.h"

#include <cstdio>
#include <sstream>

namespace llamarl {
namespace {

std::string Format(const char* format, double x) { return FormatNumber(format, x); }

Json GeneratorJson(const GeneratorSetup& setup, const GeneratorCost& g) {
  return Json{{"gpus", setup.num_gpus},
              {"tp", setup.tp},
              {"weight_dtype", WeightDtypeName(setup.dtype)},
              {"replicas", g.replicas},
              {"weights_gb_per_gpu", g.weight_bytes_per_gpu / 1e9},
              {"kv_budget_gb_per_gpu", g.kv_budget_bytes_per_gpu / 1e9},
              {"sequences_per_replica", g.sequences_per_replica},
              {"concurrent_sequences", g.concurrent_sequences},
              {"decode_steps", g.decode_steps},
              {"decode_step_ms", g.decode_step_s * 1e3},
              {"prefill_s", g.prefill_s},
              {"time_s", g.time_s}};
}

Json TrainerJson(const TrainerSetup& setup, const TrainerCost& t) {
  return Json{{"gpus", setup.num_gpus},
              {"shard_group", setup.shard_group},
              {"activation_checkpointing", setup.checkpointing},
              {"states_gb_per_gpu", t.state_bytes_per_gpu / 1e9},
              {"gathered_gb_per_gpu", t.gathered_bytes_per_gpu / 1e9},
              {"activations_gb_per_gpu", t.activation_bytes_per_gpu / 1e9},
              {"total_gb_per_gpu", t.total_bytes_per_gpu / 1e9},
              {"micro_batches", t.micro_batches},
              {"compute_s", t.compute_s},
              {"comm_s", t.comm_s},
              {"time_s", t.time_s}};
}

Json AsyncJson(const AsyncPlan& p) {
  return Json{{"placement", p.Describe()},
              {"step_s", p.step_s},
              {"generate_s", p.generator.time_s},
              {"train_s", p.trainer.time_s},
              {"weight_sync_s", p.weight_sync.ddma_s},
              {"generator", GeneratorJson(p.generator_setup, p.generator)},
              {"trainer", TrainerJson(p.trainer_setup, p.trainer)}};
}

Json SyncJson(const SyncPlan& p) {
  return Json{{"placement", p.Describe()},
              {"step_s", p.step_s},
              {"generate_s", p.generator.time_s},
              {"train_s", p.trainer.time_s},
              {"reshard_s", p.reshard_s},
              {"offload_s", p.offload_s},
              {"generator", GeneratorJson(p.generator_setup, p.generator)},
              {"trainer", TrainerJson(p.trainer_setup, p.trainer)}};
}

Json ModelJson(const PlanModel& m) {
  const LlamaConfig& c = m.config;
  return Json{{"name", m.name},
              {"params", m.num_params},
              {"layers", c.num_hidden_layers},
              {"hidden", c.hidden_size},
              {"kv_heads", c.num_key_value_heads},
              {"head_dim", c.head_dim},
              {"kv_bytes_per_token", m.KvBytesPerToken(2)}};
}

}  // namespace

std::string FormatNumber(const char* format, double x) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, x);
  return buffer;
}

std::vector<std::string> AssumptionLines(const PlanRequest& request) {
  const PlanAssumptions& a = request.assumptions;
  const HardwareProfile& hw = request.hardware;
  std::ostringstream batch;
  batch << "batch: " << a.num_prompts << " prompts x " << a.samples_per_prompt << " samples = " << a.NumSequences()
        << " sequences; prompt " << a.prompt_tokens << " tokens; responses mean " << a.response_tokens_mean
        << ", max " << a.response_tokens_max << " tokens (the longest sets a batch's tail)";
  return {
      batch.str(),
      "hardware: " + hw.name + ", " + Format("%.0f", hw.peak_bf16_tflops) + " TFLOP/s bf16, " + Format("%.0f", hw.hbm_gb) +
          " GB HBM at " + Format("%.0f", hw.hbm_gbps) + " GB/s, NVLink " + Format("%.0f", hw.nvlink_gbps) +
          " GB/s, network " + Format("%.0f", hw.network_gbps) + " GB/s, PCIe " + Format("%.0f", hw.pcie_gbps) +
          " GB/s per GPU, " + std::to_string(hw.gpus_per_node) + " per node",
      "trainer memory: 16 B/param / shard group (bf16 param+grad, f32 master, Adam m, v) + 2 gathered bf16 units + "
      "activations + " + Format("%.0f", a.memory_reserve_gb) + " GB reserve",
      "activations/token/layer: 2*(6D + 2*kv_dim + 4I) bytes; with checkpointing 2D per layer + one layer; "
      "micro-batch " + std::to_string(a.micro_batch_tokens) + " tokens/GPU; logits chunked (not counted)",
      "training time: (6 + 2*" + std::to_string(a.reference_forward_passes) + " ref fwd + 2 if checkpointing) * N * "
      "tokens at " + Format("%.0f%%", a.train_mfu * 100) + " MFU, overlapped with ZeRO-3 gathers (3 x 2N bytes per "
      "micro-batch)",
      "generator: weights/TP in bf16 or fp8 (decoder linear weights only); KV cache/token = 2*layers*kv_heads*head_dim*2 B "
      "(bf16), a full prompt+max slot reserved per sequence; at most " + std::to_string(a.max_decode_batch) +
      " sequences per replica",
      "decode: memory-bandwidth bound, per step read the TP shard's weights + live KV at " +
          Format("%.0f%%", a.hbm_efficiency * 100) + " of HBM peak (compute floor at " +
          Format("%.0f%%", a.prefill_mfu * 100) + " MFU) + 2 all-reduces/layer x " +
          Format("%.0f us", a.tp_allreduce_latency_s * 1e6) + "; prefill at " + Format("%.0f%%", a.prefill_mfu * 100) +
          " MFU",
      "weight sync: DDMA = max(R*bytes/T sent per trainer GPU, bytes/TP received per generator GPU) / network; "
      "gather-and-broadcast = 2*bytes / network; links at " + Format("%.0f%%", a.network_efficiency * 100) + " of peak",
      "async step = max(generate, train) + DDMA push (staleness <= " + std::to_string(a.max_policy_lag) +
          "); sync step = generate + train + reshard + offload, all GPUs colocated",
  };
}

Json RecipeSkeleton(const PlanRequest& request, const PlanResult& result) {
  if (!result.async) return nullptr;
  const AsyncPlan& p = *result.async;
  const PlanAssumptions& a = request.assumptions;
  return Json{{"model", request.model.name},
              {"placement", {{"mode", "split"}, {"generator_ranks", p.generator_setup.num_gpus},
                             {"trainer_ranks", p.trainer_setup.num_gpus}}},
              {"generator", {{"tp_size", p.generator_setup.tp}, {"weight_dtype", WeightDtypeName(p.generator_setup.dtype)},
                             {"max_batch", p.generator.concurrent_sequences}, {"max_new_tokens", a.response_tokens_max}}},
              {"trainer", {{"shard_group_size", p.trainer_setup.shard_group},
                           {"activation_checkpointing", p.trainer_setup.checkpointing},
                           {"micro_batch_tokens", a.micro_batch_tokens}}},
              {"rollout", {{"num_prompts", a.num_prompts}, {"samples_per_prompt", a.samples_per_prompt}}},
              {"async", {{"max_policy_lag", a.max_policy_lag}}}};
}

Json PlanToJson(const PlanRequest& request, const PlanResult& result) {
  Json rejected = Json::array();
  for (const auto& r : result.rejections)
    rejected.push_back(Json{{"kind", r.kind}, {"count", r.count}, {"example", r.example}});
  Json runners_up = Json::array();
  for (const auto& p : result.async_runners_up) runners_up.push_back(Json{{"placement", p.Describe()}, {"step_s", p.step_s}});
  Json json{{"model", ModelJson(request.model)},
            {"hardware", request.hardware.ToJson()},
            {"gpus", request.num_gpus},
            {"assumptions", request.assumptions.ToJson()},
            {"assumption_notes", AssumptionLines(request)},
            {"fits", result.Fits()},
            {"async", result.async ? AsyncJson(*result.async) : Json(nullptr)},
            {"sync", result.sync ? SyncJson(*result.sync) : Json(nullptr)},
            {"speedup", result.Speedup() > 0 ? Json(result.Speedup()) : Json(nullptr)},
            {"candidates", result.num_candidates},
            {"async_runners_up", runners_up},
            {"rejected", rejected},
            {"advice", result.advice},
            {"recipe", RecipeSkeleton(request, result)}};
  json["weight_sync_s"] = result.async ? Json(result.async->weight_sync.ddma_s) : Json(nullptr);
  json["weight_sync_gather_broadcast_s"] =
      result.async ? Json(result.async->weight_sync.gather_broadcast_s) : Json(nullptr);
  return json;
}

}  // namespace llamarl
