#include "controller/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "core/logging.h"

namespace llamarl::controller {
namespace {

void Field(std::ostringstream& out, const Json& row, const char* key, const char* label) {
  if (row.contains(key) && row[key].is_number()) out << ' ' << label << ' ' << row[key].get<double>();
}

}  // namespace

bool ShouldLogStep(const Json& row, int64_t done, int64_t total) {
  const int64_t every = std::max<int64_t>(1, total / 20);
  return done == 1 || done == total || done % every == 0 || row.contains("eval_reward_mean");
}

std::string ProgressText(const Json& row, int64_t done, int64_t total) {
  std::ostringstream out;
  out.precision(3);
  out << "step " << done << '/' << total;
  Field(out, row, "reward_mean", "reward");
  Field(out, row, "eval_reward_mean", "eval");
  Field(out, row, "loss", "loss");
  Field(out, row, "staleness_mean", "staleness");
  if (row.contains("step_s")) out << ' ' << row["step_s"].get<double>() << " s/step";
  return out.str();
}

void ReportProgress(const Json& row, int64_t done, int64_t total) {
  const std::string text = ProgressText(row, done, total);
  if (!isatty(STDERR_FILENO)) {
    if (ShouldLogStep(row, done, total)) LogInfo(text);
    return;
  }
  constexpr int kWidth = 30;
  const int filled = total > 0 ? int(kWidth * done / total) : kWidth;
  std::fprintf(stderr, "\r[%s%s] %s\033[K%s", std::string(size_t(filled), '#').c_str(),
               std::string(size_t(kWidth - filled), '.').c_str(), text.c_str(), done == total ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace llamarl::controller
