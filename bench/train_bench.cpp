#include "bench/train_bench.h"

#include "core/check.h"
#include "core/device.h"
#include "model/llama_checkpoint.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <random>

namespace llamarl::bench {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

void CheckOptions(const TrainBenchOptions& o) {
  LLAMARL_CHECK(o.samples_per_rank >= 1, "bench train: samples_per_rank must be >= 1, got ", o.samples_per_rank);
  LLAMARL_CHECK(o.prompt_len >= 1 && o.response_len >= 1, "bench train: prompt_len and response_len must be >= 1, got ",
                o.prompt_len, " and ", o.response_len);
  LLAMARL_CHECK(o.steps >= 1, "bench train: steps must be >= 1, got ", o.steps);
  LLAMARL_CHECK(o.gemm_size >= 64, "bench train: gemm_size must be >= 64, got ", o.gemm_size);
  LLAMARL_CHECK(o.micro_batch_tokens >= 1, "bench train: micro_batch_tokens must be >= 1, got ", o.micro_batch_tokens);
  LLAMARL_CHECK(o.compute_dtype == "float32" || o.compute_dtype == "bfloat16",
                "bench train: compute_dtype must be float32 or bfloat16, got '", o.compute_dtype, "'");
}

// Random rollouts of fixed lengths; group ids run over the global batch (groups of 4).
TrainBatch SyntheticBatch(const LlamaConfig& config, const TrainBenchOptions& o, int rank, int64_t step) {
  std::mt19937_64 rng(o.seed * 1000003 + uint64_t(step) * 7919 + uint64_t(rank));
  std::uniform_int_distribution<int64_t> token(0, config.vocab_size - 1);
  std::uniform_real_distribution<float> logprob(-6.0f, -0.1f);
  TrainBatch batch;
  for (int64_t i = 0; i < o.samples_per_rank; ++i) {
    TrainSample s;
    for (int64_t t = 0; t < o.prompt_len; ++t) s.prompt.push_back(token(rng));
    for (int64_t t = 0; t < o.response_len; ++t) {
      s.response.push_back(token(rng));
      s.behaviour_logprobs.push_back(logprob(rng));
    }
    s.reward = double(rng() % 2);
    s.group_id = (int64_t(rank) * o.samples_per_rank + i) / 4;
    batch.samples.push_back(std::move(s));
  }
  return batch;
}

// Best time of one step over `steps` timed steps after a warm-up.
double TimeSteps(Communicator& dp, const LlamaConfig& config, LlamaForCausalLMImpl& model, const TrainerConfig& cfg,
                 const TrainBenchOptions& o) {
  Trainer trainer(dp, config, model, cfg);
  trainer.Step(SyntheticBatch(config, o, dp.Rank(), 0));
  double best = std::numeric_limits<double>::infinity();
  for (int64_t step = 1; step <= o.steps; ++step) {
    TrainBatch batch = SyntheticBatch(config, o, dp.Rank(), step);
    dp.Barrier()->Wait();
    const auto start = std::chrono::steady_clock::now();
    trainer.Step(batch);
    SynchronizeDevice(cfg.device);
    dp.Barrier()->Wait();
    best = std::min(best, Seconds(start));
  }
  return best;
}

// GEMM throughput of this process in `options` (dtype, device): the best of several n x n x n at::mm.
double GemmGflops(int64_t n, const at::TensorOptions& options) {
  at::Tensor a = at::randn({n, n}).to(options), b = at::randn({n, n}).to(options);
  at::Tensor c = at::mm(a, b);  // warm-up
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 5; ++i) {
    SynchronizeDevice(options.device());
    const auto start = std::chrono::steady_clock::now();
    c = at::mm(a, b);
    SynchronizeDevice(options.device());
    best = std::min(best, Seconds(start));
  }
  return 2.0 * double(n) * double(n) * double(n) / best / 1e9;
}

}  // namespace

LlamaConfig DefaultTrainBenchConfig() {
  TinyLlamaOptions o;
  o.vocab_size = 8192, o.hidden_size = 384, o.num_layers = 10, o.num_heads = 6, o.num_kv_heads = 2;
  o.intermediate_size = 1024;
  return TinyLlamaConfig(o);
}

nlohmann::json RunTrainBench(Communicator& dp, const TrainBenchOptions& o) {
  CheckOptions(o);
  LlamaForCausalLM model{nullptr};
  LlamaConfig config;
  if (o.model_dir.empty()) {
    config = DefaultTrainBenchConfig();
    model = LlamaForCausalLM(config, at::TensorOptions().dtype(at::kFloat));
    InitLlamaWeights(*model, o.seed);
  } else {
    model = LoadLlama(o.model_dir);
    config = model->config();
  }
  TrainerConfig cfg;
  cfg.algorithm = o.algorithm;
  cfg.micro_batch_tokens = o.micro_batch_tokens;
  cfg.optimizer.lr = 1e-5;
  cfg.sharding = "zero3";
  cfg.compute_dtype = o.compute_dtype;
  cfg.device = o.device;
  cfg.activation_checkpointing = false;
  const double zero3_s = TimeSteps(dp, config, *model, cfg, o);
  cfg.activation_checkpointing = true;
  const double checkpointed_s = TimeSteps(dp, config, *model, cfg, o);
  cfg.sharding = "replicated";
  const double baseline_s = TimeSteps(dp, config, *model, cfg, o);
  const at::ScalarType compute = o.compute_dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  const double gemm = GemmGflops(o.gemm_size, at::TensorOptions().dtype(compute).device(o.device));
  const int64_t tokens = int64_t(dp.Size()) * o.samples_per_rank * (o.prompt_len + o.response_len - 1);
  const double params = double(config.NumParameters());
  const double achieved = 6.0 * params * double(tokens) / zero3_s / 1e9;
  return nlohmann::json{{"model_params", config.NumParameters()},
                        {"model", o.model_dir.empty() ? "default-20m" : o.model_dir},
                        {"algorithm", o.algorithm},
                        {"ranks", dp.Size()},
                        {"threads", at::get_num_threads()},
                        {"device", o.device.str()},
                        {"compute_dtype", o.compute_dtype},
                        {"tokens_per_step", tokens},
                        {"tokens_per_s", double(tokens) / zero3_s},
                        {"baseline_tokens_per_s", double(tokens) / baseline_s},
                        {"speedup_vs_baseline", baseline_s / zero3_s},
                        {"step_seconds", zero3_s},
                        {"baseline_step_seconds", baseline_s},
                        {"checkpointed_tokens_per_s", double(tokens) / checkpointed_s},
                        {"checkpointed_step_seconds", checkpointed_s},
                        {"gemm_gflops", gemm},
                        {"achieved_gflops", achieved},
                        {"fraction_of_peak", achieved / (gemm * double(dp.Size()))},
                        {"samples_per_rank", o.samples_per_rank},
                        {"prompt_len", o.prompt_len},
                        {"response_len", o.response_len},
                        {"micro_batch_tokens", o.micro_batch_tokens},
                        {"steps", o.steps}};
}

}  // namespace llamarl::bench
