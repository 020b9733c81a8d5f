// Checkpoints: save, drop the trainer, resume in a fresh one built from other weights: the next
// step's loss and the parameters after it equal an uninterrupted run bit for bit; the controller's
// extra JSON round-trips; interrupted saves leave a loadable checkpoint; HF export reloads with
// LoadLlama and carries the tokenizer files.
#include "core/communicator.h"
#include "model/llama_checkpoint.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/checkpoint_files.h"
#include "trainer/trainer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

bool SameParams(LlamaForCausalLMImpl& a, LlamaForCausalLMImpl& b) {
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    if (!at::equal(pa[i], pb[i])) return false;
  return true;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class TrainerCheckpointTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
  LlamaConfig config_ = TrainerTestConfig();
};

TEST_P(TrainerCheckpointTest, ResumeEqualsUninterruptedRun) {
  TrainerConfig c = TrainerTestTrainerConfig(GetParam());
  c.schedule.warmup_steps = 2, c.schedule.kind = "cosine", c.schedule.total_steps = 10;
  const std::string dir = testing::MakeTempDir("trainer_ckpt") + "/ckpt";
  LlamaForCausalLM init = TrainerTestModel(config_);

  Trainer uninterrupted(*comm_, config_, *init, c, /*version=*/5);
  for (int s = 0; s < 2; ++s) uninterrupted.Step(TrainerTestBatch(config_, 2, 3, 10 + uint32_t(s)));
  TrainStepMetrics want = uninterrupted.Step(TrainerTestBatch(config_, 2, 3, 12));

  {
    Trainer first(*comm_, config_, *init, c, /*version=*/5);
    for (int s = 0; s < 2; ++s) first.Step(TrainerTestBatch(config_, 2, 3, 10 + uint32_t(s)));
    first.SaveCheckpoint(dir, Json{{"dataset_cursor", 17}});
  }  // the first trainer is gone, as after a kill
  LlamaForCausalLM other = TrainerTestModel(config_, 1234);
  Trainer resumed(*comm_, config_, *other, c);
  const Json extra = resumed.LoadCheckpoint(dir);
  EXPECT_EQ(extra, (Json{{"dataset_cursor", 17}}));
  EXPECT_EQ(resumed.PolicyVersion(), 7);
  EXPECT_EQ(resumed.StepCount(), 2);
  TrainStepMetrics got = resumed.Step(TrainerTestBatch(config_, 2, 3, 12));
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.lr, want.lr);
  EXPECT_EQ(got.grad_norm, want.grad_norm);
  LlamaForCausalLM a = TrainerTestModel(config_, 1), b = TrainerTestModel(config_, 2);
  resumed.GatherInto(*a);
  uninterrupted.GatherInto(*b);
  EXPECT_TRUE(SameParams(*a, *b));
  EXPECT_TRUE(at::equal(resumed.FlatShard(), uninterrupted.FlatShard()));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, TrainerCheckpointTest, ::testing::Values("grpo", "ppo"));

TEST(TrainerCheckpoint, InterruptedSavesLeaveALoadableCheckpoint) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer t(*comm, config, *init, TrainerTestTrainerConfig("grpo"));
  const std::string dir = testing::MakeTempDir("trainer_ckpt_atomic") + "/ckpt";
  t.SaveCheckpoint(dir, Json{{"n", 1}});
  // A crash while writing leaves DIR.tmp behind: the next save replaces it, the old one still loads.
  fs::create_directories(dir + ".tmp");
  std::ofstream(dir + ".tmp/trainer_state.json") << "{ torn";
  EXPECT_EQ(t.LoadCheckpoint(dir), (Json{{"n", 1}}));
  t.Step(TrainerTestBatch(config, 2, 3, 1));
  t.SaveCheckpoint(dir, Json{{"n", 2}});
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  // A crash between the two renames leaves only DIR.old.
  fs::rename(dir, dir + ".old");
  EXPECT_EQ(t.LoadCheckpoint(dir), (Json{{"n", 2}}));
  try {
    t.LoadCheckpoint(dir + "-missing");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("-missing"), std::string::npos) << e.what();
  }
  // A checkpoint of another model size is refused by name.
  TinyLlamaOptions o;
  o.vocab_size = 61, o.hidden_size = 16, o.num_layers = 1, o.num_heads = 2, o.num_kv_heads = 1;
  const LlamaConfig small = TinyLlamaConfig(o);
  LlamaForCausalLM small_model = TrainerTestModel(small);
  Trainer small_trainer(*comm, small, *small_model, TrainerTestTrainerConfig("grpo"));
  EXPECT_THROW(small_trainer.LoadCheckpoint(dir), std::exception);
}

TEST(TrainerCheckpoint, ExportHfReloadsWithLoadLlamaAndCopiesTheTokenizer) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer t(*comm, config, *init, TrainerTestTrainerConfig("sft"));
  t.SftStep(TrainerTestBatch(config, 2, 2, 4));
  const std::string root = testing::MakeTempDir("trainer_export");
  const std::string tok = root + "/tok";
  fs::create_directories(tok);
  std::ofstream(tok + "/tokenizer.json") << "{\"model\": {\"type\": \"BPE\"}}";
  std::ofstream(tok + "/tokenizer_config.json") << "{}";
  t.ExportHf(root + "/hf", tok);
  LlamaForCausalLM loaded = LoadLlama(root + "/hf");
  LlamaForCausalLM gathered = TrainerTestModel(config, 3);
  t.GatherInto(*gathered);
  EXPECT_TRUE(SameParams(*loaded, *gathered));
  EXPECT_EQ(ReadFile(root + "/hf/tokenizer.json"), ReadFile(tok + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(root + "/hf/config.json"));
  EXPECT_THROW(t.ExportHf(root + "/hf2", root + "/no-such-dir"), std::exception);
  EXPECT_FALSE(fs::exists(root + "/hf2"));
}

// After a warm start the KL reference is the post-SFT policy, not the weights a trainer is built
// from: a resumed trainer (built from other weights) must restore it from the checkpoint, else its
// KL term measures the distance to the wrong policy.
TEST(TrainerCheckpoint, KlReferenceIsSavedAndRestored) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  c.kl.coef = 0.1;
  const std::string dir = testing::MakeTempDir("trainer_ckpt_kl") + "/ckpt";
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer uninterrupted(*comm, config, *init, c);
  for (int s = 0; s < 2; ++s) uninterrupted.Step(TrainerTestBatch(config, 2, 3, 20 + uint32_t(s)));
  uninterrupted.SaveCheckpoint(dir);
  const TrainStepMetrics want = uninterrupted.Step(TrainerTestBatch(config, 2, 3, 22));
  EXPECT_GT(want.kl, 0.0) << "two steps moved the policy away from its reference";

  LlamaForCausalLM other = TrainerTestModel(config, 99);
  Trainer resumed(*comm, config, *other, c);
  resumed.LoadCheckpoint(dir);
  const TrainStepMetrics got = resumed.Step(TrainerTestBatch(config, 2, 3, 22));
  EXPECT_EQ(got.kl, want.kl);
  EXPECT_EQ(got.loss, want.loss);

  // A checkpoint saved without a reference cannot give one: refused, naming the reason.
  TrainerConfig no_kl = TrainerTestTrainerConfig("grpo");
  Trainer plain(*comm, config, *init, no_kl);
  plain.SaveCheckpoint(dir + "_plain");
  try {
    resumed.LoadCheckpoint(dir + "_plain");
    FAIL() << "a trainer with kl.coef > 0 loaded a checkpoint without a reference";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("holds no KL reference policy"), std::string::npos) << e.what();
  }
}

TEST(TrainerCheckpoint, CheckpointProblemNamesTheDamage) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer t(*comm, config, *init, TrainerTestTrainerConfig("grpo"));
  const std::string dir = testing::MakeTempDir("trainer_ckpt_verify") + "/ckpt";
  t.SaveCheckpoint(dir);
  EXPECT_EQ(CheckpointProblem(dir), "");
  const std::string shard = dir + "/shard-0-of-1.safetensors";
  const std::string bytes = ReadFile(shard);
  std::ofstream(shard, std::ios::binary) << bytes.substr(0, bytes.size() - 100);  // truncated
  EXPECT_NE(CheckpointProblem(dir).find("shard-0-of-1.safetensors"), std::string::npos) << CheckpointProblem(dir);
  fs::remove(shard);
  EXPECT_EQ(CheckpointProblem(dir), "missing shard-0-of-1.safetensors");
  std::ofstream(dir + "/trainer_state.json") << "{ torn";
  EXPECT_NE(CheckpointProblem(dir).find("trainer_state.json"), std::string::npos) << CheckpointProblem(dir);
  fs::remove(dir + "/trainer_state.json");
  EXPECT_EQ(CheckpointProblem(dir), "missing trainer_state.json");
}

// A file the caller adds after the save (the controller's parked groups) and names in extra.files
// belongs to the checkpoint: missing or of another size, the checkpoint is incomplete.
TEST(TrainerCheckpoint, CheckpointProblemChecksTheFilesNamedInExtra) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer t(*comm, config, *init, TrainerTestTrainerConfig("grpo"));
  const std::string dir = testing::MakeTempDir("trainer_ckpt_files") + "/ckpt";
  t.SaveCheckpoint(dir, {{"files", {{"parked.bin", 5}}}});
  EXPECT_EQ(CheckpointProblem(dir), "missing " + dir + "/parked.bin");
  std::ofstream(dir + "/parked.bin", std::ios::binary) << "abc";
  EXPECT_EQ(CheckpointProblem(dir), dir + "/parked.bin holds 3 bytes, not the 5 saved");
  std::ofstream(dir + "/parked.bin", std::ios::binary) << "abcde";
  EXPECT_EQ(CheckpointProblem(dir), "");
}

}  // namespace
}  // namespace llamarl
