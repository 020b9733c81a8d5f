#include "report/metrics.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "core/check.h"
#include "core/logging.h"
#include "report/jsonl_file.h"
#include "report/tensorboard.h"

namespace llamarl {
namespace {

bool HasStep(const nlohmann::json& row) {
  auto it = row.find("step");
  return it != row.end() && it->is_number_integer() && it->get<int64_t>() >= 0;
}

}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, bool append)
    : file_(std::make_unique<JsonlAppender>(path, append, "metrics")), path_(path) {}
MetricsWriter::~MetricsWriter() = default;
MetricsWriter::MetricsWriter(MetricsWriter&&) noexcept = default;
MetricsWriter& MetricsWriter::operator=(MetricsWriter&&) noexcept = default;

void MetricsWriter::Write(const nlohmann::json& row) {
  LLAMARL_CHECK(row.is_object() && HasStep(row), "MetricsWriter: a metrics row must be a JSON object with an "
                "integer \"step\" >= 0; got ", row.dump().substr(0, 120));
  if (replace_pending_) {
    file_.reset();  // DropMetricsAfterStep replaces the file: append to the new one
    const int64_t dropped = DropMetricsAfterStep(path_, row["step"].get<int64_t>() - 1);
    if (dropped > 0) LogInfo("metrics: replaced ", dropped, " rows from step ", row["step"], " on (recomputed by the resume)");
    file_ = std::make_unique<JsonlAppender>(path_, /*append=*/true, "metrics");
    replace_pending_ = false;
  }
  file_->Append(row);
  if (!events_) return;
  const int64_t step = row["step"].get<int64_t>();
  for (auto it = row.begin(); it != row.end(); ++it) {
    if (it.key() == "step" || it.key() == "rl_step") continue;
    if (it->is_number()) events_->AddScalar(it.key(), it->get<double>(), step);
    if (it->is_boolean()) events_->AddScalar(it.key(), it->get<bool>() ? 1.0 : 0.0, step);
  }
}

void MetricsWriter::AttachEventFile(std::unique_ptr<EventFileWriter> events) {
  events_ = std::move(events);
}

const std::string& MetricsWriter::path() const { return path_; }

std::vector<nlohmann::json> ReadMetrics(const std::string& path) {
  LLAMARL_CHECK(std::filesystem::exists(path), "metrics file '", path, "' does not exist (a run writes "
                "RUN_DIR/metrics.jsonl from its first step on; check the run directory)");
  JsonlContents contents = ReadJsonl(path, "metrics");
  if (contents.torn_tail) LogWarning("metrics: the last line of '", path, "' is torn (the run was interrupted mid-write); ignoring it");
  for (size_t i = 0; i < contents.rows.size(); ++i) {
    LLAMARL_CHECK(HasStep(contents.rows[i]), "metrics: ", path, ":", contents.line_numbers[i],
                  " has no integer \"step\" >= 0; every metrics row names its step");
  }
  return std::move(contents.rows);
}

int64_t DropMetricsAfterStep(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  std::vector<nlohmann::json> rows = ReadMetrics(path);
  std::string tmp = path + ".tmp";
  int64_t dropped = 0;
  {
    JsonlAppender out(tmp, /*append=*/false, "metrics");
    for (const auto& row : rows) {
      if (row["step"].get<int64_t>() > step) {
        ++dropped;
      } else {
        out.Append(row);
      }
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  LLAMARL_CHECK(!ec, "metrics: cannot replace '", path, "' with '", tmp, "': ", ec.message());
  return dropped;
}

std::vector<nlohmann::json> LatestRowPerStep(const std::vector<nlohmann::json>& rows) {
  std::map<int64_t, const nlohmann::json*> by_step;
  for (const auto& row : rows) by_step[row.at("step").get<int64_t>()] = &row;
  std::vector<nlohmann::json> out;
  out.reserve(by_step.size());
  for (const auto& [step, row] : by_step) out.push_back(*row);
  return out;
}

}  // namespace llamarl
