// llamarl bench NAME [options] [--json]: each benchmark measures its figure and the baseline in the
// same run and prints both with their ratio (the machine is shared; absolute times drift).
#include "bench/async_bench.h"
#include "bench/generate_bench.h"
#include "bench/logprobs_bench.h"
#include "bench/train_bench.h"
#include "bench/weight_sync_bench.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/communicator.h"
#include "core/device.h"
#include "core/logging.h"
#include "core/routed_communicator.h"

#include <cstdio>
#include <cstring>

namespace llamarl::cli {
namespace {

void PrintResult(const nlohmann::json& result, bool json) {
  if (json) {
    std::printf("%s\n", result.dump().c_str());
    return;
  }
  for (auto it = result.begin(); it != result.end(); ++it)
    std::printf("%-24s %s\n", it.key().c_str(), it.value().dump().c_str());
}

int BenchLogprobs(const CommandArgs& argv) {
  bench::LogprobsBenchOptions d;
  Args args("bench logprobs", "llamarl bench logprobs [--tokens T] [--vocab V] [--hidden D] [--device D] [--json]");
  args.Option("tokens", "tokens T", std::to_string(d.tokens))
      .Option("vocab", "vocabulary size V", std::to_string(d.vocab))
      .Option("hidden", "hidden size D", std::to_string(d.hidden))
      .Option("dtype", "float32 or bfloat16", d.dtype)
      .Option("repeats", "timed passes per variant (the fastest counts)", std::to_string(d.repeats))
      .Option("seed", "seed of the random inputs", std::to_string(d.seed))
      .Option("device", "auto (cuda when built with CUDA and a GPU is visible), cpu or cuda", "auto")
      .Flag("json", "print one JSON object");
  if (!args.Parse(argv)) return 0;
  bench::LogprobsBenchOptions o = d;
  o.tokens = args.GetInt("tokens");
  o.vocab = args.GetInt("vocab");
  o.hidden = args.GetInt("hidden");
  o.dtype = args.Get("dtype");
  o.repeats = args.GetInt("repeats");
  o.seed = uint64_t(args.GetInt("seed"));
  o.device = ResolveDevice(args.Get("device"), "--device");
  PrintResult(bench::RunLogprobsBench(o), args.GetFlag("json"));
  return 0;
}

// Collective: run under mpirun with 2 ranks or more; rank 0 prints.
int BenchWeightSync(const CommandArgs& argv) {
  bench::WeightSyncBenchOptions d;
  Args args("bench weight-sync", "mpirun -np N llamarl bench weight-sync [--model 100m|tiny|8b] [--device D] [--fp8] [--json]");
  args.Option("model", "100m (Llama-shaped, ~100M parameters) or a preset: tiny, 8b, 70b, 405b", d.model)
      .Option("layers", "replace the model's layer count (0 = keep)", std::to_string(d.num_layers))
      .Option("generators", "generator ranks (0 = half the world)", std::to_string(d.num_generators))
      .Option("bucket-bytes", "DDMA bucket per (trainer, generator) pair", std::to_string(d.bucket_bytes))
      .Option("repeats", "timed pushes per method (the fastest counts)", std::to_string(d.repeats))
      .Flag("checksum", "verify a hash of every bucket")
      .Flag("fp8", "also time DDMA with fp8 generators' plan (e4m3fn, per-row scales)")
      .Option("device", "auto (cuda when built with CUDA and a GPU is visible), cpu or cuda", "auto")
      .Flag("json", "print one JSON object");
  if (!args.Parse(argv)) return 0;
  bench::WeightSyncBenchOptions o = d;
  o.model = args.Get("model");
  o.num_layers = args.GetInt("layers");
  o.num_generators = int(args.GetInt("generators"));
  o.bucket_bytes = args.GetInt("bucket-bytes");
  o.repeats = int(args.GetInt("repeats"));
  o.checksum = args.GetFlag("checksum");
  o.fp8 = args.GetFlag("fp8");
  o.device = ResolveDevice(args.Get("device"), "--device");
  auto world = CreateJobCommunicator(o.device, "auto", "--device");
  LLAMARL_CHECK(world->Size() >= 2, "llamarl bench weight-sync needs 2 ranks or more; run it under ",
                "mpirun -np 4 (as root add --allow-run-as-root, and --oversubscribe beyond the core count)");
  SetLogRank(world->Rank());
  nlohmann::json result = bench::RunWeightSyncBench(*world, o);
  if (world->Rank() == 0) PrintResult(result, args.GetFlag("json"));
  return 0;
}

int BenchGenerate(const CommandArgs& argv) {
  bench::GenerateBenchOptions d;
  Args args("bench generate", "llamarl bench generate [--model DIR] [--batches 1,8,32,64] [--new-tokens N] [--device D] [--fp8] [--json]");
  args.Option("model", "HF checkpoint directory (default: a ~20M-parameter random Llama)")
      .Option("batches", "batch sizes, comma-separated", "1,8,32,64")
      .Option("prompt-len", "tokens per prompt", std::to_string(d.prompt_len))
      .Option("new-tokens", "tokens generated per sequence", std::to_string(d.new_tokens))
      .Option("recompute-steps", "full-recompute steps timed (at their true lengths)", std::to_string(d.recompute_steps))
      .Option("seed", "seed of the weights and prompts", std::to_string(d.seed))
      .Option("device", "auto (cuda when built with CUDA and a GPU is visible), cpu or cuda", "auto")
      .Flag("fp8", "also time the engine with fp8 (e4m3fn, per-row scaled) layer weights")
      .Flag("json", "print one JSON object");
  if (!args.Parse(argv)) return 0;
  bench::GenerateBenchOptions o = d;
  o.fp8 = args.GetFlag("fp8");
  o.model_dir = args.Has("model") ? args.Get("model") : "";
  o.batches = args.GetIntList("batches");
  o.prompt_len = args.GetInt("prompt-len");
  o.new_tokens = args.GetInt("new-tokens");
  o.recompute_steps = args.GetInt("recompute-steps");
  o.seed = uint64_t(args.GetInt("seed"));
  o.device = ResolveDevice(args.Get("device"), "--device");
  // Progress on stderr so that --json output stays one parseable line.
  o.progress = [](const std::string& line) { std::fprintf(stderr, "[bench generate] %s\n", line.c_str()); };
  PrintResult(bench::RunGenerateBench(o), args.GetFlag("json"));
  return 0;
}

// Runs on one rank or under mpirun (every rank is a trainer rank); rank 0 prints.
int BenchTrain(const CommandArgs& argv) {
  bench::TrainBenchOptions d;
  Args args("bench train", "[mpirun -np N] llamarl bench train [--model DIR] [--algorithm grpo] [--device D] [--json]");
  args.Option("model", "HF checkpoint directory (default: a ~20M-parameter random Llama)")
      .Option("algorithm", "trainer algorithm (grpo, aipo, sft, ...)", d.algorithm)
      .Option("samples-per-rank", "rollouts per rank per step", std::to_string(d.samples_per_rank))
      .Option("prompt-len", "prompt tokens per rollout", std::to_string(d.prompt_len))
      .Option("response-len", "response tokens per rollout", std::to_string(d.response_len))
      .Option("micro-batch-tokens", "tokens per micro-batch", std::to_string(d.micro_batch_tokens))
      .Option("steps", "timed steps per variant (the fastest counts)", std::to_string(d.steps))
      .Option("gemm-size", "n of the n x n x n matmul that measures the peak", std::to_string(d.gemm_size))
      .Option("seed", "seed of the weights and rollouts", std::to_string(d.seed))
      .Option("compute-dtype", "float32 or bfloat16 (master weights and Adam state stay float32)", d.compute_dtype)
      .Option("device", "auto (cuda when built with CUDA and a GPU is visible), cpu or cuda", "auto")
      .Flag("json", "print one JSON object");
  if (!args.Parse(argv)) return 0;
  bench::TrainBenchOptions o = d;
  o.model_dir = args.Has("model") ? args.Get("model") : "";
  o.algorithm = args.Get("algorithm");
  o.samples_per_rank = args.GetInt("samples-per-rank");
  o.prompt_len = args.GetInt("prompt-len");
  o.response_len = args.GetInt("response-len");
  o.micro_batch_tokens = args.GetInt("micro-batch-tokens");
  o.steps = args.GetInt("steps");
  o.gemm_size = args.GetInt("gemm-size");
  o.seed = uint64_t(args.GetInt("seed"));
  o.compute_dtype = args.Get("compute-dtype");
  o.device = ResolveDevice(args.Get("device"), "--device");
  auto world = CreateJobCommunicator(o.device, "auto", "--device");
  SetLogRank(world->Rank());
  nlohmann::json result = bench::RunTrainBench(*world, o);
  if (world->Rank() == 0) PrintResult(result, args.GetFlag("json"));
  return 0;
}

// Collective: mpirun -np 2 (or more); rank 0 prints.
int BenchAsync(const CommandArgs& argv) {
  bench::AsyncBenchOptions d;
  Args args("bench async", "mpirun -np 2 llamarl bench async [--recipe FILE] [--steps N] [--set key=value]... [--json]");
  args.Option("recipe", "recipe run in both modes", d.recipe)
      .Option("steps", "RL steps per mode (0 = the recipe's)", std::to_string(d.steps))
      .Option("run-dir", "the runs go to RUN_DIR/sync and RUN_DIR/async", d.run_dir)
      .Option("threads", "intra-op threads per rank in both modes (0 = cores / ranks)", std::to_string(d.threads))
      .Repeated("set", "key=value override applied to both runs")
      .Flag("json", "print one JSON object");
  if (!args.Parse(argv)) return 0;
  bench::AsyncBenchOptions o = d;
  o.recipe = args.Get("recipe");
  o.steps = args.GetInt("steps");
  o.run_dir = args.Get("run-dir");
  o.threads = int(args.GetInt("threads"));
  o.overrides = args.GetAll("set");
  auto world = CreateCommunicator(DefaultCommunicatorName());
  LLAMARL_CHECK(world->Size() >= 2, "llamarl bench async needs 2 ranks or more; run it under mpirun -np 2 ",
                "(as root add --allow-run-as-root)");
  SetLogRank(world->Rank());
  nlohmann::json result = bench::RunAsyncBench(*world, o);
  if (world->Rank() == 0) PrintResult(result, args.GetFlag("json"));
  return 0;
}

struct Bench {
  const char* name;
  int (*run)(const CommandArgs&);
};

const Bench kBenches[] = {
    {"logprobs", BenchLogprobs},
    {"weight-sync", BenchWeightSync},
    {"generate", BenchGenerate},
    {"train", BenchTrain},
    {"async", BenchAsync},
};

}  // namespace

int RunBench(const CommandArgs& argv) {
  std::string known;
  for (const auto& b : kBenches) known += (known.empty() ? "" : ", ") + std::string(b.name);
  if (!argv.empty() && (argv[0] == "--help" || argv[0] == "-h")) {
    std::printf("usage: llamarl bench NAME [options] [--json]   (llamarl bench NAME --help for its options)\n\n"
                "NAME is one of: %s\n", known.c_str());
    return 0;
  }
  LLAMARL_CHECK(!argv.empty(), "usage: llamarl bench NAME [options] [--json]; NAME is one of: ", known);
  for (const auto& b : kBenches)
    if (argv[0] == b.name) return b.run(CommandArgs(argv.begin() + 1, argv.end()));
  LLAMARL_FAIL("unknown benchmark '", argv[0], "'; known: ", known);
}

}  // namespace llamarl::cli
