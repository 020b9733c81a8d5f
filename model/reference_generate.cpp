#include "model/reference_generate.h"

#include "core/check.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <limits>

namespace llamarl {
namespace {

void CheckSampling(const SamplingOptions& o) {
  LLAMARL_CHECK(o.temperature >= 0, "temperature must be >= 0 (0 = greedy), got ", o.temperature);
  LLAMARL_CHECK(o.top_k >= 0, "top_k must be >= 0 (0 = off), got ", o.top_k);
  LLAMARL_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1] (1 = off), got ", o.top_p);
}

}  // namespace

int64_t SampleToken(const at::Tensor& logits, const SamplingOptions& options, at::Generator& generator) {
  CheckSampling(options);
  LLAMARL_CHECK(logits.dim() == 1 && logits.size(0) > 0, "SampleToken expects logits [vocab], got ", logits.sizes());
  at::Tensor scores = logits.to(at::kCPU, at::kFloat);
  if (options.temperature == 0) return scores.argmax().item<int64_t>();
  scores = scores / options.temperature;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t vocab = scores.size(0);
  if (options.top_k > 0 && options.top_k < vocab) {
    at::Tensor kth = std::get<0>(scores.topk(options.top_k)).select(0, options.top_k - 1);
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (options.top_p < 1) {
    auto sorted = scores.sort(/*dim=*/0, /*descending=*/true);
    at::Tensor probs = at::softmax(std::get<0>(sorted), 0);
    // A token is dropped when the more likely tokens before it already reach top_p; the first never is.
    at::Tensor drop_sorted = (probs.cumsum(0) - probs) >= options.top_p;
    at::Tensor drop = at::zeros_like(drop_sorted).scatter(0, std::get<1>(sorted), drop_sorted);
    scores = scores.masked_fill(drop, neg_inf);
  }
  at::Tensor probs = at::softmax(scores, 0);
  return at::multinomial(probs, 1, /*replacement=*/false, generator).item<int64_t>();
}

GenerationResult ReferenceGenerate(LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt_ids,
                                   const ReferenceGenerateOptions& options) {
  LLAMARL_CHECK(!prompt_ids.empty(), "ReferenceGenerate: the prompt is empty; give at least one token");
  LLAMARL_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got ", options.max_new_tokens);
  CheckSampling(options.sampling);
  const std::vector<int64_t> eos = options.eos_ids.value_or(model.config().eos_token_ids);
  const at::Device device = model.LmHeadWeight().device();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  torch::NoGradGuard no_grad;

  std::vector<int64_t> ids = prompt_ids;
  GenerationResult result;
  result.finish_reason = "length";
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    LlamaInputs inputs;
    inputs.input_ids = at::tensor(ids, at::kLong).to(device).unsqueeze(0);
    at::Tensor last_hidden = model.Hidden(inputs).select(1, int64_t(ids.size()) - 1);  // [1, D]
    at::Tensor logits = model.LmHead(last_hidden).squeeze(0).to(at::kCPU, at::kFloat);
    const int64_t token = SampleToken(logits, options.sampling, generator);
    result.tokens.push_back(token);
    result.logprobs.push_back(at::log_softmax(logits, 0)[token].item<float>());
    ids.push_back(token);
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) {
      result.finish_reason = "stop";
      break;
    }
  }
  return result;
}

}  // namespace llamarl
