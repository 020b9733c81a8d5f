// The engine over its paged KV cache: with small blocks and a tight budget, greedy requests and
// sampled GRPO groups (prompt blocks shared, the partial block copied on write) join as others finish,
// admitted by free blocks while slots are still free; greedy tokens equal the full-recompute oracle and
// every log-prob equals a full forward of prompt + response within 1e-5; the blocks a group holds are
// counted once and all are freed at the end. A request that can never fit is rejected naming its
// sizes; a budget below one block is an error. A padded vocabulary's extra ids are never sampled and
// the log-probs are those of the decodable ids.
#include "core/check.h"
#include "generator/engine.h"

#include "model/tiny_tokenizer.h"
#include "model/tokenizer.h"
#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <map>
#include <stdexcept>

namespace llamarl {
namespace {

using testing::Greedy;
using testing::MakeModel;
using testing::Reference;

constexpr int64_t kVocab = 96;
// EngineTestConfig: 2 layers, 2 kv heads of 8 dims, f32: 2 * 2 * 8 * 4 bytes per token and layer.
constexpr int64_t kBlockSize = 4;
constexpr int64_t kBytesPerBlock = 128 * 2 * kBlockSize;

std::vector<int64_t> Prompt(int64_t length, int64_t salt) { return testing::Prompt(length, salt, kVocab); }

EngineOptions PagedOptions(int64_t num_blocks) {
  EngineOptions o;
  o.max_slots = 8;
  o.kv_cache.block_size = kBlockSize;
  o.kv_cache.bytes = num_blocks * kBytesPerBlock;
  return o;
}

GenerationRequest SampledGroup(uint64_t id, std::vector<int64_t> prompt, int64_t max_new_tokens, int64_t samples) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 1.0;
  r.sampling.seed = 500 + id;
  r.sampling.max_new_tokens = max_new_tokens;
  r.num_samples = samples;
  return r;
}

// log softmax(logits[:, :vocab] / temperature)[token] of every response token, from one full forward.
std::vector<float> FullForwardLogprobs(LlamaForCausalLMImpl& model, const Completion& c, double temperature,
                                       int64_t vocab) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids = c.prompt;
  ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
  at::Tensor logits = model.forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0).narrow(1, 0, vocab);
  at::Tensor lp = at::log_softmax(logits / (temperature == 0 ? 1.0 : temperature), -1);
  std::vector<float> out;
  const int64_t p = int64_t(c.prompt.size());
  for (size_t i = 0; i < c.tokens.size(); ++i) out.push_back(lp[p - 1 + int64_t(i)][c.tokens[i]].item<float>());
  return out;
}

void ExpectLogprobsNear(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t t = 0; t < want.size(); ++t) EXPECT_NEAR(got[t], want[t], 1e-5) << what << " token " << t;
}

TEST(EnginePagedTest, MixedBatchWithSharedPromptsMatchesTheReference) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model = MakeModel(config, 31);
  Engine engine(config, *model, PagedOptions(24));
  EXPECT_EQ(engine.KvStats().num_blocks, 24);
  EXPECT_EQ(engine.KvStats().budget_bytes, 24 * kBytesPerBlock);
  EXPECT_EQ(engine.CacheBytes(), 24 * kBytesPerBlock);

  // A group of 3 with a 9-token prompt: blocks 0-1 full, block 2 partial. After the first step each
  // sample wrote position 9: two copies of block 2, the last holder in place: 3 + 2 blocks, not 9.
  engine.Submit(SampledGroup(0, Prompt(9, 0), 10, 3));
  std::vector<Completion> done = engine.Step();
  EXPECT_EQ(engine.KvStats().blocks_in_use, 5);
  // Worst cases: the group 11 blocks; greedy 1 (prompt 5, 9 new: 4 blocks); greedy 2 (prompt 8, 12 new:
  // 5); group 3 (prompt 4 shared by 2, 7 new: 1 + 2 * 2 = 5). 11 + 4 + 5 = 20 of 24 blocks: group 3
  // waits for blocks while 2 of the 8 slots are free, and joins once a sequence finishes.
  engine.Submit(Greedy(1, Prompt(5, 1), 9));
  engine.Submit(Greedy(2, Prompt(8, 2), 12));
  engine.Submit(SampledGroup(3, Prompt(4, 3), 7, 2));
  for (Completion& c : engine.Step()) done.push_back(std::move(c));
  EXPECT_EQ(engine.NumRunning(), 5);
  EXPECT_EQ(engine.NumQueued(), 1) << "admission waits for blocks, not slots";
  engine.Submit(Greedy(4, Prompt(13, 4), 3));
  for (Completion& c : engine.RunUntilDone()) done.push_back(std::move(c));

  ASSERT_EQ(done.size(), 3u + 1 + 1 + 2 + 1);
  std::map<uint64_t, std::vector<std::vector<int64_t>>> samples_of;
  for (const Completion& c : done) {
    const std::string what = "request " + std::to_string(c.request_id) + " sample " + std::to_string(c.sample_index);
    const bool greedy = c.request_id == 1 || c.request_id == 2 || c.request_id == 4;
    if (greedy) {
      const GenerationResult ref = Reference(*model, c.prompt, int64_t(c.tokens.size()));
      EXPECT_EQ(c.tokens, ref.tokens) << what;
      ExpectLogprobsNear(c.logprobs, ref.logprobs, what);
    } else {
      samples_of[c.request_id].push_back(c.tokens);
    }
    ExpectLogprobsNear(c.logprobs, FullForwardLogprobs(*model, c, greedy ? 0 : 1.0, kVocab), what);
  }
  // The group's samples diverged, so each attended over its own copy of the shared partial block.
  EXPECT_NE(samples_of[0][0], samples_of[0][1]);
  EXPECT_NE(samples_of[0][1], samples_of[0][2]);
  const KvCacheStats stats = engine.KvStats();
  EXPECT_EQ(stats.blocks_in_use, 0) << "every block is freed at the end";
  EXPECT_GE(stats.peak_blocks_in_use, 11);
  EXPECT_LE(stats.peak_blocks_in_use, 24);
}

TEST(EnginePagedTest, RefreshAfterAnUpdateRecomputesSharedAndCopiedBlocks) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM old_model = MakeModel(config, 34);
  LlamaForCausalLM new_model = MakeModel(config, 35);
  Engine engine(config, *old_model, PagedOptions(24), 0);
  engine.Submit(SampledGroup(7, Prompt(9, 7), 8, 3));
  engine.Step();
  engine.Step();  // 3 tokens from the old weights; each sample copied the shared partial block
  std::vector<std::pair<std::string, at::Tensor>> weights;
  for (const auto& item : new_model->named_parameters()) weights.emplace_back(item.key(), item.value().detach());
  CopyWeightsInto(engine, weights, 1);
  std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 3u);
  for (const Completion& c : done) {
    const std::string what = "sample " + std::to_string(c.sample_index);
    ASSERT_EQ(c.tokens.size(), 8u) << what;
    EXPECT_EQ(c.versions, (std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1})) << what;
    const std::vector<float> old_lp = FullForwardLogprobs(*old_model, c, 1.0, kVocab);
    const std::vector<float> new_lp = FullForwardLogprobs(*new_model, c, 1.0, kVocab);
    std::vector<float> want(old_lp.begin(), old_lp.begin() + 3);
    want.insert(want.end(), new_lp.begin() + 3, new_lp.end());
    ExpectLogprobsNear(c.logprobs, want, what);
  }
  EXPECT_EQ(engine.KvStats().blocks_in_use, 0);
}

TEST(EnginePagedTest, ARequestThatCanNeverFitIsRejectedNamingItsSizes) {
  const LlamaConfig config = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model = MakeModel(config, 32);
  Engine engine(config, *model, PagedOptions(4));
  // Prompt 10 shared by 2 samples of 8 new tokens: 3 + 2 * (5 - 3) + 1 copy = 8 blocks > 4. Requests
  // 1 (3 blocks) and 3 (2 blocks) fit, one after the other.
  engine.Submit(Greedy(1, Prompt(6, 1), 6));
  GenerationRequest big = SampledGroup(2, Prompt(10, 2), 8, 2);
  engine.Submit(big);
  engine.Submit(Greedy(3, Prompt(3, 3), 4));
  std::map<uint64_t, Completion> done;
  for (Completion& c : engine.RunUntilDone()) done[c.request_id] = std::move(c);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[2].finish_reason, FinishReason::kRejected);
  EXPECT_NE(done[2].error.find("the request can never fit the KV cache: a prompt of 10 tokens shared by 2 samples of "
                               "up to 8 new tokens needs up to 8 blocks of 4 tokens (8192 bytes), but the cache "
                               "holds 4 blocks (4096 bytes); raise generator.kv_cache_bytes"),
            std::string::npos)
      << done[2].error;
  for (uint64_t id : {1, 3}) {
    EXPECT_EQ(done[id].finish_reason, FinishReason::kLength);
    EXPECT_EQ(done[id].tokens, Reference(*model, done[id].prompt, int64_t(done[id].tokens.size())).tokens);
  }
  EXPECT_EQ(engine.KvStats().blocks_in_use, 0);

  EngineOptions tiny = PagedOptions(1);
  tiny.kv_cache.bytes = kBytesPerBlock - 1;
  try {
    Engine too_small(config, *model, tiny);
    ADD_FAILURE() << "a KV budget below one block was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("raise generator.kv_cache_bytes to at least 1024"), std::string::npos)
        << e.what();
  }
}

TEST(EnginePagedTest, PaddedVocabularyIdsAreNeverSampled) {
  // The tiny tokenizer decodes 259 ids; the model has 288 rows, the padding boosted so that an
  // unmasked sampler picks it often.
  const Tokenizer tokenizer =
      Tokenizer::FromTokenizerJson(MakeTinyTokenizerJson().dump(), MakeTinyTokenizerConfigJson().dump());
  const int64_t decodable = tokenizer.VocabSize();
  ASSERT_EQ(decodable, TinyTokenizerIds::kVocabSize);
  const LlamaConfig config = testing::EngineTestConfig(288);
  LlamaForCausalLM model = MakeModel(config, 33);
  {
    torch::NoGradGuard no_grad;
    model->LmHeadWeight().narrow(0, decodable, 288 - decodable).mul_(3.0);
  }
  auto run = [&](int64_t sampled_vocab_size) {
    EngineOptions o;
    o.sampled_vocab_size = sampled_vocab_size;
    Engine engine(config, *model, o);
    engine.Submit(SampledGroup(1, testing::Prompt(6, 1, decodable), 20, 4));
    engine.Submit(Greedy(2, testing::Prompt(7, 2, decodable), 20));
    return engine.RunUntilDone();
  };
  int64_t padded = 0;
  for (const Completion& c : run(0)) {
    for (int64_t id : c.tokens) padded += id >= decodable;
  }
  EXPECT_GT(padded, 0) << "the unmasked engine never sampled a padded id: the test would prove nothing";
  for (const Completion& c : run(decodable)) {
    for (int64_t id : c.tokens) EXPECT_LT(id, decodable);
    EXPECT_NO_THROW(tokenizer.Decode(c.tokens));
    const double temperature = c.request_id == 2 ? 0 : 1.0;
    ExpectLogprobsNear(c.logprobs, FullForwardLogprobs(*model, c, temperature, decodable),
                       "request " + std::to_string(c.request_id));
  }
  EngineOptions bad;
  bad.sampled_vocab_size = 289;
  EXPECT_THROW({ Engine engine(config, *model, bad); }, llamarl::Error);
}

}  // namespace
}  // namespace llamarl
