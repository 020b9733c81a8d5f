// `llamarl train RECIPE --dry-run` as a user runs it: the planned memory of each rank, printed before
// anything is loaded, against what a real run of the same recipe measures (summary.json), and the
// refusal of a model whose f32 AdamW training does not fit this machine, naming what and by how much.
#include "core/config.h"
#include "model/llama_checkpoint.h"
#include "model/llama_presets.h"
#include "model/tiny_tokenizer.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace llamarl {
namespace {

namespace fs = std::filesystem;

int Llamarl(const std::string& args, std::string* out) {
  return testing::RunCommand("cd " + std::string(LLAMARL_SOURCE_DIR) + " && LLAMARL_TORCH_THREADS=1 timeout 600 " +
                                 testing::LlamarlBinary() + " " + args,
                             out, /*merge_stderr=*/true);
}

// A recipe over `model_dir` (an HF directory): the byte tokenizer, 1-digit addition, one colocated
// rank, one RL step.
std::string WriteRecipe(const std::string& dir, const std::string& model_dir) {
  Json recipe = {
      {"model", {{"source", "hf"}, {"path", model_dir}}},
      {"tokenizer", {{"source", "tiny"}}},
      {"data", {{"source", "arithmetic"}, {"arithmetic", {{"num_items", 64}, {"max_digits", 1}}}, {"eval", {{"num_items", 4}}}}},
      {"reward", {{"name", "arithmetic"}}},
      {"placement", {{"mode", "colocated"}}},
      {"mode", "sync"},
      {"rollout", {{"prompts_per_step", 2}, {"group_size", 2}, {"max_new_tokens", 8}}},
      {"generator", {{"max_slots", 4}, {"weight_dtype", "bfloat16"}}},
      {"trainer", {{"algorithm", "grpo"}, {"micro_batch_tokens", 64}, {"kl", {{"coef", 0.01}}}}},
      {"eval", {{"num_prompts", 2}}},
      {"logging", {{"tensorboard", false}}},
      {"run_dir", dir + "/run"},
      {"steps", 1}};
  const std::string path = dir + "/recipe.json";
  std::ofstream(path) << recipe.dump(2);
  return path;
}

// A model whose weights dominate the process: ~50M parameters, 0.8 GB of trainer state.
TEST(TrainDryRunTest, PlanBoundsWhatTheRunMeasures) {
  ASSERT_TRUE(fs::exists(testing::LlamarlBinary())) << "build llamarl first";
  const std::string dir = testing::MakeTempDir("train_dry_run");
  TinyLlamaOptions o;
  o.vocab_size = TinyTokenizerIds::kVocabSize;
  o.hidden_size = 768, o.num_layers = 6, o.num_heads = 12, o.num_kv_heads = 4, o.max_position_embeddings = 64;
  o.eos_token_ids = {TinyTokenizerIds::kEndOfText, TinyTokenizerIds::kImEnd};
  const LlamaConfig config = TinyLlamaConfig(o);
  WriteRandomLlama(dir + "/model", config, {});
  const std::string recipe = WriteRecipe(dir, dir + "/model");

  std::string out;
  ASSERT_EQ(Llamarl("train " + recipe + " --dry-run --json", &out), 0) << out;
  const Json plan = Json::parse(out.substr(out.find('{')));
  ASSERT_TRUE(plan["fits"].get<bool>()) << out;
  const Json& rank = plan["ranks"][0];
  EXPECT_EQ(rank["role"], "colocated");
  const double planned = rank["total_bytes"].get<double>(), runtime = rank["runtime_bytes"].get<double>();
  EXPECT_NEAR(rank["optimizer_bytes"].get<double>(), 12.0 * double(config.NumParameters()), 1.0);
  EXPECT_GT(rank["reference_bytes"].get<double>(), 2.0 * double(config.NumParameters()));
  EXPECT_GT(rank["kv_cache_bytes"].get<double>(), 0.0);

  ASSERT_EQ(Llamarl("train " + recipe, &out), 0) << out;
  const Json summary = ReadJsonFile(dir + "/run/summary.json");
  const double peak = summary["peak_rss_bytes"]["rank0"].get<double>();
  const double start = summary["rss_at_start_bytes"]["rank0"].get<double>();
  // The bound, and a plan that is not padded out of proportion: what the run added to the
  // process is at least half of what the plan says the weights, state and caches take.
  EXPECT_LE(peak, 1.3 * planned + 1e9) << "peak " << peak << " planned " << planned;
  EXPECT_GE(peak - start, 0.5 * (planned - runtime)) << "peak " << peak << " start " << start << " planned " << planned;
  const Json rows = ReadJsonFile(dir + "/run/metrics.jsonl");  // one row: the file is that row
  EXPECT_GT(rows.value("peak_rss_bytes_rank0", 0.0), start) << rows.dump();
}

// A recipe over Qwen2.5-1.5B's config.json alone: a dry run that tried to read weights would fail on
// the missing safetensors.
std::string ConfigOnly15bRecipe(const std::string& name) {
  const std::string dir = testing::MakeTempDir(name);
  fs::create_directories(dir + "/model");
  std::ofstream(dir + "/model/config.json") << FindLlamaPreset("qwen2.5-1.5b").config.ToJson().dump(2);
  return WriteRecipe(dir, dir + "/model");
}

TEST(TrainDryRunTest, OneAndAHalfBDoesNotFitAndNothingIsLoaded) {
  ASSERT_TRUE(fs::exists(testing::LlamarlBinary())) << "build llamarl first";
  const std::string recipe = ConfigOnly15bRecipe("train_dry_run_15b");
  std::string out;
  const int status = Llamarl("train " + recipe + " --dry-run --ranks 2 --set placement.mode=split --set mode=async "
                             "--set placement.offload=false",
                             &out);
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find("rank 0 (generator): "), std::string::npos) << out;
  EXPECT_NE(out.find("DOES NOT FIT"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1 (trainer) does not fit"), std::string::npos) << out;
  EXPECT_NE(out.find("largest part is the optimizer state"), std::string::npos) << out;
  EXPECT_NE(out.find(" over"), std::string::npos) << out;
}

// `mpirun -np 2 llamarl train RECIPE --dry-run` plans the launcher's two ranks (no --ranks needed), and
// only rank 0 prints; every rank exits with the verdict. The launcher's variables are set by hand: the
// dry run starts no MPI.
TEST(TrainDryRunTest, UnderALauncherItPlansItsRanksAndRankZeroPrints) {
  ASSERT_TRUE(fs::exists(testing::LlamarlBinary())) << "build llamarl first";
  const std::string recipe = ConfigOnly15bRecipe("train_dry_run_launcher");
  const std::string split = " --dry-run --set placement.mode=split --set mode=async --set placement.offload=false";
  std::string out;
  EXPECT_EQ(Llamarl("train " + recipe + split, &out), 1) << out;  // one rank cannot be split
  EXPECT_NE(out.find("needs at least 2 ranks"), std::string::npos) << out;
  const std::string launched = "env OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=";
  EXPECT_EQ(testing::RunCommand(launched + "0 " + testing::LlamarlBinary() + " train " + recipe + split, &out, true), 2)
      << out;
  EXPECT_NE(out.find("on 2 rank(s), split placement"), std::string::npos) << out;
  EXPECT_NE(out.find("rank 1 (trainer) does not fit"), std::string::npos) << out;
  EXPECT_EQ(testing::RunCommand(launched + "1 " + testing::LlamarlBinary() + " train " + recipe + split, &out, true), 2)
      << out;
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace llamarl
