#include "model/llama_weights.h"

#include "core/check.h"
#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <map>
#include <set>

namespace llamarl {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The config.json fields that set a parameter's shape, for error messages.
std::string ShapeOrigin(const std::string& name, const LlamaConfig& c) {
  auto field = [](const char* key, int64_t value) { return std::string(key) + " " + std::to_string(value); };
  const std::string d = field("hidden_size", c.hidden_size), v = field("vocab_size", c.vocab_size);
  const std::string e = field("head_dim", c.head_dim), i = field("intermediate_size", c.intermediate_size);
  const std::string q = field("num_attention_heads", c.num_attention_heads) + " x " + e;
  const std::string kv = field("num_key_value_heads", c.num_key_value_heads) + " x " + e;
  if (EndsWith(name, "embed_tokens.weight") || name == "lm_head.weight") return v + ", " + d;
  if (EndsWith(name, "q_proj.weight")) return q + ", " + d;
  if (EndsWith(name, "q_proj.bias")) return q;
  if (EndsWith(name, "k_proj.weight") || EndsWith(name, "v_proj.weight")) return kv + ", " + d;
  if (EndsWith(name, "k_proj.bias") || EndsWith(name, "v_proj.bias")) return kv;
  if (EndsWith(name, "o_proj.weight")) return d + ", " + q;
  if (EndsWith(name, "gate_proj.weight") || EndsWith(name, "up_proj.weight")) return i + ", " + d;
  if (EndsWith(name, "down_proj.weight")) return d + ", " + i;
  if (EndsWith(name, "q_norm.weight") || EndsWith(name, "k_norm.weight")) return e;
  return d;
}

std::string JoinNames(const std::vector<std::string>& names) {
  const size_t shown = std::min<size_t>(names.size(), 8);
  std::string out;
  for (size_t i = 0; i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += ", ... (" + std::to_string(names.size() - shown) + " more)";
  return out;
}

bool IgnorableExtra(const std::string& name, const LlamaConfig& config) {
  return (config.tie_word_embeddings && name == "lm_head.weight") || EndsWith(name, "rotary_emb.inv_freq");
}

// Every name, shape and dtype is checked before any byte is read, so a bad checkpoint fails fast.
void CheckCheckpointMatches(const std::string& dir, const SafetensorsCheckpoint& ckpt, LlamaForCausalLMImpl& model) {
  const LlamaConfig& config = model.config();
  std::vector<std::string> missing, unexpected;
  std::set<std::string> expected;
  for (const auto& p : model.named_parameters()) {
    expected.insert(p.key());
    if (!ckpt.Has(p.key())) missing.push_back(p.key());
  }
  for (const auto& name : ckpt.Names()) {
    if (!expected.count(name) && !IgnorableExtra(name, config)) unexpected.push_back(name);
  }
  LLAMARL_CHECK(missing.empty() && unexpected.empty(), dir, ": the weights do not match config.json (model_type ",
                config.model_type, ", ", config.num_hidden_layers, " layers, attention_bias ",
                config.attention_bias, ", tie_word_embeddings ", config.tie_word_embeddings, "): ",
                missing.empty() ? "" : "missing " + std::to_string(missing.size()) + " tensors: " + JoinNames(missing),
                missing.empty() || unexpected.empty() ? "" : "; ",
                unexpected.empty() ? "" : "unexpected " + std::to_string(unexpected.size()) + " tensors: " +
                                            JoinNames(unexpected));
  static const std::set<std::string> floating = {"F64", "F32", "BF16", "F16"};
  for (const auto& p : model.named_parameters()) {
    const std::vector<int64_t> shape = ckpt.Shape(p.key());
    LLAMARL_CHECK(p.value().sizes() == at::IntArrayRef(shape), p.key(), ": shape ", at::IntArrayRef(shape),
                  " in checkpoint, expected ", p.value().sizes(), " from config.json (",
                  ShapeOrigin(p.key(), config), ")");
    const std::string dtype = ckpt.Dtype(p.key());
    LLAMARL_CHECK(floating.count(dtype), p.key(), ": dtype ", dtype,
                  " in checkpoint cannot hold weights; expected F32, BF16, F16 or F64");
  }
}

}  // namespace

struct LlamaWeightSource::State {
  LlamaConfig config;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;  // set for a checkpoint source, else:
  std::map<std::string, at::Tensor> params;           // the model's parameters, by HF name
};

LlamaWeightSource LlamaWeightSource::FromCheckpoint(const std::string& dir) {
  auto state = std::make_shared<State>();
  state->config = LlamaConfig::FromFile(dir);
  state->checkpoint = std::make_unique<SafetensorsCheckpoint>(SafetensorsCheckpoint::Open(dir));
  // Shapes and names from a meta-device twin: nothing allocated.
  LlamaForCausalLMImpl shapes(state->config, at::TensorOptions().device(at::kMeta));
  CheckCheckpointMatches(dir, *state->checkpoint, shapes);
  LlamaWeightSource source;
  source.state_ = std::move(state);
  return source;
}

LlamaWeightSource LlamaWeightSource::FromModel(LlamaForCausalLMImpl& model) {
  auto state = std::make_shared<State>();
  state->config = model.config();
  for (const auto& p : model.named_parameters()) state->params[p.key()] = p.value().detach();
  LlamaWeightSource source;
  source.state_ = std::move(state);
  return source;
}

const LlamaConfig& LlamaWeightSource::config() const {
  LLAMARL_CHECK(state_, "LlamaWeightSource: released; keep the source until every slice is loaded");
  return state_->config;
}

at::Tensor LlamaWeightSource::Get(const std::string& name) const {
  LLAMARL_CHECK(state_, "LlamaWeightSource::Get('", name, "'): released; keep the source until every slice is loaded");
  if (state_->checkpoint) {
    LLAMARL_CHECK(state_->checkpoint->Has(name), "the checkpoint has no parameter '", name, "'");
    return state_->checkpoint->Get(name);
  }
  auto it = state_->params.find(name);
  LLAMARL_CHECK(it != state_->params.end(), "the model has no parameter '", name, "'");
  return it->second;
}

void LlamaWeightSource::DoneWith(const std::string& name) const {
  if (state_ && state_->checkpoint) state_->checkpoint->DropPages(name);
}

int64_t LlamaWeightSource::ResidentBytes() const {
  if (!state_ || state_->checkpoint) return 0;
  int64_t n = 0;
  for (const auto& [name, t] : state_->params) n += int64_t(t.nbytes());
  return n;
}

void LlamaWeightSource::Release() { state_.reset(); }
bool LlamaWeightSource::released() const { return !state_; }

void LoadInto(const at::Tensor& dst, const at::Tensor& src) {
  if (!dst.device().is_cuda() || !src.device().is_cpu()) {
    dst.copy_(src);
    return;
  }
  at::Tensor staging = at::empty(src.sizes(), src.options().dtype(dst.scalar_type()).pinned_memory(true));
  staging.copy_(src);
  dst.copy_(staging, /*non_blocking=*/true);
}

LlamaForCausalLM MaterializeLlama(const LlamaWeightSource& source, const at::TensorOptions& options) {
  LlamaForCausalLM model(source.config(), options);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    LoadInto(p.value(), source.Get(p.key()));
    source.DoneWith(p.key());
  }
  return model;
}

}  // namespace llamarl
