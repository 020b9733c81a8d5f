#include "model/llama_checkpoint.h"

#include "core/check.h"
#include "model/llama_weights.h"
#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace llamarl {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

template <typename Shape>
std::string ShapeString(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < size_t(shape.size()); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

void WriteJson(const std::string& path, const Json& json) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  LLAMARL_CHECK(out.good(), "cannot write ", path, "; check that the directory is writable");
  out << json.dump(2) << "\n";
  LLAMARL_CHECK(out.good(), "failed writing ", path, " (disk full?)");
}

}  // namespace

at::ScalarType TorchDtypeFromName(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  LLAMARL_FAIL("unknown dtype '", name, "'; known: float32, bfloat16, float16");
}

std::string TorchDtypeName(at::ScalarType dtype) {
  if (dtype == at::kFloat) return "float32";
  if (dtype == at::kBFloat16) return "bfloat16";
  if (dtype == at::kHalf) return "float16";
  LLAMARL_FAIL("dtype ", dtype, " cannot be stored in an HF checkpoint; use float32, bfloat16 or float16");
}

LlamaForCausalLM LoadLlama(const std::string& dir, const LoadLlamaOptions& options) {
  LLAMARL_CHECK(at::isFloatingType(options.dtype), "LoadLlama: dtype must be floating, got ", options.dtype);
  return MaterializeLlama(LlamaWeightSource::FromCheckpoint(dir),
                          at::TensorOptions().dtype(options.dtype).device(options.device));
}

std::vector<std::string> SaveLlama(const std::string& dir, LlamaForCausalLMImpl& model, const LlamaConfig& config,
                                   const SaveLlamaOptions& options) {
  // The config must describe the model: a meta-device twin allocates nothing and gives the shapes.
  LlamaForCausalLMImpl expected(config, at::TensorOptions().device(at::kMeta));
  auto expected_params = expected.named_parameters();
  auto params = model.named_parameters();
  LLAMARL_CHECK(params.size() == expected_params.size(), "SaveLlama: config describes ", expected_params.size(),
                " tensors but the model has ", params.size(), "; pass the model's own config");
  NamedTensors tensors;
  at::ScalarType dtype = options.dtype.value_or(params.size() ? params[0].value().scalar_type() : at::kFloat);
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    LLAMARL_CHECK(p.key() == expected_params[i].key() && p.value().sizes() == expected_params[i].value().sizes(),
                  "SaveLlama: model tensor ", p.key(), " ", ShapeString(p.value().sizes()),
                  " does not match the config's ", expected_params[i].key(), " ",
                  ShapeString(expected_params[i].value().sizes()), "; pass the model's own config");
    tensors.emplace_back(p.key(), p.value().detach().to(at::kCPU, dtype).contiguous());
  }
  LlamaConfig saved = config;
  saved.torch_dtype = TorchDtypeName(dtype);
  std::filesystem::create_directories(dir);
  WriteJson((std::filesystem::path(dir) / "config.json").string(), saved.ToJson());
  WriteJson((std::filesystem::path(dir) / "generation_config.json").string(), saved.GenerationConfigJson());
  ShardedSaveOptions shard_options;
  shard_options.max_shard_bytes = options.max_shard_bytes;
  return SaveSafetensorsSharded(dir, tensors, shard_options);
}

namespace {

// HF's _init_weights for one parameter, in f32; draws from `generator` only for projections and
// embeddings, so that drawing the parameters in named_parameters() order gives InitLlamaWeights.
at::Tensor InitialValue(const std::string& name, at::IntArrayRef shape, double std, at::Generator& generator) {
  if (EndsWith(name, "norm.weight")) return at::ones(shape, at::kFloat);
  if (EndsWith(name, ".bias")) return at::zeros(shape, at::kFloat);
  return at::empty(shape, at::kFloat).normal_(0.0, std, generator);
}

}  // namespace

void InitLlamaWeights(LlamaForCausalLMImpl& model, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const double std = model.config().initializer_range;
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    at::Tensor& param = p.value();
    LLAMARL_CHECK(!param.is_meta(), "InitLlamaWeights: ", p.key(), " lives on the meta device, which holds no data; ",
                  "build the model on cpu or cuda to initialise it");
    param.copy_(InitialValue(p.key(), param.sizes(), std, generator));
  }
}

std::vector<std::string> WriteRandomLlama(const std::string& dir, const LlamaConfig& config,
                                          const RandomLlamaOptions& options) {
  LLAMARL_CHECK(at::isFloatingType(options.dtype), "WriteRandomLlama: dtype must be floating, got ", options.dtype);
  LlamaForCausalLMImpl shapes(config, at::TensorOptions().device(at::kMeta));
  std::vector<TensorHeader> headers;
  for (const auto& p : shapes.named_parameters()) headers.push_back({p.key(), options.dtype, p.value().sizes().vec()});
  // The data order of a shard is its header order when every tensor has one dtype, so produce(i) is
  // called with i = 0, 1, 2, ... and the draws follow named_parameters() order like InitLlamaWeights.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  size_t next = 0;
  auto produce = [&](size_t i) {
    LLAMARL_ASSERT(i == next++, "WriteRandomLlama: tensor ", i, " asked for out of order");
    return InitialValue(headers[i].name, headers[i].shape, config.initializer_range, generator).to(options.dtype);
  };
  LlamaConfig saved = config;
  saved.torch_dtype = TorchDtypeName(options.dtype);
  Json config_json = saved.ToJson();
  config_json.update(options.extra_config_fields);
  std::filesystem::create_directories(dir);
  WriteJson((std::filesystem::path(dir) / "config.json").string(), config_json);
  WriteJson((std::filesystem::path(dir) / "generation_config.json").string(), saved.GenerationConfigJson());
  ShardedSaveOptions shard_options;
  shard_options.max_shard_bytes = options.max_shard_bytes;
  return SaveSafetensorsStreamed(dir, headers, produce, shard_options);
}

}  // namespace llamarl
