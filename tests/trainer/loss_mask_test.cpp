// Per-token loss masks (multi-turn episodes: observation and template tokens are input, not trained):
// packing keeps them in the input without a target, a masked GRPO step equals a LibTorch reference
// whose loss sums over the trained tokens only, and a masked token's log-prob carries no gradient.
#include "core/communicator.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/packing.h"
#include "trainer/trainer.h"

#include <gtest/gtest.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

namespace llamarl {
namespace {

using testing::ReferenceGroupAdvantages;
using testing::ReferenceLogprobs;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

std::vector<int64_t> Ints(const at::Tensor& t) {
  at::Tensor c = t.cpu().contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(LossMask, PackingKeepsMaskedTokensInTheInputWithoutATarget) {
  TrainSample s;
  s.prompt = {1, 2};
  s.response = {10, 11, 12, 13, 14};
  s.loss_mask = {1, 0, 0, 1, 1};
  TrainSample plain;
  plain.prompt = {3};
  plain.response = {20, 21};
  TrainSample all_masked;  // nothing trained: left out like an empty response
  all_masked.prompt = {4};
  all_masked.response = {30};
  all_masked.loss_mask = {0};
  std::vector<PackedMicroBatch> mb = PackSamples({s, all_masked, plain}, 100);
  ASSERT_EQ(mb.size(), 1u);
  EXPECT_EQ(Ints(mb[0].input_ids.view({-1})), (std::vector<int64_t>{1, 2, 10, 11, 12, 13, 3, 20}));
  // Response token j of the first sample is predicted at input position 1 + j.
  EXPECT_EQ(Ints(mb[0].positions), (std::vector<int64_t>{1, 4, 5, 6, 7}));
  EXPECT_EQ(Ints(mb[0].targets), (std::vector<int64_t>{10, 13, 14, 20, 21}));
  EXPECT_EQ(mb[0].token_index, (std::vector<int64_t>{0, 3, 4, 0, 1}));
  EXPECT_EQ(mb[0].sample_index, (std::vector<int64_t>{0, 0, 0, 2, 2}));
  EXPECT_EQ(s.NumTrainedTokens(), 3);
}

// Every other response token of every sample is an "observation".
TrainBatch MaskedBatch(const LlamaConfig& config, uint32_t seed) {
  TrainBatch b = TrainerTestBatch(config, 3, 4, seed);
  for (TrainSample& s : b.samples) {
    s.loss_mask.resize(s.response.size());
    for (size_t j = 0; j < s.response.size(); ++j) s.loss_mask[j] = j % 2 == 0;
  }
  return b;
}

void MaskedReferenceStep(LlamaForCausalLMImpl& model, torch::optim::AdamW& opt, const TrainBatch& b,
                         const TrainerConfig& c) {
  const std::vector<double> adv = ReferenceGroupAdvantages(b);
  int64_t tokens = 0;
  for (const auto& s : b.samples) tokens += s.NumTrainedTokens();
  at::Tensor loss = at::zeros({}, at::kFloat);
  for (size_t i = 0; i < b.samples.size(); ++i) {
    const TrainSample& s = b.samples[i];
    at::Tensor ratio = at::exp(ReferenceLogprobs(model, s, 1.0) - at::tensor(s.behaviour_logprobs, at::kFloat));
    at::Tensor clipped = at::clamp(ratio, 1 - c.grpo.clip.eps_low, 1 + c.grpo.clip.eps_high);
    at::Tensor mask = at::tensor(std::vector<float>(s.loss_mask.begin(), s.loss_mask.end()), at::kFloat);
    loss = loss + (-at::min(ratio * adv[i], clipped * adv[i]) * mask).sum() / double(tokens);
  }
  opt.zero_grad();
  loss.backward();
  torch::nn::utils::clip_grad_norm_(model.parameters(), c.max_grad_norm);
  opt.step();
}

TEST(LossMask, MaskedGrpoStepsMatchAReferenceOverTrainedTokens) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  const TrainerConfig c = TrainerTestTrainerConfig("grpo");
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer trainer(*comm, config, *init, c);
  LlamaForCausalLM ref = TrainerTestModel(config);
  torch::optim::AdamW opt(ref->parameters(), testing::TorchAdamWOptions(c.optimizer));
  for (int step = 0; step < 2; ++step) {
    TrainBatch b = MaskedBatch(config, 70 + uint32_t(step));
    ASSERT_FALSE(trainer.Step(b).skipped);
    MaskedReferenceStep(*ref, opt, b, c);
  }
  LlamaForCausalLM got = TrainerTestModel(config, 99);
  trainer.GatherInto(*got);
  EXPECT_LT(testing::MaxRelDiff(*got, *ref), 1e-5);
  EXPECT_GT(testing::MaxRelDiff(*got, *init), 1e-3) << "training changed nothing";
}

// The parameters after one step on `b`.
at::Tensor StepOn(const TrainBatch& b) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer trainer(*comm, config, *init, TrainerTestTrainerConfig("grpo"));
  trainer.Step(b);
  LlamaForCausalLM got = TrainerTestModel(config, 99);
  trainer.GatherInto(*got);
  std::vector<at::Tensor> flat;
  for (const at::Tensor& p : got->parameters()) flat.push_back(p.detach().reshape({-1}));
  return at::cat(flat);
}

TEST(LossMask, MaskedTokensCarryNoGradient) {
  // A masked token's behaviour log-prob sets its ratio: were its loss term alive, changing it would
  // change the update. With the mask the update is bitwise the same; without, it moves.
  const TrainBatch b = MaskedBatch(TrainerTestConfig(), 81);
  TrainBatch masked_changed = b, trained_changed = b;
  for (TrainSample& s : masked_changed.samples) s.behaviour_logprobs[1 % s.response.size()] -= s.loss_mask[1 % s.response.size()] ? 0.0f : 1.5f;
  for (TrainSample& s : trained_changed.samples) s.behaviour_logprobs[0] -= 1.5f;
  const at::Tensor base = StepOn(b);
  EXPECT_TRUE(at::equal(base, StepOn(masked_changed)));
  EXPECT_FALSE(at::equal(base, StepOn(trained_changed)));
}

}  // namespace
}  // namespace llamarl
