// Trainer::OffloadState / RestoreState (colocated placement): after a round trip between steps, the
// next steps give the same losses and weights, to the bit, as a trainer that never offloaded; while
// offloaded nothing of the state stays on the device and every method that would read it throws.
// Cases cover both shardings, the KL reference policy, the ppo value head and a bfloat16 working copy.
#include "core/communicator.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <functional>

namespace llamarl {
namespace {

using testing::ErrorOf;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

void ExpectContains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

struct OffloadCase {
  std::string sharding, algorithm, compute_dtype;
  double kl_coef;
};

std::string Describe(const OffloadCase& c) {
  return c.sharding + "_" + c.algorithm + "_" + c.compute_dtype + (c.kl_coef > 0 ? "_kl" : "");
}
std::string CaseName(const ::testing::TestParamInfo<OffloadCase>& info) { return Describe(info.param); }
void PrintTo(const OffloadCase& c, std::ostream* os) { *os << Describe(c); }

class TrainerOffloadTest : public ::testing::TestWithParam<OffloadCase> {
 protected:
  TrainerConfig Config() const {
    TrainerConfig c = TrainerTestTrainerConfig(GetParam().algorithm);
    c.sharding = GetParam().sharding;
    c.compute_dtype = GetParam().compute_dtype;
    c.kl.coef = GetParam().kl_coef;
    return c;
  }

  // What OffloadState must copy, counted from the model and the config rather than the trainer:
  // f32 master + two f32 moments per parameter, the reference policy in kl.reference_dtype (bf16), and the
  // ppo head (D weights + 1 bias) with its two moments.
  int64_t ExpectedHostBytes() const {
    int64_t numel = 0;
    for (const auto& p : init_->parameters()) numel += p.numel();
    int64_t bytes = 3 * 4 * numel;
    if (GetParam().kl_coef > 0) bytes += numel * 2;
    if (GetParam().algorithm == "ppo") bytes += 3 * 4 * (config_.hidden_size + 1);
    return bytes;
  }

  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
  LlamaConfig config_ = TrainerTestConfig();
  LlamaForCausalLM init_ = TrainerTestModel(config_);
};

TEST_P(TrainerOffloadTest, RoundTripThenStepsEqualsResidentTraining) {
  Trainer resident(*comm_, config_, *init_, Config());
  Trainer swapped(*comm_, config_, *init_, Config());
  const int64_t resident_bytes = swapped.ResidentStateBytes();
  for (int s = 0; s < 4; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const TrainBatch batch = TrainerTestBatch(config_, 2, 3, 40 + uint32_t(s));
    TrainStepMetrics want = resident.Step(batch);
    if (s > 0) {  // the first step runs before any offload; later ones after a round trip
      ASSERT_EQ(swapped.OffloadState(), ExpectedHostBytes());
      EXPECT_TRUE(swapped.StateOffloaded());
      EXPECT_EQ(swapped.ResidentStateBytes(), 0) << "the whole state leaves the device";
      ASSERT_EQ(swapped.RestoreState(), ExpectedHostBytes());
      EXPECT_FALSE(swapped.StateOffloaded());
      EXPECT_EQ(swapped.ResidentStateBytes(), resident_bytes);
    }
    TrainStepMetrics got = swapped.Step(batch);
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_EQ(got.grad_norm, want.grad_norm);
    EXPECT_EQ(got.kl, want.kl);
    EXPECT_EQ(got.value_loss, want.value_loss);
    ASSERT_TRUE(at::equal(swapped.FlatShard(), resident.FlatShard()));
  }
  LlamaForCausalLM a = TrainerTestModel(config_, 1), b = TrainerTestModel(config_, 2);
  swapped.GatherInto(*a);
  resident.GatherInto(*b);
  auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(at::equal(pa[i], pb[i])) << "parameter " << i;
}

TEST_P(TrainerOffloadTest, ResidentBytesCountTheStateOnce) {
  Trainer trainer(*comm_, config_, *init_, Config());
  int64_t numel = 0;
  for (const auto& p : init_->parameters()) numel += p.numel();
  // A replicated bfloat16 working module is a copy of the master; a float32 one views it (not
  // counted twice); under zero3 it is freed between steps.
  const bool bf16_copy = GetParam().sharding == "replicated" && GetParam().compute_dtype == "bfloat16";
  EXPECT_EQ(trainer.ResidentStateBytes(), ExpectedHostBytes() + (bf16_copy ? 2 * numel : 0));
}

INSTANTIATE_TEST_SUITE_P(Cases, TrainerOffloadTest,
                         ::testing::Values(OffloadCase{"zero3", "grpo", "float32", 0.05},
                                           OffloadCase{"replicated", "grpo", "float32", 0.05},
                                           OffloadCase{"zero3", "ppo", "float32", 0.0},
                                           OffloadCase{"replicated", "ppo", "bfloat16", 0.05}),
                         CaseName);

TEST(TrainerOffload, AnOffloadedTrainerRefusesEveryUseOfItsState) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer trainer(*comm, config, *init, TrainerTestTrainerConfig("grpo"));
  const std::string dir = testing::MakeTempDir("trainer_offload");
  ExpectContains(ErrorOf([&] { trainer.RestoreState(); }), "nothing was offloaded");
  trainer.OffloadState();
  ExpectContains(ErrorOf([&] { trainer.OffloadState(); }), "already offloaded");
  const TrainBatch batch = TrainerTestBatch(config, 2, 3, 7);
  LlamaForCausalLM other = TrainerTestModel(config, 5);
  const std::vector<std::pair<std::string, std::function<void()>>> uses{
      {"Step", [&] { trainer.Step(batch); }},
      {"SftStep", [&] { trainer.SftStep(batch); }},
      {"FlatShard", [&] { trainer.FlatShard(); }},
      {"GatherInto", [&] { trainer.GatherInto(*other); }},
      {"SaveCheckpoint", [&] { trainer.SaveCheckpoint(dir + "/ckpt"); }},
      {"LoadCheckpoint", [&] { trainer.LoadCheckpoint(dir + "/ckpt"); }},
      {"ExportHf", [&] { trainer.ExportHf(dir + "/hf", ""); }}};
  for (const auto& [name, use] : uses) {
    const std::string error = ErrorOf(use);
    ExpectContains(error, "Trainer::" + name + ": the trainer state");
    ExpectContains(error, "call RestoreState() first");
  }
  EXPECT_EQ(trainer.PolicyVersion(), 0) << "the refused Step changed nothing";
  trainer.RestoreState();
  EXPECT_EQ(trainer.Step(batch).skipped, false);
  EXPECT_EQ(trainer.PolicyVersion(), 1);
}

}  // namespace
}  // namespace llamarl
