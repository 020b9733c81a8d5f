// The trainer's configuration (recipe section "trainer"): algorithm, loss sub-configs, optimizer,
// schedule, micro-batching, clipping, sharding and precision. FromJson rejects unknown keys and
// names the path of a bad value.
#pragma once

#include "trainer/adamw.h"
#include "trainer/critic.h"
#include "trainer/losses.h"
#include "trainer/lr_schedule.h"
#include "trainer/ppo.h"

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace llamarl {

struct TrainerConfig {
  // grpo | aipo | tis | decoupled_ppo | rloo | reinforce | ppo | gspo | cispo | sft
  std::string algorithm = "grpo";
  GrpoConfig grpo;               // also the clip of tis, decoupled_ppo and ppo, and the advantages of gspo, cispo
  AipoConfig aipo;
  TruncatedIsConfig tis{2.0};
  TruncatedIsConfig decoupled_ppo{0.0};
  PpoConfig ppo;
  CriticConfig critic;           // ppo: the value head on the policy trunk, or a critic model of its own
  GspoConfig gspo;
  CispoConfig cispo;
  KlConfig kl;
  // One Step() runs ppo_epochs passes over its batch, each split into num_minibatches minibatches (this
  // rank's samples in order, EvenSplit), one optimizer update per minibatch: ppo_epochs *
  // num_minibatches updates per step. Advantages (and ppo's old values) are computed once over the
  // whole global batch first; each minibatch's loss is normalised over that minibatch's global tokens
  // or samples. The proximal policy of tis/decoupled_ppo is the policy at the start of the step: with
  // more than one update, one no-grad scoring pass before the first update records it. The policy
  // version goes up once per Step(); LR schedules count optimizer updates.
  int64_t ppo_epochs = 1;
  int64_t num_minibatches = 1;
  int64_t UpdatesPerStep() const { return ppo_epochs * num_minibatches; }
  // The sampler's temperature. Log-probs, entropy and the KL reference are scored under
  // softmax(logits / temperature), the distribution the behaviour log-probs came from, so importance
  // weights compare like with like. SftStep always scores at 1.
  double temperature = 1.0;
  double entropy_coef = 0.0;     // loss -= entropy_coef * H_t (a bonus for exploration)
  // How per-token losses become one number, normalised over the whole global batch (all micro-batches
  // and ranks, so the gradient does not depend on how the batch is split):
  //   token_mean           sum_t l_t / (tokens in the batch)                          (DAPO)
  //   seq_mean_token_mean  mean over samples of (sum of the sample's l_t / its tokens)  (GRPO)
  //   seq_sum_constant     sum_t l_t / (samples * norm_constant)                      (Dr.GRPO)
  std::string aggregation = "token_mean";
  double norm_constant = 1024.0;  // seq_sum_constant: typically the maximum response length
  AdamWConfig optimizer;
  LrScheduleConfig schedule;
  int64_t micro_batch_tokens = 4096;  // input tokens per packed micro-batch (gradient accumulation)
  double max_grad_norm = 1.0;         // global-norm clipping over all shards; 0 = off
  std::string sharding = "zero3";     // zero3 | replicated
  // zero3: recompute each decoder layer's forward during backward (keeps one layer's activations and
  // the layer inputs: the memory plan's bound), or keep every layer's activations and skip the
  // recompute (about a quarter fewer FLOPs per step, activation memory of the whole depth). The
  // replicated baseline never recomputes.
  bool activation_checkpointing = true;
  std::string compute_dtype = "float32";  // float32 | bfloat16 (master weights and Adam state stay f32)
  uint64_t seed = 0;
  int64_t logprob_token_chunk = 1024;  // TokenLogprobs tiles
  int64_t logprob_vocab_chunk = 8192;
  // Not a recipe key: the ids the sampler can draw, set by whoever builds the trainer from the same
  // source as the generator's EngineOptions::sampled_vocab_size (the tokenizer's size). Log-probs,
  // entropy and the KL reference are taken over the first sampled_vocab_size rows of the LM head,
  // the distribution the behaviour log-probs came from; a padded vocabulary's extra rows get no
  // gradient. 0 = every row.
  int64_t sampled_vocab_size = 0;
  // Not a recipe key: where the master shard, the Adam state, the gradients and the working model
  // live (the job's device, core/device.h). Collectives over `dp` then move tensors of this device.
  c10::Device device = c10::Device(c10::kCPU);

  static TrainerConfig FromJson(const Json& j, const std::string& path = "trainer");
  Json ToJson() const;
};

}  // namespace llamarl
