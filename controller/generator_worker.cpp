#include "controller/generator_worker.h"

#include <ATen/ATen.h>

#include "controller/batch_planner.h"
#include "controller/episodes.h"
#include "controller/generator_side.h"
#include "core/check.h"
#include "core/logging.h"
#include "core/process_memory.h"
#include "report/trace.h"
#include "reward/registry.h"

namespace llamarl::controller {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kEvalBit = uint64_t(1) << 62;  // request ids of evaluation prompts
constexpr uint64_t kEvalSampledBit = uint64_t(1) << 23;  // ... of their eval.samples requests


}  // namespace

struct GeneratorWorker::InFlight {
  DatasetItem item;
  Clock::time_point start;
  std::vector<Completion> done;
  std::vector<FinishedEpisode> episodes;  // with an environment
};

struct GeneratorWorker::EvalJob {
  int64_t seq = 0, step = 0, version = 0;
  EvalShare share;                               // this replica's held-out prompts
  std::vector<Completion> done;                  // greedy, one per item
  std::vector<std::vector<Completion>> sampled;  // eval.samples per item
  int64_t remaining = 0;                          // completions still to come
  std::vector<double> episode_rewards;            // with an environment: the greedy episode's reward per item
};

Json GeneratorSummary::ToJson() const {
  return {{"kind", "summary"}, {"load_s", load_s}, {"gen_s", gen_s}, {"score_s", score_s}, {"sync_s", sync_s},
          {"idle_s", idle_s}, {"total_s", total_s}, {"groups_sent", groups_sent}, {"groups_unrouted", groups_unrouted},
          {"response_lengths", response_lengths.ToJson()}, {"kv_cache_budget_bytes", kv.budget_bytes},
          {"kv_block_size", kv.block_size}, {"kv_blocks", kv.num_blocks}, {"kv_peak_blocks_in_use", kv.peak_blocks_in_use},
          {"episodes", episodes}};
}

GeneratorWorker::GeneratorWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                                 std::unique_ptr<Communicator> tp_group)
    : job_(job), sync_(sync), tp_(std::move(tp_group)), prompts_(job.data.train, job.recipe) {
  replica_ = job.placement.ReplicaOf(job.world.Rank());
  tp_rank_ = tp_->Rank();
  EngineOptions options = GeneratorEngineOptions(job.recipe, job.config, job.tokenizer, job.data);
  options.tp_group = tp_.get();
  // New weights apply to the running sequences' next tokens without recomputing their KV caches.
  // The refresh is a padded prefill of every running sequence after each push: with long-tailed
  // responses it cost 2-3 s per push on 2 CPU ranks, more than a whole synchronous step, while the
  // rollouts stay sound without it: a group's oldest token version (RolloutGroup::MinVersion, what
  // the staleness bound checks) is also the oldest weights any of its KV entries came from, and the
  // recorded log-probs are those the tokens were actually sampled with, which is what the trainer's
  // importance weights divide by.
  options.refresh_kv_on_update = false;
  engine_ = std::make_unique<Engine>(job.config, weights, GeneratorWeightOptions(job.recipe, job.device), options, 0);
  weights.Release();
  summary_.load_s = job.ElapsedS();
  reward_ = job.recipe.reward.Make();
  if (job.recipe.env.enabled()) {
    std::shared_ptr<env::EnvironmentFactory> factory =
        env::MakeEnvironmentFactory(job.recipe.env.name, job.recipe.env.config, "env.config");
    runner_ = std::make_unique<EpisodeRunner>(job.recipe.env, std::move(factory), job.tokenizer, job.eos_ids(), job.tracer);
  }
  if (IsLeader()) commands_ = std::make_unique<MessagePoller>(job.world, job.placement.FirstTrainer(), kCommandTag);
}

GeneratorWorker::~GeneratorWorker() = default;

GeneratorSummary GeneratorWorker::Run() {
  for (;;) {
    if (job_.recipe.async.deterministic) {
      if (!RunInOrderTurn()) break;
      continue;
    }
    // Pending commands first (a weight push or an eval request must not queue behind new groups);
    // block only when there is nothing to decode and nothing the bound lets us start.
    std::optional<Command> command = NextCommand(/*block=*/!Busy() && !CanSubmit());
    if (command) {
      if (!Handle(*command)) break;
      continue;
    }
    SubmitAdmitted();
    if (Busy()) StepEngine();
    while (!sends_.empty() && sends_.front().IsCompleted()) sends_.pop_front();
  }
  for (auto& s : sends_) s.Wait(job_.timeouts.step, "the last rollouts to the trainers");
  if (rl_start_) summary_.total_s = SecondsSince(*rl_start_);
  summary_.groups_unrouted = int64_t(finished_.size());
  summary_.kv = engine_->KvStats();
  if (runner_) summary_.episodes = runner_->TakeStats().ToJson();
  if (IsLeader()) {
    SendReport(summary_.ToJson());
    sends_.back().Wait(job_.timeouts.step, "the generator summary to the controller");
  }
  return summary_;
}

// async.deterministic: a command that changes what the engine computes (weights, admit, eval, start,
// stop) waits until the engine is idle, and at most one of them that submits work is taken per idle
// moment; so each round of generation is exactly one admit (or one eval) under exactly one version,
// whatever the timing. Route and save only move finished groups and are handled as they come.
bool GeneratorWorker::RunInOrderTurn() {
  const bool idle = !Busy();
  if (idle && !waiting_.empty()) {
    Command c = std::move(waiting_.front());
    waiting_.pop_front();
    if (!Handle(c)) return false;
    SubmitAdmitted();
    return true;
  }
  if (std::optional<Command> c = NextCommand(/*block=*/idle)) {
    if (c->kind == Command::Kind::kRoute || c->kind == Command::Kind::kSave) {
      Handle(*c);
    } else {
      waiting_.push_back(std::move(*c));
    }
    return true;
  }
  if (Busy()) StepEngine();
  while (!sends_.empty() && sends_.front().IsCompleted()) sends_.pop_front();
  return true;
}

std::optional<Command> GeneratorWorker::NextCommand(bool block) {
  const auto timeout = known_step_ < 0 ? job_.timeouts.startup : job_.timeouts.step;
  const auto t = Clock::now();
  std::optional<std::vector<uint8_t>> bytes;
  if (IsLeader()) {
    if (block) {
      ScopedPhase phase(job_, "wait");
      bytes = commands_->Wait(timeout, "a command from the controller");
    } else {
      bytes = commands_->Poll();
    }
  }
  if (tp_->Size() > 1) {
    // The leader's decision reaches every TP rank in the same loop turn (SPMD engine calls).
    at::Tensor header = at::full({1}, bytes ? int64_t(bytes->size()) : int64_t(-1), at::kLong);
    tp_->Broadcast(header)->Wait(timeout);
    const int64_t n = header.item<int64_t>();
    at::Tensor payload = IsLeader() && n > 0 ? at::from_blob(bytes->data(), {n}, at::kByte).clone()
                                             : at::empty({std::max<int64_t>(n, 0)}, at::kByte);
    if (n > 0) tp_->Broadcast(payload)->Wait(timeout);
    if (n >= 0 && !IsLeader()) bytes = std::vector<uint8_t>(payload.data_ptr<uint8_t>(), payload.data_ptr<uint8_t>() + n);
  }
  if (block && rl_start_) summary_.idle_s += SecondsSince(t);
  if (!bytes) return std::nullopt;
  return Command::Decode(*bytes);
}

bool GeneratorWorker::Handle(const Command& c) {
  switch (c.kind) {
    case Command::Kind::kStart:
      first_step_ = c.payload.at("first_step").get<int64_t>();
      prompts_.Restore(Cursor::FromJson(c.payload.at("cursor"), "start command cursor"), first_step_);
      Restore(c.payload.value("restored", int64_t(0)));
      return true;
    case Command::Kind::kSave:
      Save(c);
      return true;
    case Command::Kind::kWeights: {
      const auto t = Clock::now();
      if (!rl_start_) rl_start_ = t;
      ScopedPhase phase(job_, "sync");
      sync_.PushReplica(replica_, c.version, nullptr, engine_.get());
      summary_.sync_s += SecondsSince(t);
      known_step_ = c.step;
      MaybeKillForTest(job_.recipe.debug, job_.world.Rank(), known_step_);
      return true;
    }
    case Command::Kind::kAdmit:
      for (const Json& j : c.payload.at("groups")) admitted_.push_back(j.get<int64_t>());
      return true;
    case Command::Kind::kRoute:
      Route(c);
      return true;
    case Command::Kind::kEval: {
      EvalJob e;
      e.seq = c.payload.at("seq").get<int64_t>();
      e.step = c.step;
      e.version = c.version;
      e.share = EvalShareOf(job_, replica_);
      const size_t n = e.share.items.size();
      e.done.resize(n);
      e.sampled.resize(n);
      e.remaining = int64_t(n) * (1 + job_.recipe.eval.samples);
      const uint64_t base = kEvalBit | (uint64_t(e.seq) << 24);
      if (runner_) {
        SubmitEvalEpisodes(e, base);
      } else {
        SubmitEval(*engine_, job_, e.share, [base](size_t i) { return base | i; },
                   [base](size_t i) { return base | kEvalSampledBit | i; });
      }
      evals_.push_back(std::move(e));
      if (evals_.back().remaining == 0) FinishEval(evals_.back());
      return true;
    }
    case Command::Kind::kStop:
      return false;
  }
  return true;
}

void GeneratorWorker::SubmitEvalEpisodes(EvalJob& e, uint64_t base) {
  // Greedy episodes, scored by the environment (recipe validation keeps eval.samples at 0).
  e.remaining = int64_t(e.share.items.size());
  e.episode_rewards.resize(e.share.items.size());
  for (size_t i = 0; i < e.share.items.size(); ++i) {
    const DatasetItem& item = e.share.items[i];
    runner_->Submit(*engine_,
                    GenerationRequest{base | i, job_.tokenizer.Encode(item.prompt), EvalSampling(job_.recipe, job_.config), 1},
                    {item.id, item.prompt, item.answer});
  }
}

void GeneratorWorker::SubmitAdmitted() {
  const int64_t per_step = job_.routing.groups_per_step;
  for (; !admitted_.empty(); admitted_.pop_front()) {
    // The admission index is the run's (batch_planner.h): the group id, and the step whose prompts it takes.
    const int64_t step = admitted_.front() / per_step;
    const int64_t k = admitted_.front() % per_step;
    const DatasetItem& item = prompts_.ForStep(step)[size_t(k)];
    const uint64_t id = uint64_t(admitted_.front());
    if (runner_) runner_->Submit(*engine_, RolloutRequest(job_, id, item), {item.id, item.prompt, item.answer});
    else engine_->Submit(RolloutRequest(job_, id, item));
    in_flight_[id] = InFlight{item, Clock::now(), {}, {}};
  }
}

void GeneratorWorker::Route(const Command& c) {
  if (!IsLeader()) return;  // only the leader keeps finished groups
  for (const Json& send : c.payload.at("send")) {
    auto it = finished_.find(send.at(0).get<int64_t>());
    LLAMARL_ASSERT(it != finished_.end(), "route of group ", send.at(0), " which replica ", replica_,
                   " does not hold");
    it->second.step = c.step;
    sends_.push_back(SendBytes(job_.world, EncodeRolloutGroup(it->second), send.at(1).get<int>(), kRolloutTag));
    finished_.erase(it);
    ++summary_.groups_sent;
  }
  for (const Json& id : c.payload.at("drop")) finished_.erase(id.get<int64_t>());
}

void GeneratorWorker::StepEngine() {
  const auto t = Clock::now();
  std::vector<Completion> finished;
  if (engine_->HasWork()) {
    ScopedPhase phase(job_, "generate");
    finished = engine_->Step();
    if (runner_) finished = runner_->Take(*engine_, std::move(finished));
  }
  summary_.gen_s += SecondsSince(t);
  for (Completion& c : finished) OnCompletion(std::move(c));
  if (!runner_) return;
  // Episodes at their tools: pick up what finished; with nothing to decode, wait a little (not
  // long: commands from the controller are polled between these calls).
  runner_->Apply(*engine_, engine_->HasWork() ? 0.0 : 0.002);
  for (FinishedEpisode& e : runner_->TakeFinished()) OnEpisode(std::move(e));
}

void GeneratorWorker::OnEpisode(FinishedEpisode e) {
  const uint64_t id = e.completion.request_id;
  if (id & kEvalBit) {
    const int64_t seq = int64_t((id & ~kEvalBit) >> 24);
    const size_t index = size_t(id & (kEvalSampledBit - 1));
    for (auto& job : evals_) {
      if (job.seq != seq) continue;
      job.episode_rewards[index] = e.reward;
      job.done[index] = std::move(e.completion);
      if (--job.remaining == 0) FinishEval(job);
    }
    while (!evals_.empty() && evals_.front().remaining == 0) evals_.pop_front();
    return;
  }
  auto it = in_flight_.find(id);
  LLAMARL_ASSERT(it != in_flight_.end(), "episode of unknown request ", id);
  summary_.response_lengths.Add(int64_t(e.completion.tokens.size()));
  it->second.episodes.push_back(std::move(e));
  if (int64_t(it->second.episodes.size()) < job_.recipe.rollout.group_size) return;
  if (IsLeader()) {
    RolloutGroup g = EpisodeGroup(std::move(it->second.episodes), it->second.item.id);
    g.group_id = int64_t(it->first);
    g.generator_rank = job_.world.Rank();
    g.gen_s = SecondsSince(it->second.start);
    Announce(std::move(g));
  }
  in_flight_.erase(it);
}

void GeneratorWorker::OnCompletion(Completion c) {
  if (c.request_id & kEvalBit) {
    const int64_t seq = int64_t((c.request_id & ~kEvalBit) >> 24);
    const size_t index = size_t(c.request_id & (kEvalSampledBit - 1));
    const bool sampled = c.request_id & kEvalSampledBit;
    for (auto& e : evals_) {
      if (e.seq != seq) continue;
      if (sampled) e.sampled[index].push_back(std::move(c));
      else e.done[index] = std::move(c);
      if (--e.remaining == 0) FinishEval(e);
    }
    while (!evals_.empty() && evals_.front().remaining == 0) evals_.pop_front();
    return;
  }
  auto it = in_flight_.find(c.request_id);
  LLAMARL_ASSERT(it != in_flight_.end(), "completion of unknown request ", c.request_id);
  summary_.response_lengths.Add(int64_t(c.tokens.size()));
  it->second.done.push_back(std::move(c));
  if (int64_t(it->second.done.size()) < job_.recipe.rollout.group_size) return;
  if (IsLeader()) {
    const auto t = Clock::now();
    ScopedStep in_step("RL", int64_t(it->first) / job_.routing.groups_per_step);
    ScopedPhase scoring(job_, "score", /*trace=*/false);
    RolloutGroup g = ScoreRolloutGroup(job_, *reward_, it->second.done, it->second.item, int64_t(it->first),
                                       SecondsSince(it->second.start));
    summary_.score_s += SecondsSince(t);
    Announce(std::move(g));
  }
  in_flight_.erase(it);
}

void GeneratorWorker::Announce(RolloutGroup g) {
  ReadyGroup ready{g.group_id, replica_, g.NumResponseTokens(), g.MinVersion(), {}};
  for (const RolloutSample& s : g.samples) ready.rewards.push_back(s.reward);
  Json report = ready.ToJson();
  report.update({{"rank", job_.world.Rank()}, {"peak_rss_bytes", TakeWindowPeakRssBytes()}});
  SendReport(report);
  finished_[g.group_id] = std::move(g);
}

void GeneratorWorker::Restore(int64_t count) {
  if (!IsLeader()) return;
  const int controller = job_.placement.FirstTrainer();
  for (int64_t i = 0; i < count; ++i) {
    std::vector<uint8_t> bytes = RecvBytes(job_.world, controller, kCheckpointTag, job_.timeouts.startup,
                                           "the finished groups of the checkpoint being resumed");
    Announce(DecodeRolloutGroup(bytes.data(), bytes.size()));
  }
}

void GeneratorWorker::Save(const Command& c) {
  if (!IsLeader()) return;
  for (const Json& id : c.payload.at("groups")) {
    auto it = finished_.find(id.get<int64_t>());
    LLAMARL_ASSERT(it != finished_.end(), "save of group ", id, " which replica ", replica_, " does not hold");
    sends_.push_back(
        SendBytes(job_.world, EncodeRolloutGroup(it->second), job_.placement.FirstTrainer(), kCheckpointTag));
  }
}

void GeneratorWorker::SendReport(const Json& report) {
  const std::string text = report.dump();
  sends_.push_back(SendBytes(job_.world, std::vector<uint8_t>(text.begin(), text.end()),
                             job_.placement.FirstTrainer(), kReportTag));
}

void GeneratorWorker::FinishEval(EvalJob& e) {
  if (!IsLeader()) return;
  ScopedStep in_step("RL", e.step);
  ScopedPhase scoring(job_, "eval", /*trace=*/false);
  int64_t oldest = INT64_MAX;
  for (const auto& c : e.done) {
    for (int64_t v : c.versions) oldest = std::min(oldest, v);
  }
  EvalTally t;
  if (runner_) {
    for (double r : e.episode_rewards) t.sum += r;
    t.count = int64_t(e.episode_rewards.size());
  } else {
    t = ScoreEvalShare(job_, *reward_, e.share, e.done, e.sampled);
  }
  Json j = {{"kind", "eval"}, {"seq", e.seq}, {"step", e.step}, {"version", e.version},
            {"sum", t.sum}, {"count", t.count},
            {"pass_at_k_sum", t.pass_at_k_sum}, {"mean_at_k_sum", t.mean_at_k_sum},
            {"oldest_version", oldest == INT64_MAX ? e.version : oldest}};
  SendReport(j);
}

}  // namespace llamarl::controller
