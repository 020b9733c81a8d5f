// The engine under tensor parallelism with real MPI ranks. With 2 ranks both form one TP=2 group;
// with 3 ranks, ranks 0-1 form a TP=2 group and rank 2 runs alone at TP=1 on a Split communicator of
// its own, and every group checks the same outputs against the full-recompute oracle. TP=3 over the
// whole world exercises the validation (4 heads are not divisible by 3).
#include "core/check.h"
#include "core/communicator.h"
#include "generator/engine.h"
#include "model/shard_layout.h"
#include "tests/generator/engine_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <chrono>
#include <map>

namespace llamarl {
namespace {

using testing::Greedy;
using testing::MakeModel;
using testing::Reference;

// 101 is not a multiple of 2 or 3: the vocab-row shards are uneven.
LlamaConfig TestConfig() { return testing::EngineTestConfig(101); }
std::vector<int64_t> Prompt(int64_t length, int64_t salt) { return testing::Prompt(length, salt, 101); }

std::map<uint64_t, Completion> ById(std::vector<Completion> completions) {
  std::map<uint64_t, Completion> out;
  for (Completion& c : completions) out[c.request_id] = std::move(c);
  return out;
}

class EngineTpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = CreateCommunicator("mpi");
    ASSERT_GE(world_->Size(), 2) << "run under mpirun -np 2 or more";
    const int color = world_->Rank() < 2 ? 0 : 1;  // {0, 1} at TP=2, any third rank alone
    group_ = world_->Split(color, world_->Rank());
  }
  void TearDown() override { world_->Barrier()->Wait(std::chrono::seconds(120)); }
  EngineOptions TpOptions() const {
    EngineOptions options;
    options.tp_group = group_.get();
    return options;
  }

  std::unique_ptr<Communicator> world_, group_;
  LlamaConfig config_ = TestConfig();
};

TEST_F(EngineTpTest, GreedyMatchesReferenceOnMixedBatchWithJoins) {
  LlamaForCausalLM model = MakeModel(config_, 21);
  EngineOptions options;
  options.max_slots = 3;
  options.tp_group = group_.get();
  Engine engine(config_, *model, options);
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{6, 8}, {1, 5}, {13, 12}, {4, 3}, {9, 9}};
  for (size_t i = 0; i < 3; ++i) engine.Submit(Greedy(i, Prompt(shapes[i].first, int64_t(i)), shapes[i].second));
  std::vector<Completion> done = engine.Step();
  for (size_t i = 3; i < shapes.size(); ++i) engine.Submit(Greedy(i, Prompt(shapes[i].first, int64_t(i)), shapes[i].second));
  for (Completion& c : engine.RunUntilDone()) done.push_back(std::move(c));
  auto by_id = ById(done);
  ASSERT_EQ(by_id.size(), shapes.size());
  for (size_t i = 0; i < shapes.size(); ++i) {
    const GenerationResult ref = Reference(*model, Prompt(shapes[i].first, int64_t(i)), shapes[i].second);
    EXPECT_EQ(by_id[i].tokens, ref.tokens) << "request " << i << " at tp " << group_->Size();
    for (size_t t = 0; t < ref.logprobs.size(); ++t) EXPECT_NEAR(by_id[i].logprobs[t], ref.logprobs[t], 1e-4);
  }
}

TEST_F(EngineTpTest, SampledLogprobsEqualFullForwardAndRanksAgree) {
  LlamaForCausalLM model = MakeModel(config_, 22);
  EngineOptions options;
  options.tp_group = group_.get();
  Engine engine(config_, *model, options);
  GenerationRequest r;
  r.id = 7;
  r.prompt = Prompt(5, 3);
  r.sampling.temperature = 0.8;
  r.sampling.top_p = 0.95;
  r.sampling.seed = 77;
  r.sampling.max_new_tokens = 10;
  r.num_samples = 4;
  engine.Submit(r);
  std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 4u);
  torch::NoGradGuard no_grad;
  for (const Completion& c : done) {
    std::vector<int64_t> ids = c.prompt;
    ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
    at::Tensor lp = at::log_softmax(model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0) / 0.8, -1);
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      EXPECT_NEAR(c.logprobs[t], lp[int64_t(c.prompt.size() + t) - 1][c.tokens[t]].item<float>(), 1e-4);
    }
    // Every rank of the group holds the same tokens.
    at::Tensor mine = at::tensor(c.tokens, at::kLong), root = mine.clone();
    group_->Broadcast(root, {0})->Wait();
    EXPECT_TRUE(mine.equal(root)) << "sample " << c.sample_index;
  }
}

// This rank's TP shard of every parameter, cut as model/shard_layout.h's TensorParallelLayout cuts it
// (vocab-parallel embeddings: near-equal row ranges).
std::vector<std::pair<std::string, at::Tensor>> TpShards(LlamaForCausalLMImpl& model, int rank, int size) {
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model.named_parameters()) {
    const std::string& n = item.key();
    at::Tensor w = item.value().detach();
    if (n == "model.embed_tokens.weight" || n == "lm_head.weight") {
      const std::vector<int64_t> b = EvenSplit(w.size(0), size);
      w = w.narrow(0, b[size_t(rank)], b[size_t(rank) + 1] - b[size_t(rank)]);
    } else if (ends_with(n, "o_proj.weight") || ends_with(n, "down_proj.weight")) {
      w = w.narrow(1, rank * w.size(1) / size, w.size(1) / size);
    } else if (!ends_with(n, "norm.weight")) {
      w = w.narrow(0, rank * w.size(0) / size, w.size(0) / size);
    }
    out.emplace_back(n, w.contiguous());
  }
  return out;
}

TEST_F(EngineTpTest, InFlightUpdateFromTpShardsContinuesWithTheNewWeights) {
  LlamaForCausalLM old_model = MakeModel(config_, 23);
  LlamaForCausalLM new_model = MakeModel(config_, 24);
  Engine engine(config_, *old_model, TpOptions());
  const std::vector<int64_t> prompt = Prompt(7, 4);
  engine.Submit(Greedy(1, prompt, 12));
  engine.Step();  // 2 tokens from the old weights
  CopyWeightsInto(engine, TpShards(*new_model, group_->Rank(), group_->Size()), 1);
  std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 1u);
  const Completion& c = done[0];
  EXPECT_EQ(std::vector<int64_t>(c.tokens.begin(), c.tokens.begin() + 2), Reference(*old_model, prompt, 2).tokens);
  std::vector<int64_t> prefix = prompt;
  prefix.insert(prefix.end(), c.tokens.begin(), c.tokens.begin() + 2);
  EXPECT_EQ(std::vector<int64_t>(c.tokens.begin() + 2, c.tokens.end()), Reference(*new_model, prefix, 10).tokens);
  EXPECT_EQ(c.versions, (std::vector<int64_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
}

TEST_F(EngineTpTest, TpSizeThatDoesNotDivideTheHeadsIsAClearError) {
  // 2 ranks: one kv head cannot be split in two; 3 ranks: 4 heads cannot be split in three.
  LlamaConfig config = config_;
  if (world_->Size() == 2) config.num_key_value_heads = 1;
  LlamaForCausalLM model = MakeModel(config, 25);
  EngineOptions options;
  options.tp_group = world_.get();
  const std::string expected = world_->Size() == 2 ? "generator tp_size (2) must divide num_key_value_heads (1)"
                                                   : "generator tp_size (3) must divide num_attention_heads (4)";
  try {
    Engine engine(config, *model, options);
    ADD_FAILURE() << "tp_size " << world_->Size() << " was accepted";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llamarl
