// `llamarl train RECIPE --dry-run [--ranks N]`: every rank's planned memory, before anything is loaded.
#pragma once

#include "controller/recipe.h"

namespace llamarl::cli {

// Prints each rank's planned memory (plan/plan_rank_memory.h) for the recipe on `ranks` ranks of this
// machine and whether they fit its memory (MemTotal). Reads the model's config.json, the tokenizer
// and the data (to size sequences), never the weights. Returns 0 when everything fits, 2 when not;
// prints nothing when `print` is false (the other ranks of an mpirun: rank 0 prints for them).
int TrainDryRun(const controller::RecipeConfig& recipe, int ranks, bool json, bool print = true);

}  // namespace llamarl::cli
