#include "controller/episodes.h"

#include "core/check.h"

#include <algorithm>
#include <chrono>

#include "report/trace.h"

namespace llamarl::controller {

struct EpisodeRunner::Running {
  std::unique_ptr<env::Episode> episode;
  Completion last;         // the engine's latest view of the sample
  bool final = false;      // the engine finished the sample: no Continue, no End
  int64_t tool_calls = 0;
};

Json EpisodeStats::ToJson() const {
  Json by_end = Json::object();
  for (const auto& [end, n] : ends) by_end[end] = n;
  return Json{{"episodes", episodes},
              {"turns_mean", episodes > 0 ? double(turns) / double(episodes) : 0.0},
              {"tool_calls", tool_calls},
              {"tool_s_mean", tool_calls > 0 ? tool_s / double(tool_calls) : 0.0},
              {"tool_s_max", tool_s_max},
              {"ends", by_end}};
}

EpisodeRunner::EpisodeRunner(const env::EpisodeConfig& config, std::shared_ptr<env::EnvironmentFactory> factory,
                             const Tokenizer& tokenizer, std::vector<int64_t> eos_ids, Tracer* tracer)
    : config_(config),
      factory_(std::move(factory)),
      tokenizer_(tokenizer),
      eos_ids_(std::move(eos_ids)),
      renderer_(config, tokenizer, eos_ids_.empty() ? std::nullopt : std::optional<int64_t>(eos_ids_.front())),
      tracer_(tracer) {
  for (int i = 0; i < config_.num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

EpisodeRunner::~EpisodeRunner() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void EpisodeRunner::WorkerLoop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void EpisodeRunner::Submit(Engine& engine, GenerationRequest request, const env::EnvItem& item) {
  request.multi_turn = true;
  request.max_turn_tokens = config_.max_turn_tokens;
  if (config_.max_tokens > 0) request.sampling.max_new_tokens = config_.max_tokens;
  for (int64_t s = 0; s < request.num_samples; ++s) {
    auto running = std::make_unique<Running>();
    running->episode = std::make_unique<env::Episode>(factory_->Make(), config_, item);
    episodes_[Key(request.id, s)] = std::move(running);
  }
  engine.Submit(std::move(request));
}

void EpisodeRunner::Post(Key key, Running& running, const Completion& c, int64_t room) {
  const std::vector<int64_t> turn(c.tokens.begin() + c.turn_start, c.tokens.end());
  DecodeOptions skip;
  skip.skip_special_tokens = true;
  std::string text = tokenizer_.Decode(turn, skip);
  const bool ended = !turn.empty() && std::find(eos_ids_.begin(), eos_ids_.end(), turn.back()) != eos_ids_.end();
  env::Episode* episode = running.episode.get();
  ++running.tool_calls;
  auto job = [this, key, episode, n = int64_t(turn.size()), text = std::move(text), ended, room] {
    StepResult r;
    r.key = key;
    r.start_us = Tracer::NowMicros();
    const auto start = std::chrono::steady_clock::now();
    try {
      r.turn = episode->OnModelTurn(n, text, ended, room, renderer_);
    } catch (...) {
      r.error = std::current_exception();
    }
    r.dur_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      results_.push_back(std::move(r));
    }
    done_cv_.notify_one();
  };
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

std::vector<Completion> EpisodeRunner::Take(Engine& engine, std::vector<Completion> completions) {
  std::vector<Completion> others;
  for (Completion& c : completions) {
    auto it = episodes_.find(Key(c.request_id, c.sample_index));
    if (it == episodes_.end()) {
      others.push_back(std::move(c));
      continue;
    }
    LLAMARL_CHECK(c.finish_reason != FinishReason::kRejected, "the generator rejected episode request ", c.request_id,
                ": ", c.error, "; check env.max_tokens against generator.kv_cache_bytes and model.max_position_embeddings");
    Running& running = *it->second;
    running.final = !c.awaiting_observation;
    if (running.final && c.finish_reason == FinishReason::kLength) {  // cut mid-turn: no answer to step
      running.episode->Truncate();
      Finish(it->first, running, std::move(c));
      continue;
    }
    const int64_t room = running.final ? 0 : engine.RoomLeft(c.request_id, c.sample_index);
    Post(it->first, running, c, room);
    running.last = std::move(c);
  }
  return others;
}

void EpisodeRunner::Apply(Engine& engine, double wait_s) {
  std::deque<StepResult> ready;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (wait_s > 0) {
      done_cv_.wait_for(lock, std::chrono::duration<double>(wait_s), [&] { return !results_.empty(); });
    }
    ready.swap(results_);
  }
  for (StepResult& r : ready) {
    if (r.error) std::rethrow_exception(r.error);
    Running& running = *episodes_.at(r.key);
    if (tracer_) {
      tracer_->Complete("tool", r.start_us, r.dur_us,
                        {{"request", r.key.first}, {"sample", r.key.second}, {"turn", running.episode->turns()}});
    }
    if (!r.turn.done) {
      engine.Continue(r.key.first, r.key.second, r.turn.observation);
      continue;
    }
    Completion c = running.final ? std::move(running.last) : engine.End(r.key.first, r.key.second);
    Finish(r.key, running, std::move(c));
  }
}

void EpisodeRunner::Finish(Key key, Running& running, Completion completion) {
  const env::Episode& e = *running.episode;
  FinishedEpisode f;
  f.completion = std::move(completion);
  f.reward = e.reward();
  f.turns = e.turns();
  f.tool_s = e.tool_seconds();
  f.tool_step_max_s = e.tool_step_max_seconds();
  f.end = env::EpisodeEndName(e.end());
  f.info = e.info();
  ++stats_.episodes;
  stats_.turns += f.turns;
  stats_.tool_calls += running.tool_calls;
  stats_.tool_s += f.tool_s;
  stats_.tool_s_max = std::max(stats_.tool_s_max, f.tool_step_max_s);
  ++stats_.ends[f.end];
  finished_.push_back(std::move(f));
  episodes_.erase(key);
}

std::vector<FinishedEpisode> EpisodeRunner::TakeFinished() {
  std::vector<FinishedEpisode> out = std::move(finished_);
  finished_.clear();
  return out;
}

EpisodeStats EpisodeRunner::TakeStats() {
  EpisodeStats s = std::move(stats_);
  stats_ = EpisodeStats();
  return s;
}

RolloutGroup EpisodeGroup(std::vector<FinishedEpisode> episodes, int64_t prompt_id) {
  std::sort(episodes.begin(), episodes.end(), [](const FinishedEpisode& a, const FinishedEpisode& b) {
    return a.completion.sample_index < b.completion.sample_index;
  });
  RolloutGroup g;
  g.prompt_id = prompt_id;
  if (!episodes.empty()) g.prompt = episodes.front().completion.prompt;
  for (FinishedEpisode& e : episodes) {
    RolloutSample s;
    s.response = std::move(e.completion.tokens);
    s.logprobs = std::move(e.completion.logprobs);
    s.versions = std::move(e.completion.versions);
    s.loss_mask = std::move(e.completion.sampled);
    s.reward = e.reward;
    s.finish_reason = e.end;
    s.turns = e.turns;
    s.tool_s = e.tool_s;
    s.tool_step_max_s = e.tool_step_max_s;
    g.samples.push_back(std::move(s));
  }
  return g;
}

ReferenceEpisodes::ReferenceEpisodes(const env::EpisodeConfig& config, const Tokenizer& tokenizer,
                                     std::vector<int64_t> eos_ids)
    : config_(config),
      factory_(env::MakeEnvironmentFactory(config.name, config.config, "env.config")),
      tokenizer_(tokenizer),
      eos_ids_(std::move(eos_ids)),
      renderer_(config, tokenizer, eos_ids_.empty() ? std::nullopt : std::optional<int64_t>(eos_ids_.front())) {
  LLAMARL_CHECK(!eos_ids_.empty(), "the model config names no EOS token; reference episodes end their last turn with one");
}

TrainSample ReferenceEpisodes::Sample(const DatasetItem& item) const {
  env::ReferenceEpisode e = env::PlayReferenceEpisode(*factory_, config_, {item.id, item.prompt, item.answer},
                                                      tokenizer_, renderer_, eos_ids_.front());
  TrainSample t;
  t.prompt = tokenizer_.Encode(item.prompt);
  t.response = std::move(e.tokens);
  t.loss_mask = std::move(e.loss_mask);
  t.group_id = item.id;
  return t;
}

std::vector<Completion> RunEpisodesUntilDone(Engine& engine, EpisodeRunner& runner) {
  std::vector<Completion> others;
  while (engine.HasWork() || runner.Busy()) {
    if (engine.HasWork()) {
      for (Completion& c : runner.Take(engine, engine.Step())) others.push_back(std::move(c));
    }
    // Nothing to decode: every running episode is at its tool, so wait for one.
    runner.Apply(engine, !engine.HasWork() && runner.Busy() ? 1.0 : 0.0);
  }
  return others;
}

}  // namespace llamarl::controller
