// The dry run's memory plan per rank, worked by hand from the formulas in plan/plan_rank_memory.h,
// and the messages that say what does not fit.
#include "model/llama_presets.h"
#include "plan/plan_model.h"
#include "plan/plan_rank_memory.h"

#include <gtest/gtest.h>

namespace llamarl {
namespace {

TEST(PlanRankMemoryTest, TrainerAndGeneratorFiguresWorkedByHand) {
  const PlanModel model = LoadPlanModel("qwen2.5-0.5b");
  const LlamaConfig& c = model.config;
  const double n = double(model.num_params);  // 494,032,768
  ASSERT_EQ(model.num_params, 494032768);
  ASSERT_TRUE(c.tie_word_embeddings);
  const double edges = double(c.vocab_size * c.hidden_size + c.hidden_size);
  const double layer = (n - edges) / double(c.num_hidden_layers);
  RankMemoryInputs in;
  in.role = "trainer";
  in.trainer_ranks = 2;
  in.compute_bytes = 4;
  in.reference_bytes = 2;
  in.micro_batch_tokens = 1000;
  in.logprob_token_chunk = 100, in.logprob_vocab_chunk = 1000;
  const RankMemoryPlan t = PlanRankMemory(model, in);
  EXPECT_DOUBLE_EQ(t.weights, 4 * n / 2 + (2 * 4 + 4) * (edges + layer));
  EXPECT_DOUBLE_EQ(t.optimizer, 12 * n / 2);
  EXPECT_DOUBLE_EQ(t.reference, 2 * n / 2 + 4 * (edges + layer));
  const double d = double(c.hidden_size), kv = double(c.num_key_value_heads * c.head_dim);
  const double per_layer = 2 * (6 * d + 2 * kv + 4 * double(c.intermediate_size));
  EXPECT_DOUBLE_EQ(t.activations, (2 * d * double(c.num_hidden_layers) + per_layer) * 1000 * 4 / 2 + 3 * 4 * 100 * 1000);
  EXPECT_EQ(t.kv_cache, 0);
  // Without activation checkpointing (and always under replicated) every layer keeps its full set.
  in.activation_checkpointing = false;
  const double all_layers = per_layer * double(c.num_hidden_layers) * 1000 * 4 / 2 + 3 * 4 * 100 * 1000;
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).activations, all_layers);
  in.activation_checkpointing = true;
  in.zero3 = false;
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).activations, all_layers);
  in.zero3 = true;

  in.role = "generator";
  in.generator_weight_bytes = 2;
  in.kv_budget_bytes = 1e8;
  in.max_slots = 32;
  const RankMemoryPlan g = PlanRankMemory(model, in);
  EXPECT_DOUBLE_EQ(g.weights, 2 * n);  // TP 1: the whole model in bf16, pushes received into it
  EXPECT_DOUBLE_EQ(g.kv_cache, 1e8);
  EXPECT_DOUBLE_EQ(g.activations, 3 * 4 * 32 * double(c.vocab_size));
  EXPECT_EQ(g.optimizer, 0);
  in.tp = 2;
  const double vocab_rows = double(c.vocab_size * c.hidden_size);
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).weights, 2 * ((n - edges) / 2 + edges) + 2 * (edges / 2 + vocab_rows))
      << "edges replicated in the engine under TP; a push's vocabulary rows arrive in scratch, then gathered";

  in.role = "colocated";
  in.tp = 1;
  const RankMemoryPlan both = PlanRankMemory(model, in);
  EXPECT_DOUBLE_EQ(both.weights, t.weights + g.weights);
  EXPECT_DOUBLE_EQ(both.optimizer, t.optimizer);
  EXPECT_DOUBLE_EQ(both.kv_cache, g.kv_cache);
}

// fp8 generator weights: the layers' projections (layer_linear_params) in 1 byte plus a float32 scale
// per local row and one layer decoded in the compute dtype; norms and edges in the compute dtype; an
// fp8 push's edges arrive as e4m3fn scratch.
TEST(PlanRankMemoryTest, Fp8GeneratorWeightsWorkedByHand) {
  const PlanModel model = LoadPlanModel("qwen2.5-0.5b");
  const LlamaConfig& c = model.config;
  const double n = double(model.num_params), linear = double(model.layer_linear_params);
  const double layers = double(c.num_hidden_layers), d = double(c.hidden_size), i = double(c.intermediate_size);
  const double q = double(c.num_attention_heads * c.head_dim), kv = double(c.num_key_value_heads * c.head_dim);
  ASSERT_DOUBLE_EQ(linear, layers * (d * (q + 2 * kv) + q * d + 3 * d * i));
  const double edges = double(c.vocab_size * c.hidden_size + c.hidden_size);
  RankMemoryInputs in;
  in.role = "generator";
  in.generator_weight_bytes = 2;
  in.generator_fp8 = true;
  const double rows = layers * (q + 2 * kv + 2 * i + 2 * d);
  const double fp8 = PlanRankMemory(model, in).weights;
  EXPECT_DOUBLE_EQ(fp8, linear + 4 * rows + 2 * linear / layers + 2 * (n - edges - linear) + 2 * edges + edges);
  in.generator_fp8 = false;
  const double bf16 = PlanRankMemory(model, in).weights;
  EXPECT_LT(fp8, 0.85 * bf16) << "0.5B: the projections are 0.36B of 0.49B parameters";
  in.generator_fp8 = true;
  in.tp = 2;
  const double rows_tp = layers * ((q + 2 * kv + 2 * i) / 2 + 2 * d);
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).weights,
                   linear / 2 + 4 * rows_tp + 2 * linear / (layers * 2) + 2 * ((n - edges - linear) / 2 + edges) +
                       edges / 2 * 3 + 2 * double(c.vocab_size * c.hidden_size));
}

// The host allocator's kept heap: counted for ranks that train, never above what one step frees
// (its activations and gathered units under zero3) nor above the allowance; never for a generator.
TEST(PlanRankMemoryTest, AllocatorReserveIsCountedForTrainingRanksUpToWhatAStepFrees) {
  const PlanModel model = LoadPlanModel("qwen2.5-0.5b");
  const LlamaConfig& c = model.config;
  const double n = double(model.num_params);
  const double edges = double(c.vocab_size * c.hidden_size + c.hidden_size);
  const double unit = edges + (n - edges) / double(c.num_hidden_layers);
  RankMemoryInputs in;
  in.compute_bytes = 2;
  EXPECT_EQ(PlanRankMemory(model, in).allocator, 0) << "no allowance, no reserve";
  in.allocator_retained_bytes = 1e9;
  const RankMemoryPlan t = PlanRankMemory(model, in);
  EXPECT_DOUBLE_EQ(t.allocator, 1e9) << "a 0.5B step frees more than the allowance";
  EXPECT_DOUBLE_EQ(t.Total(), t.weights + t.optimizer + t.reference + t.activations + t.runtime + 1e9);
  EXPECT_EQ(PlanRankMemory(model, in).ToJson()["allocator_bytes"].get<double>(), 1e9);
  in.allocator_retained_bytes = 1e12;
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).allocator, t.activations + (2 * 2 + 4) * unit);
  in.role = "colocated";
  EXPECT_DOUBLE_EQ(PlanRankMemory(model, in).allocator, t.activations + (2 * 2 + 4) * unit);
  in.role = "generator";
  EXPECT_EQ(PlanRankMemory(model, in).allocator, 0);
}

TEST(PlanRankMemoryTest, AOneAndAHalfBModelDoesNotFitF32AdamWIn24GiBAndSaysWhy) {
  const PlanModel model = LoadPlanModel("qwen2.5-1.5b");
  RankMemoryInputs in;
  in.reference_bytes = 2;
  std::vector<PlannedRank> ranks;
  in.role = "generator";
  in.kv_budget_bytes = 1e8;
  ranks.push_back({0, "generator", PlanRankMemory(model, in)});
  in.role = "trainer";
  ranks.push_back({1, "trainer", PlanRankMemory(model, in)});
  const double host = 24.0 * (1 << 30);
  const std::string problem = MemoryFitProblem(ranks, host);
  ASSERT_FALSE(problem.empty());
  EXPECT_NE(problem.find("rank 1 (trainer) does not fit"), std::string::npos) << problem;
  EXPECT_NE(problem.find("largest part is the optimizer state"), std::string::npos) << problem;
  EXPECT_NE(problem.find(" over"), std::string::npos) << problem;
  EXPECT_EQ(problem.find("rank 0 (generator) does not fit"), std::string::npos) << problem;
  EXPECT_NE(problem.find("the 2 rank(s) together need"), std::string::npos) << problem;
  EXPECT_EQ(MemoryFitProblem(ranks, 1e12), "");
  EXPECT_NE(MemoryPlanText(ranks, host).find("rank 1 (trainer): "), std::string::npos);
}

}  // namespace
}  // namespace llamarl
