// The registry, and the arithmetic, format and weighted rewards built through it.
#include "reward/registry.h"

#include <gtest/gtest.h>

#include "core/check.h"
#include "tests/reward/error_text.h"

namespace llamarl::reward {
namespace {

using testing::ErrorText;

TEST(RewardRegistry, UnknownNameListsTheKnownOnes) {
  EXPECT_EQ(ErrorText([] { MakeReward("gsm9k", Json::object()); }),
            "unknown reward 'gsm9k'; known: arithmetic, command, countdown, format, gsm8k, weighted");
  EXPECT_EQ(RewardRegistry::Global().Names(),
            (std::vector<std::string>{"arithmetic", "command", "countdown", "format", "gsm8k", "weighted"}));
}

TEST(RewardSpec, ErrorsNameTheRecipePath) {
  const RewardSpec spec = RewardSpec::FromJson({{"name", "gsm8k"}, {"config", {{"correct_score", 3}}}}, "reward");
  EXPECT_EQ(spec.name, "gsm8k");
  EXPECT_EQ(spec.ToJson(), (Json{{"name", "gsm8k"}, {"config", {{"correct_score", 3}}}}));
  auto r = spec.Make();
  EXPECT_EQ(r->Name(), "gsm8k");
  EXPECT_EQ(r->Score({{"p", "#### 5", "#### 5"}}).scores[0], 3.0);
  EXPECT_NE(spec.Make().get(), r.get()) << "each Make is a fresh reward";
  EXPECT_NE(ErrorText([] {
              RewardSpec::FromJson({{"name", "gsm8k"}, {"config", {{"bogus", 1}}}}, "reward");
            }).find("reward.config: unknown key 'bogus'"),
            std::string::npos);
  EXPECT_NE(ErrorText([] { RewardSpec::FromJson({{"nam", "gsm8k"}}, "reward"); }).find("reward.name: missing"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              RewardSpec::FromJson({{"name", "gsm8k"}, {"confg", Json::object()}}, "reward");
            }).find("reward: unknown key 'confg'; known: name, config"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              RewardSpec::FromJson({{"name", "format"}}, "env.config.reward");
            }).find("env.config.reward.config.pattern: missing"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              RewardSpec::FromJson({{"name", "gsm8k"}, {"config", {{"correct_score", "high"}}}}, "reward");
            }).find("reward.config.correct_score: expected a number"),
            std::string::npos);
  EXPECT_EQ(ErrorText([] { RewardSpec::FromJson({{"name", "gsm9k"}}, "reward"); }),
            "reward: unknown reward 'gsm9k'; known: arithmetic, command, countdown, format, gsm8k, weighted");
  EXPECT_NE(ErrorText([] { RewardSpec::FromJson(Json(), "reward"); }).find("reward: missing; name a reward"),
            std::string::npos);
  EXPECT_EQ(RewardSpec::Named("arithmetic", "--reward").Make()->Name(), "arithmetic");
  EXPECT_EQ(ErrorText([] { RewardSpec::Named("nope", "--reward"); }),
            "--reward: unknown reward 'nope'; known: arithmetic, command, countdown, format, gsm8k, weighted");
}

TEST(RewardRegistry, CustomRewardsAndDuplicates) {
  struct Constant : Reward {
    std::string Name() const override { return "constant"; }
    RewardResult Score(const std::vector<RewardItem>& items) override {
      return {std::vector<double>(items.size(), 0.5), std::vector<Json>(items.size(), Json::object())};
    }
  };
  RewardRegistry registry;
  registry.Register("constant", [](const Json&, const std::string&) { return std::make_unique<Constant>(); });
  EXPECT_EQ(registry.Make("constant", {}, "r")->Score({{"p", "x", 1}}).scores[0], 0.5);
  EXPECT_NE(ErrorText([&] { registry.Register("constant", nullptr); }).find("already registered"),
            std::string::npos);
}

TEST(ArithmeticReward, FirstOrLastIntegerExactly) {
  auto last = MakeReward("arithmetic", Json::object());
  auto first = MakeReward("arithmetic", {{"pick", "first"}});
  std::vector<RewardItem> items = {
      {"12 + 5 * 3 =", "12 + 15 = 27\n#### 27", {{"target", 27}}},
      {"2 * 3 =", "6. Check: 2 * 3 is 6", 6},
      {"7 - 9 =", "-2", "-2"},
      {"4 * 4 =", "16.5", 16},
      {"1 + 1 =", "I do not know", 2},
      {"1 + 1 =", "2.0", 2},
  };
  EXPECT_EQ(last->Score(items).scores, (std::vector<double>{1, 1, 1, 0, 0, 1}));
  EXPECT_EQ(first->Score(items).scores, (std::vector<double>{0, 1, 1, 0, 0, 1}));
  EXPECT_EQ(last->Score(items).info[0]["parsed"], "27");
  EXPECT_NE(ErrorText([&] {
              last->Score({{"p", "1", "one"}});
            }).find("item 0: arithmetic expects"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              MakeReward("arithmetic", {{"pick", "middle"}});
            }).find("one of 'first', 'last'"),
            std::string::npos);
}

TEST(FormatReward, SearchFullMatchAndScores) {
  auto tags = MakeReward("format", {{"pattern", "<think>.*</think>\\s*<answer>.*</answer>"},
                                    {"full_match", true},
                                    {"match_score", 0.5},
                                    {"mismatch_score", -0.5}});
  EXPECT_EQ(tags->Score({{"p", "<think>a\nb</think>\n<answer>3</answer>", 0},
                         {"p", "<think>a</think><answer>3</answer> extra", 0},
                         {"p", "<answer>3</answer>", 0}})
                .scores,
            (std::vector<double>{0.5, -0.5, -0.5}));
  auto hashes = MakeReward("format", {{"pattern", "#### -?[0-9][0-9,]*(\\.[0-9]+)?\\s*$"}});
  EXPECT_EQ(hashes->Score({{"p", "steps\n#### 1,234", 0}, {"p", "#### x", 0}}).scores,
            (std::vector<double>{1, 0}));
  auto caseless = MakeReward("format", {{"pattern", "^answer"}, {"case_insensitive", true}});
  EXPECT_EQ(caseless->Score({{"p", "ANSWER: 3", 0}}).scores[0], 1.0);
  EXPECT_NE(ErrorText([] {
              MakeReward("format", {{"pattern", "(unclosed"}});
            }).find("format.pattern: invalid regular expression '(unclosed'"),
            std::string::npos);
}

TEST(WeightedReward, SumsTermsWithWeights) {
  auto reward = MakeReward(
      "weighted",
      {{"terms",
        {{{"name", "gsm8k"}}, {{"name", "format"}, {"weight", 0.1}, {"config", {{"pattern", "####"}}}}}}});
  RewardResult r =
      reward->Score({{"p", "#### 5", "#### 5"}, {"p", "it is 5", "#### 5"}, {"p", "#### 4", "#### 5"}});
  ASSERT_EQ(r.scores.size(), 3u);
  EXPECT_DOUBLE_EQ(r.scores[0], 1.1);
  EXPECT_DOUBLE_EQ(r.scores[1], 1.0);
  EXPECT_DOUBLE_EQ(r.scores[2], 0.1);
  EXPECT_EQ(r.info[0]["terms"][1]["name"], "format");
  EXPECT_EQ(r.info[0]["terms"][1]["score"], 1.0);
  EXPECT_NE(ErrorText([] {
              MakeReward("weighted", {{"terms", Json::array()}});
            }).find("non-empty list"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              MakeReward("weighted", {{"terms", {{{"name", "nope"}}}}});
            }).find("unknown reward 'nope'"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              MakeReward("weighted", {{"terms", {{{"name", "gsm8k"}, {"wieght", 2}}}}});
            }).find("reward.config.terms[0]: unknown key 'wieght'"),
            std::string::npos);
}

}  // namespace
}  // namespace llamarl::reward
