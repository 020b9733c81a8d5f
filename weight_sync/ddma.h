// DDMA execution of a TransferPlan over a Communicator: every source rank writes its bytes straight
// into the destination ranks that need them, all pairs at once (one SendRecvBatch per round: MPI
// Isend/Irecv, NCCL group send/recv), nothing gathered on one rank.
//
// Memory stays bounded: the byte stream of every (source, destination) pair is cut into buckets of
// at most `bucket_bytes`; round k moves bucket k of every pair. Two staging sets alternate (double
// buffering): round k+1 is packed while round k is in flight, and round k is unpacked while round
// k+1 is in flight. Peak staging per rank = 2 x bucket_bytes x (number of remote peers), twice that
// when the rank both sends and receives.
//
// The wire carries the destination dtype: the sender casts (f32 master weights -> bf16) while
// packing, so half the bytes move. A pair whose two ends are the same communicator rank (colocated
// placement) is executed as in-process strided copies, with no communication.
//
// fp8 plans (TransferEncoding::kFp8E4m3): the source ranks first agree on the scale of every row they
// share (weight_sync/fp8_scales.h), then each pair's scales travel in one message before round 0, and
// the buckets carry e4m3fn bytes encoded on the sender with those scales.
//
// Optional checksum (debugging): the sender hashes every bucket (FNV-1a 64) and sends the hash next to
// it; the receiver recomputes it and throws naming the pair and the round on a mismatch.
//
// Collective over the ranks named in the placement: each calls ExecuteTransfer with its side(s) of the
// plan; ranks of `comm` outside the placement do not call it. Not thread-safe with other users of the
// same Communicator (see core/communicator.h).
#pragma once

#include "core/communicator.h"
#include "weight_sync/transfer_plan.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace llamarl {

// Communicator ranks of the plan's source and destination ranks. A rank may appear in both
// (colocated); within one side, ranks are distinct.
struct TransferPlacement {
  std::vector<int> src_ranks;  // src_ranks[i]: communicator rank of source layout rank i
  std::vector<int> dst_ranks;
  // Split placement (DESIGN.md): generators on [0, num_generators), trainers on the rest.
  static TransferPlacement Split(int world_size, int num_generators);
  // Every rank both trains (source rank r) and generates (destination rank r).
  static TransferPlacement Colocated(int world_size);
};

// The wire buffers of the two alternating rounds, kept between pushes. Why keep them: staging
// allocated per push comes from fresh mmaps (glibc maps requests of >= 32 MiB and unmaps them on free),
// and the first-touch page faults cost more than the copies (on the bench's VM at 4 ranks, packing
// into fresh 32 MiB buckets took 3.8 s per push, mostly page faults, against 0.2 s into 1 MiB ones that
// malloc recycles; with kept staging the whole push took 0.3 s). ExecuteTransfer fills it on the
// first call and reuses it while the plan, the rank, the bucket size and the device stay the same;
// otherwise it is reallocated. Holds 2 x bucket_bytes per remote peer. Not thread-safe: one transfer
// at a time per staging.
struct TransferStaging {
  std::string key;  // what the buffers were sized for (plan id, placement, rank, bucket, device)
  std::vector<at::Tensor> wire[2];      // per stream of the executing rank
  std::vector<at::Tensor> checksum[2];  // per stream, one int64
};

struct TransferOptions {
  int64_t bucket_bytes = int64_t(32) << 20;  // per (source, destination) pair and round, in wire bytes
  bool checksum = false;                     // hash every bucket and verify it at the receiver
  std::chrono::milliseconds timeout = std::chrono::milliseconds::max();  // per round
  // Reused between calls when set (a caller that pushes every step keeps one); null: staging is
  // allocated for the call only. See TransferStaging.
  std::shared_ptr<TransferStaging> staging;
};

// The buffers of this rank's side(s), in the order of the layout's buffers for its layout rank, each
// contiguous with the layout's dtype and exact element count. Leave a side empty where the rank has
// no role there.
struct TransferBuffers {
  std::vector<at::Tensor> src;
  std::vector<at::Tensor> dst;  // written in place
  // fp8 plans: the destination's float32 scales, one per buffer (AllocateScaleBuffers in
  // weight_sync/fp8_scales.h); written in place. Empty for plain plans.
  std::vector<at::Tensor> dst_scales;
};

// Index of `comm_rank` in `ranks`, or -1.
int LayoutRankOf(const std::vector<int>& ranks, int comm_rank);

// Checks the placement against the plan and the communicator (sizes, ranges, duplicates).
void CheckPlacement(const TransferPlan& plan, const TransferPlacement& placement, const Communicator& comm);

void ExecuteTransfer(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                     TransferBuffers& buffers, const TransferOptions& options = {});

// Allocates zero-filled buffers for `rank` of `layout` (what a destination receives into).
std::vector<at::Tensor> AllocateBuffers(const ShardLayout& layout, int rank,
                                        const at::TensorOptions& options = at::TensorOptions());

}  // namespace llamarl
