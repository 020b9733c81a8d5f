// What one rank of a `llamarl train` job holds in host memory at its peak, from the model's shape and
// the recipe's settings, before anything is loaded: `llamarl train RECIPE --dry-run` prints it per
// rank and says when a rank (or the ranks of one machine together) does not fit the machine.
//
// The trainer's figures are plan_cost.h's: TrainerStateBytesPerGpu (16 bytes/param over the ZeRO-3
// group: f32 master 4, f32 gradient shard 4, AdamW m and v 8) split into weights (the master) and
// optimizer state (the rest), and ActivationBytesPerToken with recomputation (the trainer recomputes
// each layer in its backward) scaled from bf16 to the compute dtype. What a CPU rank adds to those:
//   gathered units: the edges (embedding, final norm, LM head) and one decoder layer in the compute
//     dtype with their gradients, and the f32 copy of the gradients a reduce-scatter sends:
//     (2 * compute + 4) bytes * (edge params + one layer's params);
//   KL reference: its range of the flat vector in kl.reference_dtype, plus one gathered unit in the
//     compute dtype;
//   log-prob tiles: 3 f32 [token_chunk, vocab_chunk] tiles;
//   generator weights: the TP-split parameters / TP plus the replicated edges, in its weight dtype,
//     pushes received into them in place (under TP > 1 the vocabulary rows go through scratch: the
//     edges / TP, then one full [V, D] all-gathered);
//     the KV budget as the engine sizes it (the caller passes it); sampling: 3 f32 [slots, V] rows;
//   runtime: LibTorch, MPI and the program itself (measured on this machine's CPU build).
// Units: bytes. LibTorch-free.
#pragma once

#include "core/config.h"
#include "plan/plan_model.h"

#include <cstdint>
#include <string>
#include <vector>

namespace llamarl {

struct RankMemoryInputs {
  std::string role = "trainer";  // trainer | generator | colocated (both, time-sliced, in one process)
  // Trainer side.
  int64_t trainer_ranks = 1;       // the ZeRO-3 group
  bool zero3 = true;               // false: replicated (every rank holds everything)
  int64_t compute_bytes = 4;       // trainer.compute_dtype
  int64_t reference_bytes = 0;     // kl.reference_dtype; 0 = no reference (kl.coef 0)
  int64_t micro_batch_tokens = 4096;  // tokens of the largest micro-batch
  bool activation_checkpointing = true;  // trainer.activation_checkpointing (zero3)
  int64_t logprob_token_chunk = 1024, logprob_vocab_chunk = 8192;
  // Generator side.
  int64_t tp = 1;
  int64_t generator_weight_bytes = 2;  // generator.weight_dtype's compute dtype (bf16 for float8_e4m3)
  bool generator_fp8 = false;          // generator.weight_dtype float8_e4m3: the layers' projections in 1 byte
  double kv_budget_bytes = 0;          // what the engine allocates (generator/kv_budget.h)
  int64_t max_slots = 64;
  double runtime_bytes = 0.45e9;       // resident before any weight: LibTorch, MPI, the program
  // Freed heap the host allocator may keep for the next step (core/host_allocator.h's trim threshold
  // when its tuning is on). Counted for ranks that train, up to what one of their steps frees.
  double allocator_retained_bytes = 0;
};

struct RankMemoryPlan {
  double weights = 0;      // trainer f32 master range + gathered units; generator weights
  double optimizer = 0;    // f32 gradient range + AdamW m and v
  double reference = 0;    // the KL reference's range + its gathered unit
  double kv_cache = 0;
  double activations = 0;  // trainer micro-batch + log-prob tiles; generator sampling rows
  double runtime = 0;
  double allocator = 0;    // freed heap kept by the host allocator (trainer ranks)
  double Total() const { return weights + optimizer + reference + kv_cache + activations + runtime + allocator; }
  Json ToJson() const;
};

RankMemoryPlan PlanRankMemory(const PlanModel& model, const RankMemoryInputs& in);

// One rank of the job as the dry run lists it.
struct PlannedRank {
  int rank = 0;
  std::string role;
  RankMemoryPlan memory;
};
// "" when every rank fits `host_bytes` alone and all of them together do (one machine); else what
// does not fit, by how much, and its largest part.
std::string MemoryFitProblem(const std::vector<PlannedRank>& ranks, double host_bytes);
// One line per rank ("rank 1 trainer: 6.2 GB = weights ... + optimizer ..."), then the total against
// the machine.
std::string MemoryPlanText(const std::vector<PlannedRank>& ranks, double host_bytes);

}  // namespace llamarl
