#include "controller/generator_side.h"

#include <algorithm>

#include "model/shard_layout.h"

namespace llamarl::controller {

GenerationRequest RolloutRequest(const JobContext& job, uint64_t request_id, const DatasetItem& item) {
  return GenerationRequest{request_id, job.tokenizer.Encode(item.prompt),
                           RolloutSampling(job.recipe, job.config, GroupSeed(job.recipe.seed, int64_t(request_id))),
                           job.recipe.rollout.group_size};
}

RolloutGroup ScoreRolloutGroup(const JobContext& job, reward::Reward& reward, const std::vector<Completion>& completions,
                               const DatasetItem& item, int64_t group_id, double gen_s) {
  RolloutGroup g = ScoreGroup(completions, item, reward, job.tokenizer, job.eos_ids());
  ShapeRewards(&g, job.recipe.algorithm.dapo, job.recipe.rollout.sampling.max_new_tokens);
  g.group_id = group_id;
  g.generator_rank = job.world.Rank();
  g.gen_s = gen_s;
  return g;
}

EvalShare EvalShareOf(const JobContext& job, int replica) {
  const int64_t n = std::min<int64_t>(job.recipe.eval.num_prompts, int64_t(job.data.eval.size()));
  const std::vector<int64_t> bounds = EvenSplit(n, job.placement.NumReplicas());
  EvalShare share;
  share.first = bounds[size_t(replica)];
  share.items.assign(job.data.eval.begin() + bounds[size_t(replica)], job.data.eval.begin() + bounds[size_t(replica) + 1]);
  return share;
}

void SubmitEval(Engine& engine, const JobContext& job, const EvalShare& share,
                const std::function<uint64_t(size_t)>& greedy_id, const std::function<uint64_t(size_t)>& sampled_id) {
  const int64_t k = job.recipe.eval.samples;
  for (size_t i = 0; i < share.items.size(); ++i) {
    const std::vector<int64_t> prompt = job.tokenizer.Encode(share.items[i].prompt);
    engine.Submit(GenerationRequest{greedy_id(i), prompt, EvalSampling(job.recipe, job.config), 1});
    if (k > 0) {
      engine.Submit(GenerationRequest{sampled_id(i), prompt,
                                      EvalSampleSampling(job.recipe, job.config, share.first + int64_t(i)), k});
    }
  }
}

EvalTally ScoreEvalShare(const JobContext& job, reward::Reward& reward, const EvalShare& share,
                         const std::vector<Completion>& greedy, const std::vector<std::vector<Completion>>& sampled) {
  const double mean = share.items.empty() ? 0.0 : ScoreEval(greedy, share.items, reward, job.tokenizer, job.eos_ids());
  const EvalSampleSums s =
      ScoreEvalSamples(sampled, share.items, reward, job.tokenizer, job.eos_ids(), job.recipe.eval.pass_threshold);
  EvalTally tally;
  tally.sum = mean * double(share.items.size());
  tally.count = int64_t(share.items.size());
  tally.pass_at_k_sum = s.pass_at_k;
  tally.mean_at_k_sum = s.mean_at_k;
  return tally;
}

}  // namespace llamarl::controller
