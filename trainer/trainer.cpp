#include "trainer/trainer.h"

#include "core/check.h"
#include "core/communicator.h"
#include "model/attention.h"
#include "model/llama_weights.h"
#include "model/shard_layout.h"
#include "trainer/adamw.h"
#include "trainer/critic.h"
#include "trainer/flat_params.h"
#include "trainer/host_offload.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <cmath>

namespace llamarl {

nlohmann::json TrainStepMetrics::ToJson() const {
  return nlohmann::json{{"loss", loss},
                        {"kl", kl},
                        {"entropy", entropy},
                        {"grad_norm", grad_norm},
                        {"lr", lr},
                        {"iw_mean", iw_mean},
                        {"iw_max", iw_max},
                        {"iw_truncated_fraction", iw_truncated_fraction},
                        {"iw_ess", iw_ess},
                        {"ratio_mean", ratio_mean},
                        {"ratio_min", ratio_min},
                        {"ratio_max", ratio_max},
                        {"clip_frac_low", clip_frac_low},
                        {"clip_frac_high", clip_frac_high},
                        {"approx_kl", approx_kl},
                        {"updates", updates},
                        {"updates_applied", updates_applied},
                        {"value_loss", value_loss},
                        {"value_clip_frac", value_clip_frac},
                        {"explained_variance", explained_variance},
                        {"critic_grad_norm", critic_grad_norm},
                        {"critic_lr", critic_lr},
                        {"tokens", tokens},
                        {"samples", samples},
                        {"skipped", skipped},
                        {"skipped_steps", skipped_steps}};
}

namespace {

at::ScalarType ComputeDtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  LLAMARL_CHECK(name == "bfloat16", "trainer.compute_dtype must be 'float32' or 'bfloat16', got '", name, "'");
  return at::kBFloat16;
}

void CheckAlgorithm(const std::string& algorithm) {
  static const char* kKnown[] = {"grpo", "aipo", "tis", "decoupled_ppo", "rloo", "reinforce", "ppo", "gspo", "cispo", "sft"};
  for (const char* k : kKnown)
    if (algorithm == k) return;
  LLAMARL_FAIL("trainer.algorithm: unknown '", algorithm,
               "'; known: grpo, aipo, tis, decoupled_ppo, rloo, reinforce, ppo, gspo, cispo, sft");
}

}  // namespace

Trainer::Trainer(Communicator& dp, const LlamaConfig& config, LlamaForCausalLMImpl& model, TrainerConfig cfg,
                 int64_t version)
    : Trainer(dp, config, LlamaWeightSource::FromModel(model), std::move(cfg), version, /*value_only=*/false) {}

Trainer::Trainer(Communicator& dp, const LlamaConfig& config, const LlamaWeightSource& weights, TrainerConfig cfg,
                 int64_t version)
    : Trainer(dp, config, weights, std::move(cfg), version, /*value_only=*/false) {}

Trainer::Trainer(Communicator& dp, const LlamaConfig& config, const LlamaWeightSource& weights, TrainerConfig cfg,
                 int64_t version, bool value_only)
    : dp_(dp),
      model_config_(config),
      cfg_(std::move(cfg)),
      version_(version),
      value_only_(value_only),
      offload_(std::make_unique<HostOffload>()) {
  CheckAlgorithm(cfg_.algorithm);
  LLAMARL_CHECK(cfg_.sharding == "zero3" || cfg_.sharding == "replicated",
                "trainer.sharding must be 'zero3' or 'replicated', got '", cfg_.sharding, "'");
  zero3_ = cfg_.sharding == "zero3";
  LLAMARL_CHECK(cfg_.sampled_vocab_size >= 0 && cfg_.sampled_vocab_size <= config.vocab_size,
                "TrainerConfig::sampled_vocab_size must be in [0, vocab_size ", config.vocab_size, "] (0 = vocab_size), got ",
                cfg_.sampled_vocab_size);
  const at::ScalarType compute = ComputeDtype(cfg_.compute_dtype);
  specs_ = LlamaParamSpecs(model_config_);
  CheckWeightsMatch(weights, specs_);  // on every rank, before any rank reads its range
  for (const ParamSpec& spec : specs_) total_numel_ += spec.Numel();
  bounds_ = EvenSplit(total_numel_, dp_.Size());
  // zero3: this rank's range only; replicated: everything (FlatShard() is still the ZeRO range).
  const int64_t lo = zero3_ ? ShardBegin() : 0, hi = zero3_ ? ShardEnd() : total_numel_;
  master_ = LoadFlatRange(weights, specs_, lo, hi, at::kFloat, cfg_.device);
  shard_ = zero3_ ? master_ : master_.narrow(0, ShardBegin(), ShardEnd() - ShardBegin());
  adam_ = std::make_unique<FlatAdamW>(cfg_.optimizer, master_.numel(), master_.options());
  work_ = LlamaForCausalLM(model_config_, at::TensorOptions().dtype(compute).device(cfg_.device));
  for (auto& p : work_->parameters()) p.set_requires_grad(true);
  if (cfg_.kl.coef > 0) {
    // Stored like the master (the same range) in kl.reference_dtype, run in the compute dtype, its
    // layers gathered one at a time like the policy's (over a one-rank group under replicated).
    const at::ScalarType stored = cfg_.kl.reference_dtype == "float32" ? at::kFloat : at::kBFloat16;
    reference_shard_ = LoadFlatRange(weights, specs_, lo, hi, stored, cfg_.device);
    reference_ = LlamaForCausalLM(model_config_, at::TensorOptions().dtype(compute).device(cfg_.device));
    for (auto& p : reference_->parameters()) p.set_requires_grad(false);
    if (!zero3_) {
      reference_comm_ = CreateCommunicator("local");
      reference_bounds_ = {0, total_numel_};
    }
    reference_groups_ = BuildGroups(*reference_, zero3_ ? &dp_ : reference_comm_.get(),
                                    zero3_ ? &bounds_ : &reference_bounds_, &reference_shard_, nullptr);
    LinkDecoderLayers(reference_groups_, /*checkpoint=*/true);  // frozen: never records a graph
    ReleaseParameters(*reference_);
  }
  const bool ppo = cfg_.algorithm == "ppo";
  if (value_only_ || (ppo && !cfg_.critic.Separate())) InitValueHead();
  if (ppo && cfg_.critic.Separate() && !value_only_) critic_ = BuildCritic(weights);
  if (zero3_) {
    groups_ = BuildGroups(*work_, &dp_, &bounds_, &shard_, &grad_);
    LinkDecoderLayers(groups_, cfg_.activation_checkpointing);
    ReleaseParameters(*work_);
  } else {
    BindParams(master_);
  }
}

void Trainer::CheckWeightsMatch(const LlamaWeightSource& weights, const std::vector<ParamSpec>& specs) {
  for (const ParamSpec& spec : specs) {
    const at::Tensor p = weights.Get(spec.name);  // a mapped tensor: no byte is read
    LLAMARL_CHECK(p.sizes().vec() == spec.shape, "the initial weights' '", spec.name, "' has shape ", p.sizes(),
                  " but the trainer's config implies ", at::IntArrayRef(spec.shape),
                  "; pass the config the weights were built from");
  }
}

std::vector<ShardedLayer> Trainer::BuildGroups(LlamaForCausalLMImpl& module, Communicator* comm,
                                               const std::vector<int64_t>* bounds, at::Tensor* shard,
                                               at::Tensor* grad_shard) {
  // Parameters of "model.layers.<i>." are contiguous in named_parameters() order; what precedes the
  // first layer (the embedding) and what follows the last (final norm, LM head) form the edge groups.
  std::vector<at::Tensor> params = module.parameters();
  auto layer_of = [](const std::string& name) -> int64_t {
    const std::string prefix = "model.layers.";
    if (name.rfind(prefix, 0) != 0) return -1;
    return std::stoll(name.substr(prefix.size()));
  };
  std::vector<ShardedLayer> groups;
  int64_t offset = 0, current = -2;
  for (size_t i = 0; i < specs_.size(); ++i) {
    int64_t layer = layer_of(specs_[i].name);
    // Group keys: -1 = before the first layer, i >= 0 = layer i, -3 = after the last layer.
    if (layer < 0) layer = (current == -2 || current == -1) ? -1 : -3;
    if (layer != current) {
      ShardedLayer g;
      g.comm = comm;
      g.layer = layer >= 0 ? &module.Layer(layer) : nullptr;
      g.begin = g.end = offset;
      g.bounds = bounds;
      g.shard = shard;
      g.grad_shard = grad_shard;
      groups.push_back(std::move(g));
      current = layer;
    }
    groups.back().params.push_back(params[i]);
    groups.back().shapes.push_back(specs_[i].shape);
    offset += specs_[i].Numel();
    groups.back().end = offset;
  }
  LLAMARL_ASSERT(groups.size() == size_t(module.NumLayers()) + 2 && !groups.front().layer &&
                            !groups.back().layer,
                 "expected embedding, ", module.NumLayers(), " layers, norm/head groups; got ", groups.size());
  return groups;
}

Trainer::~Trainer() = default;

std::unique_ptr<Trainer> Trainer::BuildCritic(const LlamaWeightSource& policy_weights) {
  const CriticConfig& c = cfg_.critic;
  const LlamaConfig config = CriticModelConfig(c, model_config_);
  LlamaForCausalLM own = LoadCriticModel(c, config);
  TrainerConfig critic_cfg = cfg_;
  critic_cfg.optimizer = c.optimizer;
  critic_cfg.max_grad_norm = c.max_grad_norm;
  critic_cfg.kl = KlConfig();  // coef 0: no reference policy
  critic_cfg.entropy_coef = 0;
  // The private constructor: std::make_unique cannot reach it.
  return std::unique_ptr<Trainer>(
      new Trainer(dp_, config, own ? LlamaWeightSource::FromModel(*own) : policy_weights, std::move(critic_cfg), 0,
                  /*value_only=*/true));
}

int64_t Trainer::StepCount() const { return adam_->step(); }
int64_t Trainer::ShardBegin() const { return bounds_[size_t(dp_.Rank())]; }
int64_t Trainer::ShardEnd() const { return bounds_[size_t(dp_.Rank()) + 1]; }

void Trainer::InitValueHead() {
  const int64_t d = model_config_.hidden_size;
  // A small random head (std 1/sqrt(D)) drawn from the trainer's seed: identical on every rank, so
  // the replicated head needs no broadcast.
  at::Generator gen = at::detail::createCPUGenerator(cfg_.seed);
  at::Tensor head = at::zeros({d + 1}, at::kFloat);  // drawn on the host: the same numbers on any device
  head.narrow(0, 0, d).normal_(0.0, 1.0 / std::sqrt(double(d)), gen);
  value_master_ = head.to(cfg_.device);
  value_adam_ = std::make_unique<FlatAdamW>(cfg_.optimizer, d + 1, value_master_.options());
}

at::Tensor Trainer::GatherFull() {
  if (!zero3_) return master_;
  at::Tensor full = at::empty({total_numel_}, shard_.options());
  std::vector<at::Tensor> outputs;
  for (int r = 0; r < dp_.Size(); ++r)
    outputs.push_back(full.narrow(0, bounds_[size_t(r)], bounds_[size_t(r) + 1] - bounds_[size_t(r)]));
  dp_.AllGather(outputs, shard_)->Wait();
  return full;
}

void Trainer::BindParams(const at::Tensor& full) {
  // float32 parameters become views of `full` (no copy); bfloat16 ones get a converted copy.
  AssignFlat(*work_, specs_, full, /*bind=*/true);
}

void Trainer::GatherParams() {
  if (zero3_) {
    GatherLayer(groups_.front());
    GatherLayer(groups_.back());
  } else if (work_->parameters()[0].scalar_type() != at::kFloat) {
    BindParams(master_);
  }
}

void Trainer::ReleaseParams() {
  if (!zero3_) return;
  ReleaseLayer(groups_.front());
  ReleaseLayer(groups_.back());
}

at::Tensor Trainer::Hidden(const LlamaInputs& inputs) {
  if (!zero3_) return work_->Hidden(inputs);
  return HiddenThrough(*work_, groups_, inputs);
}

at::Tensor Trainer::HiddenThrough(LlamaForCausalLMImpl& module, std::vector<ShardedLayer>& groups,
                                  const LlamaInputs& inputs) {
  // LlamaForCausalLMImpl::Hidden with each decoder layer run through ShardedLayerForward.
  at::Tensor h = module.Embed(inputs.input_ids);
  const int64_t batch = inputs.input_ids.size(0), tokens = inputs.input_ids.size(1);
  at::Tensor positions = PackedPositionIds(inputs.segment_ids);
  AttentionLayout layout = BuildAttentionLayout({batch, tokens, at::Tensor(), inputs.segment_ids}, h.device());
  RopePositions rope = module.Rope(positions);
  for (size_t i = 1; i + 1 < groups.size(); ++i) h = ShardedLayerForward(&groups[i], h, rope, layout);
  return module.FinalNorm(h);
}

at::Tensor Trainer::FlattenGrads() {
  std::vector<at::Tensor> parts;
  for (auto& p : work_->parameters()) {
    at::Tensor g = p.grad();
    parts.push_back(g.defined() ? g.reshape({-1}).to(at::kFloat) : at::zeros({p.numel()}, p.options().dtype(at::kFloat)));
    p.mutable_grad() = at::Tensor();
  }
  return at::cat(parts);
}

double Trainer::ReduceGrads() {
  double sq = 0;
  if (zero3_) {
    // The layers' gradients are already in grad_ (reduce-scattered during backward); the edges' now.
    for (ShardedLayer* g : {&groups_.front(), &groups_.back()}) {
      std::vector<at::Tensor> grads;
      for (at::Tensor& p : g->params) {
        grads.push_back(p.grad());
        p.mutable_grad() = at::Tensor();
      }
      ReduceScatterLayerGrads(*g, grads);
    }
    at::Tensor local = SumOfSquares(grad_).reshape({1});
    dp_.AllReduce(local)->Wait();
    sq = local.item<double>();
  } else {
    grad_ = FlattenGrads();
    dp_.AllReduce(grad_)->Wait();
    sq = SumOfSquares(grad_).item<double>();
  }
  if (value_master_.defined()) {
    dp_.AllReduce(value_grad_)->Wait();
    sq += SumOfSquares(value_grad_).item<double>();
  }
  return std::sqrt(sq);
}

void Trainer::ApplyUpdate(double lr, double clip_coef) {
  if (clip_coef < 1.0) grad_.mul_(clip_coef);
  adam_->Step(master_, grad_, lr);
  if (value_master_.defined()) {
    if (clip_coef < 1.0) value_grad_.mul_(clip_coef);
    value_adam_->Step(value_master_, value_grad_, lr);
  }
  grad_ = at::Tensor();
  value_grad_ = at::Tensor();
}

void Trainer::GatherInto(LlamaForCausalLMImpl& model) {
  CheckResident("GatherInto");
  at::Tensor full = GatherFull();
  AssignFlat(model, specs_, full, /*bind=*/false);
}

TrainStepMetrics Trainer::Step(const TrainBatch& local_batch) {
  CheckResident("Step");
  return RunStep(local_batch, cfg_.algorithm);
}

TrainStepMetrics Trainer::SftStep(const TrainBatch& local_batch) {
  CheckResident("SftStep");
  return RunStep(local_batch, "sft");
}

const at::Tensor& Trainer::FlatShard() const {
  CheckResident("FlatShard");
  return shard_;
}

void Trainer::CheckResident(const char* what) const {
  LLAMARL_CHECK(!offload_->offloaded(), "Trainer::", what, ": the trainer state (", offload_->HostBytes(),
                " bytes) is offloaded to host memory by OffloadState(); call RestoreState() first");
}

bool Trainer::StateOffloaded() const { return offload_->offloaded(); }

std::vector<at::Tensor> Trainer::OffloadableState() {
  std::vector<at::Tensor> state{master_, adam_->exp_avg(), adam_->exp_avg_sq()};
  for (const at::Tensor& t : {grad_, value_master_, value_grad_})
    if (t.defined()) state.push_back(t);
  if (value_adam_) state.insert(state.end(), {value_adam_->exp_avg(), value_adam_->exp_avg_sq()});
  if (reference_shard_.defined()) state.push_back(reference_shard_);
  return state;
}

int64_t Trainer::OffloadState() {
  LLAMARL_CHECK(!offload_->offloaded(), "Trainer::OffloadState: the state is already offloaded (",
                offload_->HostBytes(), " bytes); call RestoreState() before offloading again");
  grad_buffer_ = at::Tensor();  // scratch: freed before the copies, so it is not part of their peak
  offloaded_ = OffloadableState();
  offload_->Offload(offloaded_);
  // The working module's parameters are views (float32) or copies (bfloat16) of the replicated
  // master, and the replicated shard_ is a view of it: both would keep the master's storage alive.
  ReleaseParameters(*work_);
  if (!zero3_) shard_ = at::Tensor();
  return offload_->HostBytes() + (critic_ ? critic_->OffloadState() : 0);
}

int64_t Trainer::RestoreState() {
  LLAMARL_CHECK(offload_->offloaded(), "Trainer::RestoreState: the state is resident; nothing was offloaded ",
                "(call OffloadState() first)");
  const int64_t bytes = offload_->HostBytes() + (critic_ ? critic_->RestoreState() : 0);
  offload_->Restore(offloaded_);
  offloaded_.clear();
  if (!zero3_) {  // what the constructor set up, now over the restored storage
    shard_ = master_.narrow(0, ShardBegin(), ShardEnd() - ShardBegin());
    BindParams(master_);
  }
  return bytes;
}

int64_t Trainer::ResidentStateBytes() const {
  int64_t n = 0;
  auto add = [&n](const at::Tensor& t) { n += t.defined() ? int64_t(t.nbytes()) : 0; };
  for (const at::Tensor& t : {master_, adam_->exp_avg(), adam_->exp_avg_sq(), grad_, value_master_, value_grad_})
    add(t);
  if (value_adam_) {
    add(value_adam_->exp_avg());
    add(value_adam_->exp_avg_sq());
  }
  add(reference_shard_);
  for (const at::Tensor& p : work_->parameters())
    if (!master_.defined() || master_.numel() == 0 || !p.is_alias_of(master_)) add(p);
  return n + (critic_ ? critic_->ResidentStateBytes() : 0);
}

}  // namespace llamarl
