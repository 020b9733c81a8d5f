// The run directory across invocations of `llamarl train` (layout in controller/loop.h).
//
// A resume (--resume RUN_DIR) first decides, reading only, whether and from where the run can go on
// (PlanResume), and only then writes (OpenRunDirectory):
//   1. the new recipe is compared with RUN_DIR/recipe.json, the recipe in effect when the run last
//      ran. A change a resume cannot honour (the model, data, reward, rollout, trainer, SFT, seed,
//      mode or staleness bound: the checkpoint's state and the rows already written depend on them)
//      is refused, naming every such key with its old and new value. Changes a resume can honour
//      (ResumableKeys) are allowed and recorded;
//   2. the checkpoints are verified newest first (trainer CheckpointProblem, plus the controller's
//      rl_step and cursor); a damaged one is skipped with a warning that says what is wrong, and the
//      newest whole one is used;
//   3. the start-of-RL evaluation is read back from metrics.jsonl, so the summary keeps the true
//      start of RL rather than the resume point.
// Writing: recipe.json becomes the new resolved recipe, resumes.jsonl gains one line (checkpoint,
// rl_step, changes, skipped checkpoints), and metrics.jsonl keeps every row until the resumed run
// writes its first row: only then are the rows from that step on (to be recomputed) dropped. A
// resume that fails before its first step leaves metrics.jsonl as it was; nothing else is deleted.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "controller/recipe.h"
#include "core/config.h"

namespace llamarl {
class MetricsWriter;
}  // namespace llamarl

namespace llamarl::controller {

struct ResumePoint {
  std::string checkpoint;            // RUN_DIR/checkpoints/step_<rl_step>
  int64_t rl_step = 0;               // the first RL step the resumed run runs
  Json changes = Json::object();     // allowed changes: {"key": {"from": old, "to": new}}
  std::vector<std::string> skipped;  // damaged newer checkpoints: "step_N: what is wrong"
  std::vector<std::string> skipped_dirs;  // their directories (renamed to step_N.damaged on open)
  Json eval_start;                   // the start-of-RL evaluation of metrics.jsonl (null: none found)
};

// RUN_DIR/checkpoints/step_<n> directories (complete saves), newest first, as (n, path).
std::vector<std::pair<int64_t, std::string>> CheckpointsNewestFirst(const std::string& run_dir);
// The newest complete checkpoint directory under run_dir, or "" when there is none (not verified).
std::string LatestCheckpoint(const std::string& run_dir);

// Recipe keys (dotted paths, a trailing '.' for a whole section) a resume may change.
const std::vector<std::string>& ResumableKeys();

// Reads RUN_DIR only; throws naming every refused key, or when no checkpoint is whole. `resolved` is
// ResolvedRecipeJson of the new recipe.
ResumePoint PlanResume(const Json& resolved, const std::string& run_dir);

// One line per damaged checkpoint that was skipped ("" when none), for the warning.
std::string SkippedText(const ResumePoint& point);

// The changed leaves between two recipes as {"a.b": {"from": x, "to": y}} (absent: null).
Json RecipeChanges(const Json& before, const Json& after);

// Creates (or, with `resume`, reopens) the run directory and writes recipe.json (and resumes.jsonl);
// errors name the run_dir key. The returned writer appends; after a resume it drops the rows from
// its first row's step on before writing that row. With `tensorboard` (logging.tensorboard) it also
// writes a new TensorBoard event file: the resolved recipe as text, then every row's numbers.
std::unique_ptr<MetricsWriter> OpenRunDirectory(const std::string& run_dir, const Json& resolved,
                                                const ResumePoint* resume, bool tensorboard);

}  // namespace llamarl::controller
