// The engine on a GPU is the same code as on the host: weights loaded from a weight source into CUDA
// memory (through pinned staging), the KV cache and sampling on the device. Greedy tokens equal the
// CPU engine's on the peaked test model (no near-ties that summation order could flip); sampled
// log-probs agree to float32 rounding. The same holds for fp8 weights (EngineOptions::fp8_weights:
// the projections decoded per layer by the CUDA kernel on the device, by the table on the host).
// Built under LLAMARL_CUDA, run where a GPU is (label gpu).
#include "generator/engine.h"
#include "model/llama_weights.h"
#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>

namespace llamarl {
namespace {

using namespace llamarl::testing;

std::vector<Completion> RunGreedy(const LlamaConfig& config, const LlamaWeightSource& weights, c10::Device device,
                                  bool fp8_weights = false) {
  EngineOptions options;
  options.fp8_weights = fp8_weights;
  options.max_slots = 4;
  options.max_seq_len = 40;
  Engine engine(config, weights, at::TensorOptions().dtype(at::kFloat).device(device), options);
  for (uint64_t i = 0; i < 4; ++i) engine.Submit(Greedy(i, Prompt(3 + int64_t(i) * 5, int64_t(i), config.vocab_size), 16));
  std::vector<Completion> done = engine.RunUntilDone();
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) { return a.request_id < b.request_id; });
  return done;
}

TEST(EngineOnCuda, GreedyTokensEqualTheCpuEngines) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const LlamaConfig config = EngineTestConfig(97);
  LlamaForCausalLM model = MakeModel(config, 5);
  const LlamaWeightSource weights = LlamaWeightSource::FromModel(*model);
  for (bool fp8 : {false, true}) {
    SCOPED_TRACE(fp8 ? "fp8 weights" : "f32 weights");
    const std::vector<Completion> cpu = RunGreedy(config, weights, c10::Device(c10::kCPU), fp8);
    const std::vector<Completion> gpu = RunGreedy(config, weights, c10::Device(c10::kCUDA, 0), fp8);
    ASSERT_EQ(cpu.size(), gpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_EQ(cpu[i].tokens, gpu[i].tokens) << "request " << i;
      ASSERT_EQ(cpu[i].logprobs.size(), gpu[i].logprobs.size());
      for (size_t t = 0; t < cpu[i].logprobs.size(); ++t) EXPECT_NEAR(cpu[i].logprobs[t], gpu[i].logprobs[t], 1e-4);
    }
  }
}

TEST(EngineOnCuda, LoadIntoStagesHostSlicesIntoDeviceMemoryBitForBit) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Tensor host = at::randn({64, 48});
  const at::Tensor slice = host.narrow(1, 5, 20);  // not contiguous, as a tensor-parallel shard is
  at::Tensor dst = at::empty({64, 20}, at::TensorOptions().dtype(at::kBFloat16).device(c10::kCUDA, 0));
  LoadInto(dst, slice);
  EXPECT_TRUE(at::equal(dst.cpu(), slice.to(at::kBFloat16)));
}

}  // namespace
}  // namespace llamarl
