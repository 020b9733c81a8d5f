#include "controller/offline_eval.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "controller/dataset.h"
#include "controller/hf_export.h"
#include "controller/job.h"
#include "core/check.h"
#include "generator/engine.h"
#include "model/llama_checkpoint.h"
#include "model/tokenizer.h"
#include "reward/registry.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

struct EvalPolicy {
  LlamaConfig config;
  LlamaForCausalLM model{nullptr};
  Tokenizer tokenizer;
  PromptConfig prompt;
  reward::RewardSpec reward;
  int64_t max_new_tokens = 256;
  EngineOptions engine;     // a run's generator section (max_slots, KV cache); defaults for an HF directory
  Json about;               // "model" and, for runs, "checkpoint"
};

EvalPolicy LoadEvalPolicy(const OfflineEvalOptions& o) {
  if (fs::exists(fs::path(o.model) / "config.json")) {
    LLAMARL_CHECK(!o.reward.empty(), "llamarl eval: --reward is required with an HF directory (",
                  o.model, "); name one such as arithmetic or gsm8k");
    return EvalPolicy{LlamaConfig::FromFile(o.model + "/config.json"), LoadLlama(o.model),
                      Tokenizer::FromDirectory(o.model), o.prompt, reward::RewardSpec::Named(o.reward, "--reward"), 256,
                      EngineOptions{}, Json{{"model", o.model}}};
  }
  RunPolicy run = LoadRunPolicy(o.model);
  return EvalPolicy{run.config, run.model, BuildTokenizer(run.recipe), run.recipe.data.prompt,
                    o.reward.empty() ? run.recipe.reward : reward::RewardSpec::Named(o.reward, "--reward"),
                    run.recipe.rollout.sampling.max_new_tokens, run.recipe.generator.engine,
                    Json{{"model", o.model}, {"checkpoint", run.checkpoint}, {"rl_step", run.rl_step}}};
}

// Rewards of `num_samples` completions per item, in item order; `done` counts finished prompts.
std::vector<std::vector<double>> Generate(Engine& engine, EvalPolicy& p, const std::vector<DatasetItem>& items,
                                          const SamplingParams& sampling, int64_t num_samples,
                                          const std::function<void()>& on_prompt_done) {
  for (size_t i = 0; i < items.size(); ++i) {
    SamplingParams s = sampling;
    s.seed = sampling.seed + i;
    engine.Submit(GenerationRequest{i, p.tokenizer.Encode(items[i].prompt), s, num_samples});
  }
  std::vector<std::vector<Completion>> done(items.size());
  while (engine.HasWork()) {
    for (Completion& c : engine.Step()) {
      auto& group = done[size_t(c.request_id)];
      group.push_back(std::move(c));
      if (int64_t(group.size()) == num_samples && on_prompt_done) on_prompt_done();
    }
  }
  std::unique_ptr<reward::Reward> reward = p.reward.Make();
  std::vector<reward::RewardItem> scored;
  for (size_t i = 0; i < items.size(); ++i) {
    std::sort(done[i].begin(), done[i].end(), [](const Completion& a, const Completion& b) {
      return a.sample_index < b.sample_index;
    });
    for (const Completion& c : done[i]) {
      LLAMARL_CHECK(c.finish_reason != FinishReason::kRejected, "llamarl eval: the engine rejected prompt ", i + 1,
                    " of ", items.size(), ": ", c.error, "; lower --max-new-tokens or shorten the prompt");
      scored.push_back({items[i].prompt, ResponseText(p.tokenizer, c.tokens, p.config.eos_token_ids), items[i].answer});
    }
  }
  const std::vector<double> scores = reward->Score(scored).scores;
  std::vector<std::vector<double>> out(items.size());
  for (size_t i = 0; i < scores.size(); ++i) out[i / size_t(num_samples)].push_back(scores[i]);
  return out;
}

}  // namespace

Json RunOfflineEval(const OfflineEvalOptions& o) {
  LLAMARL_CHECK(o.samples >= 0, "llamarl eval: --samples expects a count >= 0, got ", o.samples);
  EvalPolicy p = LoadEvalPolicy(o);
  JsonlConfig data;
  data.path = o.data, data.prompt_field = o.prompt_field, data.answer_field = o.answer_field, data.max_items = o.limit;
  const std::vector<DatasetItem> items = LoadJsonl(data, p.prompt);
  LLAMARL_CHECK(!items.empty(), "llamarl eval: ", o.data, " holds no items");
  SamplingParams sampling;
  sampling.max_new_tokens = o.max_new_tokens > 0 ? o.max_new_tokens : p.max_new_tokens;
  EngineOptions engine_options = p.engine;
  engine_options.max_slots = std::max(engine_options.max_slots, o.samples);  // a group is admitted at once
  // The KV cache holds max_slots sequences of the longest prompt + response, not of the model's
  // whole context (131072 positions for Llama 3).
  int64_t longest = 0;
  for (const DatasetItem& item : items) longest = std::max<int64_t>(longest, int64_t(p.tokenizer.Encode(item.prompt).size()));
  engine_options.max_seq_len = std::max<int64_t>(2, std::min(p.config.max_position_embeddings, longest + sampling.max_new_tokens));
  engine_options.sampled_vocab_size = SampledVocabSize(p.config, p.tokenizer);
  const Tokenizer* tokenizer = &p.tokenizer;
  engine_options.decode = [tokenizer](const std::vector<int64_t>& ids) { return tokenizer->Decode(ids); };
  Engine engine(p.config, *p.model, engine_options);
  sampling.eos_ids = p.config.eos_token_ids;
  sampling.seed = o.seed;
  const int64_t total = int64_t(items.size()) * (o.samples > 0 ? 2 : 1);
  int64_t finished = 0;
  auto tick = [&] { if (o.progress) o.progress(++finished, total); };
  sampling.temperature = 0;
  const auto greedy = Generate(engine, p, items, sampling, 1, tick);
  Json result = p.about;
  double passed = 0, reward_sum = 0;
  for (const auto& r : greedy) passed += r[0] >= o.pass_threshold, reward_sum += r[0];
  result.update({{"data", o.data}, {"reward", p.reward.ToJson()}, {"prompts", int64_t(items.size())},
                 {"greedy_pass@1", passed / double(items.size())},
                 {"greedy_reward_mean", reward_sum / double(items.size())}});
  if (o.samples == 0) return result;
  sampling.temperature = o.temperature;
  const auto sampled = Generate(engine, p, items, sampling, o.samples, tick);
  std::vector<int64_t> ks;  // 1, 2, 4, ... below k, then k
  for (int64_t j = 1; j < o.samples; j *= 2) ks.push_back(j);
  ks.push_back(o.samples);
  double mean = 0;
  std::map<int64_t, double> pass;
  for (const auto& r : sampled) {
    const int64_t c = std::count_if(r.begin(), r.end(), [&](double s) { return s >= o.pass_threshold; });
    for (double s : r) mean += s / double(r.size());
    for (int64_t j : ks) pass[j] += PassAtK(o.samples, c, j);
  }
  result["samples"] = o.samples;
  result["temperature"] = o.temperature;
  result["mean@" + std::to_string(o.samples)] = mean / double(items.size());
  for (const auto& [j, sum] : pass) result["pass@" + std::to_string(j)] = sum / double(items.size());
  return result;
}

}  // namespace llamarl::controller
