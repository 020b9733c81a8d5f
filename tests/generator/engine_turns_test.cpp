// Multi-turn episodes in the engine: observation tokens prefilled into a sample's own KV blocks after
// its history give the log-probs of recomputing the whole episode; an awaiting episode sits out of
// decode steps without holding up others; Continue and End check what they are given.
#include "core/check.h"
#include "generator/engine.h"

#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

namespace llamarl {
namespace {

using testing::MakeModel;

constexpr int64_t kVocab = 96;

LlamaConfig TestConfig() { return testing::EngineTestConfig(kVocab); }

GenerationRequest Episode(uint64_t id, int64_t num_samples, int64_t max_new_tokens) {
  GenerationRequest r;
  r.id = id;
  r.prompt = testing::Prompt(5, int64_t(id), kVocab);
  r.sampling.temperature = 1.0;
  r.sampling.seed = 7 + id;
  r.sampling.max_new_tokens = max_new_tokens;
  r.num_samples = num_samples;
  r.multi_turn = true;
  r.max_turn_tokens = 4;
  return r;
}

// Steps until every listed sample awaits (or finished); returns the completions of the last turn.
std::vector<Completion> StepUntilAwaiting(Engine& engine) {
  std::vector<Completion> out;
  while (engine.HasWork()) {
    for (Completion& c : engine.Step()) out.push_back(std::move(c));
  }
  return out;
}

// log softmax(logits)[token] of every token after the prompt from one full forward of the episode.
std::vector<float> FullForwardLogprobs(LlamaForCausalLMImpl& model, const Completion& c) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids = c.prompt;
  ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
  at::Tensor lp = at::log_softmax(model.forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0).to(at::kFloat), -1);
  std::vector<float> out;
  const int64_t p = int64_t(c.prompt.size());
  for (size_t i = 0; i < c.tokens.size(); ++i) out.push_back(lp[p - 1 + int64_t(i)][c.tokens[i]].item<float>());
  return out;
}

std::vector<int64_t> Observation(int64_t turn, int64_t sample) {
  std::vector<int64_t> o;
  for (int64_t i = 0; i < 3 + turn; ++i) o.push_back((11 * turn + 5 * sample + 3 * i + 1) % kVocab);
  return o;
}

TEST(EngineTurns, KvReuseAcrossTurnsEqualsRecomputingTheWholeEpisode) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 3);
  EngineOptions options;
  options.kv_cache.block_size = 4;  // observations cross block boundaries, the prompt's block is shared
  Engine engine(config, *model, options);
  engine.Submit(Episode(1, /*num_samples=*/2, /*max_new_tokens=*/40));
  std::vector<std::vector<int64_t>> given(2);  // observation tokens given to each sample, in order
  std::vector<Completion> final(2);
  for (int64_t turn = 0; turn < 3; ++turn) {
    std::vector<Completion> done = StepUntilAwaiting(engine);
    ASSERT_EQ(done.size(), 2u) << "turn " << turn;
    for (const Completion& c : done) {
      ASSERT_TRUE(c.awaiting_observation);
      EXPECT_LE(int64_t(c.tokens.size()) - c.turn_start, 4);  // max_turn_tokens
      if (turn == 2) {
        final[size_t(c.sample_index)] = engine.End(c.request_id, c.sample_index);
        continue;
      }
      const std::vector<int64_t> o = Observation(turn, c.sample_index);
      engine.Continue(c.request_id, c.sample_index, o);
      given[size_t(c.sample_index)].insert(given[size_t(c.sample_index)].end(), o.begin(), o.end());
    }
  }
  EXPECT_EQ(engine.NumRunning(), 0);
  EXPECT_EQ(engine.KvStats().blocks_in_use, 0);
  for (const Completion& c : final) {
    ASSERT_EQ(c.sampled.size(), c.tokens.size());
    std::vector<int64_t> observed;
    int64_t model_tokens = 0;
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      if (c.sampled[t]) {
        ++model_tokens;
      } else {
        observed.push_back(c.tokens[t]);
        EXPECT_EQ(c.logprobs[t], 0.0f);
      }
    }
    EXPECT_EQ(observed, given[size_t(c.sample_index)]);
    EXPECT_GE(model_tokens, 3);
    const std::vector<float> expected = FullForwardLogprobs(*model, c);
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      if (c.sampled[t]) {
        EXPECT_NEAR(c.logprobs[t], expected[t], 1e-5) << "sample " << c.sample_index << " token " << t;
      }
    }
  }
  EXPECT_NE(final[0].tokens, final[1].tokens);
}

TEST(EngineTurns, AnAwaitingEpisodeDoesNotHoldUpOthers) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 5);
  Engine engine(config, *model, EngineOptions{});
  engine.Submit(Episode(1, 1, 30));
  std::vector<Completion> first = StepUntilAwaiting(engine);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(engine.NumAwaiting(), 1);
  EXPECT_FALSE(engine.HasWork());
  // A single-turn request runs to its end while the episode waits; its numerics are the usual ones.
  engine.Submit(testing::Greedy(2, testing::Prompt(6, 2, kVocab), 8));
  std::vector<Completion> other = engine.RunUntilDone();
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].tokens, testing::Reference(*model, testing::Prompt(6, 2, kVocab), 8).tokens);
  EXPECT_TRUE(other[0].sampled.empty());
  EXPECT_FALSE(other[0].awaiting_observation);
  EXPECT_EQ(engine.NumAwaiting(), 1);
  engine.Continue(1, 0, {1, 2, 3});
  EXPECT_TRUE(engine.HasWork());
  std::vector<Completion> second = StepUntilAwaiting(engine);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].turn_start, int64_t(first[0].tokens.size()) + 3);
  engine.End(1, 0);
}

TEST(EngineTurns, ContinueAndEndCheckWhatTheyAreGiven) {
  const LlamaConfig config = TestConfig();
  LlamaForCausalLM model = MakeModel(config, 6);
  Engine engine(config, *model, EngineOptions{});
  EXPECT_THROW(engine.Continue(9, 0, {1}), llamarl::Error);  // never submitted
  engine.Submit(Episode(1, 1, 12));
  ASSERT_EQ(StepUntilAwaiting(engine).size(), 1u);
  const int64_t room = engine.RoomLeft(1, 0);
  EXPECT_EQ(room, 12 - 4);
  EXPECT_THROW(engine.Continue(1, 0, {}), llamarl::Error);
  EXPECT_THROW(engine.Continue(1, 0, std::vector<int64_t>(size_t(room), 1)), llamarl::Error);  // no room to answer
  EXPECT_THROW(engine.Continue(1, 0, {kVocab}), llamarl::Error);
  engine.Continue(1, 0, std::vector<int64_t>(size_t(room - 1), 1));
  EXPECT_THROW(engine.End(1, 0), llamarl::Error);  // no longer awaiting
  // The episode's room is spent by the one token of the next turn: it finishes for good.
  std::vector<Completion> done = StepUntilAwaiting(engine);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[0].awaiting_observation);
  EXPECT_EQ(done[0].finish_reason, FinishReason::kLength);
  EXPECT_EQ(done[0].tokens.size(), 12u);
  EXPECT_EQ(engine.NumRunning(), 0);
  // max_turn_tokens on a single-turn request is rejected.
  GenerationRequest bad = testing::Greedy(3, testing::Prompt(4, 3, kVocab), 4);
  bad.max_turn_tokens = 2;
  engine.Submit(bad);
  std::vector<Completion> rejected = engine.RunUntilDone();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].finish_reason, FinishReason::kRejected);
}

}  // namespace
}  // namespace llamarl
