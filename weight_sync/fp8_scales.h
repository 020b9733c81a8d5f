// fp8 e4m3 weight sync (TransferEncoding::kFp8E4m3): the scales of the source shards, the encoding of
// the pieces a source packs, and the scale messages between a source and a destination.
//
// Why the scales need the trainer group: a ZeRO flat shard cuts parameters mid-row, so a source rank
// may hold part of a row. A scale computed from that part (or per contiguous block) would differ
// between the two halves of the row and from the scale of the full weight, and the generator could not
// use the row as one fp8 output channel. So every source rank computes the absolute maxima of the
// rows it holds, exchanges the partial maxima of the rows it shares (plan.amax_shares(): for ZeRO at
// most one row per shard boundary and parameter, a few bytes) point-to-point with the ranks that share
// them, and takes the maximum. The max is exact in any order, so every holder of a row computes the
// same scale, bit for bit the scale kernels::CastToFp8E4m3 computes on the full weight, and no rank
// ever needs a whole row's values. Only the source ranks take part; no collective over the
// communicator is needed (destinations and ranks outside the placement are not involved).
#pragma once

#include "core/communicator.h"
#include "weight_sync/transfer_plan.h"

#include <chrono>
#include <vector>

namespace llamarl {

struct SourceScalesArgs {
  Communicator* comm = nullptr;
  const TransferPlan* plan = nullptr;
  const std::vector<int>* src_ranks = nullptr;  // communicator rank of every source layout rank
  int my_src = 0;                               // this rank's source layout rank
  const std::vector<at::Tensor>* src_flat = nullptr;  // this rank's source buffers, flattened
  std::chrono::milliseconds timeout = std::chrono::milliseconds::max();
};

// Per parameter, float32 [NumScaleGroups(param)] scales (amax / 448, or 1 where the amax is 0) of
// every group this rank holds part of; undefined for parameters it holds nothing of. Throws naming
// the parameter when a value it holds is not finite (no usable scale; the other source ranks then
// fail on the timeout of their next exchange).
std::vector<at::Tensor> ComputeSourceScales(const SourceScalesArgs& args);

// Encodes a [rows, cols] piece of `param` whose first row is row `first_row` of the parameter into
// e4m3fn bits, uint8 [rows, cols], with the parameter's scales (per row, or its one scale when 1-D).
at::Tensor EncodePiece(const at::Tensor& piece, const ParamSpec& param, const at::Tensor& param_scales,
                       int64_t first_row);

// The scales the pair's carrying blocks hold, in block order: float32 [pair.num_scales].
at::Tensor PackScales(const TransferPlan& plan, const PairPlan& pair, const std::vector<at::Tensor>& scales);
// Writes a pair's scales (as PackScales made them) into the destination rank's scale buffers.
void UnpackScales(const TransferPlan& plan, const PairPlan& pair, const at::Tensor& wire,
                  const std::vector<at::Tensor>& dst_scales);

// Zero-filled float32 scale buffers of destination rank `rank`, one per buffer in buffer order:
// [rows of its region] for parameters of 2 dims or more, [1] for 1-D parameters.
std::vector<at::Tensor> AllocateScaleBuffers(const TransferPlan& plan, int rank,
                                             const at::TensorOptions& options = at::TensorOptions());
// Throws naming the buffer unless `scales` are what AllocateScaleBuffers returns (count, dtype, size).
void CheckScaleBuffers(const TransferPlan& plan, int rank, const std::vector<at::Tensor>& scales);

}  // namespace llamarl
