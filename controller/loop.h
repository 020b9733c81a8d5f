// RunTraining: one recipe, start to end, on every rank of the job (DESIGN.md's process model).
//
//   load the recipe -> resolve the placement -> build (model, tokenizer, data, sub-communicators,
//   weight sync) -> run this rank's role -> close (merge the trace).
//
// Roles: split placement runs GeneratorWorker on ranks [0, G) and TrainerWorker on the rest (the
// first of them is the controller); colocated placement runs ColocatedWorker everywhere, with the
// synchronous baseline when recipe.mode is "sync".
//
// Run directory (written by the controller): recipe.json (resolved), metrics.jsonl, checkpoints/,
// trace/rank_<r>.jsonl (each rank) and trace.json (merged at the end).
//
// Failures: every wait has the recipe's timeout; any exception on a rank is rethrown as
// TrainingFailure (a llamarl::Error) naming the rank, its role and its phase. cli/main.cpp's one
// catch prints it and aborts the whole MPI job, so no rank waits forever for a dead peer. Checkpoints are atomic, so the
// last one stays intact.
#pragma once

#include <string>

#include <c10/core/Device.h>

#include "controller/recipe.h"
#include "core/check.h"
#include "core/communicator.h"

namespace llamarl::controller {

class TrainingFailure : public Error {
 public:
  using Error::Error;
};

struct RunOptions {
  std::string resume_dir;  // continue the run in this directory from its latest checkpoint
  // Where this rank's tensors live (core/device.h ResolveDevice of recipe.device); `world` must move
  // tensors of this device (core/routed_communicator.h CreateJobCommunicator).
  c10::Device device = c10::Device(c10::kCPU);
};

// Collective over `world`. Returns the run summary on the controller ({"eval_start", "eval_end", ...}),
// an empty object on other ranks.
Json RunTraining(Communicator& world, RecipeConfig recipe, const RunOptions& options = {});

}  // namespace llamarl::controller
