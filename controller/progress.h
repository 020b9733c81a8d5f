// Progress of a training run on the controller: a one-line bar redrawn in place when stderr is a
// terminal, otherwise a log line at the first and last step, every twentieth of the run and at every
// eval result (CI logs, files, pipes).
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace llamarl::controller {

// The text shown for one step's metrics row: "step 12/60 reward 0.43 eval 0.51 loss 0.012 1.8 s/step".
std::string ProgressText(const Json& row, int64_t done, int64_t total);
// Whether a step gets a log line when stderr is not a terminal.
bool ShouldLogStep(const Json& row, int64_t done, int64_t total);
// Writes it as a bar (terminal) or a log line; the bar ends with a newline at the last step.
void ReportProgress(const Json& row, int64_t done, int64_t total);

}  // namespace llamarl::controller
