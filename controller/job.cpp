#include "controller/job.h"

#include <algorithm>
#include <csignal>
#include <cmath>

#include "controller/dataset_random.h"
#include "controller/episodes.h"
#include "core/check.h"
#include "core/error_text.h"
#include "core/logging.h"
#include "model/llama_checkpoint.h"
#include "model/shard_layout.h"
#include "model/tiny_tokenizer.h"
#include "reward/overlong.h"

namespace llamarl::controller {

LlamaConfig BuildModelConfig(const RecipeConfig& recipe) {
  const ModelRecipe& m = recipe.model;
  if (m.source == "hf") return LlamaConfig::FromFile(m.path);
  TinyLlamaOptions o = m.tiny;
  o.vocab_size = TinyTokenizerIds::kVocabSize;
  o.eos_token_ids = {TinyTokenizerIds::kEndOfText, TinyTokenizerIds::kImEnd};
  return TinyLlamaConfig(o);
}

LlamaWeightSource BuildWeights(const RecipeConfig& recipe) {
  if (recipe.model.source == "hf") return LlamaWeightSource::FromCheckpoint(recipe.model.path);
  LlamaForCausalLM model(BuildModelConfig(recipe));
  InitLlamaWeights(*model, uint64_t(recipe.model.init_seed));
  return LlamaWeightSource::FromModel(*model);
}

at::TensorOptions GeneratorWeightOptions(const RecipeConfig& recipe, c10::Device device) {
  return at::TensorOptions().dtype(recipe.generator.WeightDtype()).device(device);
}

Tokenizer BuildTokenizer(const RecipeConfig& recipe) {
  if (recipe.tokenizer.source == "tiny") {
    return Tokenizer::FromTokenizerJson(MakeTinyTokenizerJson().dump(), MakeTinyTokenizerConfigJson().dump());
  }
  const bool own_path = !recipe.tokenizer.path.empty();
  const std::string dir = own_path ? recipe.tokenizer.path : recipe.model.path;
  try {
    return Tokenizer::FromDirectory(dir);
  } catch (const std::exception& e) {
    LLAMARL_FAIL(own_path ? "tokenizer.path" : "tokenizer.path (unset, so model.path)", " '", dir, "': ",
                 ErrorText(e), "; set tokenizer.path to the directory holding ",
                 "tokenizer.json (or GPT-2's encoder.json + vocab.bpe)");
  }
}

StepPrompts::StepPrompts(std::vector<DatasetItem> train, const RecipeConfig& recipe)
    : sampler_(std::move(train), SamplerOptions{recipe.data.seed, recipe.data.shuffle, recipe.data.num_epochs}),
      per_step_(recipe.rollout.prompts_per_step) {}

const std::vector<DatasetItem>& StepPrompts::ForStep(int64_t step) {
  if (step == cached_step_) return cached_;
  LLAMARL_CHECK(step >= next_step_, "prompts of step ", step, " asked after step ", next_step_ - 1);
  while (next_step_ < step) {
    sampler_.Next(size_t(per_step_));
    ++next_step_;
  }
  cached_ = sampler_.Next(size_t(per_step_));
  LLAMARL_CHECK(int64_t(cached_.size()) == per_step_, "the dataset ran out at step ", step, " (data.num_epochs = ",
                "a bounded number of epochs); raise data.num_epochs, set it to 0 (unbounded), or lower steps");
  cached_step_ = step;
  ++next_step_;
  return cached_;
}

Cursor StepPrompts::CursorAt(int64_t step) {
  LLAMARL_CHECK(step >= next_step_, "cursor of step ", step, " asked after step ", next_step_ - 1);
  while (next_step_ < step) {
    sampler_.Next(size_t(per_step_));
    ++next_step_;
  }
  return sampler_.cursor();
}

std::vector<DatasetItem> StepPrompts::Extra(int64_t n, int64_t* first_position) {
  const Cursor& at = sampler_.cursor();
  *first_position = at.epoch * at.num_items + at.index;
  std::vector<DatasetItem> items = sampler_.Next(size_t(n));
  LLAMARL_CHECK(int64_t(items.size()) == n, "the dataset ran out while drawing ", n, " replacement prompts (data.num_epochs ",
                "= a bounded number of epochs; algorithm.dapo.dynamic_sampling draws more than prompts_per_step a step); ",
                "raise data.num_epochs, set it to 0 (unbounded), or lower steps");
  return items;
}

void StepPrompts::Restore(const Cursor& cursor, int64_t step) {
  sampler_.Restore(cursor);
  next_step_ = step;
  cached_step_ = -1;
}

int64_t GroupRouting::Offset(int replica) const {
  return EvenSplit(groups_per_step, num_replicas)[size_t(replica)];
}

int64_t GroupRouting::Share(int replica) const {
  auto bounds = EvenSplit(groups_per_step, num_replicas);
  return bounds[size_t(replica) + 1] - bounds[size_t(replica)];
}

SamplingParams RolloutSampling(const RecipeConfig& recipe, const LlamaConfig& config, uint64_t seed) {
  SamplingParams p = recipe.rollout.sampling;
  p.seed = seed;
  p.eos_ids = config.eos_token_ids;
  return p;
}

SamplingParams EvalSampling(const RecipeConfig& recipe, const LlamaConfig& config) {
  SamplingParams p = RolloutSampling(recipe, config, 0);
  p.temperature = 0;
  p.top_k = 0;
  p.top_p = 1.0;
  if (recipe.eval.max_new_tokens > 0) p.max_new_tokens = recipe.eval.max_new_tokens;
  return p;
}

int64_t LongestPromptTokens(const DatasetSplits& data, const Tokenizer& tokenizer) {
  int64_t longest = 0;
  for (const auto* split : {&data.train, &data.eval}) {
    for (const DatasetItem& item : *split) longest = std::max<int64_t>(longest, int64_t(tokenizer.Encode(item.prompt).size()));
  }
  return longest;
}

EngineOptions GeneratorEngineOptions(const RecipeConfig& recipe, const LlamaConfig& config, const Tokenizer& tokenizer,
                                     const DatasetSplits& data) {
  EngineOptions options = recipe.generator.engine;  // the recipe's part: max_slots, the KV cache
  const int64_t response =
      std::max({recipe.rollout.sampling.max_new_tokens, recipe.eval.max_new_tokens, recipe.env.max_tokens});
  options.max_seq_len = std::min(config.max_position_embeddings, LongestPromptTokens(data, tokenizer) + response);
  options.max_seq_len = std::max<int64_t>(options.max_seq_len, 2);
  options.sampled_vocab_size = SampledVocabSize(config, tokenizer);
  const Tokenizer* decoder = &tokenizer;
  options.decode = [decoder](const std::vector<int64_t>& ids) { return decoder->Decode(ids); };
  return options;
}

int64_t SampledVocabSize(const LlamaConfig& config, const Tokenizer& tokenizer) {
  return std::min(tokenizer.VocabSize(), config.vocab_size);
}

uint64_t GroupSeed(int64_t run_seed, int64_t group_id) {
  return MixSeed(MixSeed(uint64_t(run_seed)) ^ uint64_t(group_id));
}

std::string ResponseText(const Tokenizer& tokenizer, const std::vector<int64_t>& tokens,
                         const std::vector<int64_t>& eos_ids) {
  std::vector<int64_t> body = tokens;
  if (!body.empty() && std::count(eos_ids.begin(), eos_ids.end(), body.back())) body.pop_back();
  return tokenizer.Decode(body, DecodeOptions{/*skip_special_tokens=*/true});
}

RolloutGroup ScoreGroup(const std::vector<Completion>& completions, const DatasetItem& item,
                        reward::Reward& reward, const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids) {
  std::vector<reward::RewardItem> items;
  RolloutGroup g;
  g.prompt_id = item.id;
  for (const Completion& c : completions) {
    LLAMARL_CHECK(c.finish_reason != FinishReason::kRejected, "the generator rejected prompt ", item.id, ": ",
                  c.error, "; check rollout.max_new_tokens against generator.kv_cache_bytes and model.max_position_embeddings");
    items.push_back({item.prompt, ResponseText(tokenizer, c.tokens, eos_ids), item.answer});
    RolloutSample s;
    s.response = c.tokens;
    s.logprobs = c.logprobs;
    s.versions = c.versions;
    s.finish_reason = FinishReasonName(c.finish_reason);
    g.samples.push_back(std::move(s));
  }
  if (!completions.empty()) g.prompt = completions.front().prompt;
  reward::RewardResult scored = reward.Score(items);
  for (size_t i = 0; i < g.samples.size(); ++i) g.samples[i].reward = scored.scores[i];
  return g;
}

void ShapeRewards(RolloutGroup* group, const DapoRecipe& dapo, int64_t max_new_tokens) {
  if (dapo.overlong != "penalty") return;
  for (RolloutSample& s : group->samples) {
    s.reward += dapo.overlong_penalty_factor *
                reward::OverlongPenalty(int64_t(s.response.size()), max_new_tokens, dapo.overlong_buffer);
  }
}

double ScoreEval(const std::vector<Completion>& completions, const std::vector<DatasetItem>& items,
                 reward::Reward& reward, const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids) {
  LLAMARL_ASSERT(completions.size() == items.size(), completions.size(), " completions for ",
                 items.size(), " eval items");
  if (items.empty()) return 0.0;
  std::vector<reward::RewardItem> scored_items;
  for (size_t i = 0; i < items.size(); ++i) {
    scored_items.push_back({items[i].prompt, ResponseText(tokenizer, completions[i].tokens, eos_ids), items[i].answer});
  }
  double sum = 0;
  for (double s : reward.Score(scored_items).scores) sum += s;
  return sum / double(items.size());
}

double PassAtK(int64_t n, int64_t c, int64_t k) {
  LLAMARL_CHECK(k >= 1 && k <= n && c >= 0 && c <= n, "pass@k needs 1 <= k <= n and 0 <= c <= n, got n=", n, " c=", c,
                " k=", k);
  if (n - c < k) return 1.0;
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): no factorials, no overflow.
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - double(k) / double(i);
  return 1.0 - fail;
}

EvalSampleSums ScoreEvalSamples(const std::vector<std::vector<Completion>>& samples,
                                const std::vector<DatasetItem>& items, reward::Reward& reward,
                                const Tokenizer& tokenizer, const std::vector<int64_t>& eos_ids, double pass_threshold) {
  LLAMARL_ASSERT(samples.size() == items.size(), samples.size(), " sample lists for ", items.size(), " items");
  std::vector<reward::RewardItem> scored;
  for (size_t i = 0; i < items.size(); ++i)
    for (const Completion& c : samples[i])
      scored.push_back({items[i].prompt, ResponseText(tokenizer, c.tokens, eos_ids), items[i].answer});
  const std::vector<double> scores = scored.empty() ? std::vector<double>() : reward.Score(scored).scores;
  EvalSampleSums sums;
  size_t at = 0;
  for (const auto& per_item : samples) {
    const int64_t k = int64_t(per_item.size());
    int64_t passed = 0;
    for (int64_t j = 0; j < k; ++j, ++at) {
      passed += scores[at] >= pass_threshold;
      sums.mean_at_k += scores[at] / double(k);
    }
    if (k > 0) sums.pass_at_k += PassAtK(k, passed, k);
  }
  return sums;
}

SamplingParams EvalSampleSampling(const RecipeConfig& recipe, const LlamaConfig& config, int64_t item) {
  SamplingParams p = RolloutSampling(recipe, config, GroupSeed(recipe.seed ^ 0x5eed5eed, item));
  if (recipe.eval.max_new_tokens > 0) p.max_new_tokens = recipe.eval.max_new_tokens;
  return p;
}

TrainBatch ToTrainBatch(const std::vector<RolloutGroup>& groups, bool mask_truncated) {
  TrainBatch batch;
  for (const RolloutGroup& g : groups) {
    for (const RolloutSample& s : g.samples) {
      TrainSample t;
      t.prompt = g.prompt;
      t.response = s.response;
      t.behaviour_logprobs = s.logprobs;
      t.versions = s.versions;
      t.reward = s.reward;
      t.group_id = g.group_id;
      t.loss_masked = mask_truncated && s.finish_reason == "length";
      t.loss_mask = s.loss_mask;
      batch.samples.push_back(std::move(t));
    }
  }
  return batch;
}

TrainBatch SftBatch(const std::vector<DatasetItem>& items, const Tokenizer& tokenizer,
                    const std::vector<int64_t>& eos_ids, const ReferenceEpisodes* episodes) {
  LLAMARL_CHECK(!eos_ids.empty(), "the model config names no EOS token; SFT responses need one to learn to stop");
  TrainBatch batch;
  for (const DatasetItem& item : items) {
    if (episodes) {
      batch.samples.push_back(episodes->Sample(item));
      continue;
    }
    LLAMARL_CHECK(!item.reference_response.empty(), "sft: dataset item ", item.id, " has no reference response; ",
                  "the warm start needs a generated task (arithmetic, countdown) or set sft.steps to 0");
    TrainSample t;
    t.prompt = tokenizer.Encode(item.prompt);
    t.response = tokenizer.Encode(item.reference_response);
    t.response.push_back(eos_ids.front());
    t.group_id = item.id;
    batch.samples.push_back(std::move(t));
  }
  return batch;
}

JobTimeouts TimeoutsOf(const RecipeConfig& recipe) {
  auto ms = [](double s) { return std::chrono::milliseconds(int64_t(std::ceil(s * 1000))); };
  return {ms(recipe.timeouts.startup_s), ms(recipe.timeouts.step_s)};
}

void MaybeKillForTest(const DebugRecipe& debug, int rank, int64_t step) {
  if (debug.kill_rank != rank || debug.kill_at_step < 0 || step < debug.kill_at_step) return;
  LogWarning("debug.kill_rank: rank ", rank, " raises SIGKILL at step ", step);
  std::raise(SIGKILL);
}

}  // namespace llamarl::controller
