// The Communicator: one interface for moving tensors between ranks, with three backends picked by
// name from a registry:
//   mpi    CPU tensors over MPI (f32, f64, bf16, f16, i64, i32, u8, bool); the control plane on every
//          machine (core/mpi_communicator.h has its reduction rules).
//   nccl   CUDA tensors over NCCL (built with LLAMARL_NCCL); its unique id travels over MPI. NCCL has no
//          tags: between two ranks messages match in issue order, and a Send and a Recv that must be
//          in flight together go in one SendRecvBatch (core/nccl_communicator.cpp).
//   local  one rank; collectives are identities, used by single-process jobs and unit tests.
//
// Every operation is asynchronous and returns a Work handle. Ordering contract, as in c10d: all ranks
// of a communicator issue collectives in the same order; point-to-point messages between a pair of
// ranks with the same tag are matched in issue order. A tensor handed to an operation must stay alive
// and untouched until its Work completes (Wait returns). Tensors must be contiguous.
//
// Thread safety: one Communicator may be used from one thread at a time. Different communicators
// (for example a generator group and a trainer group split from the world) may be used from
// different threads when MPI provides MPI_THREAD_MULTIPLE (see MpiThreadLevel()).
#pragma once

#include "core/check.h"

#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llamarl {

// The one handle of an asynchronous operation.
class Work {
 public:
  virtual ~Work() = default;
  // True once the operation finished (successfully or not); never blocks.
  virtual bool IsCompleted() = 0;
  // Blocks until completion. Rethrows the operation's error. With a timeout, throws
  // CommTimeoutError naming the operation and the peers once it expires (the operation is then
  // abandoned: the communicator should be considered broken, as after a failed rank).
  virtual void Wait(std::chrono::milliseconds timeout = std::chrono::milliseconds::max()) = 0;
};
using WorkPtr = std::shared_ptr<Work>;

// An llamarl::Error (core/check.h) that a catch site can tell apart: a peer did not answer in time.
class CommTimeoutError : public Error {
 public:
  using Error::Error;
};

// Waits for all; the first error is rethrown after every work had its chance to finish.
void WaitAll(const std::vector<WorkPtr>& works,
             std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* ReduceOpName(ReduceOp op);

struct SendOptions { int tag = 0; };
struct RecvOptions { int tag = 0; };
struct AllReduceOptions { ReduceOp op = ReduceOp::kSum; };
struct AllGatherOptions {};
struct ReduceScatterOptions { ReduceOp op = ReduceOp::kSum; };
struct BroadcastOptions { int root = 0; };
struct BarrierOptions {};
struct SendRecvBatchOptions {};

// One point-to-point operation of a batch.
struct P2POp {
  enum class Kind { kSend, kRecv };
  Kind kind;
  at::Tensor tensor;  // sent from, or received into (preallocated)
  int peer;
  int tag = 0;
  static P2POp Send(at::Tensor t, int peer, int tag = 0) { return {Kind::kSend, std::move(t), peer, tag}; }
  static P2POp Recv(at::Tensor t, int peer, int tag = 0) { return {Kind::kRecv, std::move(t), peer, tag}; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int Rank() const = 0;
  virtual int Size() const = 0;
  virtual std::string Backend() const = 0;  // "mpi", "nccl", "local"

  virtual WorkPtr Send(const at::Tensor& tensor, int dst, const SendOptions& opts = {}) = 0;
  // `tensor` is preallocated with the exact size and dtype of the message.
  virtual WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts = {}) = 0;
  // In place on every rank.
  virtual WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions& opts = {}) = 0;
  // outputs[r] receives rank r's input; sizes may differ between ranks (uneven gather), each
  // outputs[r] preallocated with rank r's element count. Every rank's input has one dtype.
  virtual WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input,
                            const AllGatherOptions& opts = {}) = 0;
  // inputs[r] is this rank's contribution to rank r's result; output = op over ranks of their
  // inputs[Rank()]. Chunks may differ between destination ranks (uneven scatter).
  virtual WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                                const ReduceScatterOptions& opts = {}) = 0;
  // In place: root's tensor is copied into every other rank's (same size and dtype everywhere).
  virtual WorkPtr Broadcast(at::Tensor& tensor, const BroadcastOptions& opts = {}) = 0;
  virtual WorkPtr Barrier(const BarrierOptions& opts = {}) = 0;
  // Grouped point-to-point: every op of the batch is in flight at once (MPI Isend/Irecv, NCCL
  // group). This is what weight sync uses to let all trainer ranks write to all generators together.
  virtual WorkPtr SendRecvBatch(const std::vector<P2POp>& ops, const SendRecvBatchOptions& opts = {}) = 0;

  // Collective over this communicator: ranks that pass the same color form a new communicator,
  // ordered by (key, old rank). A negative color takes no part and gets nullptr.
  virtual std::unique_ptr<Communicator> Split(int color, int key) = 0;
};

// Registry of backends. A factory builds the communicator of the whole job (the MPI world for mpi
// and nccl). An unknown name lists the known ones.
using CommunicatorFactory = std::function<std::unique_ptr<Communicator>()>;
void RegisterCommunicator(const std::string& name, CommunicatorFactory factory);
std::unique_ptr<Communicator> CreateCommunicator(const std::string& name);
std::vector<std::string> CommunicatorNames();

// The backend that fits a job: "mpi" when the process was started with more than one MPI rank,
// "local" otherwise.
std::string DefaultCommunicatorName();

}  // namespace llamarl
