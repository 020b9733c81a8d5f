#include "trainer/critic.h"

#include "core/check.h"
#include "model/llama_checkpoint.h"

#include <filesystem>

namespace llamarl {

CriticConfig CriticConfig::FromJson(const Json& j, const std::string& path, const Json& trainer_optimizer,
                                    double trainer_max_grad_norm) {
  CriticConfig c;
  c.max_grad_norm = trainer_max_grad_norm;
  ConfigReader r(j, path);
  r.Read("mode", &c.mode, {"shared", "separate"}, "value head on the policy trunk, or a critic model of its own");
  r.Read("model", &c.model, {}, "the separate critic's initial checkpoint directory; \"\" = the policy's weights");
  const Json& config = r.Raw("config");
  LLAMARL_CHECK(config.is_null() || config.is_object(), r.PathOf("config"),
                ": expected an object of config.json fields (e.g. {\"num_hidden_layers\": 1}), got ", DescribeJson(config));
  if (config.is_object()) c.config = config;
  r.Read("init_seed", &c.init_seed, Range::AtLeast(0), "seed of the random init under config");
  Json optimizer = trainer_optimizer.is_object() ? trainer_optimizer : Json::object();
  const Json& own = r.Raw("optimizer");
  if (!own.is_null()) {
    LLAMARL_CHECK(own.is_object(), r.PathOf("optimizer"), ": expected an object like {\"lr\": 1e-5}, got ",
                  DescribeJson(own));
    optimizer.merge_patch(own);
  }
  c.optimizer = AdamWConfig::FromJson(optimizer, r.PathOf("optimizer"));
  r.Read("max_grad_norm", &c.max_grad_norm, Range::AtLeast(0), "the critic's gradient-norm clip; 0 = off");
  r.Finish();
  LLAMARL_CHECK(c.model.empty() || c.config.empty(), path, ".model ('", c.model, "') and ", path,
                ".config both set: a critic loaded from a checkpoint takes that checkpoint's config; drop one");
  if (!c.model.empty()) {
    LLAMARL_CHECK(std::filesystem::exists(std::filesystem::path(c.model) / "config.json"), path, ".model: '", c.model,
                  "' holds no config.json; pass an HF checkpoint directory (llamarl init --model tiny --out DIR ",
                  "writes one), or \"\" to start the critic from the policy's weights");
  }
  LLAMARL_CHECK(c.Separate() || (c.model.empty() && c.config.empty()), path, ".model and ", path,
                ".config describe a separate critic, but ", path, ".mode is '", c.mode, "'; set ", path,
                ".mode to \"separate\"");
  return c;
}

Json CriticConfig::ToJson() const {
  return Json{{"mode", mode},
              {"model", model},
              {"config", config},
              {"init_seed", init_seed},
              {"optimizer",
               {{"lr", optimizer.lr},
                {"betas", {optimizer.beta1, optimizer.beta2}},
                {"eps", optimizer.eps},
                {"weight_decay", optimizer.weight_decay}}},
              {"max_grad_norm", max_grad_norm}};
}

LlamaConfig CriticModelConfig(const CriticConfig& c, const LlamaConfig& policy) {
  LlamaConfig out = policy;
  if (!c.model.empty()) {
    out = LlamaConfig::FromFile(c.model);
  } else if (!c.config.empty()) {
    Json merged = policy.ToJson();
    // A changed width or head count changes the default head_dim unless the override gives one.
    if ((c.config.contains("hidden_size") || c.config.contains("num_attention_heads")) && !c.config.contains("head_dim"))
      merged.erase("head_dim");
    merged.merge_patch(c.config);
    out = LlamaConfig::FromJson(merged, "trainer.critic.config");
  }
  LLAMARL_CHECK(out.vocab_size == policy.vocab_size, "trainer.critic: the critic's vocab_size (", out.vocab_size,
                ") differs from the policy's (", policy.vocab_size, "); the critic reads the policy's token ids, so ",
                c.model.empty() ? "leave vocab_size out of trainer.critic.config" : "pick a checkpoint with that tokenizer");
  return out;
}

LlamaForCausalLM LoadCriticModel(const CriticConfig& c, const LlamaConfig& critic_config) {
  if (!c.model.empty()) return LoadLlama(c.model);
  if (c.config.empty()) return LlamaForCausalLM(nullptr);
  LlamaForCausalLM model(critic_config, at::TensorOptions().dtype(at::kFloat));
  InitLlamaWeights(*model, uint64_t(c.init_seed));
  return model;
}

}  // namespace llamarl
