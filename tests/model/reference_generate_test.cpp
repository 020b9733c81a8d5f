// Reference generation against the greedy continuations of HF's modeling code
// (tests/fixtures/llama, scripts/fixtures/make_llama_fixture.py), and the sampler against
// hand-worked distributions.
#include "core/check.h"
#include "model/reference_generate.h"

#include "model/llama_checkpoint.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>

namespace llamarl {
namespace {

std::vector<int64_t> ToVector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

class ReferenceGenerateFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceGenerateFixtureTest, GreedyMatchesHf) {
  std::string dir = testing::FixturePath("llama/" + GetParam());
  LlamaForCausalLM model = LoadLlama(dir);
  auto expected = SafetensorsFile::Open(dir + "/expected.safetensors");
  for (int i = 0; i < 2; ++i) {
    std::string k = std::to_string(i);
    ReferenceGenerateOptions options;
    options.max_new_tokens = 16;
    options.eos_ids = std::vector<int64_t>{};  // the fixture ignores EOS
    GenerationResult r = ReferenceGenerate(*model, ToVector(expected->Get("gen_prompt_" + k)), options);
    EXPECT_EQ(r.tokens, ToVector(expected->Get("gen_tokens_" + k))) << "prompt " << i;
    EXPECT_EQ(r.finish_reason, "length");
    at::Tensor want = expected->Get("gen_logprobs_" + k);
    ASSERT_EQ(int64_t(r.logprobs.size()), want.numel());
    for (size_t t = 0; t < r.logprobs.size(); ++t) {
      EXPECT_NEAR(r.logprobs[t], want[int64_t(t)].item<float>(), 1e-4) << "prompt " << i << " token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReferenceGenerateFixtureTest, ::testing::Values("llama3", "qwen2", "qwen3"));

class ReferenceGenerateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FixturePath("llama/llama3");
    model_ = LoadLlama(dir_);
    expected_ = SafetensorsFile::Open(dir_ + "/expected.safetensors");
    prompt_ = ToVector(expected_->Get("gen_prompt_1"));
  }
  std::string dir_;
  LlamaForCausalLM model_{nullptr};
  std::shared_ptr<SafetensorsFile> expected_;
  std::vector<int64_t> prompt_;
};

TEST_F(ReferenceGenerateTest, StopsAfterEos) {
  std::vector<int64_t> greedy = ToVector(expected_->Get("gen_tokens_1"));
  ReferenceGenerateOptions options;
  options.eos_ids = std::vector<int64_t>{greedy[4]};
  GenerationResult r = ReferenceGenerate(*model_, prompt_, options);
  size_t first = std::find(greedy.begin(), greedy.end(), greedy[4]) - greedy.begin();
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.tokens, std::vector<int64_t>(greedy.begin(), greedy.begin() + first + 1));
  EXPECT_EQ(r.logprobs.size(), r.tokens.size());
  // Without eos_ids the config's eos_token_id [2, 3] applies; max_new_tokens 0 generates nothing.
  options.eos_ids.reset();
  options.max_new_tokens = 0;
  r = ReferenceGenerate(*model_, prompt_, options);
  EXPECT_TRUE(r.tokens.empty());
  EXPECT_EQ(r.finish_reason, "length");
}

TEST_F(ReferenceGenerateTest, SeededSamplingIsReproducibleAndSeedsDiffer) {
  ReferenceGenerateOptions options;
  options.eos_ids = std::vector<int64_t>{};
  options.sampling.temperature = 1.5;
  options.seed = 11;
  GenerationResult a = ReferenceGenerate(*model_, prompt_, options);
  GenerationResult b = ReferenceGenerate(*model_, prompt_, options);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logprobs, b.logprobs);
  options.seed = 12;
  GenerationResult c = ReferenceGenerate(*model_, prompt_, options);
  EXPECT_NE(a.tokens, c.tokens);
  EXPECT_NE(a.tokens, ToVector(expected_->Get("gen_tokens_1")));  // temperature 1.5 is not greedy
  // Log-probs are at temperature 1 whatever sampled the token: the greedy run's first log-prob is
  // the largest any first token can have.
  GenerationResult greedy = ReferenceGenerate(*model_, prompt_, {});
  EXPECT_LE(a.logprobs[0], greedy.logprobs[0] + 1e-6);
  for (float lp : a.logprobs) EXPECT_LT(lp, 0.0f);
}

TEST_F(ReferenceGenerateTest, TopKOneAndTinyTopPAreGreedy) {
  std::vector<int64_t> greedy = ToVector(expected_->Get("gen_tokens_1"));
  ReferenceGenerateOptions options;
  options.eos_ids = std::vector<int64_t>{};
  options.sampling.temperature = 1.0;
  options.sampling.top_k = 1;
  EXPECT_EQ(ReferenceGenerate(*model_, prompt_, options).tokens, greedy);
  options.sampling.top_k = 0;
  options.sampling.top_p = 1e-6;
  EXPECT_EQ(ReferenceGenerate(*model_, prompt_, options).tokens, greedy);
}

TEST_F(ReferenceGenerateTest, RejectsBadOptions) {
  ReferenceGenerateOptions options;
  EXPECT_THROW(ReferenceGenerate(*model_, {}, options), llamarl::Error);
  options.sampling.top_p = 0;
  EXPECT_THROW(ReferenceGenerate(*model_, prompt_, options), llamarl::Error);
  options.sampling.top_p = 1;
  options.sampling.temperature = -1;
  EXPECT_THROW(ReferenceGenerate(*model_, prompt_, options), llamarl::Error);
  options.sampling.temperature = 0;
  EXPECT_THROW(ReferenceGenerate(*model_, {0, 256}, options), llamarl::Error);  // beyond vocab_size 256
}

// Draws n tokens and returns the frequency of each of the 4 tokens.
std::vector<double> Frequencies(const std::vector<double>& probs, const SamplingOptions& options, int n) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(float(std::log(p)));
  at::Tensor t = at::tensor(logits);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  std::vector<double> counts(probs.size(), 0.0);
  for (int i = 0; i < n; ++i) counts[size_t(SampleToken(t, options, generator))] += 1.0 / n;
  return counts;
}

// 3 sigma of a frequency estimated from 4000 draws is at most 0.024.
constexpr int kDraws = 4000;
constexpr double kTolerance = 0.03;

TEST(SampleTokenTest, FollowsHandWorkedDistributions) {
  const std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  SamplingOptions options;
  options.temperature = 1.0;
  std::vector<double> f = Frequencies(p, options, kDraws);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f[i], p[i], kTolerance) << i;

  // Temperature 0.5 squares the probabilities: [1, 4, 9, 16] / 30.
  options.temperature = 0.5;
  f = Frequencies(p, options, kDraws);
  const double squared[] = {1 / 30.0, 4 / 30.0, 9 / 30.0, 16 / 30.0};
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(f[i], squared[i], kTolerance) << i;

  // top_k 2 keeps 0.3 and 0.4, renormalised to 3/7 and 4/7.
  options.temperature = 1.0;
  options.top_k = 2;
  f = Frequencies(p, options, kDraws);
  EXPECT_EQ(f[0] + f[1], 0.0);
  EXPECT_NEAR(f[2], 3 / 7.0, kTolerance);

  // top_p 0.5: 0.4 alone is short of 0.5, 0.4 + 0.3 reaches it, so the same two tokens remain.
  options.top_k = 0;
  options.top_p = 0.5;
  f = Frequencies(p, options, kDraws);
  EXPECT_EQ(f[0] + f[1], 0.0);
  EXPECT_NEAR(f[3], 4 / 7.0, kTolerance);

  // top_p 0.35 is reached by the first token alone.
  options.top_p = 0.35;
  f = Frequencies(p, options, 100);
  EXPECT_NEAR(f[3], 1.0, 1e-9);  // 100 additions of 0.01

  options.temperature = 0;  // greedy: the first maximum
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(0);
  EXPECT_EQ(SampleToken(at::tensor(std::vector<float>{1, 3, 3, 2}), options, generator), 1);
}

}  // namespace
}  // namespace llamarl
