// PPO's critic (recipe section "trainer.critic"): where V_t comes from.
//
//   mode "shared"    a value head ([1, D] linear map with bias) on the policy trunk's final-norm hidden
//                    states; the value loss (times ppo.value_coef) joins the policy loss, one backward,
//                    one optimizer and one gradient-norm clip for both.
//   mode "separate"  a critic model of its own (the verl / OpenRLHF layout): a Llama decoder with a fresh
//                    scalar value head on its final-norm hidden states, its own float32 master weights
//                    in ZeRO-3 flat shards across the trainer ranks (the policy's flat-parameter
//                    machinery: the critic is a value-only Trainer held by the policy's Trainer), its own
//                    AdamW, learning rate (the policy's schedule shape), gradient-norm clip and
//                    checkpoint directory (CHECKPOINT/critic). Its loss is the clipped value loss alone
//                    (ppo.value_clip; ppo.value_coef does not apply), over the same ppo_epochs x
//                    num_minibatches updates per step as the policy; no gradient crosses between the two.
//
// The critic's initial weights (separate mode):
//   model ""   the weights the policy's Trainer is built from (after the SFT warm start, if any);
//   model DIR  an HF checkpoint directory (config.json + safetensors), e.g. from `llamarl init`;
//   config {}  HF config.json fields (hidden_size, num_hidden_layers, num_attention_heads,
//              num_key_value_heads, intermediate_size, head_dim, ...) over the policy's config: a
//              smaller critic drawn at random with init_seed. Not with `model`.
// The value head is always fresh: zero bias, weights ~ N(0, 1/D) from trainer.seed. The critic reads
// the policy's token ids, so its vocab_size must be the policy's.
#pragma once

#include "core/config.h"
#include "model/llama.h"
#include "trainer/adamw.h"

#include <string>

namespace llamarl {

struct CriticConfig {
  std::string mode = "shared";  // shared | separate
  std::string model;            // "" = the policy's initial weights; else an HF checkpoint directory
  Json config = Json::object(); // config.json fields over the policy's (random init)
  int64_t init_seed = 0;        // seed of the random init under `config`
  AdamWConfig optimizer;        // defaults: trainer.optimizer
  double max_grad_norm = 1.0;   // the critic's own global-norm clip; default trainer.max_grad_norm; 0 = off
  bool Separate() const { return mode == "separate"; }
  // `trainer_optimizer` (the trainer section's "optimizer", null when absent) is merged under the
  // critic's own; `trainer_max_grad_norm` is the default of max_grad_norm.
  static CriticConfig FromJson(const Json& j, const std::string& path, const Json& trainer_optimizer,
                               double trainer_max_grad_norm);
  Json ToJson() const;
};

// The separate critic's model config: the checkpoint's (model DIR), the policy's with `config` over it,
// or the policy's. Throws, naming trainer.critic, on a vocabulary other than the policy's.
LlamaConfig CriticModelConfig(const CriticConfig& c, const LlamaConfig& policy);

// The separate critic's initial decoder (float32): loaded from `model`, or drawn from `config` with
// init_seed. Returns a null module when the critic starts from the policy's weights.
LlamaForCausalLM LoadCriticModel(const CriticConfig& c, const LlamaConfig& critic_config);

}  // namespace llamarl
