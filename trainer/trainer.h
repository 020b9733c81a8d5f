// The trainer: turns scored rollouts into policy updates, on one rank or sharded ZeRO-3 style across
// the data-parallel group `dp`.
//
// State per rank: a flat float32 shard of the master parameters (all parameters in named_parameters()
// order concatenated and split with model/shard_layout.h's EvenSplit, i.e. ZeroFlatLayout(LlamaParamSpecs(
// config), dp.Size(), kFloat32)), the matching gradient shard and AdamW state. One Step:
//   1. all-gather the embedding, final norm and LM head (the edges) for the step;
//   2. all-gather rewards and group ids (groups may straddle ranks) and the token/sample counts,
//      compute advantages over the global batch; when a loss needs them, one no-grad pass over the
//      batch records ppo's old values, the KL folded into rewards and the proximal log-probs (the
//      policy at the start of the step, for tis/decoupled_ppo with more than one update);
//   3. ppo_epochs passes, each over num_minibatches minibatches (this rank's samples split in order);
//      per minibatch, one optimizer update:
//      a. per packed micro-batch (every rank runs as many as the busiest, padding with empty ones):
//         forward with each decoder layer's parameters all-gathered just before it and freed after it
//         (trainer/zero3_layers.h), token log-probs from the final hidden states with the tiled
//         kernels::TokenLogprobs (never a [T, V] log-softmax), loss normalised over the minibatch,
//         backward, in which each layer is gathered again, recomputed, and its gradient
//         reduce-scattered into the shards;
//      b. reduce-scatter the edges' gradients, global grad norm, skip on a non-finite loss or gradient
//         (counted, weights and optimizer state untouched), clip, AdamW on the shard, free the edges
//         (gathered again for the next minibatch);
//   4. ppo with a separate critic (trainer/critic.h): the critic's values for GAE come from its own
//      no-grad pass in step 2, and after the policy's updates the critic runs its own ppo_epochs x
//      num_minibatches updates of the clipped value loss toward the step's returns, with the same
//      gathers, reduce-scatters and AdamW over its own flat shards (a value-only Trainer);
//   5. bump the policy version once (unless every update was skipped).
// Under "replicated" every rank keeps the full parameters and optimizer state, runs its own
// micro-batches with no communication and all-reduces the full gradient once per update (the DDP
// baseline); FlatShard() still returns the ZeRO range so weight sync can use one plan for both.
//
// Ordering: all methods marked collective must be called by every rank of `dp` in the same order.
// PolicyVersion() is bumped at the end of Step()/SftStep(), after the last optimizer update: weights read
// through FlatShard() after Step() returns are those of the new version. A weight push reads
// FlatShard(), so it must happen while the state is resident (between RestoreState() and
// OffloadState()). Not thread-safe.
#pragma once

#include "trainer/train_batch.h"
#include "trainer/trainer_config.h"

#include "model/llama.h"
#include "model/llama_weights.h"
#include "model/shard_layout.h"
#include "trainer/zero3_layers.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace llamarl {

class Communicator;
class FlatAdamW;
class HostOffload;
struct PackedMicroBatch;
namespace trainer_detail {
struct StepContext;
struct MicroBatchOutput;
struct StepAccumulators;
struct ScoreRequest;
struct NoGradScores;
struct UpdateResult;
}  // namespace trainer_detail

// One Step()'s figures. loss, grad_norm and value_loss are means over the step's optimizer updates
// (TrainerConfig::UpdatesPerStep), lr that of its first update; kl and entropy are token means over
// every update; the ratio figures compare the policy with the anchor of its ratio (RatioStats).
struct TrainStepMetrics {
  double loss = 0, kl = 0, entropy = 0, grad_norm = 0, lr = 0;
  double iw_mean = 0, iw_max = 0, iw_truncated_fraction = 0, iw_ess = 0;
  double ratio_mean = 0, ratio_min = 0, ratio_max = 0;  // r = pi / anchor over the step's tokens
  double clip_frac_low = 0, clip_frac_high = 0;         // fraction of tokens whose clip binds below / above
  double approx_kl = 0;                                 // KL(anchor || pi), mean of (r - 1) - log r
  double value_loss = 0;      // ppo only: the clipped value loss (mean over the critic's updates)
  double value_clip_frac = 0;  // ppo: fraction of tokens whose clipped value term is the larger one
  double explained_variance = 0;  // ppo: 1 - Var(R - V_old) / Var(R) over the step's tokens (1 = perfect)
  double critic_grad_norm = 0, critic_lr = 0;  // separate critic: its own mean grad norm and first lr
  int64_t tokens = 0;         // response tokens trained on, over all ranks
  int64_t samples = 0;        // samples over all ranks
  int64_t updates = 0;        // optimizer updates run (ppo_epochs * num_minibatches; 1 for sft)
  int64_t updates_applied = 0;  // of which finite (applied)
  bool skipped = false;       // every update had a non-finite loss or gradient: the weights did not change
  int64_t skipped_steps = 0;  // running count of skipped updates
  nlohmann::json ToJson() const;
};

class Trainer {
 public:
  // Collective over `dp` (the trainer ranks). `model` holds the full initial weights on every trainer
  // rank (each keeps only its flat shard under zero3); it is not referenced after construction.
  // Policy version starts at `version`.
  Trainer(Communicator& dp, const LlamaConfig& config, LlamaForCausalLMImpl& model, TrainerConfig cfg,
          int64_t version = 0);
  // Collective over `dp`. Loading by shard: each rank reads only its range of the flat vector from
  // `weights` (model/llama_weights.h), converted to f32 straight from the mapped bytes (the KL
  // reference: the same range in kl.reference_dtype). No rank builds the full model, except that
  // under "replicated" every rank's range is the whole vector. `weights` is not referenced after
  // construction.
  Trainer(Communicator& dp, const LlamaConfig& config, const LlamaWeightSource& weights, TrainerConfig cfg,
          int64_t version = 0);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One step with the configured algorithm (UpdatesPerStep() optimizer updates); collective; bumps
  // PolicyVersion() unless every update was skipped.
  TrainStepMetrics Step(const TrainBatch& local_batch);
  // One optimizer step of cross-entropy on response tokens (warm start); bumps the version too.
  TrainStepMetrics SftStep(const TrainBatch& local_batch);

  // Collective: the current policy's log-prob of every response token of the local samples (at the
  // scoring temperature, as Step computes them; no gradient, no update). The controller rescores
  // rollouts that outlived the staleness bound with it (async.on_stale "recompute").
  std::vector<std::vector<float>> ScoreLogprobs(const TrainBatch& local_batch);

  // The separate critic (trainer.critic.mode "separate" with algorithm ppo), null otherwise: a
  // value-only Trainer over the same `dp` with its own flat shards (FlatShard(), GatherInto() of its
  // decoder) and optimizer. Stepped, checkpointed and offloaded by this Trainer; call nothing that
  // changes it.
  Trainer* critic() const { return critic_.get(); }

  int64_t PolicyVersion() const { return version_; }
  int64_t StepCount() const;
  const TrainerConfig& config() const { return cfg_; }
  const LlamaConfig& model_config() const { return model_config_; }

  // This rank's ZeRO flat shard of the master parameters (float32). Throws while offloaded.
  const at::Tensor& FlatShard() const;
  // [begin, end) of FlatShard() in the flattened parameter vector.
  int64_t ShardBegin() const;
  int64_t ShardEnd() const;

  // Collective: full parameters assembled into `model` (HF names, converted to its dtype).
  void GatherInto(LlamaForCausalLMImpl& model);
  // Collective; atomic (a temporary directory renamed into place); `extra` = the controller's state
  // (dataset cursor ...), returned by LoadCheckpoint. Overwrites an existing checkpoint at `dir`.
  void SaveCheckpoint(const std::string& dir, const nlohmann::json& extra = {});
  // Collective; the checkpoint may come from a different number of ranks (flat shards re-split).
  nlohmann::json LoadCheckpoint(const std::string& dir);
  // Collective; rank 0 writes an HF checkpoint (config.json, safetensors, generation_config.json)
  // and copies the tokenizer files found in `tokenizer_dir` ("" = none).
  void ExportHf(const std::string& dir, const std::string& tokenizer_dir);

  // Colocated placement: the trainer's state is idle while its rank generates. OffloadState()
  // moves it to host memory with HostOffload (trainer/host_offload.h: the tensors are emptied in
  // place, pinned host buffers for CUDA tensors): the float32 master parameters (this rank's flat
  // shard under zero3, the full vector under replicated), the AdamW moments, any gradient buffer
  // left defined (none between two steps), the ppo value head and its moments, the frozen KL
  // reference policy, and the separate critic's own state. The working module's parameters are freed instead of copied: they are
  // rebuilt from the master (under zero3 they are freed between steps anyway). Returns the bytes
  // copied to host. RestoreState() copies them back bit-exactly and returns the same count; the
  // weights after further steps are then bit-identical to those of a trainer that never offloaded.
  // Not collective. While offloaded, Step, SftStep, FlatShard, GatherInto, SaveCheckpoint,
  // LoadCheckpoint and ExportHf throw, naming RestoreState; offloading twice or restoring a
  // resident trainer throws too.
  int64_t OffloadState();
  int64_t RestoreState();
  bool StateOffloaded() const;
  // Bytes of that state (working module included) held in device memory now: 0 while offloaded.
  int64_t ResidentStateBytes() const;

 private:
  using StepContext = trainer_detail::StepContext;
  // The separate critic: value-only (its loss is the clipped value loss alone, no log-probs).
  Trainer(Communicator& dp, const LlamaConfig& config, const LlamaWeightSource& weights, TrainerConfig cfg,
          int64_t version, bool value_only);
  std::unique_ptr<Trainer> BuildCritic(const LlamaWeightSource& policy_weights);
  TrainStepMetrics RunStep(const TrainBatch& batch, const std::string& algorithm);
  // Collective: ppo_epochs x num_minibatches updates over ctx (epochs and parts 1 for sft).
  std::vector<trainer_detail::UpdateResult> RunUpdates(const std::vector<TrainSample>& samples, StepContext& ctx,
                                                       trainer_detail::StepAccumulators& acc);
  // Collective, on the critic: V_t of every response token of the local samples (no gradient).
  std::vector<std::vector<float>> ScoreValues(const std::vector<TrainSample>& samples);
  // Collective, on the critic: its updates toward the policy step's returns and old values.
  TrainStepMetrics FitValues(const std::vector<TrainSample>& samples, const StepContext& policy_ctx);
  // Collective: advantages, ppo's values and GAE, the KL folded into rewards and the proximal
  // log-probs over the whole batch (one no-grad pass when any is needed), and the batch's counts.
  void PrepareStep(const TrainBatch& batch, StepContext& ctx);
  void PreparePpo(const std::vector<TrainSample>& samples, const std::vector<std::vector<float>>& kl_tokens,
                  StepContext& ctx);  // collective (whitening)
  // Collective: packs `subset` (minus loss-masked samples) into ctx.micro and sets its aggregation weights.
  void SelectMinibatch(const std::vector<TrainSample>& samples, const std::vector<int64_t>& subset, StepContext& ctx);
  void PadForCollectives(std::vector<PackedMicroBatch>& micro);  // collective under zero3
  bool NeedsProximalPass(const StepContext& ctx, const std::vector<TrainSample>& samples) const;  // collective
  trainer_detail::NoGradScores ScoreNoGrad(const StepContext& ctx, const std::vector<TrainSample>& samples,
                                           const trainer_detail::ScoreRequest& want);
  // Collective: forward/backward over ctx.micro, gradient reduction and (when finite) one optimizer update.
  trainer_detail::UpdateResult RunUpdate(StepContext& ctx, trainer_detail::StepAccumulators& acc);
  TrainStepMetrics ReduceStepMetrics(const trainer_detail::StepAccumulators& acc,
                                     const std::vector<trainer_detail::UpdateResult>& updates);  // collective
  trainer_detail::MicroBatchOutput ForwardMicroBatch(const trainer_detail::StepContext& ctx, const PackedMicroBatch& mb,
                                                     const at::Tensor& value_param);
  at::Tensor ReferenceLogprobs(const trainer_detail::StepContext& ctx, const PackedMicroBatch& mb);
  int64_t SampledVocab() const;  // cfg_.sampled_vocab_size, 0 resolved to the model's vocab_size
  // The LM head's first SampledVocab() rows: what log-probs and entropy are taken over.
  at::Tensor SampledHead(LlamaForCausalLMImpl& model) const;
  // The clipped value loss per token (unweighted); adds its sum and clip count to `acc`.
  at::Tensor ValueLoss(const StepContext& ctx, const PackedMicroBatch& mb, const at::Tensor& values,
                       trainer_detail::StepAccumulators& acc);
  // Unweighted per-token loss of the step's algorithm (+ KL term, - entropy bonus, + value loss);
  // adds the micro-batch's diagnostics to `acc`.
  at::Tensor TokenLoss(const StepContext& ctx, const PackedMicroBatch& mb, const trainer_detail::MicroBatchOutput& out,
                       trainer_detail::StepAccumulators& acc);
  at::Tensor PolicyTokenLoss(const StepContext& ctx, const PackedMicroBatch& mb, const at::Tensor& logp,
                             trainer_detail::StepAccumulators& acc);
  void InitValueHead();
  at::Tensor GatherFull();               // collective under zero3: the full f32 parameter vector
  void BindParams(const at::Tensor& full);
  void GatherParams();                   // collective under zero3
  void ReleaseParams();
  at::Tensor FlattenGrads();             // the working module's gradients as one f32 vector; clears them
  double ReduceGrads();                  // collective; returns the global gradient norm
  at::Tensor Hidden(const LlamaInputs& inputs);  // final-norm hidden states (per-layer gathers under zero3)
  // [embedding, layer 0 .. L-1, final norm + LM head] of `module` as gatherable groups over `shard`.
  std::vector<ShardedLayer> BuildGroups(LlamaForCausalLMImpl& module, Communicator* comm,
                                        const std::vector<int64_t>* bounds, at::Tensor* shard, at::Tensor* grad_shard);
  static void CheckWeightsMatch(const LlamaWeightSource& weights, const std::vector<ParamSpec>& specs);
  // Final-norm hidden states of `module` with each decoder layer gathered from `groups` (collective
  // over the groups' communicator).
  at::Tensor HiddenThrough(LlamaForCausalLMImpl& module, std::vector<ShardedLayer>& groups, const LlamaInputs& inputs);
  void ApplyUpdate(double lr, double clip_coef);
  nlohmann::json LoadCheckpointShards(const std::string& dir);  // this rank's part of LoadCheckpoint
  // Throws, naming `what` and RestoreState, while the state is offloaded.
  void CheckResident(const char* what) const;
  std::vector<at::Tensor> OffloadableState();  // what OffloadState() copies to host

  Communicator& dp_;
  LlamaConfig model_config_;
  TrainerConfig cfg_;
  int64_t version_ = 0;
  int64_t skipped_steps_ = 0;
  std::vector<ParamSpec> specs_;  // named_parameters() order: the flat vector's layout
  std::vector<int64_t> bounds_;  // EvenSplit of the flat parameter vector over dp ranks
  int64_t total_numel_ = 0;
  bool zero3_ = true;
  bool value_only_ = false;      // this Trainer is a separate critic
  at::Tensor master_;            // replicated: full f32 parameters; zero3: == shard_
  at::Tensor shard_;             // this rank's flat f32 shard (a view of master_ under replicated)
  at::Tensor grad_;              // gradient of master_ (same extent)
  // zero3: the storage grad_ takes in each update, kept between updates so that the shard-sized
  // block is not unmapped and faulted in again every step (at 0.5B on one trainer rank, 2 GB of
  // first-touch faults per update). Scratch, not state: ResidentStateBytes() leaves it out (the
  // memory plan counts it with the gradients) and OffloadState() frees it.
  at::Tensor grad_buffer_;
  // zero3: [embedding, layer 0 .. layer L-1, final norm + LM head] as gatherable groups.
  std::vector<ShardedLayer> groups_;
  std::unique_ptr<FlatAdamW> adam_;
  LlamaForCausalLM work_{nullptr};       // the working module, compute dtype, full parameters
  // Frozen reference policy (kl.coef > 0): stored as the master's range of the flat vector in
  // kl.reference_dtype, gathered layer by layer into reference_ (compute dtype, released between uses).
  LlamaForCausalLM reference_{nullptr};
  at::Tensor reference_shard_;
  std::vector<ShardedLayer> reference_groups_;
  std::unique_ptr<Communicator> reference_comm_;  // replicated: a one-rank group (the range is whole)
  std::vector<int64_t> reference_bounds_;         // replicated: {0, total}
  std::unique_ptr<FlatAdamW> value_adam_;
  at::Tensor value_master_;               // value head [w (D), b (1)] f32, replicated (shared mode, or the critic)
  std::unique_ptr<Trainer> critic_;       // separate critic (ppo)
  at::Tensor value_grad_;
  std::unique_ptr<HostOffload> offload_;
  std::vector<at::Tensor> offloaded_;  // the tensors in offload_, in its order (same TensorImpls)
};

}  // namespace llamarl
