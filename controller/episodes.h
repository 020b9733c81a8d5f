// Multi-turn rollouts on the generating side: the Engine's multi-turn samples (generator/engine.h)
// driven through env/ episodes, with every environment step run off the decode loop.
//
// Life of an episode: Submit() makes the request multi-turn and starts one env::Episode per sample.
// When Engine::Step() returns a sample whose turn ended (awaiting_observation), Take() hands the turn
// to a fixed pool of num_workers threads that run the environment (a calculator call, a user's
// program); the engine meanwhile keeps decoding every other sample. Apply() (on the engine's thread)
// takes the finished steps: an observation is given back with Engine::Continue (prefilled after the
// sample's cached history), an ended episode is retired with Engine::End. A sample that the engine
// finishes for good (its room spent) is stepped once more when its last turn ended on its own (the
// model may have answered), and truncated otherwise.
//
// Per finished episode: every token after the prompt with loss_mask = the engine's `sampled` (model
// tokens trained, observation and template tokens not), the log-probs and policy versions of every
// model token, the environment's reward, the turns and the seconds spent in the environment. Each
// environment step is a "tool" span in the trace (its thread's time, with the request and turn).
//
// Thread safety: every method but the pool's jobs runs on the engine's thread. A job touches only
// its own episode, which no other job holds (one step per episode at a time), and hands its result
// back through a mutex-guarded queue. A job that throws (a command environment that cannot start)
// is rethrown by Apply().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "controller/dataset.h"
#include "controller/rollout.h"
#include "env/episode.h"
#include "generator/engine.h"
#include "trainer/train_batch.h"

namespace llamarl {
class Tracer;
}  // namespace llamarl

namespace llamarl::controller {

struct FinishedEpisode {
  Completion completion;  // tokens after the prompt (model and observation), completion.sampled = the loss mask
  double reward = 0;
  int64_t turns = 0;
  double tool_s = 0;      // seconds in the environment over all turns
  double tool_step_max_s = 0;  // the slowest environment step
  std::string end;        // env::EpisodeEndName
  Json info;              // the environment's last step info
};

// Totals over the episodes finished since the last reset, for metrics.
struct EpisodeStats {
  int64_t episodes = 0, turns = 0, tool_calls = 0;
  double tool_s = 0, tool_s_max = 0;
  std::map<std::string, int64_t> ends;  // by end reason
  Json ToJson() const;  // {"episodes", "turns_mean", "tool_calls", "tool_s_mean", "tool_s_max", "ends": {...}}
};

class EpisodeRunner {
 public:
  // `factory` builds each episode's environment; `eos_ids` end a model turn (and the template's turn).
  EpisodeRunner(const env::EpisodeConfig& config, std::shared_ptr<env::EnvironmentFactory> factory,
                const Tokenizer& tokenizer, std::vector<int64_t> eos_ids, Tracer* tracer = nullptr);
  ~EpisodeRunner();  // waits for the jobs that run
  EpisodeRunner(const EpisodeRunner&) = delete;
  EpisodeRunner& operator=(const EpisodeRunner&) = delete;

  void Submit(Engine& engine, GenerationRequest request, const env::EnvItem& item);
  // What Engine::Step() returned: the episodes' turns go to the pool; other requests' completions come back.
  std::vector<Completion> Take(Engine& engine, std::vector<Completion> completions);
  // Continues or ends the episodes whose environment step finished; when none has, first waits up
  // to wait_s seconds for one (when the engine has nothing to decode but episodes are at their tools).
  void Apply(Engine& engine, double wait_s = 0);
  std::vector<FinishedEpisode> TakeFinished();
  bool Busy() const { return !episodes_.empty(); }
  EpisodeStats TakeStats();

 private:
  using Key = std::pair<uint64_t, int64_t>;  // request id, sample index
  struct Running;
  struct StepResult {
    Key key;
    env::Episode::Turn turn;
    int64_t start_us = 0, dur_us = 0;
    std::exception_ptr error;
  };
  void Post(Key key, Running& running, const Completion& c, int64_t room);
  void WorkerLoop();
  void Finish(Key key, Running& running, Completion completion);

  env::EpisodeConfig config_;
  std::shared_ptr<env::EnvironmentFactory> factory_;
  Tokenizer tokenizer_;
  std::vector<int64_t> eos_ids_;
  env::ObservationRenderer renderer_;
  Tracer* tracer_;
  std::map<Key, std::unique_ptr<Running>> episodes_;
  std::vector<FinishedEpisode> finished_;
  EpisodeStats stats_;
  // The pool: jobs in, results out.
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::function<void()>> jobs_;
  std::deque<StepResult> results_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// A GRPO group of episodes from one prompt (sorted by sample index): every token after the prompt
// with its log-prob, version and loss mask, the episode's reward, and its end as the finish reason.
RolloutGroup EpisodeGroup(std::vector<FinishedEpisode> episodes, int64_t prompt_id);

// The SFT warm start's samples with an environment: per dataset item, the reference episode its
// environment writes (env::PlayReferenceEpisode): prompt -> agent turns (trained) and observations
// (loss-masked), ended by the first EOS id, exactly as a rollout lays them out.
class ReferenceEpisodes {
 public:
  ReferenceEpisodes(const env::EpisodeConfig& config, const Tokenizer& tokenizer, std::vector<int64_t> eos_ids);
  TrainSample Sample(const DatasetItem& item) const;

 private:
  env::EpisodeConfig config_;
  std::shared_ptr<env::EnvironmentFactory> factory_;
  Tokenizer tokenizer_;
  std::vector<int64_t> eos_ids_;
  env::ObservationRenderer renderer_;
};

// Steps the engine until its queue, its sequences and the runner's episodes are all done; returns
// the completions of requests that are not episodes (the finished episodes are in TakeFinished()).
std::vector<Completion> RunEpisodesUntilDone(Engine& engine, EpisodeRunner& runner);

}  // namespace llamarl::controller
