#include "controller/rollout.h"

#include <gtest/gtest.h>

#include <climits>

namespace llamarl::controller {
namespace {

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

RolloutSample Sample(std::vector<int64_t> versions, double reward) {
  RolloutSample s;
  for (size_t i = 0; i < versions.size(); ++i) {
    s.response.push_back(int64_t(40 + i));
    s.logprobs.push_back(-0.25f * float(i + 1));
  }
  s.versions = std::move(versions);
  s.reward = reward;
  s.finish_reason = "eos";
  return s;
}

RolloutGroup Group(std::vector<std::vector<int64_t>> versions) {
  RolloutGroup g;
  g.step = 3;
  g.group_id = 17;
  g.prompt_id = 1234567890123;
  g.generator_rank = 2;
  g.gen_s = 0.125;
  g.prompt = {1, 2, 258};
  double reward = 0;
  for (auto& v : versions) g.samples.push_back(Sample(std::move(v), reward += 0.5));
  return g;
}

TEST(RolloutWire, RoundTripKeepsEveryField) {
  RolloutGroup g = Group({{4, 4, 5}, {5}, {}});
  g.samples[1].finish_reason = "length";
  std::vector<uint8_t> bytes = EncodeRolloutGroup(g);
  RolloutGroup back = DecodeRolloutGroup(bytes.data(), bytes.size());
  EXPECT_EQ(back.step, 3);
  EXPECT_EQ(back.group_id, 17);
  EXPECT_EQ(back.prompt_id, 1234567890123);
  EXPECT_EQ(back.generator_rank, 2);
  EXPECT_DOUBLE_EQ(back.gen_s, 0.125);
  EXPECT_EQ(back.prompt, g.prompt);
  ASSERT_EQ(back.samples.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back.samples[i].response, g.samples[i].response);
    EXPECT_EQ(back.samples[i].logprobs, g.samples[i].logprobs);
    EXPECT_EQ(back.samples[i].versions, g.samples[i].versions);
    EXPECT_DOUBLE_EQ(back.samples[i].reward, g.samples[i].reward);
    EXPECT_EQ(back.samples[i].finish_reason, g.samples[i].finish_reason);
  }
  // Hand-counted size: magic 4 + 4 header i64 + f64 + prompt (8 + 24) + count 8, then per sample
  // 3 vectors of (8 + n * width) + reward 8 + string (8 + len).
  size_t expected = 4 + 32 + 8 + 32 + 8;
  for (size_t n : {3u, 1u, 0u}) expected += (8 + 8 * n) + (8 + 4 * n) + (8 + 8 * n) + 8 + 8;
  expected += 3 + 6 + 3;  // "eos", "length", "eos"
  EXPECT_EQ(bytes.size(), expected);
}

TEST(RolloutWire, MalformedMessagesAreErrorsNotGarbage) {
  std::vector<uint8_t> bytes = EncodeRolloutGroup(Group({{1, 1}}));
  std::vector<uint8_t> cut(bytes.begin(), bytes.end() - 5);
  EXPECT_NE(ErrorOf([&] { DecodeRolloutGroup(cut.data(), cut.size()); }).find("truncated"), std::string::npos);
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 0xFF;
  EXPECT_NE(ErrorOf([&] { DecodeRolloutGroup(bad.data(), bad.size()); }).find("bad magic"), std::string::npos);
  std::vector<uint8_t> extra = bytes;
  extra.push_back(0);
  EXPECT_NE(ErrorOf([&] { DecodeRolloutGroup(extra.data(), extra.size()); }).find("trailing"), std::string::npos);
  std::vector<uint8_t> huge = bytes;
  huge[4 + 40] = 0xFF;  // prompt count's low byte -> a count larger than the message
  EXPECT_NE(ErrorOf([&] { DecodeRolloutGroup(huge.data(), huge.size()); }).find("does not fit"),
            std::string::npos);
}

TEST(RolloutGroup, VersionsAndTokens) {
  RolloutGroup g = Group({{4, 4, 6}, {5, 7}});
  EXPECT_EQ(g.MinVersion(), 4);
  EXPECT_EQ(g.MaxVersion(), 7);
  EXPECT_EQ(g.NumResponseTokens(), 5);
  EXPECT_EQ(Group({{}}).MinVersion(), INT64_MAX);
}

TEST(RolloutBuffer, KeepsEveryGroupAndCountsThosePastTheBound) {
  RolloutBuffer buffer(/*max_policy_lag=*/2);
  // Trainer at version 10: tokens at >= 8 are within the bound.
  EXPECT_TRUE(buffer.Add(Group({{8, 9}, {10}}), 10));
  EXPECT_FALSE(buffer.Add(Group({{7, 9}, {10}}), 10));  // one token at 7 makes the whole group stale
  EXPECT_TRUE(buffer.Add(Group({{10, 10}}), 10));
  StalenessStats stats;
  std::vector<RolloutGroup> kept = buffer.Take(&stats);
  ASSERT_EQ(kept.size(), 3u) << "stale groups are trained on too; dropping is the controller's decision";
  EXPECT_EQ(stats.groups, 3);
  EXPECT_EQ(stats.stale_groups, 1);
  EXPECT_EQ(stats.tokens, 8);
  // Staleness per token: 2, 1, 0 | 3, 1, 0 | 0, 0 -> mean 7 / 8, max 3.
  EXPECT_DOUBLE_EQ(stats.staleness_mean, 7.0 / 8.0);
  EXPECT_EQ(stats.staleness_max, 3);
  // The run's histogram of token staleness: four at 0, two at 1, one at 2, one at 3.
  EXPECT_EQ(buffer.StalenessHistogram().ToJson(), Json({4, 2, 1, 1}));

  // Take starts over; the histogram keeps the run's tokens.
  EXPECT_EQ(buffer.Take(&stats).size(), 0u);
  EXPECT_EQ(stats.stale_groups, 0);
  EXPECT_EQ(buffer.StalenessHistogram().Count(), 8);
}

TEST(RolloutBuffer, OnPolicyBoundIsTheCurrentVersion) {
  RolloutBuffer buffer(0);
  EXPECT_FALSE(buffer.Add(Group({{4, 5}}), 5));
  EXPECT_TRUE(buffer.Add(Group({{5, 5}}), 5));
  EXPECT_NE(ErrorOf([] { RolloutBuffer(-1); }).find("max_policy_lag (-1)"), std::string::npos);
}

}  // namespace
}  // namespace llamarl::controller
