#include "trainer/trainer_config.h"

#include "core/check.h"

namespace llamarl {

TrainerConfig TrainerConfig::FromJson(const Json& j, const std::string& path) {
  TrainerConfig c;
  ConfigReader r(j, path);
  r.Read("algorithm", &c.algorithm, {"grpo", "aipo", "tis", "decoupled_ppo", "rloo", "reinforce", "ppo", "gspo", "cispo", "sft"},
         "the loss Step() optimises");
  c.grpo = GrpoConfig::FromJson(r.Raw("grpo"), r.PathOf("grpo"));
  c.aipo = AipoConfig::FromJson(r.Raw("aipo"), r.PathOf("aipo"));
  c.tis = TruncatedIsConfig::FromJson(r.Raw("tis"), r.PathOf("tis"), 2.0);
  c.decoupled_ppo = TruncatedIsConfig::FromJson(r.Raw("decoupled_ppo"), r.PathOf("decoupled_ppo"), 0.0);
  c.ppo = PpoConfig::FromJson(r.Raw("ppo"), r.PathOf("ppo"));
  c.gspo = GspoConfig::FromJson(r.Raw("gspo"), r.PathOf("gspo"));
  c.cispo = CispoConfig::FromJson(r.Raw("cispo"), r.PathOf("cispo"));
  c.kl = KlConfig::FromJson(r.Raw("kl"), r.PathOf("kl"));
  r.Read("ppo_epochs", &c.ppo_epochs, Range::AtLeast(1), "passes over the batch per step");
  r.Read("num_minibatches", &c.num_minibatches, Range::AtLeast(1), "optimizer updates per pass over the batch");
  r.Read("temperature", &c.temperature, Range::Positive(), "the sampling temperature the log-probs are scored at");
  r.Read("entropy_coef", &c.entropy_coef, Range::AtLeast(0), "entropy bonus weight");
  r.Read("aggregation", &c.aggregation, {"token_mean", "seq_mean_token_mean", "seq_sum_constant"},
         "how per-token losses are normalised over the global batch");
  r.Read("norm_constant", &c.norm_constant, Range::Positive(), "seq_sum_constant's per-sample token constant");
  c.optimizer = AdamWConfig::FromJson(r.Raw("optimizer"), r.PathOf("optimizer"));
  c.schedule = LrScheduleConfig::FromJson(r.Raw("schedule"), r.PathOf("schedule"));
  r.Read("micro_batch_tokens", &c.micro_batch_tokens, Range::AtLeast(1), "input tokens per packed micro-batch");
  r.Read("max_grad_norm", &c.max_grad_norm, Range::AtLeast(0), "global gradient-norm clip; 0 = off");
  r.Read("sharding", &c.sharding, {"zero3", "replicated"}, "ZeRO-3 flat shards or the replicated baseline");
  r.Read("activation_checkpointing", &c.activation_checkpointing,
         "zero3: recompute each layer's forward in backward instead of keeping its activations");
  r.Read("compute_dtype", &c.compute_dtype, {"float32", "bfloat16"}, "forward/backward dtype");
  int64_t seed = 0;
  r.Read("seed", &seed, Range::AtLeast(0), "seed of the trainer's random state");
  c.seed = uint64_t(seed);
  r.Read("logprob_token_chunk", &c.logprob_token_chunk, Range::AtLeast(1), "TokenLogprobs token tile");
  r.Read("logprob_vocab_chunk", &c.logprob_vocab_chunk, Range::AtLeast(1), "TokenLogprobs vocab tile");
  // After optimizer and max_grad_norm: the critic inherits them.
  c.critic = CriticConfig::FromJson(r.Raw("critic"), r.PathOf("critic"), r.Raw("optimizer"), c.max_grad_norm);
  r.Finish();
  LLAMARL_CHECK(!c.critic.Separate() || c.algorithm == "ppo", path, ".critic.mode is ",
                "'separate' but ", path, ".algorithm is '", c.algorithm, "'; only ppo trains a critic: remove ", path,
                ".critic or set ", path, ".algorithm to \"ppo\"");
  if (c.algorithm == "gspo") {
    LLAMARL_CHECK(c.aggregation == "seq_mean_token_mean", "trainer.aggregation is '", c.aggregation,
                  "' but algorithm gspo optimises the mean over sequences of the sequence loss; set ",
                  "trainer.aggregation to \"seq_mean_token_mean\"");
  }
  return c;
}

Json TrainerConfig::ToJson() const {
  auto clip = [](const ClipConfig& c) { return Json{{"eps_low", c.eps_low}, {"eps_high", c.eps_high}}; };
  Json grpo_json = clip(grpo.clip);
  grpo_json["normalize_std"] = grpo.normalize_std;
  grpo_json["std_eps"] = grpo.std_eps;
  return Json{
      {"algorithm", algorithm},
      {"grpo", grpo_json},
      {"aipo", {{"rho", aipo.rho}}},
      {"tis", {{"cap", tis.cap}}},
      {"decoupled_ppo", {{"cap", decoupled_ppo.cap}}},
      {"ppo",
       {{"gamma", ppo.gamma}, {"lambda", ppo.lambda}, {"value_clip", ppo.value_clip},
        {"value_coef", ppo.value_coef}, {"whiten_advantages", ppo.whiten_advantages}}},
      {"critic", critic.ToJson()},
      {"gspo", clip(gspo.clip)},
      {"cispo", clip(cispo.clip)},
      {"ppo_epochs", ppo_epochs},
      {"num_minibatches", num_minibatches},
      {"kl", {{"coef", kl.coef}, {"estimator", kl.estimator}, {"mode", kl.mode}, {"reference_dtype", kl.reference_dtype}}},
      {"temperature", temperature},
      {"entropy_coef", entropy_coef},
      {"aggregation", aggregation},
      {"norm_constant", norm_constant},
      {"optimizer",
       {{"lr", optimizer.lr}, {"betas", {optimizer.beta1, optimizer.beta2}}, {"eps", optimizer.eps},
        {"weight_decay", optimizer.weight_decay}}},
      {"schedule",
       {{"warmup_steps", schedule.warmup_steps}, {"kind", schedule.kind}, {"total_steps", schedule.total_steps},
        {"min_lr_ratio", schedule.min_lr_ratio}}},
      {"micro_batch_tokens", micro_batch_tokens},
      {"max_grad_norm", max_grad_norm},
      {"sharding", sharding},
      {"activation_checkpointing", activation_checkpointing},
      {"compute_dtype", compute_dtype},
      {"seed", seed},
      {"logprob_token_chunk", logprob_token_chunk},
      {"logprob_vocab_chunk", logprob_vocab_chunk}};
}

}  // namespace llamarl
