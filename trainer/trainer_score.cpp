// Trainer::ScoreLogprobs: the current policy's token log-probs of given samples, with the same
// packing, gathers and scoring temperature as a training step, without its backward or update.
#include "trainer/trainer.h"

#include "core/communicator.h"
#include "trainer/packing.h"
#include "trainer/step_context.h"

#include <ATen/ATen.h>

namespace llamarl {

std::vector<std::vector<float>> Trainer::ScoreLogprobs(const TrainBatch& local_batch) {
  CheckResident("ScoreLogprobs");
  at::NoGradGuard no_grad;
  trainer_detail::StepContext ctx;
  ctx.algorithm = cfg_.algorithm;
  ctx.temperature = cfg_.temperature;
  ctx.micro = PackSamples(local_batch.samples, cfg_.micro_batch_tokens);
  if (zero3_) {
    // Per-layer gathers are collective: every rank runs as many micro-batches as the busiest one.
    at::Tensor count = at::full({1}, int64_t(ctx.micro.size()), at::kLong);
    dp_.AllReduce(count, {ReduceOp::kMax})->Wait();
    while (int64_t(ctx.micro.size()) < count.item<int64_t>()) ctx.micro.push_back(PaddingMicroBatch());
  }
  std::vector<std::vector<float>> out(local_batch.samples.size());
  for (size_t i = 0; i < out.size(); ++i) out[i].resize(local_batch.samples[i].response.size());
  GatherParams();
  for (const PackedMicroBatch& mb : ctx.micro) {
    trainer_detail::MicroBatchOutput o = ForwardMicroBatch(ctx, mb, at::Tensor());
    if (mb.padding) continue;
    at::Tensor logp = o.logp.to(at::kFloat).contiguous();
    const float* p = logp.data_ptr<float>();
    for (int64_t t = 0; t < logp.numel(); ++t) out[size_t(mb.sample_index[size_t(t)])][size_t(mb.token_index[size_t(t)])] = p[t];
  }
  ReleaseParams();
  return out;
}

}  // namespace llamarl
