// Multi-turn rollouts through the engine and an environment: a scripted environment (fixed
// observations) gives the exact token sequence and loss mask expected, and that mask reaches the
// trainer's samples; an episode waiting on a slow tool does not hold up the decoding of others.
#include "controller/episodes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "controller/job.h"
#include "controller/trainer_side.h"
#include "core/communicator.h"
#include "model/tiny_tokenizer.h"
#include "tests/generator/engine_test_util.h"

namespace llamarl::controller {
namespace {

Tokenizer TinyTokenizer() {
  return Tokenizer::FromTokenizerJson(MakeTinyTokenizerJson().dump(), MakeTinyTokenizerConfigJson().dump());
}

// Turn n < 2: observation "ok<n>"; turn 2 ends the episode with reward 0.75. Sleeps `delay_s` per step.
class Scripted : public env::Environment {
 public:
  explicit Scripted(double delay_s) : delay_s_(delay_s) {}
  void Reset(const env::EnvItem&) override { n_ = 0; }
  env::EnvStep Step(const std::string&) override {
    std::this_thread::sleep_for(std::chrono::duration<double>(delay_s_));
    env::EnvStep s;
    if (n_ == 2) {
      s.done = true;
      s.reward = 0.75;
    }
    s.observation = "ok" + std::to_string(n_++);
    return s;
  }

 private:
  double delay_s_;
  int n_ = 0;
};

class ScriptedFactory : public env::EnvironmentFactory {
 public:
  explicit ScriptedFactory(double delay_s) : delay_s_(delay_s) {}
  std::string Name() const override { return "scripted"; }
  std::unique_ptr<env::Environment> Make() override { return std::make_unique<Scripted>(delay_s_); }

 private:
  double delay_s_;
};

env::EpisodeConfig Config() {
  env::EpisodeConfig c;
  c.name = "scripted";
  c.max_turns = 4;
  c.max_turn_tokens = 3;
  c.max_tokens = 40;
  c.observation_prefix = "<";
  c.observation_suffix = ">";
  c.num_workers = 2;
  return c;
}

GenerationRequest Request(uint64_t id, int64_t num_samples) {
  GenerationRequest r;
  r.id = id;
  r.prompt = {72, 105, 58};  // "Hi:"
  r.sampling.temperature = 1.0;
  r.sampling.seed = 3;
  r.num_samples = num_samples;
  return r;
}

TEST(Episodes, ScriptedEnvironmentGivesTheExactTokensAndLossMask) {
  const LlamaConfig config = testing::EngineTestConfig(TinyTokenizerIds::kVocabSize);
  LlamaForCausalLM model = testing::MakeModel(config, 2);
  Engine engine(config, *model, EngineOptions{});
  const Tokenizer tok = TinyTokenizer();
  EpisodeRunner runner(Config(), std::make_shared<ScriptedFactory>(0.0), tok, {TinyTokenizerIds::kImEnd});
  runner.Submit(engine, Request(5, 2), {0, "Hi:", 1});
  EXPECT_TRUE(RunEpisodesUntilDone(engine, runner).empty());
  std::vector<FinishedEpisode> done = runner.TakeFinished();
  ASSERT_EQ(done.size(), 2u);
  RolloutGroup group = EpisodeGroup(done, 7);
  ASSERT_EQ(group.samples.size(), 2u);
  for (const RolloutSample& s : group.samples) {
    EXPECT_EQ(s.reward, 0.75);
    EXPECT_EQ(s.finish_reason, "env");
    // Three model turns of max_turn_tokens (no EOS in a random model's first picks is not assumed:
    // turns are read back from the mask), with "<ok0>" and "<ok1>" between them.
    std::vector<int64_t> expected, expected_mask;
    size_t t = 0;
    for (int turn = 0; turn < 3; ++turn) {
      std::vector<int64_t> model_turn;
      while (t < s.response.size() && s.loss_mask[t]) model_turn.push_back(s.response[t++]);
      ASSERT_FALSE(model_turn.empty()) << "turn " << turn;
      ASSERT_LE(model_turn.size(), 3u);
      expected.insert(expected.end(), model_turn.begin(), model_turn.end());
      expected_mask.insert(expected_mask.end(), model_turn.size(), 1);
      if (turn == 2) break;
      const std::vector<int64_t> obs = tok.Encode("<ok" + std::to_string(turn) + ">");
      expected.insert(expected.end(), obs.begin(), obs.end());
      expected_mask.insert(expected_mask.end(), obs.size(), 0);
      t += obs.size();
    }
    EXPECT_EQ(s.response, expected);
    EXPECT_EQ(std::vector<int64_t>(s.loss_mask.begin(), s.loss_mask.end()), expected_mask);
    for (size_t i = 0; i < s.response.size(); ++i) {
      if (!s.loss_mask[i]) {
        EXPECT_EQ(s.logprobs[i], 0.0f);
      }
    }
  }
  // The mask travels: over the wire and into the trainer's samples.
  const std::vector<uint8_t> bytes = EncodeRolloutGroup(group);
  RolloutGroup back = DecodeRolloutGroup(bytes.data(), bytes.size());
  EXPECT_EQ(back.samples[1].loss_mask, group.samples[1].loss_mask);
  EXPECT_EQ(back.samples[1].turns, 3);
  EXPECT_EQ(back.samples[1].tool_s, group.samples[1].tool_s);
  EXPECT_EQ(back.samples[1].tool_step_max_s, group.samples[1].tool_step_max_s);
  EXPECT_LE(back.samples[1].tool_step_max_s, back.samples[1].tool_s);
  // ... and into the step's metrics row: turns per episode and tool latency per environment step.
  auto dp = CreateCommunicator("local");
  Json row = StepMetricsRow(*dp, {back}, StalenessStats{}, TrainStepMetrics{}, StepTimings{});
  EXPECT_EQ(row["turns_mean"], 3.0);
  EXPECT_DOUBLE_EQ(row["tool_s_mean"].get<double>(), (back.samples[0].tool_s + back.samples[1].tool_s) / 6);
  EXPECT_EQ(row["tool_s_max"], std::max(back.samples[0].tool_step_max_s, back.samples[1].tool_step_max_s));
  EXPECT_FALSE(StepMetricsRow(*dp, {}, StalenessStats{}, TrainStepMetrics{}, StepTimings{}).contains("turns_mean"));
  TrainBatch batch = ToTrainBatch({back}, false);
  EXPECT_EQ(batch.samples[0].loss_mask, group.samples[0].loss_mask);
  EXPECT_EQ(batch.samples[0].NumTrainedTokens(), std::count(group.samples[0].loss_mask.begin(), group.samples[0].loss_mask.end(), 1));
  EpisodeStats stats = runner.TakeStats();
  EXPECT_EQ(stats.episodes, 2);
  EXPECT_EQ(stats.turns, 6);
  EXPECT_EQ(stats.ends["env"], 2);
}

TEST(Episodes, SftWarmStartTrainsOnReferenceEpisodesWithObservationsMasked) {
  env::EpisodeConfig c;
  c.name = "calculator";
  c.config = Json{{"call_format", "expression"}, {"call_open", "<c>"}, {"call_close", "</c>"}};
  c.observation_prefix = "<r>";
  c.observation_suffix = "</r>";
  const Tokenizer tok = TinyTokenizer();
  ReferenceEpisodes episodes(c, tok, {TinyTokenizerIds::kEndOfText});
  DatasetItem item;
  item.id = 4;
  item.prompt = "12 * 34 = ";
  item.answer = Json{{"target", 408}, {"expression", "12 * 34"}};
  item.reference_response = "408";
  TrainBatch batch = SftBatch({item}, tok, {TinyTokenizerIds::kEndOfText}, &episodes);
  ASSERT_EQ(batch.samples.size(), 1u);
  const TrainSample& t = batch.samples[0];
  EXPECT_EQ(t.prompt, tok.Encode(item.prompt));
  EXPECT_EQ(tok.Decode(t.response), "<c>12*34</c><r>408</r>408<|endoftext|>");
  EXPECT_EQ(t.NumTrainedTokens(), int64_t(std::string("<c>12*34</c>408").size()) + 1);
  EXPECT_EQ(t.group_id, 4);
  // Without an environment: the reference response, all trained.
  TrainSample plain = SftBatch({item}, tok, {TinyTokenizerIds::kEndOfText}).samples.at(0);
  EXPECT_EQ(tok.Decode(plain.response), "408<|endoftext|>");
  EXPECT_TRUE(plain.loss_mask.empty());
}

TEST(Episodes, AnEpisodeAtASlowToolDoesNotHoldUpDecoding) {
  const LlamaConfig config = testing::EngineTestConfig(TinyTokenizerIds::kVocabSize);
  LlamaForCausalLM model = testing::MakeModel(config, 2);
  Engine engine(config, *model, EngineOptions{});
  EpisodeRunner runner(Config(), std::make_shared<ScriptedFactory>(0.5), TinyTokenizer(), {TinyTokenizerIds::kImEnd});
  runner.Submit(engine, Request(1, 1), {0, "Hi:", 1});
  GenerationRequest plain = testing::Greedy(2, {72, 105}, 20);
  engine.Submit(plain);
  const auto start = std::chrono::steady_clock::now();
  double plain_done_s = -1;
  while (engine.HasWork() || runner.Busy()) {
    if (engine.HasWork()) {
      for (const Completion& c : runner.Take(engine, engine.Step())) {
        EXPECT_EQ(c.request_id, 2u);
        plain_done_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
    }
    runner.Apply(engine, !engine.HasWork() && runner.Busy() ? 1.0 : 0.0);
  }
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_GE(plain_done_s, 0);
  EXPECT_LT(plain_done_s, 0.45) << "the plain request waited for the episode's tool";
  EXPECT_GE(total_s, 3 * 0.5);  // three tool steps, one after another
  ASSERT_EQ(runner.TakeFinished().size(), 1u);
}

}  // namespace
}  // namespace llamarl::controller
