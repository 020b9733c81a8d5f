#include "controller/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "core/check.h"
#include "reward/gsm8k.h"
#include "tests/reward/error_text.h"
#include "tests/test_util.h"

namespace llamarl::controller {
namespace {

using testing::ErrorText;

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = testing::MakeTempDir("dataset") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::vector<DatasetItem> NumberedItems(int n) {
  std::vector<DatasetItem> items(n);
  for (int i = 0; i < n; ++i) items[i].id = i;
  return items;
}

std::vector<int64_t> Ids(const std::vector<DatasetItem>& items) {
  std::vector<int64_t> ids;
  for (const DatasetItem& item : items) ids.push_back(item.id);
  return ids;
}

TEST(LoadJsonl, Gsm8kTestSet) {
  LLAMARL_REQUIRE_SHARED_DATA(path, "gsm8k/test.jsonl");
  JsonlConfig config;
  config.path = path;
  std::vector<DatasetItem> items = LoadJsonl(config, PromptConfig{});
  ASSERT_EQ(items.size(), 1319u);
  EXPECT_EQ(items[0].id, 0);
  EXPECT_EQ(items[1318].id, 1318);
  EXPECT_EQ(items[0].question.rfind("Janet", 0), 0u);
  EXPECT_EQ(items[0].prompt, items[0].question + "\nAnswer:");
  EXPECT_EQ(reward::ParseGsm8kReference(items[0].answer, "item 0"), 18);
  EXPECT_EQ(reward::ParseGsm8kReference(items[2].answer, "item 2"), 70000);
  for (const DatasetItem& item : items) reward::ParseGsm8kReference(item.answer, "gsm8k");
}

TEST(LoadJsonl, ConfiguredFieldsAndMaxItems) {
  std::string path = WriteFile("custom.jsonl",
                               "{\"q\": \"one?\", \"a\": 1, \"other\": true}\n\n"
                               "{\"q\": \"two?\", \"a\": {\"target\": 2}}\n"
                               "{\"q\": \"three?\", \"a\": \"3\"}\n");
  JsonlConfig config =
      JsonlConfig::FromJson({{"path", path}, {"prompt_field", "q"}, {"answer_field", "a"}}, "d");
  std::vector<DatasetItem> items = LoadJsonl(config, PromptConfig::FromJson({{"style", "raw"}}, "p"));
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].prompt, "two?");
  EXPECT_EQ(items[1].answer, (Json{{"target", 2}}));
  EXPECT_EQ(items[2].answer, "3");
  config.max_items = 2;
  EXPECT_EQ(LoadJsonl(config, PromptConfig{}).size(), 2u);
}

TEST(LoadJsonl, MalformedLinesNameFileLineAndField) {
  JsonlConfig config;
  config.path = WriteFile("bad.jsonl", "{\"question\": \"q\", \"answer\": \"1\"}\n{\"question\": \"q\"}\n");
  EXPECT_EQ(ErrorText([&] { LoadJsonl(config, PromptConfig{}); }),
            config.path + ":2: missing field 'answer' (the dataset's answer_field); the line has: question");
  config.path = WriteFile("bad.jsonl", "\n\n{\"question\": \"q\", \"answer\": \"1\"\n");
  EXPECT_NE(ErrorText([&] { LoadJsonl(config, PromptConfig{}); }).find(config.path + ":3: not valid JSON"),
            std::string::npos);
  config.path = WriteFile("bad.jsonl", "[1, 2]\n");
  EXPECT_NE(ErrorText([&] { LoadJsonl(config, PromptConfig{}); }).find(":1: expected a JSON object"),
            std::string::npos);
  config.path = WriteFile("bad.jsonl", "{\"question\": 7, \"answer\": \"1\"}\n");
  EXPECT_NE(
      ErrorText([&] { LoadJsonl(config, PromptConfig{}); }).find(":1: field 'question' must be a string"),
      std::string::npos);
  config.path = WriteFile("empty.jsonl", "\n");
  EXPECT_NE(ErrorText([&] { LoadJsonl(config, PromptConfig{}); }).find("has no items"), std::string::npos);
  config.path = "/nonexistent/train.jsonl";
  EXPECT_NE(ErrorText([&] { LoadJsonl(config, PromptConfig{}); }).find("cannot open dataset /nonexistent"),
            std::string::npos);
}

TEST(FormatPrompt, StylesAndChatTemplates) {
  PromptConfig plain = PromptConfig::FromJson({{"system_prompt", "Be brief."}}, "p");
  EXPECT_EQ(FormatPrompt(plain, "2+2?"), "Be brief.\n\n2+2?\nAnswer:");
  PromptConfig raw = PromptConfig::FromJson({{"style", "raw"}}, "p");
  EXPECT_EQ(FormatPrompt(raw, "2+2?"), "2+2?");
  PromptConfig llama = PromptConfig::FromJson({{"style", "chat"}, {"system_prompt", "Be brief."}}, "p");
  EXPECT_EQ(FormatPrompt(llama, "2+2?"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  PromptConfig chatml = PromptConfig::FromJson({{"style", "chat"}, {"chat_format", "chatml"}}, "p");
  EXPECT_EQ(FormatPrompt(chatml, "2+2?"), "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_NE(ErrorText([] {
              PromptConfig::FromJson({{"style", "jinja"}}, "data.prompt");
            }).find("data.prompt.style: expected one of 'raw', 'plain', 'chat'"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              PromptConfig::FromJson({{"style", "raw"}, {"system_prompt", "x"}}, "p");
            }).find("would drop the system prompt"),
            std::string::npos);
}

TEST(EpochSampler, SameSeedSameOrderAndEveryEpochIsAPermutation) {
  EpochSampler a(NumberedItems(10), {7, true, 0}), b(NumberedItems(10), {7, true, 0});
  std::vector<int64_t> seq_a = Ids(a.Next(25)), seq_b = Ids(b.Next(25));
  EXPECT_EQ(seq_a, seq_b);
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> one(seq_a.begin() + epoch * 10, seq_a.begin() + epoch * 10 + 10);
    EXPECT_EQ(one, a.EpochOrder(epoch));
    std::sort(one.begin(), one.end());
    EXPECT_EQ(one, Ids(NumberedItems(10)));
  }
  EXPECT_NE(a.EpochOrder(0), a.EpochOrder(1));
  EpochSampler other_seed(NumberedItems(10), {8, true, 0});
  EXPECT_NE(other_seed.EpochOrder(0), a.EpochOrder(0));
  EpochSampler in_order(NumberedItems(4), {7, false, 0});
  EXPECT_EQ(Ids(in_order.Next(6)), (std::vector<int64_t>{0, 1, 2, 3, 0, 1}));
}

TEST(EpochSampler, EpochBoundariesAndExhaustion) {
  EpochSampler s(NumberedItems(5), {1, true, 2});
  EXPECT_EQ(s.Next(3).size(), 3u);
  EXPECT_EQ(s.cursor().epoch, 0);
  EXPECT_EQ(s.cursor().index, 3);
  EXPECT_EQ(s.Next(3).size(), 3u);  // crosses into epoch 1
  EXPECT_EQ(s.cursor().epoch, 1);
  EXPECT_EQ(s.cursor().index, 1);
  EXPECT_FALSE(s.Exhausted());
  EXPECT_EQ(s.Next(10).size(), 4u);  // the rest of epoch 1, then done
  EXPECT_TRUE(s.Exhausted());
  EXPECT_TRUE(s.Next(1).empty());
}

TEST(EpochSampler, CursorRestoreContinuesWithExactlyTheNextItems) {
  EpochSampler run(NumberedItems(9), {42, true, 0});
  run.Next(7);
  Json saved = run.cursor().ToJson();
  EXPECT_EQ(saved, (Json{{"epoch", 0}, {"index", 7}, {"seed", 42}, {"num_items", 9}}));
  std::vector<int64_t> expected = Ids(run.Next(20));
  // The resumed run was configured with another seed: the checkpoint's seed wins.
  EpochSampler resumed(NumberedItems(9), {1, true, 0});
  resumed.Restore(Cursor::FromJson(Json::parse(saved.dump()), "checkpoint.dataset"));
  EXPECT_EQ(Ids(resumed.Next(20)), expected);
  EXPECT_EQ(resumed.cursor(), run.cursor());

  EpochSampler smaller(NumberedItems(8), {42, true, 0});
  EXPECT_NE(ErrorText([&] {
              smaller.Restore(Cursor::FromJson(saved, "c"));
            }).find("saved on 9 items but the dataset now has 8"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              Cursor::FromJson({{"epoch", 0}, {"index", 1}, {"seed", 3}}, "checkpoint.dataset");
            }).find("checkpoint.dataset.num_items: missing"),
            std::string::npos);
  Cursor bad{0, 9, 42, 9};
  EXPECT_NE(ErrorText([&] { run.Restore(bad); }).find("index 9"), std::string::npos);
}

TEST(LoadDataset, HeldOutSplits) {
  std::string lines;
  for (int i = 0; i < 10; ++i)
    lines += "{\"question\": \"q" + std::to_string(i) + "\", \"answer\": " + std::to_string(i) + "}\n";
  std::string train = WriteFile("train.jsonl", lines);
  std::string test = WriteFile("test.jsonl", lines);
  DatasetSplits s = LoadDataset(
      DatasetConfig::FromJson({{"jsonl", {{"path", train}}}, {"eval", {{"num_items", 3}}}}, "data"));
  EXPECT_EQ(s.eval.size(), 3u);
  EXPECT_EQ(s.train.size(), 7u);
  EXPECT_EQ(s.eval[2].question, "q2");
  EXPECT_EQ(s.train[0].question, "q3");
  EXPECT_EQ(s.train[0].id, 3);
  s = LoadDataset(
      DatasetConfig::FromJson({{"jsonl", {{"path", train}}}, {"eval", {{"fraction", 0.25}}}}, "data"));
  EXPECT_EQ(s.eval.size(), 3u);  // ceil(2.5)
  s = LoadDataset(DatasetConfig::FromJson(
      {{"jsonl", {{"path", train}}}, {"eval", {{"path", test}, {"num_items", 4}}}}, "data"));
  EXPECT_EQ(s.train.size(), 10u);
  EXPECT_EQ(s.eval.size(), 4u);
  s = LoadDataset(DatasetConfig::FromJson({{"jsonl", {{"path", train}}}}, "data"));
  EXPECT_TRUE(s.eval.empty());
  EXPECT_NE(ErrorText([&] {
              LoadDataset(DatasetConfig::FromJson(
                  {{"jsonl", {{"path", train}}}, {"eval", {{"num_items", 10}}}}, "data"));
            }).find("leaving none to train on"),
            std::string::npos);
  EXPECT_NE(ErrorText([&] {
              DatasetConfig::FromJson(
                  {{"jsonl", {{"path", train}}}, {"eval", {{"num_items", 1}, {"fraction", 0.5}}}}, "data");
            }).find("not both"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              DatasetConfig::FromJson({{"source", "jsonl"}}, "data");
            }).find("data.jsonl: missing"),
            std::string::npos);
  EXPECT_NE(ErrorText([&] {
              DatasetConfig::FromJson({{"jsonl", {{"path", train}}}, {"shufle", true}}, "data");
            }).find("data: unknown key 'shufle'"),
            std::string::npos);
}

}  // namespace
}  // namespace llamarl::controller
