// metrics.jsonl: one JSON object per training step, written by the controller (the first trainer rank)
// and flushed line by line, so that a crash loses at most the line being written.
//
// Keys (absent = not measured this step; a value is never invented to fill a gap):
//   step, policy_version, time_s (seconds since the run started), phase ("sft" | "rl"),
//   reward_mean, reward_std, eval_reward_mean (eval steps only; held-out prompts, greedy),
//   eval_pass_at_k, eval_mean_at_k, eval_samples (eval steps with eval.samples k > 0),
//   loss, kl, entropy, grad_norm, lr, skipped,
//   staleness_mean, staleness_max (per trained token: trainer version - sampling version),
//   stale_groups (trained groups with a token older than max_policy_lag versions; 0 colocated),
//   split only: stale_trained and stale_recomputed (of those, trained as sampled / rescored first,
//   async.on_stale), dropped_stale (discarded by async.on_stale "drop"), trainer_tokens (response
//   tokens routed to each trainer rank), ready_queue (finished groups waiting once the step's batch
//   was taken),
//   iw_mean, iw_max, iw_truncated_fraction, iw_ess,
//   ratio_mean, ratio_min, ratio_max, clip_frac_low, clip_frac_high, approx_kl (policy vs its ratio's
//   anchor over the step's updates), updates, updates_applied (optimizer updates of the step),
//   tokens, tokens_per_s, samples, response_len_mean,
//   gen_s, score_s, train_s, sync_s, idle_s_trainer, idle_s_generator,
//   multi-turn episodes (env): turns_mean (model turns per trained episode), tool_s_mean and
//   tool_s_max (seconds of one environment step: mean over the step's turns, and the slowest),
//   zero_std_groups (trained groups whose rewards are all equal: no group-relative signal),
//   algorithm.dapo.dynamic_sampling only: filtered_groups (groups without signal discarded for
//   this step), generated_groups (the batch plus those), colocated: generation_rounds,
//   colocated: offload_s, offload_bytes, {gen,train}_{trainer_state,kv_cache}_bytes (resident per phase),
//   peak_rss_bytes_rank<r> (rank r's peak resident memory, VmHWM, since the previous row: every
//   trainer / colocated rank each step; split generator replicas' leaders as of their latest finished
//   group) and peak_rss_bytes (their max). summary.json holds every rank's peak over the run
//   (peak_rss_bytes) and its resident memory before loading (rss_at_start_bytes).
// Non-finite numbers are written as null (JSON has no NaN); readers treat null as "no value".
// `llamarl report` reads these keys; a key it does not know is kept and ignored.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamarl {

class JsonlAppender;
class EventFileWriter;

class MetricsWriter {
 public:
  // append = false starts a new file; append = true (resume) keeps the rows already written, after
  // cutting off a torn last line left by a crash. Creates the parent directory.
  explicit MetricsWriter(const std::string& path, bool append = false);
  ~MetricsWriter();
  MetricsWriter(MetricsWriter&&) noexcept;
  MetricsWriter& operator=(MetricsWriter&&) noexcept;

  // One row: a JSON object with an integer "step" >= 0. Flushed before returning. Thread-safe.
  void Write(const nlohmann::json& row);
  // Resume: the next Write first drops the rows whose step is at or after its row's (they are being
  // recomputed). Done then, not at open, so that a resume failing before its first step leaves the
  // file as it was.
  void ReplaceFromFirstRow() { replace_pending_ = true; }
  // Every later row's numbers (bools as 0/1; not "step" and "rl_step") also go to `events` as
  // TensorBoard scalars tagged with their key, at the row's step.
  void AttachEventFile(std::unique_ptr<EventFileWriter> events);
  const std::string& path() const;

 private:
  std::unique_ptr<JsonlAppender> file_;
  std::unique_ptr<EventFileWriter> events_;
  std::string path_;
  bool replace_pending_ = false;
};

// The rows of a metrics file in file order. A torn last line (a crash mid-write) is dropped with a
// warning; a malformed line anywhere else is an Error naming path:line.
std::vector<nlohmann::json> ReadMetrics(const std::string& path);

// For resume from a checkpoint taken at `step`: removes the rows with a step greater than `step`
// (they will be recomputed, and would otherwise appear twice) and a torn tail. Rewrites the file
// atomically (temporary file + rename). Returns the number of rows removed. A missing file is 0.
int64_t DropMetricsAfterStep(const std::string& path, int64_t step);

// Keeps the last row of each step (a resumed run that did not drop its tail repeats steps; the
// rerun is the one that counted), sorted by step.
std::vector<nlohmann::json> LatestRowPerStep(const std::vector<nlohmann::json>& rows);

}  // namespace llamarl
