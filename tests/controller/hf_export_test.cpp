// `llamarl export` and `llamarl eval` on a real run: a one-rank colocated run of a tiny recipe,
// exported to an HF directory whose weights and greedy tokens equal the run's policy (the trainer
// state loaded from the same checkpoint, independently of the export's reader), and evaluated with
// pass@k checked against hand-worked values of the estimator. A warm-start-only run (steps 0),
// exported, starts RL exactly where the same warm start inside an RL run would.
#include "controller/hf_export.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "controller/job.h"
#include "controller/loop.h"
#include "controller/offline_eval.h"
#include "controller/run_dir.h"
#include "core/communicator.h"
#include "report/metrics.h"
#include "model/llama_checkpoint.h"
#include "model/reference_generate.h"
#include "tests/test_util.h"
#include "trainer/trainer.h"

namespace llamarl::controller {
namespace {

namespace fs = std::filesystem;

// A run of a second or so: a one-layer model on one-digit addition, 2 SFT steps, 2 RL steps with a
// checkpoint after each.
Json TinyRunRecipe() {
  return Json::parse(R"({
    "model": {"source": "tiny", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
              "max_position_embeddings": 48, "init_seed": 3},
    "data": {"source": "arithmetic", "arithmetic": {"num_items": 200, "seed": 5, "max_operands": 2,
             "max_digits": 1, "operators": "+"}, "prompt": {"style": "plain", "plain_suffix": " "},
             "eval": {"num_items": 4}, "seed": 5},
    "reward": {"name": "arithmetic"},
    "placement": {"mode": "colocated"},
    "rollout": {"prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4},
    "generator": {"max_slots": 8},
    "trainer": {"algorithm": "grpo", "optimizer": {"lr": 0.01}},
    "sft": {"steps": 2, "batch_size": 4, "trainer": {"optimizer": {"lr": 0.01}}},
    "eval": {"num_prompts": 4}, "checkpoint": {"every": 1}, "steps": 2, "seed": 7
  })");
}

class ExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_dir_ = new std::string(testing::MakeTempDir("export_run") + "/run");
    Json j = TinyRunRecipe();
    j["run_dir"] = *run_dir_;
    auto world = CreateCommunicator("local");
    RunTraining(*world, RecipeConfig::FromJson(j));
  }
  static void TearDownTestSuite() { delete run_dir_; }

  // The run's policy as the trainer holds it after loading the checkpoint.
  static LlamaForCausalLM TrainerPolicy(const std::string& checkpoint) {
    const RecipeConfig recipe = RecipeConfig::FromJson(ReadJsonFile(*run_dir_ + "/recipe.json"));
    const LlamaConfig config = BuildModelConfig(recipe);
    LlamaForCausalLM model = MaterializeLlama(BuildWeights(recipe), at::TensorOptions().dtype(at::kFloat));
    auto comm = CreateCommunicator("local");
    Trainer trainer(*comm, config, *model, recipe.trainer);
    trainer.LoadCheckpoint(checkpoint);
    trainer.GatherInto(*model);
    return model;
  }

  static std::string* run_dir_;
};
std::string* ExportTest::run_dir_ = nullptr;

TEST_F(ExportTest, ExportEqualsTheRunsPolicyWeightsAndGreedyTokens) {
  const std::string out = testing::MakeTempDir("export_hf") + "/hf";
  ExportOptions o;
  o.source = *run_dir_;
  o.out = out;
  o.dtype = "f32";
  o.max_shard_bytes = 20000;  // the tiny model in several shards, with an index
  const ExportResult r = ExportRun(o);
  EXPECT_EQ(r.checkpoint, *run_dir_ + "/checkpoints/step_2");
  EXPECT_EQ(r.rl_step, 2);
  EXPECT_GT(r.files.size(), 1u);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
                        "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  EXPECT_TRUE(ReadJsonFile(out + "/tokenizer_config.json").contains("chat_template"));
  LlamaForCausalLM exported = LoadLlama(out);
  LlamaForCausalLM policy = TrainerPolicy(r.checkpoint);
  auto a = exported->named_parameters(), b = policy->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : b) EXPECT_TRUE(at::equal(*a.find(p.key()), p.value())) << p.key();
  const Tokenizer tokenizer = Tokenizer::FromDirectory(out);
  const std::vector<int64_t> prompt = tokenizer.Encode("3+4= ");
  ReferenceGenerateOptions greedy;
  greedy.max_new_tokens = 6;
  greedy.eos_ids = std::vector<int64_t>{};
  EXPECT_EQ(ReferenceGenerate(*exported, prompt, greedy).tokens, ReferenceGenerate(*policy, prompt, greedy).tokens);

  o.out = out + "_bf16", o.dtype = "bf16", o.max_shard_bytes = int64_t(1) << 30;
  o.source = *run_dir_ + "/checkpoints/step_1";
  EXPECT_EQ(ExportRun(o).rl_step, 1);
  EXPECT_EQ(ReadJsonFile(out + "_bf16/config.json")["torch_dtype"], "bfloat16");
  EXPECT_TRUE(fs::exists(out + "_bf16/model.safetensors"));
  try {
    ExportRun(o);
    FAIL() << "exported over a non-empty directory";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("already exists and is not empty"), std::string::npos) << e.what();
  }
}

TEST(PassAtK, MatchesHandWorkedValues) {
  EXPECT_DOUBLE_EQ(PassAtK(5, 2, 2), 1.0 - 3.0 / 10.0);  // 1 - C(3,2)/C(5,2)
  EXPECT_DOUBLE_EQ(PassAtK(10, 3, 1), 0.3);               // pass@1 is c/n
  EXPECT_DOUBLE_EQ(PassAtK(4, 0, 4), 0.0);
  EXPECT_DOUBLE_EQ(PassAtK(4, 1, 4), 1.0);
  EXPECT_NEAR(PassAtK(8, 2, 4), 1.0 - 15.0 / 70.0, 1e-12);  // 1 - C(6,4)/C(8,4)
  EXPECT_THROW(PassAtK(4, 1, 5), std::exception);
}

TEST_F(ExportTest, EvalOfTheRunEqualsEvalOfItsExport) {
  const std::string dir = testing::MakeTempDir("offline_eval");
  {
    std::ofstream data(dir + "/sums.jsonl");
    for (int a = 1; a <= 6; ++a) data << Json{{"question", std::to_string(a) + "+2="}, {"answer", a + 2}}.dump() << "\n";
  }
  OfflineEvalOptions o;
  o.model = *run_dir_;
  o.data = dir + "/sums.jsonl";
  o.samples = 4;
  int64_t last_done = 0, calls = 0;
  o.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 12);
    last_done = done, ++calls;
  };
  const Json run = RunOfflineEval(o);
  EXPECT_EQ(last_done, 12);
  EXPECT_EQ(calls, 12);
  EXPECT_EQ(run["prompts"], 6);
  EXPECT_EQ(run["reward"], (Json{{"name", "arithmetic"}, {"config", Json::object()}})) << "the run's reward by default";
  for (const char* key : {"greedy_pass@1", "mean@4", "pass@1", "pass@2", "pass@4"}) {
    EXPECT_GE(run[key].get<double>(), 0.0) << key;
    EXPECT_LE(run[key].get<double>(), 1.0) << key;
  }
  EXPECT_LE(run["pass@1"].get<double>(), run["pass@2"].get<double>());
  EXPECT_LE(run["pass@2"].get<double>(), run["pass@4"].get<double>());
  EXPECT_DOUBLE_EQ(run["pass@1"].get<double>(), run["mean@4"].get<double>()) << "0/1 rewards: pass@1 = mean";

  ExportOptions e;
  e.source = *run_dir_, e.out = dir + "/hf", e.dtype = "f32";
  ExportRun(e);
  o.model = dir + "/hf";
  o.reward = "arithmetic";
  o.prompt.plain_suffix = " ";  // as the run's recipe formats prompts
  o.progress = nullptr;
  const Json hf = RunOfflineEval(o);
  for (const char* key : {"greedy_pass@1", "greedy_reward_mean", "mean@4", "pass@4"}) EXPECT_EQ(hf[key], run[key]) << key;
}

// steps 0 runs the SFT warm start alone and saves it as checkpoint step_0; an RL run started from its
// f32 export (sft.steps 0) sees the same policy as an RL run that warm-starts itself: the same
// held-out reward at the start of RL, which is greedy, and the same first RL step.
TEST(WarmStartOnly, RlFromItsExportStartsWhereTheSameWarmStartWould) {
  const std::string dir = testing::MakeTempDir("warm_start_only");
  Json j = TinyRunRecipe();
  j["sft"]["steps"] = 4;
  j["steps"] = 0;
  auto world = CreateCommunicator("local");
  j["run_dir"] = dir + "/warm";
  const Json warm = RunTraining(*world, RecipeConfig::FromJson(j));
  EXPECT_EQ(warm["warm_start_only"], true);
  EXPECT_EQ(warm["checkpoint"], dir + "/warm/checkpoints/step_0");
  int64_t sft_rows = 0;
  for (const Json& row : ReadMetrics(dir + "/warm/metrics.jsonl")) {
    EXPECT_EQ(row["phase"], "sft") << row.dump();
    ++sft_rows;
  }
  EXPECT_EQ(sft_rows, 4);
  ExportOptions e;
  e.source = dir + "/warm", e.out = dir + "/hf", e.dtype = "f32";
  EXPECT_EQ(ExportRun(e).rl_step, 0);

  j["steps"] = 2;
  j["run_dir"] = dir + "/self";
  const Json self = RunTraining(*world, RecipeConfig::FromJson(j));
  j["run_dir"] = dir + "/from_export";
  j["model"] = {{"source", "hf"}, {"path", dir + "/hf"}};
  j["sft"] = {{"steps", 0}};
  const Json from_export = RunTraining(*world, RecipeConfig::FromJson(j));
  EXPECT_EQ(self["eval_start"], from_export["eval_start"]);
  const auto first_rl = [](const std::string& run) {
    for (const Json& row : ReadMetrics(run + "/metrics.jsonl"))
      if (row["phase"] == "rl") return row;
    return Json();
  };
  const Json a = first_rl(dir + "/self"), b = first_rl(dir + "/from_export");
  // The tiny model earns no reward yet; the entropy and the ratios of the sampled tokens are the
  // policy's own, so they tell the two starts apart (the random init's differ, below).
  for (const char* key : {"entropy", "approx_kl", "ratio_mean", "reward_mean", "loss", "tokens"}) EXPECT_EQ(a[key], b[key]) << key;
  j["run_dir"] = dir + "/no_warm_start";
  j["model"] = TinyRunRecipe()["model"];
  RunTraining(*world, RecipeConfig::FromJson(j));
  EXPECT_NE(first_rl(dir + "/no_warm_start")["entropy"], a["entropy"]) << "the check above cannot tell policies apart";

  j["steps"] = 0;
  try {
    RecipeConfig::FromJson(j);
    FAIL() << "steps 0 with sft.steps 0 was accepted";
  } catch (const std::exception& err) {
    EXPECT_NE(std::string(err.what()).find("nothing to run"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace llamarl::controller
