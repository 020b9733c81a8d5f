#include "controller/job.h"

#include <gtest/gtest.h>

#include "core/check.h"
#include "model/tiny_tokenizer.h"
#include "reward/registry.h"

namespace llamarl::controller {
namespace {

RecipeConfig Recipe(int64_t prompts_per_step = 4) {
  Json j = Json::parse(R"({
    "data": {"source": "arithmetic", "arithmetic": {"num_items": 30, "seed": 1, "max_operands": 2,
             "operators": "+"}, "prompt": {"style": "plain", "plain_suffix": " "}, "seed": 3},
    "reward": {"name": "arithmetic"}, "run_dir": "unused"})");
  j["rollout"] = {{"prompts_per_step", prompts_per_step}};
  return RecipeConfig::FromJson(j);
}

TEST(GroupRouting, EveryGroupHasOneReplica) {
  GroupRouting r{7, 2};  // 7 groups, 2 replicas
  EXPECT_EQ(r.Offset(0), 0);
  EXPECT_EQ(r.Share(0), 4);  // EvenSplit: the first replica takes the remainder
  EXPECT_EQ(r.Offset(1), 4);
  EXPECT_EQ(r.Share(1), 3);
}

TEST(StepPrompts, StepsAreAFunctionOfTheStepAndResumeFromACursor) {
  RecipeConfig recipe = Recipe();
  DatasetSplits data = LoadDataset(recipe.data);
  StepPrompts a(data.train, recipe), b(data.train, recipe);
  std::vector<int64_t> step3;
  for (const auto& item : a.ForStep(3)) step3.push_back(item.id);  // skipping steps 0-2
  b.ForStep(0);
  b.ForStep(1);
  std::vector<int64_t> again;
  for (const auto& item : b.ForStep(3)) again.push_back(item.id);
  EXPECT_EQ(step3, again);
  EXPECT_EQ(step3.size(), 4u);

  StepPrompts c(data.train, recipe);
  Cursor at5 = c.CursorAt(5);
  std::vector<int64_t> step5;
  for (const auto& item : c.ForStep(5)) step5.push_back(item.id);
  StepPrompts d(data.train, recipe);
  d.Restore(at5, 5);
  std::vector<int64_t> resumed;
  for (const auto& item : d.ForStep(5)) resumed.push_back(item.id);
  EXPECT_EQ(step5, resumed);
  EXPECT_THROW(d.ForStep(4), llamarl::Error);
}

Completion MakeCompletion(const std::vector<int64_t>& tokens, int64_t version) {
  Completion c;
  c.prompt = {51, 32, 43};
  c.tokens = tokens;
  c.logprobs.assign(tokens.size(), -0.5f);
  c.versions.assign(tokens.size(), version);
  c.finish_reason = FinishReason::kEos;
  return c;
}

TEST(ScoreGroup, RewardsTheDecodedResponseWithoutItsEos) {
  RecipeConfig recipe = Recipe();
  Tokenizer tokenizer = BuildTokenizer(recipe);
  auto reward = recipe.reward.Make();
  DatasetItem item;
  item.id = 9;
  item.prompt = "3 + 4 = ";
  item.answer = Json{{"target", 7}};
  const int64_t eos = TinyTokenizerIds::kEndOfText;
  // "7" + EOS is right; "8" + EOS is wrong; "17" (no EOS, cut by length) is wrong.
  std::vector<Completion> group = {MakeCompletion({'7', eos}, 2), MakeCompletion({'8', eos}, 2),
                                   MakeCompletion({'1', '7'}, 3)};
  group[2].finish_reason = FinishReason::kLength;
  RolloutGroup g = ScoreGroup(group, item, *reward, tokenizer, {eos});
  ASSERT_EQ(g.samples.size(), 3u);
  EXPECT_EQ(g.samples[0].reward, 1.0);
  EXPECT_EQ(g.samples[1].reward, 0.0);
  EXPECT_EQ(g.samples[2].reward, 0.0);
  EXPECT_EQ(g.samples[2].finish_reason, "length");
  EXPECT_EQ(g.prompt_id, 9);
  EXPECT_EQ(g.MinVersion(), 2);

  g.group_id = 5;
  TrainBatch batch = ToTrainBatch({g});
  ASSERT_EQ(batch.samples.size(), 3u);
  EXPECT_EQ(batch.samples[0].response, (std::vector<int64_t>{'7', eos}));
  EXPECT_EQ(batch.samples[0].group_id, 5);
  EXPECT_EQ(batch.samples[2].versions, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(batch.samples[1].reward, 0.0);
}

TEST(SftBatch, ReferenceResponsesEndWithEos) {
  RecipeConfig recipe = Recipe();
  DatasetSplits data = LoadDataset(recipe.data);
  Tokenizer tokenizer = BuildTokenizer(recipe);
  TrainBatch batch = SftBatch({data.train[0]}, tokenizer, {TinyTokenizerIds::kEndOfText});
  ASSERT_EQ(batch.samples.size(), 1u);
  EXPECT_EQ(tokenizer.Decode(batch.samples[0].prompt), data.train[0].prompt);
  std::vector<int64_t> body = batch.samples[0].response;
  EXPECT_EQ(body.back(), TinyTokenizerIds::kEndOfText);
  body.pop_back();
  EXPECT_EQ(tokenizer.Decode(body), data.train[0].reference_response);
}

TEST(BuildModelConfig, TinyModelUsesTheByteTokenizer) {
  LlamaConfig c = BuildModelConfig(Recipe());
  EXPECT_EQ(c.vocab_size, TinyTokenizerIds::kVocabSize);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{TinyTokenizerIds::kEndOfText, TinyTokenizerIds::kImEnd}));
  EXPECT_EQ(c.hidden_size, 64);
}

TEST(GeneratorEngineOptions, SizedByTheRecipesLengthsNotTheContext) {
  RecipeConfig recipe = Recipe();
  recipe.rollout.sampling.max_new_tokens = 12;
  recipe.eval.max_new_tokens = 20;
  recipe.generator.engine.max_slots = 6;
  recipe.generator.engine.kv_cache.bytes = 123456;
  recipe.generator.engine.kv_cache.block_size = 8;
  DatasetSplits data = LoadDataset(recipe.data);
  Tokenizer tokenizer = BuildTokenizer(recipe);
  LlamaConfig config = BuildModelConfig(recipe);
  config.vocab_size = TinyTokenizerIds::kVocabSize + 13;  // a padded vocabulary
  int64_t longest = 0;
  for (const auto* split : {&data.train, &data.eval}) {
    for (const DatasetItem& item : *split) longest = std::max<int64_t>(longest, int64_t(tokenizer.Encode(item.prompt).size()));
  }
  ASSERT_GT(longest, 0);
  EXPECT_EQ(LongestPromptTokens(data, tokenizer), longest);
  EngineOptions o = GeneratorEngineOptions(recipe, config, tokenizer, data);
  EXPECT_EQ(o.max_seq_len, longest + 20) << "the longest eval response, not max_position_embeddings";
  EXPECT_LT(o.max_seq_len, config.max_position_embeddings);
  EXPECT_EQ(o.max_slots, 6);
  EXPECT_EQ(o.kv_cache.bytes, 123456);
  EXPECT_EQ(o.kv_cache.block_size, 8);
  EXPECT_EQ(o.sampled_vocab_size, TinyTokenizerIds::kVocabSize);
  EXPECT_EQ(o.decode(tokenizer.Encode("Hi 12")), "Hi 12");
}

TEST(GroupSeed, DistinctPerGroupAndRun) {
  EXPECT_NE(GroupSeed(1, 0), GroupSeed(1, 1));
  EXPECT_NE(GroupSeed(1, 0), GroupSeed(2, 0));
  EXPECT_EQ(GroupSeed(4, 9), GroupSeed(4, 9));
}

}  // namespace
}  // namespace llamarl::controller
