#include "bench/generate_bench.h"

#include "core/check.h"
#include "core/device.h"
#include "generator/engine.h"
#include "model/llama_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <limits>

namespace llamarl::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ~19M parameters: 8 layers of hidden 384 (6 heads of 64, 2 kv heads), SwiGLU 1024, 16k vocabulary.
LlamaConfig DefaultConfig() {
  TinyLlamaOptions o;
  o.vocab_size = 16384;
  o.hidden_size = 384;
  o.num_layers = 8;
  o.num_heads = 6;
  o.num_kv_heads = 2;
  o.intermediate_size = 1024;
  o.max_position_embeddings = 2048;
  return TinyLlamaConfig(o);
}

void CheckOptions(const GenerateBenchOptions& o, const LlamaConfig& config) {
  LLAMARL_CHECK(!o.batches.empty(), "bench generate: give at least one batch size");
  for (int64_t b : o.batches) LLAMARL_CHECK(b >= 1, "bench generate: batch sizes must be >= 1, got ", b);
  LLAMARL_CHECK(o.prompt_len >= 1 && o.new_tokens >= 1, "bench generate: prompt_len and new_tokens must be >= 1, got ",
                o.prompt_len, " and ", o.new_tokens);
  LLAMARL_CHECK(o.prompt_len + o.new_tokens <= config.max_position_embeddings, "bench generate: prompt_len (",
                o.prompt_len, ") + new_tokens (", o.new_tokens, ") exceeds the model's max_position_embeddings (",
                config.max_position_embeddings, "); use shorter sequences");
  LLAMARL_CHECK(o.recompute_steps >= 1 && o.recompute_steps <= o.new_tokens, "bench generate: recompute_steps must be ",
                "in [1, new_tokens ", o.new_tokens, "], got ", o.recompute_steps);
  LLAMARL_CHECK(o.roofline_repeats >= 1, "bench generate: roofline_repeats must be >= 1, got ", o.roofline_repeats);
}

struct EngineRun {
  double seconds = 0;
  KvCacheStats kv;
};

EngineRun RunEngine(const LlamaConfig& config, LlamaForCausalLMImpl& model, const at::Tensor& prompts,
                    int64_t new_tokens, bool fp8_weights = false) {
  EngineOptions options;
  options.fp8_weights = fp8_weights;
  options.max_slots = prompts.size(0);
  options.max_seq_len = prompts.size(1) + new_tokens;
  Engine engine(config, model, options);
  for (int64_t b = 0; b < prompts.size(0); ++b) {
    GenerationRequest r;
    r.id = uint64_t(b);
    const at::Tensor row = prompts[b].contiguous();
    r.prompt.assign(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
    r.sampling.seed = uint64_t(b);
    r.sampling.max_new_tokens = new_tokens;
    engine.Submit(std::move(r));
  }
  const auto start = Clock::now();
  const std::vector<Completion> done = engine.RunUntilDone();  // ends with the tokens on the host
  const EngineRun run{Since(start), engine.KvStats()};
  for (const Completion& c : done) {
    LLAMARL_ASSERT(int64_t(c.tokens.size()) == new_tokens, "engine stopped request ", c.request_id,
                   " after ", c.tokens.size(), " tokens (", FinishReasonName(c.finish_reason), ")");
  }
  return run;
}

// Mean time of one full-recompute step (forward over the whole sequence, sample the last position),
// over steps at the midpoints of equal bins of the generation.
double RecomputeStepSeconds(LlamaForCausalLMImpl& model, const at::Tensor& prompts, int64_t new_tokens,
                            int64_t steps) {
  const int64_t batch = prompts.size(0), vocab = model.config().vocab_size;
  const c10::Device device = model.LmHeadWeight().device();
  at::Tensor tail = at::randint(vocab, {batch, new_tokens}, at::kLong);
  double total = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t generated = (2 * s + 1) * new_tokens / (2 * steps);
    LlamaInputs inputs;
    inputs.input_ids = at::cat({prompts, tail.narrow(1, 0, generated)}, 1).to(device);
    SynchronizeDevice(device);
    const auto start = Clock::now();
    at::Tensor last = model.Hidden(inputs).select(1, inputs.input_ids.size(1) - 1);
    at::Tensor next = model.LmHead(last).argmax(-1);
    SynchronizeDevice(device);
    total += Since(start);
    LLAMARL_ASSERT(next.size(0) == batch, "one next token per prompt: got ", next.size(0), " for ", batch);
  }
  return total / double(steps);
}

// The fastest pass of the matrix products one decode step performs at this batch size.
double RooflineStepSeconds(LlamaForCausalLMImpl& model, int64_t batch, int64_t repeats) {
  const LlamaConfig& c = model.config();
  const auto options = model.LmHeadWeight().options();
  at::Tensor x = at::randn({batch, c.hidden_size}, options);
  at::Tensor attended = at::randn({batch, c.num_attention_heads * c.head_dim}, options);
  at::Tensor inter = at::randn({batch, c.intermediate_size}, options);
  double best = std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < repeats; ++r) {
    SynchronizeDevice(options.device());
    const auto start = Clock::now();
    for (int64_t l = 0; l < model.NumLayers(); ++l) {
      LlamaDecoderLayerImpl& layer = model.Layer(l);
      at::linear(x, layer.self_attn->q_proj->weight);
      at::linear(x, layer.self_attn->k_proj->weight);
      at::linear(x, layer.self_attn->v_proj->weight);
      at::linear(attended, layer.self_attn->o_proj->weight);
      at::linear(x, layer.mlp->gate_proj->weight);
      at::linear(x, layer.mlp->up_proj->weight);
      at::linear(inter, layer.mlp->down_proj->weight);
    }
    at::linear(x, model.LmHeadWeight());
    SynchronizeDevice(options.device());
    best = std::min(best, Since(start));
  }
  return best;
}

}  // namespace

nlohmann::json RunGenerateBench(const GenerateBenchOptions& options) {
  LlamaForCausalLM model{nullptr};
  if (options.model_dir.empty()) {
    model = LlamaForCausalLM(DefaultConfig());
    InitLlamaWeights(*model, options.seed);
  } else {
    model = LoadLlama(options.model_dir);
  }
  model->to(options.device);
  const LlamaConfig& config = model->config();
  CheckOptions(options, config);
  c10::InferenceMode inference;
  at::manual_seed(options.seed);
  nlohmann::json report = {{"model_params", config.NumParameters()},
                           {"model", options.model_dir.empty() ? "default" : options.model_dir},
                           {"prompt_len", options.prompt_len},
                           {"new_tokens", options.new_tokens},
                           {"recompute_steps_timed", options.recompute_steps},
                           {"threads", at::get_num_threads()},
                           {"device", options.device.str()},
                           {"results", nlohmann::json::array()}};
  for (int64_t batch : options.batches) {
    at::Tensor prompts = at::randint(config.vocab_size, {batch, options.prompt_len}, at::kLong);
    const EngineRun engine = RunEngine(config, *model, prompts, options.new_tokens);
    const double engine_s = engine.seconds;
    const double recompute_step_s = RecomputeStepSeconds(*model, prompts, options.new_tokens, options.recompute_steps);
    const double roofline_step_s = RooflineStepSeconds(*model, batch, options.roofline_repeats);
    const double engine_tps = double(batch * options.new_tokens) / engine_s;
    const double recompute_tps = double(batch) / recompute_step_s;
    const double roofline_tps = double(batch) / roofline_step_s;
    report["results"].push_back({{"batch", batch},
                                 {"engine_tokens_per_s", engine_tps},
                                 {"recompute_tokens_per_s", recompute_tps},
                                 {"roofline_tokens_per_s", roofline_tps},
                                 {"speedup_vs_recompute", engine_tps / recompute_tps},
                                 {"fraction_of_roofline", engine_tps / roofline_tps},
                                 {"engine_seconds", engine_s},
                                 {"recompute_step_seconds", recompute_step_s},
                                 {"roofline_step_seconds", roofline_step_s},
                                 {"kv_cache_bytes", engine.kv.budget_bytes},
                                 {"kv_peak_bytes", engine.kv.peak_blocks_in_use * engine.kv.budget_bytes / engine.kv.num_blocks}});
    if (options.fp8) {
      const EngineRun fp8 = RunEngine(config, *model, prompts, options.new_tokens, /*fp8_weights=*/true);
      const double fp8_tps = double(batch * options.new_tokens) / fp8.seconds;
      report["results"].back()["fp8_engine_tokens_per_s"] = fp8_tps;
      report["results"].back()["fp8_vs_engine"] = fp8_tps / engine_tps;
    }
    if (options.progress) options.progress(report["results"].back().dump());
  }
  return report;
}

}  // namespace llamarl::bench
