// A padded vocabulary (more LM-head rows than tokenizer ids) seen from both sides: the engine samples
// over the first sampled_vocab_size rows only, and the trainer, given the same size, scores those
// tokens under the same distribution; over every row its log-probs would be lower and its importance
// ratios biased below 1.
#include "controller/job.h"
#include "core/check.h"
#include "core/communicator.h"
#include "generator/engine.h"
#include "model/llama_checkpoint.h"
#include "model/tiny_tokenizer.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace llamarl {
namespace {

constexpr int64_t kRows = 288;  // the model's vocabulary rows; the tiny tokenizer decodes 259 ids
constexpr double kTemperature = 0.8;

LlamaConfig PaddedConfig() {
  TinyLlamaOptions o;
  o.vocab_size = kRows, o.hidden_size = 32, o.num_layers = 2, o.num_heads = 4, o.num_kv_heads = 2;
  o.max_position_embeddings = 64;
  LlamaConfig c = TinyLlamaConfig(o);
  c.initializer_range = 0.3;
  return c;
}

LlamaForCausalLM PaddedModel(const LlamaConfig& config) {
  LlamaForCausalLM model(config);
  InitLlamaWeights(*model, 21);
  torch::NoGradGuard no_grad;  // padding rows with real mass, as an untrained padded head has
  model->LmHeadWeight().narrow(0, TinyTokenizerIds::kVocabSize, kRows - TinyTokenizerIds::kVocabSize).mul_(3.0);
  return model;
}

// Two sampled GRPO groups from an engine limited to `sampled` ids, as a train batch.
TrainBatch EngineRollouts(const LlamaConfig& config, LlamaForCausalLMImpl& model, int64_t sampled) {
  EngineOptions o;
  o.sampled_vocab_size = sampled;
  Engine engine(config, model, o);
  for (uint64_t id = 1; id <= 2; ++id) {
    GenerationRequest r;
    r.id = id;
    for (int64_t i = 0; i < 5 + int64_t(id); ++i) r.prompt.push_back((int64_t(id) * 37 + i * 11) % sampled);
    r.sampling.temperature = kTemperature;
    r.sampling.seed = 7 + id;
    r.sampling.max_new_tokens = 12;
    r.num_samples = 3;
    engine.Submit(r);
  }
  TrainBatch batch;
  for (const Completion& c : engine.RunUntilDone()) {
    TrainSample s;
    s.prompt = c.prompt;
    s.response = c.tokens;
    s.behaviour_logprobs = c.logprobs;
    s.versions = c.versions;
    s.reward = double(c.sample_index % 2);
    s.group_id = int64_t(c.request_id);
    batch.samples.push_back(std::move(s));
  }
  return batch;
}

TrainerConfig ScoringConfig(int64_t sampled_vocab_size) {
  TrainerConfig c;
  c.algorithm = "grpo";
  c.temperature = kTemperature;
  c.sampled_vocab_size = sampled_vocab_size;
  c.logprob_token_chunk = 8, c.logprob_vocab_chunk = 40;  // tiles that straddle the padding boundary
  return c;
}

double MaxAbsDiff(const std::vector<std::vector<float>>& a, const TrainBatch& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t t = 0; t < a[i].size(); ++t)
      worst = std::max(worst, std::abs(double(a[i][t]) - double(b.samples[i].behaviour_logprobs[t])));
  return worst;
}

TEST(PaddedVocabLogprobsTest, TrainerScoresOverTheEnginesSampledVocabulary) {
  const Tokenizer tokenizer =
      Tokenizer::FromTokenizerJson(MakeTinyTokenizerJson().dump(), MakeTinyTokenizerConfigJson().dump());
  const LlamaConfig config = PaddedConfig();
  const int64_t sampled = controller::SampledVocabSize(config, tokenizer);
  ASSERT_EQ(sampled, TinyTokenizerIds::kVocabSize) << "the engine's and the trainer's size come from here";
  LlamaForCausalLM model = PaddedModel(config);
  const TrainBatch batch = EngineRollouts(config, *model, sampled);
  ASSERT_EQ(batch.samples.size(), 6u);
  std::unique_ptr<Communicator> comm = CreateCommunicator("local");

  Trainer narrowed(*comm, config, *model, ScoringConfig(sampled));
  const std::vector<std::vector<float>> scored = narrowed.ScoreLogprobs(batch);
  EXPECT_LT(MaxAbsDiff(scored, batch), 1e-5) << "trainer log-probs must be the engine's behaviour log-probs";

  Trainer full(*comm, config, *model, ScoringConfig(0));
  EXPECT_GT(MaxAbsDiff(full.ScoreLogprobs(batch), batch), 1e-2)
      << "over every row the log-probs are lower by log(mass of the sampled ids): the test would prove nothing";

  // The step's ratios: the policy is the behaviour policy, so pi / mu is 1 on every token when the
  // trainer scores like the engine, and below 1 when it scores over the padded rows too.
  const TrainStepMetrics m = narrowed.Step(batch);
  EXPECT_NEAR(m.ratio_min, 1.0, 1e-4);
  EXPECT_NEAR(m.ratio_max, 1.0, 1e-4);
  EXPECT_LT(full.Step(batch).ratio_max, 0.99);

  TrainBatch padded = batch;
  padded.samples[0].response[0] = kRows - 1;
  EXPECT_THROW(narrowed.Step(padded), llamarl::Error) << "a padded id in a response cannot have been sampled";
  TrainerConfig too_many = ScoringConfig(kRows + 1);
  EXPECT_THROW(Trainer(*comm, config, *model, too_many), llamarl::Error);
}

}  // namespace
}  // namespace llamarl
