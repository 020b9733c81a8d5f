// The parts of a training job that every role builds the same way from the recipe: the model and its
// tokenizer, the prompts of each step, the generation requests of a group, scoring, and the training
// samples made from rollouts. Each function is a pure function of the recipe (and the step), so that
// every rank computes the same prompts and the same seeds without talking to the others.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "controller/dataset.h"
#include "controller/recipe.h"
#include "controller/rollout.h"
#include "generator/engine.h"
#include "model/llama.h"
#include "model/llama_weights.h"
#include "model/tokenizer.h"
#include "reward/reward.h"
#include "trainer/train_batch.h"

namespace llamarl::controller {

class ReferenceEpisodes;  // controller/episodes.h

// The model config: a tiny Llama over the 259-token byte tokenizer (EOS = <|endoftext|> and
// <|im_end|>), or the HF directory's config.json.
LlamaConfig BuildModelConfig(const RecipeConfig& recipe);
// The initial weights: the HF checkpoint mapped (each rank reads only its slice), or a tiny model
// from InitLlamaWeights(model.init_seed) in float32, the same on every rank.
LlamaWeightSource BuildWeights(const RecipeConfig& recipe);
// generator.weight_dtype on `device` (the job's) as tensor options: what generator ranks load and
// compute in.
at::TensorOptions GeneratorWeightOptions(const RecipeConfig& recipe, c10::Device device);
Tokenizer BuildTokenizer(const RecipeConfig& recipe);

// The groups of every RL step: step s takes the next prompts_per_step items of the epoch sampler, so
// step s's prompts depend only on (data, seed, s) and a resumed run continues where it stopped.
class StepPrompts {
 public:
  StepPrompts(std::vector<DatasetItem> train, const RecipeConfig& recipe);
  // Items of step `step`; steps must be asked for in increasing order (skipping is allowed).
  const std::vector<DatasetItem>& ForStep(int64_t step);
  // The cursor at the start of `step` (after ForStep(step - 1) or Restore).
  Cursor CursorAt(int64_t step);
  // Continues from a checkpoint: `cursor` is the cursor at the start of `step`.
  void Restore(const Cursor& cursor, int64_t step);
  // Dynamic sampling's replacement prompts: the next `n` items after everything handed out so far
  // (the following steps' items come after them; CursorAt counts them), with the stream position of
  // the first (epoch * dataset size + index), unique over the run and the same after a resume.
  std::vector<DatasetItem> Extra(int64_t n, int64_t* first_position);

 private:
  EpochSampler sampler_;
  int64_t per_step_;
  int64_t next_step_ = 0;  // the step whose items the sampler hands out next
  int64_t cached_step_ = -1;
  std::vector<DatasetItem> cached_;
};

// Which replica generates each group of a colocated step: step s has prompts_per_step groups
// k = 0..B-1; replica r owns k in [offset(r), offset(r) + share(r)) (EvenSplit). Split placement
// admits and routes groups by load instead (controller/batch_planner.h).
struct GroupRouting {
  int64_t groups_per_step = 0;
  int num_replicas = 1;

  int64_t Offset(int replica) const;
  int64_t Share(int replica) const;
};

// The sampling parameters of a rollout group or of a greedy evaluation.
SamplingParams RolloutSampling(const RecipeConfig& recipe, const LlamaConfig& config, uint64_t seed);
SamplingParams EvalSampling(const RecipeConfig& recipe, const LlamaConfig& config);
// The engine options of a generator replica: the recipe's generator section (max_slots, the KV
// budget; GeneratorConfig::engine) completed with sequences bounded by the longest prompt of the data + the longest response asked for
// (rollout.max_new_tokens, eval.max_new_tokens), never by max_position_embeddings alone; sampling
// limited to the ids the tokenizer decodes (a padded vocabulary's extra rows are never sampled);
// stop strings decoded with `tokenizer`, which must outlive the engine. The caller sets tp_group.
EngineOptions GeneratorEngineOptions(const RecipeConfig& recipe, const LlamaConfig& config, const Tokenizer& tokenizer,
                                     const DatasetSplits& data);
// The ids the sampler may draw: the tokenizer's, at most the model's rows (a padded vocabulary's extra
// rows are never sampled). The engine's EngineOptions::sampled_vocab_size and the trainer's
// TrainerConfig::sampled_vocab_size both come from here, so that the trainer's log-probs are those of
// the distribution the rollouts were sampled from.
int64_t SampledVocabSize(const LlamaConfig& config, const Tokenizer& tokenizer);
// Tokens of the longest prompt of the train and eval splits.
int64_t LongestPromptTokens(const DatasetSplits& data, const Tokenizer& tokenizer);
// A distinct, reproducible seed for each group of a run.
uint64_t GroupSeed(int64_t run_seed, int64_t group_id);

// Response text for the reward: the tokens without a trailing EOS, decoded.
std::string ResponseText(const Tokenizer& tokenizer, const std::vector<int64_t>& tokens,
                         const std::vector<int64_t>& eos_ids);
// Scores `completions` (the samples of one prompt) and packs them into a rollout group.
RolloutGroup ScoreGroup(const std::vector<Completion>& completions, const DatasetItem& item,
                        reward::Reward& reward, const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids);
// algorithm.dapo.overlong "penalty": adds overlong_penalty_factor x R_length(|y|) (reward/overlong.h,
// L_max = max_new_tokens) to the reward of each of `group`'s samples; other modes change nothing.
// Call it right after ScoreGroup, before anything reads the rewards.
void ShapeRewards(RolloutGroup* group, const DapoRecipe& dapo, int64_t max_new_tokens);
// Mean reward of evaluation completions (one per item, in item order).
double ScoreEval(const std::vector<Completion>& completions, const std::vector<DatasetItem>& items,
                 reward::Reward& reward, const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids);

// The unbiased pass@k estimator (Chen et al. 2021) for n samples of which c pass: 1 - C(n-c, k) / C(n, k).
double PassAtK(int64_t n, int64_t c, int64_t k);
// Sampled evaluation: `samples[i]` holds the k completions of items[i]. Sums over the items of the
// pass@k estimate (a sample passes at reward >= pass_threshold) and of the mean reward (mean@k).
struct EvalSampleSums {
  double pass_at_k = 0, mean_at_k = 0;
};
EvalSampleSums ScoreEvalSamples(const std::vector<std::vector<Completion>>& samples,
                                const std::vector<DatasetItem>& items, reward::Reward& reward,
                                const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids, double pass_threshold);
// The sampling of those k samples: the rollouts' temperature, a seed per eval prompt.
SamplingParams EvalSampleSampling(const RecipeConfig& recipe, const LlamaConfig& config, int64_t item);

// Training samples of accepted groups (group_id kept, so GRPO groups stay together). With
// mask_truncated (algorithm.dapo.overlong "filter") a sample whose finish reason is "length" is
// loss-masked (TrainSample::loss_masked).
TrainBatch ToTrainBatch(const std::vector<RolloutGroup>& groups, bool mask_truncated = false);
// SFT samples: prompt -> reference_response + EOS; with an environment (`episodes` set), each item's
// reference episode (tool calls trained, observations loss-masked).
TrainBatch SftBatch(const std::vector<DatasetItem>& items, const Tokenizer& tokenizer,
                    const std::vector<int64_t>& eos_ids, const ReferenceEpisodes* episodes = nullptr);

// Test only (recipe debug.kill_rank / debug.kill_at_step): this rank SIGKILLs itself once `step`
// reaches kill_at_step, so tests can check that a dead rank ends the job instead of hanging it.
void MaybeKillForTest(const DebugRecipe& debug, int rank, int64_t step);

// Every wait's limit, from the recipe.
struct JobTimeouts {
  std::chrono::milliseconds startup, step;
};
JobTimeouts TimeoutsOf(const RecipeConfig& recipe);

}  // namespace llamarl::controller
