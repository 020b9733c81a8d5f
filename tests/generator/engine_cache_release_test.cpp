// Engine::ReleaseCache / ReserveCache (colocated placement frees the KV cache while the rank trains):
// the cache holds 0 bytes while released and its full size again after the next Step or
// ReserveCache; generation after a release, with a weight update in between as the colocated loop
// does, is token for token and log-prob for log-prob that of an engine that never released;
// releasing with running sequences is refused, names them and leaves their generation intact.
#include "core/check.h"
#include "generator/engine.h"

#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

namespace llamarl {
namespace {

using testing::MakeModel;

constexpr int64_t kVocab = 96;
constexpr int64_t kSlots = 8;

// Seeded sampling (temperature 1, top-k), groups of 3: what rollouts look like.
std::vector<GenerationRequest> Rollouts(uint64_t first_id, int64_t num_requests) {
  std::vector<GenerationRequest> out;
  for (int64_t i = 0; i < num_requests; ++i) {
    GenerationRequest r;
    r.id = first_id + uint64_t(i);
    r.prompt = testing::Prompt(3 + i, int64_t(r.id), kVocab);
    r.sampling.temperature = 1.0;
    r.sampling.top_k = 20;
    r.sampling.seed = 1000 + r.id;
    r.sampling.max_new_tokens = 6 + 3 * i;
    r.num_samples = 3;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Completion> Sorted(std::vector<Completion> done) {
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) {
    return std::tie(a.request_id, a.sample_index) < std::tie(b.request_id, b.sample_index);
  });
  return done;
}

std::vector<Completion> Generate(Engine& engine, const std::vector<GenerationRequest>& requests) {
  for (const GenerationRequest& r : requests) engine.Submit(r);
  return Sorted(engine.RunUntilDone());
}

void ExpectSameCompletions(const std::vector<Completion>& got, const std::vector<Completion>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(want[i].request_id) + " sample " + std::to_string(want[i].sample_index));
    EXPECT_EQ(got[i].request_id, want[i].request_id);
    EXPECT_EQ(got[i].tokens, want[i].tokens);
    EXPECT_EQ(got[i].logprobs, want[i].logprobs);
    EXPECT_EQ(got[i].versions, want[i].versions);
  }
}

std::vector<std::pair<std::string, at::Tensor>> AllParameters(LlamaForCausalLMImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), item.value().detach());
  return out;
}

class EngineCacheReleaseTest : public ::testing::Test {
 protected:
  EngineOptions Options() const {
    EngineOptions o;
    o.max_slots = kSlots;
    return o;
  }
  // The default budget, max_slots sequences of max_position_embeddings tokens (64, whole blocks of 16):
  // keys + values, float32: 2 * layers * slots * kv_heads * max_position_embeddings * head_dim * 4.
  int64_t FullCacheBytes() const {
    return 2 * config_.num_hidden_layers * kSlots * config_.num_key_value_heads * config_.max_position_embeddings *
           config_.head_dim * 4;
  }

  LlamaConfig config_ = testing::EngineTestConfig(kVocab);
  LlamaForCausalLM model_ = MakeModel(config_, 7);
};

TEST_F(EngineCacheReleaseTest, GenerationAfterReleaseEqualsAnEngineThatNeverReleased) {
  Engine kept(config_, *model_, Options());
  Engine released(config_, *model_, Options());
  EXPECT_EQ(released.CacheBytes(), FullCacheBytes());
  ExpectSameCompletions(Generate(released, Rollouts(0, 4)), Generate(kept, Rollouts(0, 4)));

  // Train phase: the cache is freed, new weights arrive; the next Step allocates it again.
  released.ReleaseCache();
  EXPECT_EQ(released.CacheBytes(), 0);
  LlamaForCausalLM next = MakeModel(config_, 8);
  CopyWeightsInto(released, AllParameters(*next), 1);
  CopyWeightsInto(kept, AllParameters(*next), 1);
  EXPECT_EQ(released.CacheBytes(), 0) << "a weight update does not allocate the cache";
  std::vector<Completion> want = Generate(kept, Rollouts(10, 5));
  ExpectSameCompletions(Generate(released, Rollouts(10, 5)), want);
  EXPECT_EQ(released.CacheBytes(), FullCacheBytes());
  for (const Completion& c : want) EXPECT_EQ(c.versions.front(), 1);

  // ReserveCache allocates ahead of the next generation; a second call changes nothing.
  released.ReleaseCache();
  released.ReserveCache();
  released.ReserveCache();
  EXPECT_EQ(released.CacheBytes(), FullCacheBytes());
  ExpectSameCompletions(Generate(released, Rollouts(20, 3)), Generate(kept, Rollouts(20, 3)));
}

TEST_F(EngineCacheReleaseTest, QueuedRequestsSurviveARelease) {
  Engine kept(config_, *model_, Options());
  Engine released(config_, *model_, Options());
  for (const GenerationRequest& r : Rollouts(0, 3)) released.Submit(r);
  released.ReleaseCache();  // queued requests hold no cache
  EXPECT_EQ(released.NumQueued(), 3);
  EXPECT_EQ(released.CacheBytes(), 0);
  ExpectSameCompletions(Generate(released, {}), Generate(kept, Rollouts(0, 3)));
}

TEST_F(EngineCacheReleaseTest, ReleasingRunningSequencesIsRefusedAndHarmless) {
  Engine kept(config_, *model_, Options());
  Engine engine(config_, *model_, Options());
  for (const GenerationRequest& r : Rollouts(30, 2)) engine.Submit(r);
  std::vector<Completion> early = engine.Step();  // admits both groups: 6 running sequences
  ASSERT_TRUE(early.empty());
  ASSERT_EQ(engine.NumRunning(), 6);
  std::string error;
  try {
    engine.ReleaseCache();
  } catch (const llamarl::Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("6 sequences are still running (request/sample 30/0, 30/1, 30/2, 31/0"), std::string::npos)
      << error;
  EXPECT_NE(error.find("finish them (RunUntilDone)"), std::string::npos) << error;
  EXPECT_EQ(engine.CacheBytes(), FullCacheBytes());
  ExpectSameCompletions(Sorted(engine.RunUntilDone()), Generate(kept, Rollouts(30, 2)));
}

}  // namespace
}  // namespace llamarl
