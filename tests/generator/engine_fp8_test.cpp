// fp8 generator weights (EngineOptions::fp8_weights): the decoder layers' projections held as e4m3fn
// bits with per-row scales and decoded one layer at a time. The independent reference is an ordinary
// engine (and the full-recompute oracle) run on a model whose projections were replaced by their
// decoded values, CastFromFp8E4m3(CastToFp8E4m3(w, per row)): the fp8 engine must generate exactly
// what that model generates, on mixed batches where sequences join and finish, with GRPO groups
// sharing their prompt blocks. Then the storage (1 byte per element, one shared layer of scratch)
// and a plain update (quantised on receipt). An fp8 push is tested in tests/weight_sync.
#include "generator/engine.h"

#include "generator/engine_model.h"
#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

namespace llamarl {
namespace {

using testing::Greedy;
using testing::MakeModel;
using testing::Prompt;

constexpr int64_t kVocab = 96;

EngineOptions Options(bool fp8_weights) {
  EngineOptions o;
  o.max_slots = 8;
  o.fp8_weights = fp8_weights;
  return o;
}

std::map<std::pair<uint64_t, int64_t>, Completion> ByKey(const std::vector<Completion>& done) {
  std::map<std::pair<uint64_t, int64_t>, Completion> out;
  for (const Completion& c : done) out[{c.request_id, c.sample_index}] = c;
  return out;
}

// Mixed work: greedy requests of different lengths, a sampled GRPO group of 3 (its prompt prefilled
// once, blocks shared), and two requests that join after a few decode steps.
std::vector<Completion> RunMixed(Engine& engine) {
  engine.Submit(Greedy(1, Prompt(5, 1, kVocab), 9));
  engine.Submit(Greedy(2, Prompt(11, 2, kVocab), 4));
  GenerationRequest group = Greedy(3, Prompt(7, 3, kVocab), 8);
  group.num_samples = 3;
  group.sampling.temperature = 0.8;
  group.sampling.seed = 17;
  engine.Submit(group);
  std::vector<Completion> done;
  for (int step = 0; step < 3; ++step) {
    for (Completion& c : engine.Step()) done.push_back(std::move(c));
  }
  engine.Submit(Greedy(4, Prompt(3, 4, kVocab), 6));
  engine.Submit(Greedy(5, Prompt(9, 5, kVocab), 5));
  for (Completion& c : engine.RunUntilDone()) done.push_back(std::move(c));
  return done;
}

void ExpectSameCompletions(const std::vector<Completion>& got, const std::vector<Completion>& want) {
  ASSERT_EQ(got.size(), want.size());
  const auto g = ByKey(got), w = ByKey(want);
  for (const auto& [key, c] : w) {
    ASSERT_TRUE(g.count(key)) << "request " << key.first << " sample " << key.second;
    const Completion& o = g.at(key);
    EXPECT_EQ(o.tokens, c.tokens) << "request " << key.first << " sample " << key.second;
    ASSERT_EQ(o.logprobs.size(), c.logprobs.size());
    for (size_t i = 0; i < c.logprobs.size(); ++i) EXPECT_NEAR(o.logprobs[i], c.logprobs[i], 1e-5) << key.first;
  }
}

TEST(EngineFp8Test, GeneratesExactlyWhatTheDecodedModelGenerates) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model = MakeModel(config, 11);
  LlamaForCausalLM decoded = testing::Fp8Decoded(config, *model);
  Engine fp8(config, *model, Options(true));
  EXPECT_TRUE(fp8.fp8_weights());
  Engine plain(config, *decoded, Options(false));
  ExpectSameCompletions(RunMixed(fp8), RunMixed(plain));
  // And the full-recompute oracle on the decoded model.
  for (int64_t salt : {1, 6}) {
    fp8.Submit(Greedy(uint64_t(10 + salt), Prompt(6, salt, kVocab), 7));
    const std::vector<Completion> done = fp8.RunUntilDone();
    ASSERT_EQ(done.size(), 1u);
    const GenerationResult want = testing::Reference(*decoded, Prompt(6, salt, kVocab), 7);
    EXPECT_EQ(done[0].tokens, want.tokens);
    for (size_t i = 0; i < want.logprobs.size(); ++i) EXPECT_NEAR(done[0].logprobs[i], want.logprobs[i], 1e-5);
  }
  EXPECT_EQ(fp8.KvStats().blocks_in_use, 0) << "every block freed at the end";
}

TEST(EngineFp8Test, QuantisationChangesTheWeightsOnlyByFp8Rounding) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model = MakeModel(config, 12);
  Engine fp8(config, *model, Options(true));
  auto src = model->named_parameters();
  int projections = 0;
  for (const auto& [name, value] : fp8.LocalParameters()) {
    const at::Tensor w = src[name];
    if (!testing::IsLayerProjection(name)) {
      EXPECT_TRUE(at::equal(value, w)) << name << " is not quantised";
      continue;
    }
    ++projections;
    EXPECT_TRUE(at::equal(value, testing::Fp8RoundTrip(w))) << name;
    // e4m3 has 3 mantissa bits: relative error <= 2^-4 of the row's values above the subnormal range.
    const at::Tensor row_max = w.abs().amax({1}, true);
    EXPECT_LE((value - w).abs().div(row_max).max().item<double>(), 1.0 / 16) << name;
  }
  EXPECT_EQ(projections, 7 * config.num_hidden_layers);
}

TEST(EngineFp8Test, ProjectionsTakeOneBytePerElementAndShareOneLayerOfScratch) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model = MakeModel(config, 13);
  EngineModel m(config, *model, nullptr, /*fp8_weights=*/true);
  EXPECT_TRUE(m.fp8_weights());
  const std::string q0 = "model.layers.0.self_attn.q_proj.weight";
  const at::Tensor q = model->named_parameters()[q0];
  auto [bits, scales] = m.InPlaceFp8Target(q0, q.sizes());
  ASSERT_TRUE(bits.defined());
  EXPECT_EQ(bits.scalar_type(), at::kByte);
  EXPECT_EQ(scales.scalar_type(), at::kFloat);
  EXPECT_EQ(scales.sizes(), at::IntArrayRef({q.size(0)}));
  EXPECT_FALSE(m.InPlaceTarget(q0, q.sizes(), q.scalar_type()).defined())
      << "a plain update of a projection must be quantised, never copied into the scratch";
  EXPECT_FALSE(m.InPlaceFp8Target("model.norm.weight", {config.hidden_size}).first.defined());
  EXPECT_FALSE(m.InPlaceFp8Target(q0, {q.size(0) / 2, q.size(1)}).first.defined()) << "another shape";
  {
    // The targets are the engine's storage: what is written there is what the layer computes with.
    c10::InferenceMode inference;
    bits.fill_(0x38);  // e4m3fn 1.0
    scales.fill_(0.5);
  }
  for (const auto& [name, value] : m.LocalParameters()) {
    if (name == q0) EXPECT_TRUE(at::equal(value, at::full_like(value, 0.5)));
  }
  // Every layer's module weights are views of layer 0's scratch; q/k/v back to back (one GEMM).
  LlamaDecoderLayerImpl& first = m.local().Layer(0);
  LlamaDecoderLayerImpl& last = m.local().Layer(m.local().NumLayers() - 1);
  EXPECT_EQ(last.self_attn->q_proj->weight.data_ptr(), first.self_attn->q_proj->weight.data_ptr());
  EXPECT_EQ(last.mlp->down_proj->weight.data_ptr(), first.mlp->down_proj->weight.data_ptr());
  EXPECT_NE(first.self_attn->q_proj->weight.data_ptr(), first.mlp->down_proj->weight.data_ptr());
  EXPECT_EQ(static_cast<char*>(first.self_attn->k_proj->weight.data_ptr()),
            static_cast<char*>(first.self_attn->q_proj->weight.data_ptr()) + q.numel() * q.element_size());
}

TEST(EngineFp8Test, APlainUpdateIsQuantisedOnReceipt) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM old_model = MakeModel(config, 14), new_model = MakeModel(config, 15);
  LlamaForCausalLM decoded = testing::Fp8Decoded(config, *new_model);
  Engine fp8(config, *old_model, Options(true), /*version=*/1);
  std::vector<std::pair<std::string, at::Tensor>> shards;
  for (const auto& item : new_model->named_parameters()) shards.emplace_back(item.key(), item.value().detach());
  CopyWeightsInto(fp8, shards, 2);
  EXPECT_EQ(fp8.Version(), 2);
  Engine plain(config, *decoded, Options(false));
  ExpectSameCompletions(RunMixed(fp8), RunMixed(plain));
}

}  // namespace
}  // namespace llamarl
