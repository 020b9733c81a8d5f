#include "controller/dataset.h"

#include <cmath>
#include <fstream>

#include "controller/dataset_random.h"
#include "controller/tasks.h"
#include "core/check.h"

namespace llamarl::controller {
namespace {

std::string KeysOf(const Json& object) {
  std::string keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
  return keys.empty() ? "(none)" : keys;
}

DatasetItem ParseLine(const std::string& line, const std::string& where, const JsonlConfig& config,
                      const PromptConfig& prompt) {
  Json row = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  LLAMARL_CHECK(!row.is_discarded(), where, ": not valid JSON; each line of a JSONL dataset must be one ",
                "JSON object");
  LLAMARL_CHECK(row.is_object(), where, ": expected a JSON object, got ", DescribeJson(row));
  for (const std::string* field : {&config.prompt_field, &config.answer_field}) {
    LLAMARL_CHECK(row.contains(*field) && !row[*field].is_null(), where, ": missing field '", *field,
                  "' (the dataset's ", field == &config.prompt_field ? "prompt_field" : "answer_field",
                  "); the line has: ", KeysOf(row));
  }
  const Json& question = row[config.prompt_field];
  LLAMARL_CHECK(question.is_string(), where, ": field '", config.prompt_field, "' must be a string, got ",
                DescribeJson(question));
  DatasetItem item;
  item.question = question.get<std::string>();
  item.prompt = FormatPrompt(prompt, item.question);
  item.answer = row[config.answer_field];
  return item;
}

std::vector<DatasetItem> LoadSource(const DatasetConfig& config) {
  if (config.source == "jsonl") {
    return LoadJsonl(JsonlConfig::FromJson(config.source_config, config.path + ".jsonl"), config.prompt);
  }
  if (config.source == "arithmetic") {
    return GenerateArithmeticTasks(
        ArithmeticTaskConfig::FromJson(config.source_config, config.path + ".arithmetic"), config.prompt);
  }
  LLAMARL_ASSERT(config.source == "countdown", "unvalidated ", config.path, ".source '", config.source, "'");
  return GenerateCountdownTasks(
      CountdownTaskConfig::FromJson(config.source_config, config.path + ".countdown"), config.prompt);
}

}  // namespace

JsonlConfig JsonlConfig::FromJson(const Json& j, const std::string& path) {
  JsonlConfig c;
  ConfigReader r(j, path);
  r.Require("path", &c.path, std::vector<std::string>{}, "JSONL file, one item per line");
  r.Read("prompt_field", &c.prompt_field, {}, "field holding the question");
  r.Read("answer_field", &c.answer_field, {}, "field holding the reference answer");
  r.Read("max_items", &c.max_items, Range::AtLeast(0), "read at most this many items (0 = all)");
  r.Finish();
  return c;
}

std::vector<DatasetItem> LoadJsonl(const JsonlConfig& config, const PromptConfig& prompt) {
  std::ifstream in(config.path);
  LLAMARL_CHECK(in.good(), "cannot open dataset ", config.path, "; check data.jsonl.path");
  std::vector<DatasetItem> items;
  int64_t line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (config.max_items > 0 && int64_t(items.size()) >= config.max_items) break;
    DatasetItem item = ParseLine(line, config.path + ":" + std::to_string(line_number), config, prompt);
    item.id = int64_t(items.size());
    items.push_back(std::move(item));
  }
  LLAMARL_CHECK(!items.empty(), "dataset ", config.path, " has no items");
  return items;
}

EvalSplitConfig EvalSplitConfig::FromJson(const Json& j, const std::string& path) {
  EvalSplitConfig c;
  ConfigReader r(j, path);
  r.Read("path", &c.path, {}, "separate JSONL file to evaluate on (same fields as the source)");
  r.Read("num_items", &c.num_items, Range::AtLeast(0), "first N items held out for evaluation");
  r.Read("fraction", &c.fraction, Range::ClosedOpen(0, 1), "or this fraction of the source held out");
  r.Finish();
  LLAMARL_CHECK(!(c.num_items > 0 && c.fraction > 0), path, ": set num_items (", c.num_items,
                ") or fraction (", c.fraction, "), not both");
  LLAMARL_CHECK(!(c.fraction > 0 && !c.path.empty()), path, ": fraction applies to the training source; ",
                "with a separate eval path use num_items");
  return c;
}

DatasetConfig DatasetConfig::FromJson(const Json& j, const std::string& path) {
  DatasetConfig c;
  c.path = path;
  ConfigReader r(j, path);
  r.Read("source", &c.source, {"jsonl", "arithmetic", "countdown"}, "where the prompts come from");
  c.source_config = r.Raw(c.source.c_str());
  LLAMARL_CHECK(c.source != "jsonl" || !c.source_config.is_null(), r.PathOf("jsonl"),
                ": missing; give at least {\"path\": \"train.jsonl\"}");
  c.prompt = PromptConfig::FromJson(r.Raw("prompt"), r.PathOf("prompt"));
  c.eval = EvalSplitConfig::FromJson(r.Raw("eval"), r.PathOf("eval"));
  r.Read("seed", &c.seed, {}, "shuffling seed");
  r.Read("shuffle", &c.shuffle, "shuffle every epoch");
  r.Read("num_epochs", &c.num_epochs, Range::AtLeast(0), "passes over the data (0 = unbounded)");
  r.Finish();
  LLAMARL_CHECK(c.source == "jsonl" || c.eval.path.empty(), r.PathOf("eval.path"),
                ": a separate eval file needs source 'jsonl'; generated tasks hold out eval.num_items");
  // Validate the source's section now, when the recipe is read, not when the data is first loaded.
  if (c.source == "jsonl") JsonlConfig::FromJson(c.source_config, r.PathOf("jsonl"));
  if (c.source == "arithmetic") ArithmeticTaskConfig::FromJson(c.source_config, r.PathOf("arithmetic"));
  if (c.source == "countdown") CountdownTaskConfig::FromJson(c.source_config, r.PathOf("countdown"));
  return c;
}

DatasetSplits LoadDataset(const DatasetConfig& config) {
  DatasetSplits splits;
  std::vector<DatasetItem> source = LoadSource(config);
  int64_t held_out = 0;
  if (!config.eval.path.empty()) {
    JsonlConfig eval_jsonl = JsonlConfig::FromJson(config.source_config, config.path + ".jsonl");
    eval_jsonl.path = config.eval.path;
    eval_jsonl.max_items = config.eval.num_items;
    splits.eval = LoadJsonl(eval_jsonl, config.prompt);
  } else {
    held_out = config.eval.num_items > 0 ? config.eval.num_items
                                         : int64_t(std::ceil(config.eval.fraction * double(source.size())));
    LLAMARL_CHECK(held_out < int64_t(source.size()), config.path, ".eval holds out ", held_out, " of ",
                  source.size(), " items, leaving none to train on; lower eval.num_items or eval.fraction");
    splits.eval.assign(source.begin(), source.begin() + held_out);
  }
  splits.train.assign(source.begin() + held_out, source.end());
  return splits;
}

Json Cursor::ToJson() const {
  return {{"epoch", epoch}, {"index", index}, {"seed", seed}, {"num_items", num_items}};
}

Cursor Cursor::FromJson(const Json& j, const std::string& path) {
  Cursor c;
  ConfigReader r(j, path);
  r.Require("epoch", &c.epoch, Range::AtLeast(0), "epoch of the next item");
  r.Require("index", &c.index, Range::AtLeast(0), "position of the next item in that epoch's order");
  r.Require("seed", &c.seed, Range{}, "shuffling seed of the run");
  r.Require("num_items", &c.num_items, Range::AtLeast(1), "dataset size the cursor was taken on");
  r.Finish();
  return c;
}

EpochSampler::EpochSampler(std::vector<DatasetItem> items, SamplerOptions options)
    : items_(std::move(items)), options_(options) {
  LLAMARL_CHECK(!items_.empty(), "cannot sample from an empty dataset");
  cursor_.seed = options_.seed;
  cursor_.num_items = int64_t(items_.size());
}

std::vector<int64_t> EpochSampler::EpochOrder(int64_t epoch) const {
  std::vector<int64_t> order(items_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  if (!options_.shuffle) return order;
  std::mt19937_64 rng(MixSeed(MixSeed(uint64_t(cursor_.seed)) ^ uint64_t(epoch)));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[DrawBelow(rng, i)]);
  return order;
}

bool EpochSampler::Exhausted() const {
  return options_.num_epochs > 0 && cursor_.epoch >= options_.num_epochs;
}

std::vector<DatasetItem> EpochSampler::Next(size_t n) {
  std::vector<DatasetItem> batch;
  while (batch.size() < n && !Exhausted()) {
    if (order_epoch_ != cursor_.epoch) {
      order_ = EpochOrder(cursor_.epoch);
      order_epoch_ = cursor_.epoch;
    }
    batch.push_back(items_[size_t(order_[size_t(cursor_.index)])]);
    if (++cursor_.index == int64_t(items_.size())) {
      cursor_.index = 0;
      ++cursor_.epoch;
    }
  }
  return batch;
}

void EpochSampler::Restore(const Cursor& cursor) {
  LLAMARL_CHECK(cursor.num_items == int64_t(items_.size()), "dataset cursor was saved on ", cursor.num_items,
                " items but the dataset now has ", items_.size(),
                "; resume with the same data and eval split, or start a new run");
  LLAMARL_CHECK(cursor.index >= 0 && cursor.index < cursor.num_items && cursor.epoch >= 0,
                "dataset cursor index ", cursor.index, " / epoch ", cursor.epoch, " out of range for ",
                cursor.num_items, " items");
  cursor_ = cursor;
  order_epoch_ = -1;
}

}  // namespace llamarl::controller
