#include "bench/weight_sync_bench.h"

#include "core/check.h"
#include "core/device.h"
#include "model/llama_config.h"
#include "weight_sync/baseline.h"
#include "weight_sync/ddma.h"
#include "weight_sync/fp8_scales.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>

namespace llamarl::bench {
namespace {

// Llama-shaped, tied embeddings: 32000 x 768 embeddings + 12 layers of 6.3M = 100.1M parameters.
LlamaConfig Llama100mConfig() {
  TinyLlamaOptions o;
  o.vocab_size = 32000;
  o.hidden_size = 768;
  o.num_layers = 12;
  o.num_heads = 12;
  o.num_kv_heads = 4;
  o.intermediate_size = 2048;
  o.tie_word_embeddings = true;
  return TinyLlamaConfig(o);
}

LlamaConfig BenchConfig(const WeightSyncBenchOptions& options) {
  LlamaConfig config = options.model == "100m" ? Llama100mConfig() : LlamaPresetConfig(options.model);
  LLAMARL_CHECK(options.num_layers >= 0, "bench weight-sync: num_layers must be >= 0 (0 keeps the model's), got ",
                options.num_layers);
  if (options.num_layers > 0) config.num_hidden_layers = options.num_layers;
  return config;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The slowest rank's time of `body` (its work on `device` finished), started together after a
// barrier; fastest of `repeats` runs after one warm-up.
double TimeCollective(Communicator& world, c10::Device device, int repeats, const std::function<void()>& body) {
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i <= repeats; ++i) {
    SynchronizeDevice(device);
    world.Barrier()->Wait();
    auto start = std::chrono::steady_clock::now();
    body();
    SynchronizeDevice(device);
    at::Tensor elapsed = at::full({1}, Seconds(start), at::kDouble).to(at::kFloat);
    world.AllReduce(elapsed, {ReduceOp::kMax})->Wait();
    if (i > 0) best = std::min(best, double(elapsed.item<float>()));
  }
  return best;
}

// A copy of `bytes` on rank 0 while the others wait (memcpy on the host, a device-to-device copy on
// a GPU); every rank gets rank 0's time.
double TimeMemcpy(Communicator& world, c10::Device device, int64_t bytes, int repeats) {
  at::Tensor seconds = at::zeros({1}, at::kFloat);
  if (world.Rank() == 0) {
    const auto options = at::TensorOptions().dtype(at::kByte).device(device);
    at::Tensor src = at::ones({bytes}, options), dst = at::zeros({bytes}, options);  // touched: no page faults
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i <= repeats; ++i) {
      SynchronizeDevice(device);
      auto start = std::chrono::steady_clock::now();
      if (device.is_cpu()) {
        std::memcpy(dst.data_ptr(), src.data_ptr(), size_t(bytes));
      } else {
        dst.copy_(src);
        SynchronizeDevice(device);
      }
      if (i > 0) best = std::min(best, Seconds(start));
    }
    seconds.fill_(best);
  }
  world.Broadcast(seconds, {0})->Wait();
  return seconds.item<float>();
}

bool AllEqual(Communicator& world, const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  bool same = a.size() == b.size();
  for (size_t i = 0; same && i < a.size(); ++i) same = at::equal(a[i], b[i]);
  at::Tensor flag = at::full({1}, same ? 1.0f : 0.0f);
  world.AllReduce(flag, {ReduceOp::kMin})->Wait();
  return flag.item<float>() == 1.0f;
}

}  // namespace

nlohmann::json RunWeightSyncBench(Communicator& world, const WeightSyncBenchOptions& options) {
  const int ranks = world.Size();
  LLAMARL_CHECK(ranks >= 2, "bench weight-sync needs trainer and generator ranks: run it under mpirun -np 2 or more "
                "(got ", ranks, " rank)");
  LLAMARL_CHECK(options.repeats >= 1, "bench weight-sync: repeats must be >= 1, got ", options.repeats);
  const int generators = options.num_generators > 0 ? options.num_generators : std::max(1, ranks / 2);
  const LlamaConfig config = BenchConfig(options);
  const TransferPlacement placement = TransferPlacement::Split(ranks, generators);
  const int trainers = int(placement.src_ranks.size());
  auto plan = TransferPlan::Build(ZeroFlatLayout(LlamaParamSpecs(config), trainers, at::kFloat),
                                  TensorParallelLayout(config, {generators, at::kBFloat16}));
  const int my_src = LayoutRankOf(placement.src_ranks, world.Rank());
  const int my_dst = LayoutRankOf(placement.dst_ranks, world.Rank());

  TransferBuffers ddma, baseline;
  if (my_src >= 0) {
    at::Generator gen = at::detail::createCPUGenerator(uint64_t(1000 + my_src));
    ddma.src = {at::randn({plan->src().RankNumel(my_src)}, gen, at::kFloat).to(options.device)};
    baseline.src = ddma.src;
  }
  if (my_dst >= 0) {
    ddma.dst = AllocateBuffers(plan->dst(), my_dst, at::TensorOptions().device(options.device));
    baseline.dst = AllocateBuffers(plan->dst(), my_dst, at::TensorOptions().device(options.device));
  }
  TransferOptions transfer;
  transfer.bucket_bytes = options.bucket_bytes;
  transfer.checksum = options.checksum;
  transfer.staging = std::make_shared<TransferStaging>();  // a trainer keeps it from push to push
  const double ddma_s = TimeCollective(world, options.device, options.repeats, [&] { ExecuteTransfer(world, *plan, placement, ddma, transfer); });
  GatherBroadcastSync old_way(world, plan, placement);
  const double baseline_s = TimeCollective(world, options.device, options.repeats, [&] { old_way.Run(baseline); });
  const int64_t bytes = plan->DstBytes();
  const double memcpy_s = TimeMemcpy(world, options.device, bytes, options.repeats);
  const bool match = AllEqual(world, ddma.dst, baseline.dst);

  const double gb = double(bytes) / 1e9;
  nlohmann::json fp8;
  if (options.fp8) {
    auto fp8_plan = TransferPlan::Build(plan->src(), TensorParallelLayout(config, {generators, at::kByte}),
                                        TransferEncoding::kFp8E4m3);
    TransferBuffers buffers;
    buffers.src = ddma.src;
    int64_t fp8_bytes = fp8_plan->DstBytes();
    if (my_dst >= 0) {
      const at::TensorOptions on_device = at::TensorOptions().device(options.device);
      buffers.dst = AllocateBuffers(fp8_plan->dst(), my_dst, on_device);
      buffers.dst_scales = AllocateScaleBuffers(*fp8_plan, my_dst, on_device);
    }
    for (int r = 0; r < generators; ++r) {
      for (const at::Tensor& s : AllocateScaleBuffers(*fp8_plan, r, at::TensorOptions().device(at::kMeta)))
        fp8_bytes += s.numel() * int64_t(sizeof(float));
    }
    TransferOptions fp8_transfer = transfer;
    fp8_transfer.staging = std::make_shared<TransferStaging>();
    const double fp8_s = TimeCollective(world, options.device, options.repeats,
                                        [&] { ExecuteTransfer(world, *fp8_plan, placement, buffers, fp8_transfer); });
    fp8 = {{"ddma_fp8_s", fp8_s}, {"fp8_bytes", fp8_bytes}, {"fp8_speedup_vs_ddma", ddma_s / fp8_s}};
  }
  nlohmann::json result = {{"ranks", ranks},
          {"bytes", bytes},
          {"ddma_s", ddma_s},
          {"baseline_s", baseline_s},
          {"memcpy_s", memcpy_s},
          {"speedup_vs_baseline", baseline_s / ddma_s},
          {"fraction_of_memcpy", memcpy_s / ddma_s},
          {"ddma_gbps", gb / ddma_s},
          {"baseline_gbps", gb / baseline_s},
          {"memcpy_gbps", gb / memcpy_s},
          {"results_match", match},
          {"device", options.device.str()},
          {"model", options.model},
          {"parameters", config.NumParameters()},
          {"trainer_ranks", trainers},
          {"generator_ranks", generators},
          {"source", "zero_flat float32"},
          {"destination", "tensor_parallel bfloat16"},
          {"bucket_bytes", options.bucket_bytes},
          {"checksum", options.checksum},
          {"repeats", options.repeats}};
  if (options.fp8) result.update(fp8);
  return result;
}

}  // namespace llamarl::bench
