// The cost model behind `llamarl plan`: memory per GPU and seconds per RL step for a generator
// group and a trainer group, and the time of a weight push between them. Every figure is a closed
// formula of the model's shape, the hardware profile and PlanAssumptions, so a reader can redo it by
// hand (tests/plan/plan_cost_test.cpp does, in its comments). Units: bytes, seconds, FLOP.
//
// Formulas (N = parameters, L = layers, D = hidden, I = MLP width, kv = kv_heads * head_dim):
//   trainer states per GPU (ZeRO-3 over a shard group of S GPUs, AdamW, mixed precision):
//       16 N / S bytes  = bf16 params 2 + bf16 grads 2 + f32 master 4 + f32 Adam m 4 + f32 Adam v 4
//     + 2 * 2 * largest_unit bytes: the gathered bf16 unit in use and the one prefetched
//   activations per token per layer kept for backward (bf16, flash attention, no [T, T] scores):
//       without checkpointing: 2 * (6 D + 2 kv + 4 I)   (norm inputs/outputs, q k v, attention out,
//                                                       gate, up, silu(gate), gate*up)
//       with checkpointing:    2 D per layer + one layer's full set (recomputed during backward)
//   generator weights per GPU: (linear weights in the chosen dtype + the rest in bf16) / TP
//   KV cache per token: 2 * L * kv_heads * head_dim * 2 bytes (bf16), divided by TP
//   decode step: memory-bandwidth bound: read this GPU's weights + the live sequences' KV cache at
//     hbm_efficiency * peak bandwidth; never faster than its FLOPs at prefill_mfu; plus two TP
//     all-reduces per layer at tp_allreduce_latency_s each
//   decode steps of a replica: continuous batching of `c` slots: max(r_max, B r_mean / c + r_max - r_mean)
//   training: (6 + 2 * reference_forward_passes + 2 if checkpointing) N tokens / (GPUs * peak *
//     train_mfu), train_mfu counting every FLOP the hardware runs (recompute included), overlapped
//     with ZeRO-3 traffic (2 all-gathers + 1 reduce-scatter of bf16 params per micro-batch)
//   weight push, DDMA: every trainer GPU sends its 1/T of the generator-dtype bytes to each of the R
//     generator replicas, every generator GPU receives its 1/TP: max of the two over the network
//   weight push, gather-and-broadcast: all bytes into one GPU, then a pipelined broadcast out of it
// LibTorch-free.
#pragma once

#include "plan/hardware.h"
#include "plan/plan_model.h"
#include "core/config.h"

#include <cstdint>
#include <string>

namespace llamarl {

// The batch of one RL step and the efficiencies the model assumes; every field is printed with
// the plan and can be set from JSON (`--assumptions FILE.json`) or the command line.
struct PlanAssumptions {
  int64_t num_prompts = 512;
  int64_t samples_per_prompt = 4;
  int64_t prompt_tokens = 512;
  int64_t response_tokens_mean = 1024;  // responses are spread between 1 and max with this mean
  int64_t response_tokens_max = 4096;
  double train_mfu = 0.40;               // trainer FLOPs utilisation (recompute counted as work)
  double prefill_mfu = 0.50;             // generator prefill and the compute floor of decode
  double hbm_efficiency = 0.70;          // fraction of peak HBM bandwidth a decode step achieves
  double network_efficiency = 0.80;      // fraction of NIC / NVLink peak that bulk transfers achieve
  double tp_allreduce_latency_s = 10e-6; // one small all-reduce inside a node during decode
  int64_t max_decode_batch = 256;        // sequences a generator replica decodes at once, at most
  int64_t micro_batch_tokens = 16384;    // trainer tokens per GPU per forward/backward
  int64_t reference_forward_passes = 1;  // extra forward passes per step (reference log-probs for KL)
  double memory_reserve_gb = 4;          // per GPU: CUDA context, NCCL buffers, allocator slack
  int64_t max_policy_lag = 1;            // async: rollouts are at most this many versions old

  static PlanAssumptions FromJson(const Json& json, const std::string& path, PlanAssumptions base);
  Json ToJson() const;
  void Validate() const;
  int64_t NumSequences() const { return num_prompts * samples_per_prompt; }
  // Tokens the trainer processes per step (prompts + mean responses).
  double TrainTokens() const { return double(NumSequences()) * double(prompt_tokens + response_tokens_mean); }
};

enum class WeightDtype { kBf16, kFp8 };
const char* WeightDtypeName(WeightDtype dtype);
int64_t WeightDtypeBytes(WeightDtype dtype);

// ---- memory formulas (bytes) ----
double TrainerStateBytesPerGpu(const PlanModel& model, int64_t shard_group);
double ActivationBytesPerToken(const LlamaConfig& config, bool checkpointing);
double GeneratorWeightBytes(const PlanModel& model, WeightDtype dtype);  // one full copy
double KvBytesPerTokenPerGpu(const PlanModel& model, int64_t tp);

// ---- generator ----
struct GeneratorSetup {
  int64_t num_gpus = 0;
  int64_t tp = 1;
  WeightDtype dtype = WeightDtype::kBf16;
  double resident_bytes_per_gpu = 0;  // colocated: trainer state left on the GPU while generating
};
struct GeneratorCost {
  bool fits = false;
  std::string why_not;  // when !fits: the numbers that did not fit
  double weight_bytes_per_gpu = 0, kv_budget_bytes_per_gpu = 0, kv_bytes_per_sequence_per_gpu = 0;
  int64_t replicas = 0, sequences_per_replica = 0, concurrent_sequences = 0;
  double decode_steps = 0, decode_step_s = 0, prefill_s = 0, time_s = 0;
};
GeneratorCost EstimateGenerator(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                                const GeneratorSetup& setup);

// ---- trainer ----
struct TrainerSetup {
  int64_t num_gpus = 0;
  int64_t shard_group = 0;  // ZeRO-3 inside groups of this size, replicated across groups (HSDP)
  bool checkpointing = true;
};
struct TrainerCost {
  bool fits = false;
  std::string why_not;
  double state_bytes_per_gpu = 0, gathered_bytes_per_gpu = 0, activation_bytes_per_gpu = 0, total_bytes_per_gpu = 0;
  int64_t micro_batches = 0;
  double compute_s = 0, comm_s = 0, time_s = 0;
};
TrainerCost EstimateTrainer(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                            const TrainerSetup& setup);

// ---- weight push from trainers to generators ----
struct WeightSyncCost {
  double bytes = 0;  // one copy in the generator's dtype
  double ddma_s = 0, gather_broadcast_s = 0;
};
WeightSyncCost EstimateWeightSync(const PlanModel& model, const HardwareProfile& hw, const PlanAssumptions& a,
                                  const TrainerSetup& trainer, const GeneratorSetup& generator);

// Bandwidth (bytes/s) of a bulk collective over `group` GPUs: NVLink inside a node, else the NIC.
double GroupBandwidth(const HardwareProfile& hw, const PlanAssumptions& a, int64_t group);

}  // namespace llamarl
