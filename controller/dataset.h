// Prompt datasets for RL: items from a JSONL file (GSM8K's {"question", "answer"} by default) or a
// generated task (controller/tasks.h), a held-out evaluation split, and an epoch sampler whose
// position (a Cursor) is saved in checkpoints.
//
// Determinism: the order of every epoch is a function of (seed, epoch, number of items) only, made
// with a fixed generator (mt19937_64 and our own bounded draw, not std::shuffle, whose algorithm the
// standard leaves open), so every rank and every resumed run sees the same sequence.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/dataset_prompt.h"
#include "core/config.h"

namespace llamarl::controller {

struct DatasetItem {
  int64_t id = 0;        // position in the source (line among the file's items, or generation index)
  std::string question;  // the prompt field, before formatting
  std::string prompt;    // what the model sees (PromptConfig applied)
  Json answer;           // the answer field as is, or task metadata; given to the reward
  std::string reference_response;  // a known-good response (generated tasks; for SFT warm-starts)
};

struct JsonlConfig {
  std::string path;  // required
  std::string prompt_field = "question";
  std::string answer_field = "answer";
  int64_t max_items = 0;  // read at most this many items (0 = all)

  static JsonlConfig FromJson(const Json& j, const std::string& path);
};

// Items of a JSONL file, prompts formatted with `prompt`. Blank lines are skipped; a line that is not
// a JSON object, or lacks a field, is an error naming file:line and the field.
std::vector<DatasetItem> LoadJsonl(const JsonlConfig& config, const PromptConfig& prompt);

struct EvalSplitConfig {
  std::string path;       // a separate JSONL file (same fields) to evaluate on; "" = hold out of the source
  int64_t num_items = 0;  // the first N items of `path` (or of the source, removed from training)
  double fraction = 0;    // or this fraction of the source's first items (exclusive with num_items)

  static EvalSplitConfig FromJson(const Json& j, const std::string& path);
};

struct DatasetConfig {
  std::string source = "jsonl";  // "jsonl", "arithmetic" or "countdown"
  Json source_config;            // that source's section (JsonlConfig or a task config)
  PromptConfig prompt;
  EvalSplitConfig eval;
  int64_t seed = 0;  // shuffling seed
  bool shuffle = true;
  int64_t num_epochs = 0;     // 0 = unbounded
  std::string path = "data";  // where this section sits in the recipe, for error messages

  // {"source": "jsonl", "jsonl": {...}, "prompt": {...}, "eval": {...}, "seed": 1, ...}
  static DatasetConfig FromJson(const Json& j, const std::string& path);
};

struct DatasetSplits {
  std::vector<DatasetItem> train;
  std::vector<DatasetItem> eval;
};

// Loads or generates the items and splits off the evaluation set; errors when a split is empty.
DatasetSplits LoadDataset(const DatasetConfig& config);

// A position in the epoch sequence: the next item is the `index`-th of epoch `epoch`'s order.
struct Cursor {
  int64_t epoch = 0;
  int64_t index = 0;
  int64_t seed = 0;
  int64_t num_items = 0;  // the dataset size it was taken on; a resumed run must match it

  Json ToJson() const;
  static Cursor FromJson(const Json& j, const std::string& path);
  friend bool operator==(const Cursor& a, const Cursor& b) {
    return a.epoch == b.epoch && a.index == b.index && a.seed == b.seed && a.num_items == b.num_items;
  }
};

struct SamplerOptions {
  int64_t seed = 0;
  bool shuffle = true;
  int64_t num_epochs = 0;  // 0 = unbounded
};

// Hands out items epoch after epoch. Not thread-safe.
class EpochSampler {
 public:
  EpochSampler(std::vector<DatasetItem> items, SamplerOptions options);

  // The next `n` items, crossing epoch boundaries; fewer (possibly none) once num_epochs are done.
  std::vector<DatasetItem> Next(size_t n);
  bool Exhausted() const;
  const Cursor& cursor() const { return cursor_; }
  // Continues from a saved cursor. Throws when it was taken on a dataset of another size or its
  // index is out of range; the cursor's seed replaces the configured one (the run being resumed
  // defined the order).
  void Restore(const Cursor& cursor);

  // Item indices of one epoch, in the order they are handed out.
  std::vector<int64_t> EpochOrder(int64_t epoch) const;
  const std::vector<DatasetItem>& items() const { return items_; }

 private:
  std::vector<DatasetItem> items_;
  SamplerOptions options_;
  Cursor cursor_;
  int64_t order_epoch_ = -1;  // epoch whose order is cached in order_
  std::vector<int64_t> order_;
};

}  // namespace llamarl::controller
