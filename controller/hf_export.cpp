#include "controller/hf_export.h"

#include <filesystem>
#include <fstream>

#include "controller/job.h"
#include "controller/recipe.h"
#include "controller/run_dir.h"
#include "core/check.h"
#include "core/logging.h"
#include "model/llama_checkpoint.h"
#include "model/shard_layout.h"
#include "model/tiny_tokenizer.h"
#include "trainer/checkpoint_files.h"
#include "trainer/flat_params.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

// (run directory, checkpoint) of the export's source.
std::pair<std::string, std::string> ResolveSource(const std::string& source) {
  LLAMARL_CHECK(fs::is_directory(source), "'", source, "' is not a directory; pass a run directory ",
                "(the run_dir of `llamarl train`) or one of its checkpoints/step_N");
  if (fs::exists(fs::path(source) / "trainer_state.json")) {
    const std::string problem = CheckpointProblem(source);
    LLAMARL_CHECK(problem.empty(), "checkpoint '", source, "' is damaged: ", problem,
                  "; pass another checkpoints/step_N, or the run directory for its newest whole one");
    return {fs::path(source).parent_path().parent_path().string(), source};
  }
  for (const auto& [step, dir] : CheckpointsNewestFirst(source)) {
    const std::string problem = CheckpointProblem(dir);
    if (problem.empty()) return {source, dir};
    LogWarning("skipping damaged checkpoint ", dir, ": ", problem);
  }
  LLAMARL_FAIL("no whole checkpoint under ", source, "/checkpoints; a run saves one at its end and every ",
               "checkpoint.every steps");
}

void WriteTokenizer(const RecipeConfig& recipe, const std::string& dir) {
  if (recipe.tokenizer.source == "tiny") {
    std::ofstream(dir + "/tokenizer.json") << MakeTinyTokenizerJson().dump(2) << "\n";
    std::ofstream out(dir + "/tokenizer_config.json");
    out << MakeTinyTokenizerConfigJson().dump(2) << "\n";
    LLAMARL_CHECK(out.good(), "llamarl export: writing the tokenizer files into ", dir, " failed (disk full?)");
    return;
  }
  CopyTokenizerFiles(recipe.tokenizer.path.empty() ? recipe.model.path : recipe.tokenizer.path, dir);
}

}  // namespace

RunPolicy LoadRunPolicy(const std::string& source) {
  const auto [run_dir, checkpoint] = ResolveSource(source);
  const std::string recipe_path = run_dir + "/recipe.json";
  LLAMARL_CHECK(fs::exists(recipe_path), recipe_path, " is missing; the checkpoint's model shape and tokenizer come ",
                "from the run's recipe");
  RunPolicy p;
  p.recipe = RecipeConfig::FromJson(ReadJsonFile(recipe_path));
  p.config = BuildModelConfig(p.recipe);
  const at::Tensor params = ReadCheckpointVector(checkpoint, "param");
  LLAMARL_CHECK(params.numel() == p.config.NumParameters(), checkpoint, " holds ", params.numel(),
                " parameters but ", recipe_path, " describes a model of ", p.config.NumParameters());
  p.model = LlamaForCausalLM(p.config, at::TensorOptions().dtype(at::kFloat));
  AssignFlat(*p.model, LlamaParamSpecs(p.config), params, /*bind=*/false);
  p.checkpoint = checkpoint;
  p.rl_step = ReadJsonFile(checkpoint + "/trainer_state.json").at("extra").value("rl_step", int64_t(0));
  return p;
}

ExportResult ExportRun(const ExportOptions& options) {
  LLAMARL_CHECK(options.dtype == "bf16" || options.dtype == "f32", "llamarl export: --dtype expects bf16 or f32, got '",
                options.dtype, "'");
  LLAMARL_CHECK(!options.out.empty(), "llamarl export: --out names the directory to write");
  LLAMARL_CHECK(!fs::exists(options.out) || fs::is_empty(options.out), "llamarl export: ", options.out,
                " already exists and is not empty; choose a new --out");
  RunPolicy policy = LoadRunPolicy(options.source);
  ExportResult result;
  result.checkpoint = policy.checkpoint;
  result.rl_step = policy.rl_step;
  const std::string tmp = options.out + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  SaveLlamaOptions save;
  save.dtype = options.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  save.max_shard_bytes = options.max_shard_bytes;
  for (const std::string& f : SaveLlama(tmp, *policy.model, policy.config, save))
    result.files.push_back((fs::path(options.out) / fs::path(f).filename()).string());
  WriteTokenizer(policy.recipe, tmp);
  if (fs::exists(options.out)) fs::remove(options.out);  // empty, checked above
  fs::rename(tmp, options.out);
  return result;
}

}  // namespace llamarl::controller
