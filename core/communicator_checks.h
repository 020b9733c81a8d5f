// Argument checks and small helpers shared by the Communicator backends (mpi, nccl), so that both
// reject the same calls with the same messages. Every message starts with the operation's
// description (`what`: op, sizes, rank) and says what was expected and how to fix the call.
#pragma once

#include "core/check.h"
#include "core/communicator.h"

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace llamarl::comm_detail {

inline constexpr const char* kSupportedDtypes = "float32, float64, bfloat16, float16, int64, int32, uint8, bool";

inline bool IsIntegral(at::ScalarType type) {
  return type == at::kLong || type == at::kInt || type == at::kByte || type == at::kBool;
}

// avg is a float-only reduction (no backend floors silently); bool has no sum, only or/and.
inline void CheckReduction(ReduceOp op, at::ScalarType type, const std::string& what) {
  LLAMARL_CHECK(!(op == ReduceOp::kAvg && IsIntegral(type)), what, ": avg over ", type,
                " tensors is not supported (the mean of integers is not an integer); reduce with sum and "
                "divide, or use a floating-point tensor");
  LLAMARL_CHECK(!(op == ReduceOp::kSum && type == at::kBool), what,
                ": sum over bool tensors is not supported; use max (logical or) or min (logical and)");
}

inline void CheckPeer(int peer, int size, const std::string& what) {
  LLAMARL_CHECK(peer >= 0 && peer < size, what, ": peer rank ", peer, " is out of range; expected 0 <= peer < ", size);
}

inline void CheckRoot(int root, int size, const std::string& what) {
  LLAMARL_CHECK(root >= 0 && root < size, what, ": root rank ", root, " is out of range; expected 0 <= root < ", size);
}

// The device- and dtype-independent part of a backend's tensor check.
inline void CheckDenseContiguous(const at::Tensor& t, const std::string& what) {
  LLAMARL_CHECK(t.defined(), what, ": the tensor is undefined");
  LLAMARL_CHECK(t.layout() == at::kStrided, what, ": expected a dense (strided) tensor, got layout ", t.layout());
  LLAMARL_CHECK(t.is_contiguous(), what, ": the tensor must be contiguous (got sizes ", t.sizes(), ", strides ",
                t.strides(), "); call .contiguous() first");
}

using TensorCheck = std::function<void(const at::Tensor&, const std::string&)>;

// The per-rank tensors of AllGather (outputs, one input) or ReduceScatter (inputs, one output).
struct PerRankTensors {
  const std::vector<at::Tensor>& tensors;
  const char* name;     // "outputs"
  const char* slot;     // what this rank's entry is: "slot", "part"
  const at::Tensor& own;
  const char* own_name;  // "input"
};

// One tensor per rank, each passing `check` and of `own`'s dtype; this rank's entry holds as many
// elements as `own`.
inline void CheckPerRank(const PerRankTensors& args, int rank, int size, const std::string& what,
                         const TensorCheck& check) {
  LLAMARL_CHECK(int64_t(args.tensors.size()) == size, what, ": expected ", size, " ", args.name, " (one per rank), got ",
                args.tensors.size());
  for (int r = 0; r < size; ++r) {
    std::string what_r = what + ", " + args.name + "[" + std::to_string(r) + "]";
    check(args.tensors[r], what_r);
    LLAMARL_CHECK(args.tensors[r].scalar_type() == args.own.scalar_type(), what_r, ": dtype ",
                  args.tensors[r].scalar_type(), " differs from ", args.own.scalar_type(),
                  "; every tensor of the call must have one dtype");
  }
  LLAMARL_CHECK(args.tensors[rank].numel() == args.own.numel(), what, ": ", args.name, "[", rank, "] (this rank's ",
                args.slot, ") holds ", args.tensors[rank].numel(), " elements but the ", args.own_name, " has ",
                args.own.numel(), "; they must match");
}

// "SendRecvBatch of 4 ops (sends to ranks [0,1], receives from ranks [0,1])"
inline std::string DescribeBatch(const std::vector<P2POp>& ops) {
  std::string sends, recvs;
  for (const auto& op : ops) {
    std::string& list = op.kind == P2POp::Kind::kSend ? sends : recvs;
    list += (list.empty() ? "" : ",") + std::to_string(op.peer);
  }
  return "SendRecvBatch of " + std::to_string(ops.size()) + " ops (sends to ranks [" + sends +
         "], receives from ranks [" + recvs + "])";
}

// Between polls of a pending operation: yield the core at first (latency), then sleep, so that
// ranks sharing cores can progress.
inline void PollBackoff(int polls) {
  if (polls < 100) std::this_thread::yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(polls < 1000 ? 20 : 200));
}

}  // namespace llamarl::comm_detail
