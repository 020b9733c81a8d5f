// The engine against the full-recompute oracle (model/reference_generate.h) and a full forward of
// prompt + response: greedy tokens identical on a mixed batch with requests joining mid-way,
// log-probs within 1e-4, seeded sampling independent of the batch, in-flight weight updates equal
// to a fresh engine with the new weights, bad requests rejected one by one.
#include "core/check.h"
#include "generator/engine.h"

#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <map>

namespace llamarl {
namespace {

using testing::Greedy;
using testing::MakeModel;
using testing::Reference;

LlamaConfig TestConfig() { return testing::EngineTestConfig(96); }
std::vector<int64_t> Prompt(int64_t length, int64_t salt) { return testing::Prompt(length, salt, 96); }

using Key = std::pair<uint64_t, int64_t>;

std::map<Key, Completion> ByKey(std::vector<Completion> completions) {
  std::map<Key, Completion> out;
  for (Completion& c : completions) out[Key(c.request_id, c.sample_index)] = std::move(c);
  return out;
}

// log softmax(logits / temperature)[token] of every response token from one full forward.
std::vector<float> FullForwardLogprobs(LlamaForCausalLMImpl& model, const Completion& c, double temperature) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids = c.prompt;
  ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
  at::Tensor logits = model.forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0).to(at::kFloat);
  at::Tensor lp = at::log_softmax(logits / (temperature == 0 ? 1.0 : temperature), -1);
  std::vector<float> out;
  const int64_t p = int64_t(c.prompt.size());
  for (size_t i = 0; i < c.tokens.size(); ++i) out.push_back(lp[p - 1 + int64_t(i)][c.tokens[i]].item<float>());
  return out;
}

TEST(EngineTest, GreedyMatchesReferenceOnMixedBatchWithJoins) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 1);
  EngineOptions options;
  options.max_slots = 3;  // fewer slots than requests: later ones join as earlier ones finish
  Engine engine(config, *model, options);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{5, 9}, {1, 4}, {11, 12}, {3, 2}, {8, 7}, {2, 10}};
  for (size_t i = 0; i < 4; ++i) engine.Submit(Greedy(i, Prompt(shapes[i].first, int64_t(i)), shapes[i].second));
  std::vector<Completion> done = engine.Step();
  for (Completion& c : engine.Step()) done.push_back(std::move(c));
  EXPECT_EQ(engine.NumRunning(), 3);
  for (size_t i = 4; i < shapes.size(); ++i) engine.Submit(Greedy(i, Prompt(shapes[i].first, int64_t(i)), shapes[i].second));
  for (Completion& c : engine.RunUntilDone()) done.push_back(std::move(c));
  ASSERT_EQ(done.size(), shapes.size());
  for (const auto& [key, c] : ByKey(done)) {
    const GenerationResult ref = Reference(*model, Prompt(shapes[key.first].first, int64_t(key.first)),
                                           shapes[key.first].second);
    EXPECT_EQ(c.tokens, ref.tokens) << "request " << key.first;
    EXPECT_EQ(c.finish_reason, FinishReason::kLength);
    ASSERT_EQ(c.logprobs.size(), ref.logprobs.size());
    for (size_t t = 0; t < c.logprobs.size(); ++t) EXPECT_NEAR(c.logprobs[t], ref.logprobs[t], 1e-4);
    EXPECT_EQ(c.versions, std::vector<int64_t>(c.tokens.size(), 0));
  }
  EXPECT_FALSE(engine.HasWork());
}

TEST(EngineTest, StopsOnEosKeepingItAndOnTheSlotLength) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 2);
  const std::vector<int64_t> prompt = Prompt(6, 1);
  const GenerationResult ref = Reference(*model, prompt, 8);
  EngineOptions options;
  options.max_seq_len = 10;
  Engine engine(config, *model, options);
  GenerationRequest eos = Greedy(1, prompt, 8);
  eos.sampling.eos_ids = {ref.tokens[2]};
  engine.Submit(eos);
  engine.Submit(Greedy(2, prompt, 100));  // capped at max_seq_len: 10 - 6 tokens
  auto done = ByKey(engine.RunUntilDone());
  // The first occurrence of the EOS id ends the sequence.
  const size_t first = size_t(std::find(ref.tokens.begin(), ref.tokens.end(), ref.tokens[2]) - ref.tokens.begin());
  EXPECT_EQ(done[Key(1, 0)].finish_reason, FinishReason::kEos);
  EXPECT_EQ(done[Key(1, 0)].tokens, std::vector<int64_t>(ref.tokens.begin(), ref.tokens.begin() + first + 1));
  EXPECT_EQ(done[Key(2, 0)].finish_reason, FinishReason::kLength);
  EXPECT_EQ(done[Key(2, 0)].tokens, std::vector<int64_t>(ref.tokens.begin(), ref.tokens.begin() + 4));
  EXPECT_STREQ(FinishReasonName(FinishReason::kEos), "eos");
}

TEST(EngineTest, StopsOnStopStrings) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 3);
  const std::vector<int64_t> prompt = Prompt(4, 2);
  const GenerationResult ref = Reference(*model, prompt, 6);
  EngineOptions options;
  options.decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids) s += "<" + std::to_string(id) + ">";
    return s;
  };
  Engine engine(config, *model, options);
  GenerationRequest r = Greedy(5, prompt, 6);
  r.sampling.stop_strings = {"<" + std::to_string(ref.tokens[3]) + ">", "never"};
  engine.Submit(r);
  std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].finish_reason, FinishReason::kStop);
  const size_t first = size_t(std::find(ref.tokens.begin(), ref.tokens.end(), ref.tokens[3]) - ref.tokens.begin());
  EXPECT_EQ(done[0].tokens, std::vector<int64_t>(ref.tokens.begin(), ref.tokens.begin() + first + 1));
}

TEST(EngineTest, SampledLogprobsEqualFullForward) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 4);
  Engine engine(config, *model, EngineOptions{});
  std::vector<double> temperatures = {0.7, 1.0, 1.3};
  for (size_t i = 0; i < temperatures.size(); ++i) {
    GenerationRequest r;
    r.id = i;
    r.prompt = Prompt(int64_t(3 + 4 * i), int64_t(i));
    r.sampling.temperature = temperatures[i];
    r.sampling.top_k = i == 1 ? 20 : 0;
    r.sampling.top_p = i == 2 ? 0.9 : 1.0;
    r.sampling.seed = 100 + i;
    r.sampling.max_new_tokens = 12;
    r.num_samples = 3;
    engine.Submit(r);
  }
  std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 9u);
  for (const Completion& c : done) {
    const std::vector<float> expected = FullForwardLogprobs(*model, c, temperatures[c.request_id]);
    ASSERT_EQ(c.logprobs.size(), 12u);
    for (size_t t = 0; t < expected.size(); ++t) EXPECT_NEAR(c.logprobs[t], expected[t], 1e-4);
  }
  // The samples of a group draw from different streams.
  auto by_key = ByKey(done);
  EXPECT_NE(by_key[Key(0, 0)].tokens, by_key[Key(0, 1)].tokens);
}

std::vector<int64_t> SampleAlone(Engine& engine, const GenerationRequest& request, int64_t sample) {
  engine.Submit(request);
  return ByKey(engine.RunUntilDone())[Key(request.id, sample)].tokens;
}

TEST(EngineTest, SeededSamplingIsIndependentOfTheBatch) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 5);
  GenerationRequest target;
  target.id = 42;
  target.prompt = Prompt(5, 9);
  target.sampling.seed = 1234;
  target.sampling.max_new_tokens = 15;
  target.num_samples = 2;
  Engine alone_engine(config, *model, EngineOptions{});
  alone_engine.Submit(target);
  auto alone = ByKey(alone_engine.RunUntilDone());

  EngineOptions small;
  small.max_slots = 4;
  Engine busy(config, *model, small);
  for (uint64_t i = 0; i < 3; ++i) {  // other traffic: the target joins later, in other slots
    GenerationRequest other = target;
    other.id = i;
    other.prompt = Prompt(int64_t(2 + i), int64_t(i));
    other.sampling.seed = i;
    other.sampling.max_new_tokens = int64_t(3 + 4 * i);
    other.num_samples = 1;
    busy.Submit(other);
  }
  busy.Submit(target);
  auto crowded = ByKey(busy.RunUntilDone());
  for (int64_t s = 0; s < 2; ++s) {
    EXPECT_EQ(crowded[Key(42, s)].tokens, alone[Key(42, s)].tokens) << "sample " << s;
    // Log-probs agree up to the float summation order of differently sized batches.
    for (size_t t = 0; t < alone[Key(42, s)].logprobs.size(); ++t) {
      EXPECT_NEAR(crowded[Key(42, s)].logprobs[t], alone[Key(42, s)].logprobs[t], 1e-5) << "sample " << s;
    }
  }
  // Sample 0 of a group is the single-sample request with the same seed.
  GenerationRequest single = target;
  single.num_samples = 1;
  Engine single_engine(config, *model, EngineOptions{});
  EXPECT_EQ(SampleAlone(single_engine, single, 0), alone[Key(42, 0)].tokens);
  // A different seed gives a different sequence.
  single.sampling.seed = 99;
  EXPECT_NE(SampleAlone(single_engine, single, 0), alone[Key(42, 0)].tokens);
}

std::vector<std::pair<std::string, at::Tensor>> AllParameters(LlamaForCausalLMImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

TEST(EngineTest, InFlightUpdateContinuesLikeAFreshEngineWithTheNewWeights) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM old_model = MakeModel(config, 6);
  LlamaForCausalLM new_model = MakeModel(config, 7);
  Engine engine(config, *old_model, EngineOptions{}, /*version=*/3);
  const std::vector<int64_t> prompts[2] = {Prompt(4, 1), Prompt(9, 2)};
  for (uint64_t i = 0; i < 2; ++i) engine.Submit(Greedy(i, prompts[i], 14));
  engine.Step();
  engine.Step();  // 3 tokens each from the old weights
  EXPECT_EQ(engine.NumRunning(), 2);
  CopyWeightsInto(engine, AllParameters(*new_model), 4);
  EXPECT_EQ(engine.Version(), 4);
  auto done = ByKey(engine.RunUntilDone());
  for (uint64_t i = 0; i < 2; ++i) {
    const Completion& c = done[Key(i, 0)];
    ASSERT_EQ(c.tokens.size(), 14u);
    const GenerationResult old_ref = Reference(*old_model, prompts[i], 3);
    EXPECT_EQ(std::vector<int64_t>(c.tokens.begin(), c.tokens.begin() + 3), old_ref.tokens);
    std::vector<int64_t> prefix = prompts[i];
    prefix.insert(prefix.end(), c.tokens.begin(), c.tokens.begin() + 3);
    Engine fresh(config, *new_model, EngineOptions{}, 4);
    fresh.Submit(Greedy(i, prefix, 11));
    const std::vector<Completion> fresh_done = fresh.RunUntilDone();
    EXPECT_EQ(std::vector<int64_t>(c.tokens.begin() + 3, c.tokens.end()), fresh_done[0].tokens);
    for (size_t t = 0; t < 11; ++t) EXPECT_NEAR(c.logprobs[3 + t], fresh_done[0].logprobs[t], 1e-4);
    std::vector<int64_t> versions(3, 3);
    versions.resize(14, 4);
    EXPECT_EQ(c.versions, versions);
  }
}

TEST(EngineTest, UpdateWeightsRejectsBadShardsBeforeChangingAnything) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 8);
  LlamaForCausalLM other = MakeModel(config, 9);
  Engine engine(config, *model, EngineOptions{}, 2);
  const std::vector<int64_t> prompt = Prompt(5, 3);
  auto expect_error = [&](const std::vector<std::pair<std::string, at::Tensor>>& shards, int64_t version,
                          const std::string& needle) {
    try {
      CopyWeightsInto(engine, shards, version);
      ADD_FAILURE() << "expected an error containing " << needle;
    } catch (const llamarl::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const at::Tensor norm = other->named_parameters()["model.norm.weight"].detach();
  expect_error({{"model.norm.weight", norm}, {"model.nrom.weight", norm}}, 3, "unknown parameter 'model.nrom.weight'");
  expect_error({{"model.norm.weight", norm}, {"lm_head.weight", norm}}, 3, "unknown parameter 'lm_head.weight'");
  expect_error({{"model.norm.weight", norm.narrow(0, 0, 5)}}, 3, "has shape [5]");
  expect_error({{"model.norm.weight", norm}}, 1, "version 1 is older than the engine's 2");
  EXPECT_EQ(engine.Version(), 2);
  // Nothing was applied: the outputs are still the original model's.
  engine.Submit(Greedy(1, prompt, 6));
  EXPECT_EQ(engine.RunUntilDone()[0].tokens, Reference(*model, prompt, 6).tokens);
  // A subset of names in another dtype is applied.
  CopyWeightsInto(engine, {{"model.norm.weight", norm.to(at::kDouble)}}, 3);
  EXPECT_EQ(engine.Version(), 3);
}

TEST(EngineTest, BadRequestsAreRejectedOneByOne) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 10);
  EngineOptions options;
  options.max_slots = 4;
  options.max_seq_len = 16;
  Engine engine(config, *model, options);
  std::vector<std::pair<GenerationRequest, std::string>> bad;
  auto add = [&](std::string needle, auto edit) {
    GenerationRequest r = Greedy(100 + bad.size(), Prompt(3, 1), 4);
    edit(r);
    bad.emplace_back(r, needle);
  };
  add("prompt is empty", [](GenerationRequest& r) { r.prompt.clear(); });
  add("prompt has 16 tokens", [](GenerationRequest& r) { r.prompt = Prompt(16, 0); });
  add("prompt token 1 is 96, outside the vocabulary [0, 96)", [](GenerationRequest& r) { r.prompt[1] = 96; });
  add("temperature must be a finite value >= 0", [](GenerationRequest& r) { r.sampling.temperature = -1; });
  add("top_k must be >= 0", [](GenerationRequest& r) { r.sampling.top_k = -2; });
  add("top_p must be in (0, 1] (1 = off), got 0", [](GenerationRequest& r) { r.sampling.top_p = 0; });
  add("max_new_tokens must be >= 1, got 0", [](GenerationRequest& r) { r.sampling.max_new_tokens = 0; });
  add("num_samples must be in [1, max_slots 4]", [](GenerationRequest& r) { r.num_samples = 5; });
  add("eos_ids holds -1", [](GenerationRequest& r) { r.sampling.eos_ids = {-1}; });
  add("stop_strings needs a detokenizer", [](GenerationRequest& r) { r.sampling.stop_strings = {"x"}; });
  engine.Submit(Greedy(1, Prompt(3, 1), 4));
  for (const auto& [r, needle] : bad) engine.Submit(r);
  engine.Submit(Greedy(2, Prompt(6, 2), 5));
  auto done = ByKey(engine.RunUntilDone());
  ASSERT_EQ(done.size(), bad.size() + 2);
  for (const auto& [r, needle] : bad) {
    const Completion& c = done[Key(r.id, 0)];
    EXPECT_EQ(c.finish_reason, FinishReason::kRejected);
    EXPECT_NE(c.error.find(needle), std::string::npos) << c.error;
    EXPECT_TRUE(c.tokens.empty());
  }
  EXPECT_EQ(done[Key(1, 0)].tokens, Reference(*model, Prompt(3, 1), 4).tokens);
  EXPECT_EQ(done[Key(2, 0)].tokens, Reference(*model, Prompt(6, 2), 5).tokens);
}

TEST(EngineTest, OptionsOutsideTheModelAreErrors) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 11);
  EngineOptions slots;
  slots.max_slots = 0;
  EXPECT_THROW({ Engine engine(config, *model, slots); }, llamarl::Error);
  EngineOptions length;
  length.max_seq_len = 65;
  try {
    Engine engine(config, *model, length);
    ADD_FAILURE() << "max_seq_len above max_position_embeddings was accepted";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_position_embeddings 64] (0 = max_position_embeddings), got 65"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl
