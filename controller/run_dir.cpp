#include "controller/run_dir.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "controller/dataset.h"
#include "core/check.h"
#include "core/error_text.h"
#include "core/logging.h"
#include "report/jsonl_file.h"
#include "report/metrics.h"
#include "report/tensorboard.h"
#include "trainer/checkpoint_files.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

void Flatten(const Json& j, const std::string& prefix, std::map<std::string, Json>* out) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) Flatten(it.value(), prefix + (prefix.empty() ? "" : ".") + it.key(), out);
    return;
  }
  (*out)[prefix] = j;
}

bool Resumable(const std::string& key) {
  for (const std::string& k : ResumableKeys()) {
    if (k.back() == '.' ? key.rfind(k, 0) == 0 : key == k) return true;
  }
  return false;
}

std::string KeyList() {
  std::string s;
  for (const std::string& k : ResumableKeys()) s += (s.empty() ? "" : ", ") + (k.back() == '.' ? k + "*" : k);
  return s;
}

void CheckChangesAllowed(const Json& changes, const std::string& run_dir) {
  std::string refused;
  for (auto it = changes.begin(); it != changes.end(); ++it) {
    if (Resumable(it.key())) continue;
    refused += "\n  " + it.key() + ": " + it.value()["from"].dump() + " in " + run_dir + "/recipe.json, now " +
               it.value()["to"].dump();
  }
  LLAMARL_CHECK(refused.empty(), "--resume ", run_dir, ": the recipe changes what the saved run depends on:", refused,
                "\nA resumed run must keep these (the checkpoint and the rows already written were made with them): ",
                "resume with the run's recipe (", run_dir, "/recipe.json) and only the changes a resume allows (",
                KeyList(), "), or start a new run with another run_dir");
}

// The rl_step a checkpoint says it resumes at, after checking its controller state; throws naming
// what is wrong.
int64_t ControllerState(const std::string& dir) {
  const Json state = ReadJsonFile(dir + "/trainer_state.json");
  const Json& extra = state.at("extra");
  LLAMARL_CHECK(extra.is_object() && extra.contains("rl_step") && extra.contains("cursor"),
                "trainer_state.json has no controller state (extra.rl_step, extra.cursor)");
  Cursor::FromJson(extra.at("cursor"), dir + " extra.cursor");
  const int64_t rl_step = extra.at("rl_step").get<int64_t>();
  const std::string name = fs::path(dir).filename().string();
  LLAMARL_CHECK(name == "step_" + std::to_string(rl_step), "extra.rl_step (", rl_step, ") does not match the directory name");
  return rl_step;
}

// The start-of-RL evaluation as the first RL row recorded it (colocated: eval_start_reward_mean;
// split: the eval of step 0 attached to that row).
Json EvalStartFromMetrics(const std::string& run_dir) {
  const std::string path = run_dir + "/metrics.jsonl";
  if (!fs::exists(path)) return Json();
  for (const Json& row : LatestRowPerStep(ReadMetrics(path))) {
    if (row.value("phase", "") != "rl" || row.value("rl_step", int64_t(-1)) != 0) continue;
    if (row.contains("eval_start_reward_mean")) return Json{{"eval_reward_mean", row["eval_start_reward_mean"]}};
    if (row.contains("eval_reward_mean") && row.value("eval_step", int64_t(0)) == 0) {
      Json e{{"eval_reward_mean", row["eval_reward_mean"]}, {"eval_step", 0}};
      if (row.contains("eval_policy_version")) e["eval_policy_version"] = row["eval_policy_version"];
      return e;
    }
  }
  return Json();
}

void WriteRecipe(const std::string& run_dir, const Json& resolved) {
  const std::string path = run_dir + "/recipe.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << resolved.dump(2) << "\n";
    LLAMARL_CHECK(out.good(), "run_dir: cannot write ", tmp, " (disk full or not writable?); free space or set ",
                  "run_dir to a writable directory");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  LLAMARL_CHECK(!ec, "run_dir: cannot replace ", path, ": ", ec.message());
}

}  // namespace

std::vector<std::pair<int64_t, std::string>> CheckpointsNewestFirst(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> all;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return all;
  for (const auto& e : fs::directory_iterator(root)) {
    // Atomic saves write a temporary sibling first; only a plain step_<n> directory is complete.
    const std::string name = e.path().filename().string();
    const std::string digits = name.rfind("step_", 0) == 0 ? name.substr(5) : "";
    if (!e.is_directory() || digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    all.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(all.rbegin(), all.rend());
  return all;
}

std::string LatestCheckpoint(const std::string& run_dir) {
  const auto all = CheckpointsNewestFirst(run_dir);
  return all.empty() ? "" : all.front().second;
}

std::string SkippedText(const ResumePoint& point) {
  std::string text;
  for (const std::string& s : point.skipped) text += "\n  " + s;
  return text;
}

const std::vector<std::string>& ResumableKeys() {
  // What a resumed run can honour without contradicting its checkpoint or its metrics so far: more
  // (or fewer, down to the checkpoint) steps, evaluation, checkpointing, timeouts, test hooks, the
  // logging outputs, where the run lives, and the placement (checkpoints re-split over any number
  // of trainer ranks).
  static const std::vector<std::string> keys{"steps", "run_dir", "eval.", "checkpoint.", "timeouts.",
                                             "debug.", "logging.", "placement."};
  return keys;
}

Json RecipeChanges(const Json& before, const Json& after) {
  std::map<std::string, Json> a, b;
  Flatten(before, "", &a);
  Flatten(after, "", &b);
  Json changes = Json::object();
  for (const auto& [key, value] : a) {
    auto it = b.find(key);
    if (it == b.end()) changes[key] = {{"from", value}, {"to", nullptr}};
    else if (it->second != value) changes[key] = {{"from", value}, {"to", it->second}};
  }
  for (const auto& [key, value] : b)
    if (!a.count(key)) changes[key] = {{"from", nullptr}, {"to", value}};
  return changes;
}

ResumePoint PlanResume(const Json& resolved, const std::string& run_dir) {
  LLAMARL_CHECK(fs::is_directory(run_dir), "--resume ", run_dir, ": no such run directory; pass the run_dir of an ",
                "earlier `llamarl train`");
  ResumePoint point;
  const std::string saved = run_dir + "/recipe.json";
  if (fs::exists(saved)) {
    point.changes = RecipeChanges(ReadJsonFile(saved), resolved);
    CheckChangesAllowed(point.changes, run_dir);
  } else {
    LogWarning("--resume ", run_dir, ": no recipe.json; the recipe cannot be checked against the run's");
  }
  for (const auto& [step, dir] : CheckpointsNewestFirst(run_dir)) {
    std::string problem = CheckpointProblem(dir);
    if (problem.empty()) {
      try {
        point.rl_step = ControllerState(dir);
      } catch (const std::exception& e) {
        problem = ErrorText(e);
      }
    }
    if (problem.empty()) {
      point.checkpoint = dir;
      break;
    }
    point.skipped.push_back(fs::path(dir).filename().string() + ": " + problem);
    point.skipped_dirs.push_back(dir);
  }
  LLAMARL_CHECK(!point.checkpoint.empty(), "--resume ", run_dir, ": no whole checkpoint under ", run_dir,
                "/checkpoints", point.skipped.empty() ? "; the run saved none (set checkpoint.every)" : ":",
                SkippedText(point));
  point.eval_start = EvalStartFromMetrics(run_dir);
  return point;
}

std::unique_ptr<MetricsWriter> OpenRunDirectory(const std::string& run_dir, const Json& resolved,
                                                const ResumePoint* resume, bool tensorboard) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  LLAMARL_CHECK(!ec && fs::is_directory(run_dir), "run_dir: cannot create '", run_dir, "' (",
                ec ? ec.message() : "a file is in the way", "); set run_dir (--set run_dir=DIR) to a writable directory");
  WriteRecipe(run_dir, resolved);
  const std::string metrics = run_dir + "/metrics.jsonl";
  auto writer = std::make_unique<MetricsWriter>(metrics, resume != nullptr);
  if (tensorboard) {
    auto events = std::make_unique<EventFileWriter>(run_dir);
    std::string text;  // indented: a code block in TensorBoard's markdown
    std::istringstream lines(resolved.dump(2));
    for (std::string line; std::getline(lines, line);) text += "    " + line + "\n";
    events->AddText("recipe", text, resume ? resume->rl_step : 0);
    writer->AttachEventFile(std::move(events));
  }
  if (!resume) return writer;
  writer->ReplaceFromFirstRow();
  // Damaged checkpoints newer than the resume point are kept for inspection, renamed out of the
  // step_<n> sequence so that pruning and the next resume never mistake them for the newest.
  for (const std::string& dir : resume->skipped_dirs) {
    fs::rename(dir, dir + ".damaged", ec);
    if (ec) LogWarning("could not rename the damaged checkpoint ", dir, ": ", ec.message());
  }
  JsonlAppender log(run_dir + "/resumes.jsonl", /*append=*/true, "resumes");
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  log.Append({{"time_unix_s", now}, {"checkpoint", resume->checkpoint}, {"rl_step", resume->rl_step},
              {"changes", resume->changes}, {"skipped_checkpoints", resume->skipped}});
  return writer;
}

}  // namespace llamarl::controller
