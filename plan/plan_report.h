// Renders a plan (plan/plan_search.h) for people and programs: a table with the assumptions
// the numbers rest on, JSON for scripts, and a recipe skeleton for the chosen placement.
// JSON fields (stable; tests and scripts rely on them):
//   model {name, params, layers, hidden, kv_heads, head_dim, kv_bytes_per_token}
//   hardware {...profile}, gpus, assumptions {...}, fits
//   async {placement, step_s, generate_s, train_s, weight_sync_s, generator {...}, trainer {...}}
//   sync  {placement, step_s, generate_s, train_s, reshard_s, offload_s, generator {...}, trainer {...}}
//   speedup, weight_sync_s (DDMA), weight_sync_gather_broadcast_s, rejected [...], advice [...], recipe {...}
// LibTorch-free.
#pragma once

#include "plan/plan_search.h"

#include <string>
#include <vector>

namespace llamarl {

Json PlanToJson(const PlanRequest& request, const PlanResult& result);
std::string PlanToText(const PlanRequest& request, const PlanResult& result);
// The recipe fields the chosen split placement fixes (placement, generator TP and dtype, trainer
// sharding, batch); null when no split placement fits.
Json RecipeSkeleton(const PlanRequest& request, const PlanResult& result);
// One line per modelling assumption, with the numbers used.
std::vector<std::string> AssumptionLines(const PlanRequest& request);
// printf-style rendering of one number ("%.1f GB"), shared by the text report.
std::string FormatNumber(const char* format, double x);

}  // namespace llamarl
