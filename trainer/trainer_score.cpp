// Trainer::ScoreLogprobs: the current policy's token log-probs of given samples, with the same
// packing, gathers and scoring temperature as a training step (its no-grad scoring pass,
// Trainer::ScoreNoGrad), without its backward or update.
#include "trainer/trainer.h"

#include "trainer/step_context.h"

namespace llamarl {

std::vector<std::vector<float>> Trainer::ScoreLogprobs(const TrainBatch& local_batch) {
  CheckResident("ScoreLogprobs");
  trainer_detail::StepContext ctx;
  ctx.algorithm = cfg_.algorithm;
  ctx.temperature = cfg_.temperature;
  trainer_detail::ScoreRequest want;
  want.logp = true;
  GatherParams();
  trainer_detail::NoGradScores scores = ScoreNoGrad(ctx, local_batch.samples, want);
  ReleaseParams();
  return std::move(scores.logp);
}

}  // namespace llamarl
