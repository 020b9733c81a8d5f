// The nccl backend: CUDA tensors over NCCL (built with LLAMARL_NCCL). MPI bootstraps it: rank 0 of
// each communicator makes the ncclUniqueId and broadcasts it over MPI, and Split goes through
// MPI_Comm_split with a fresh id. Each rank drives one GPU: its rank among the ranks of its node
// modulo the visible devices, so a node runs at most as many ranks as it has GPUs.
//
// Streams: every operation runs on one dedicated stream per communicator, after the work already
// queued on the caller's current stream (an event orders the two). Tensors are recorded on that
// stream with the caching allocator, so that freeing them early cannot hand their memory to other
// work while NCCL still uses it. A Work is a CUDA event; Wait polls it (so that a timeout can fire)
// and blocks the host until the device finished.
//
// Differences from the mpi backend, inherent to NCCL:
//   - Tags do not select messages: between a pair of ranks, messages match in issue order.
//   - Send and Recv issued one by one run in order on the stream; exchanges that need both
//     directions in flight together (a ring, an all-to-all) must go through SendRecvBatch.
//   - A timeout aborts the NCCL communicator (a stuck kernel cannot be withdrawn); any later call
//     on it fails, and the job should rebuild its communicators or stop.
//   - avg uses ncclAvg; like the mpi backend it is an error for integer and bool tensors.
#include "core/check.h"
#include "core/communicator.h"
#include "core/communicator_checks.h"
#include "core/mpi.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
#error "the nccl backend needs NCCL >= 2.10 (ncclBfloat16, ncclAvg); set NCCL_HOME to a newer NCCL"
#endif

// Wraps an NCCL call; a failure becomes llamarl::Error with file:line and NCCL's own error string.
#define NCCL_CHECK(call)                                                                     \
  do {                                                                                       \
    ncclResult_t nccl_check_result_ = (call);                                                \
    if (nccl_check_result_ != ncclSuccess)                                                   \
      ::llamarl::ThrowNcclError(nccl_check_result_, #call, __FILE__, __LINE__);              \
  } while (0)

// Wraps a CUDA runtime call in the same way.
#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    cudaError_t cuda_check_error_ = (call);                                                  \
    if (cuda_check_error_ != cudaSuccess)                                                    \
      throw ::llamarl::Error(::llamarl::detail::StrCat(#call, " failed at ", __FILE__, ":", __LINE__, ": ", \
                                                       cudaGetErrorString(cuda_check_error_)));            \
  } while (0)

namespace llamarl {
namespace {

[[noreturn]] void ThrowNcclError(ncclResult_t result, const char* call, const char* file, int line) {
  throw Error(detail::StrCat(call, " failed at ", file, ":", line, ": ", ncclGetErrorString(result)));
}

ncclDataType_t NcclTypeOf(at::ScalarType type, const std::string& what) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default: break;
  }
  LLAMARL_FAIL(what, ": dtype ", type, " is not supported by the nccl backend; supported: ",
               comm_detail::kSupportedDtypes, " (convert the tensor with .to())");
}

ncclRedOp_t NcclOpOf(ReduceOp op, at::ScalarType type, const std::string& what) {
  comm_detail::CheckReduction(op, type, what);
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  LLAMARL_ASSERT(false, "unknown ReduceOp ", int(op));
}

// The NCCL communicator, shared by the Communicator and its Works so that a Work can abort it.
// Once `aborted` (after a timeout, an asynchronous NCCL error, or destruction) `comm` is gone.
struct NcclState {
  ncclComm_t comm = nullptr;
  bool aborted = false;
  std::string abort_reason;

  void Abort(const std::string& reason) {
    if (aborted) return;
    aborted = true;
    abort_reason = reason;
    ncclCommAbort(comm);  // its own error does not matter: the communicator is gone either way
  }
};

// Ends an NCCL group on every path; an exception between start and end must not leave it open.
class NcclGroup {
 public:
  NcclGroup() { NCCL_CHECK(ncclGroupStart()); }
  ~NcclGroup() {
    if (open_) ncclGroupEnd();
  }
  void End() {
    open_ = false;
    NCCL_CHECK(ncclGroupEnd());
  }

 private:
  bool open_ = true;
};

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> state, std::string what, std::vector<at::Tensor> buffers)
      : state_(std::move(state)), what_(std::move(what)), buffers_(std::move(buffers)) {
    CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~NcclWork() override { cudaEventDestroy(event_); }

  // Marks the end of the operation on `stream`; called once everything was enqueued.
  void Record(cudaStream_t stream) { CUDA_CHECK(cudaEventRecord(event_, stream)); }

  bool IsCompleted() override {
    if (done_) return true;
    cudaError_t status = cudaEventQuery(event_);
    if (status == cudaSuccess) {
      Finish(nullptr);
    } else if (status != cudaErrorNotReady) {
      Finish(std::make_exception_ptr(Error(detail::StrCat(what_, " failed: ", cudaGetErrorString(status)))));
    } else if (state_->aborted) {
      Finish(std::make_exception_ptr(Error(detail::StrCat(what_, " cannot complete: ", state_->abort_reason))));
    } else {
      ncclResult_t async = ncclSuccess;
      NCCL_CHECK(ncclCommGetAsyncError(state_->comm, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        state_->Abort(detail::StrCat("NCCL reported ", ncclGetErrorString(async)));
        Finish(std::make_exception_ptr(Error(detail::StrCat(what_, " failed: ", ncclGetErrorString(async)))));
      }
    }
    return done_;
  }

  void Wait(std::chrono::milliseconds timeout) override {
    using Clock = std::chrono::steady_clock;
    const bool bounded = timeout != std::chrono::milliseconds::max();
    const Clock::time_point start = Clock::now();
    for (int polls = 0; !IsCompleted(); ++polls) {
      if (bounded && Clock::now() - start >= timeout) {
        std::string message = detail::StrCat(what_, " timed out after ", timeout.count(),
                                             " ms; the other rank(s) may have failed, be slower, or not have issued "
                                             "the matching operation; the NCCL communicator was aborted");
        state_->Abort(message);
        Finish(std::make_exception_ptr(CommTimeoutError(message)));
        break;
      }
      comm_detail::PollBackoff(polls);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void Finish(std::exception_ptr error) {
    error_ = error;
    done_ = true;
    buffers_.clear();  // the caching allocator keeps their memory until the stream is done with it
  }

  std::shared_ptr<NcclState> state_;
  std::string what_;
  std::vector<at::Tensor> buffers_;
  cudaEvent_t event_ = nullptr;
  bool done_ = false;
  std::exception_ptr error_;
};

// The GPU of this rank: its rank among the ranks of its node, which must not outnumber the GPUs.
c10::DeviceIndex LocalDevice(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  int world_rank = 0, local_rank = 0, local_size = 1;
  MPI_CHECK(MPI_Comm_rank(comm, &world_rank));
  MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &local_rank));
  MPI_CHECK(MPI_Comm_size(node, &local_size));
  MPI_CHECK(MPI_Comm_free(&node));
  const int num_devices = c10::cuda::device_count();
  LLAMARL_CHECK(num_devices > 0, "nccl backend: rank ", world_rank, " sees no CUDA device; run on GPU nodes or use the "
                "mpi backend");
  LLAMARL_CHECK(local_size <= num_devices, "nccl backend: ", local_size, " ranks run on the node of rank ", world_rank,
                " but it has ", num_devices, " visible GPUs; NCCL needs one GPU per rank: start at most ", num_devices,
                " ranks per node or use the mpi backend");
  return c10::DeviceIndex(local_rank);
}

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`, which it owns: rank 0 makes the unique id and broadcasts it.
  NcclCommunicator(MPI_Comm bootstrap, c10::DeviceIndex device)
      : bootstrap_(bootstrap),
        device_(device),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device)),
        state_(std::make_shared<NcclState>()) {
    MPI_CHECK(MPI_Comm_set_errhandler(bootstrap_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(bootstrap_, &rank_));
    MPI_CHECK(MPI_Comm_size(bootstrap_, &size_));
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_CHECK(MPI_Bcast(&id, int(sizeof(id)), MPI_BYTE, 0, bootstrap_));
    c10::cuda::CUDAGuard guard(device_);
    NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
    CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }

  ~NcclCommunicator() override {
    c10::cuda::CUDAGuard guard(device_);
    if (!state_->aborted) ncclCommDestroy(state_->comm);
    // Works that outlive the communicator must not reach NCCL through it any more.
    state_->aborted = true;
    if (state_->abort_reason.empty()) state_->abort_reason = "the communicator was destroyed";
    cudaEventDestroy(ready_);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&bootstrap_);
  }

  int Rank() const override { return rank_; }
  int Size() const override { return size_; }
  std::string Backend() const override { return "nccl"; }

  WorkPtr Send(const at::Tensor& tensor, int dst, const SendOptions& opts) override {
    return PointToPoint({P2POp::Send(tensor, dst, opts.tag)}, Describe("Send to rank ", dst, " (tag ", opts.tag, ")"));
  }

  WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts) override {
    return PointToPoint({P2POp::Recv(tensor, src, opts.tag)},
                        Describe("Recv from rank ", src, " (tag ", opts.tag, ")"));
  }

  WorkPtr SendRecvBatch(const std::vector<P2POp>& ops, const SendRecvBatchOptions&) override {
    return PointToPoint(ops, Describe(comm_detail::DescribeBatch(ops)));
  }

  WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions& opts) override {
    std::string what = Describe("AllReduce ", ReduceOpName(opts.op), " of ", tensor.numel(), " elements");
    CheckTensor(tensor, what);
    ncclRedOp_t op = NcclOpOf(opts.op, tensor.scalar_type(), what);
    return Issue(what, {tensor}, [&] {
      NCCL_CHECK(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                               NcclTypeOf(tensor.scalar_type(), what), op, state_->comm, stream_.stream()));
    });
  }

  // Each rank's part is broadcast from that rank straight into outputs[rank]: one NCCL group that
  // handles uneven sizes and outputs anywhere in memory without a staging copy.
  WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input, const AllGatherOptions&) override {
    std::string what = Describe("AllGather of ", input.numel(), " elements");
    CheckTensor(input, what);
    comm_detail::CheckPerRank({outputs, "outputs", "slot", input, "input"}, rank_, size_, what, TensorCheck());
    std::vector<at::Tensor> buffers = outputs;
    buffers.push_back(input);
    const ncclDataType_t type = NcclTypeOf(input.scalar_type(), what);
    return Issue(what, std::move(buffers), [&] {
      NcclGroup group;
      for (int root = 0; root < size_; ++root) {
        const void* send = root == rank_ ? input.data_ptr() : outputs[root].data_ptr();
        NCCL_CHECK(ncclBroadcast(send, outputs[root].data_ptr(), outputs[root].numel(), type, root, state_->comm,
                                 stream_.stream()));
      }
      group.End();
    });
  }

  // One reduction per destination rank, grouped; uneven parts need no padding.
  WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                        const ReduceScatterOptions& opts) override {
    std::string what = Describe("ReduceScatter ", ReduceOpName(opts.op), " into ", output.numel(), " elements");
    CheckTensor(output, what);
    comm_detail::CheckPerRank({inputs, "inputs", "part", output, "output"}, rank_, size_, what, TensorCheck());
    const ncclRedOp_t op = NcclOpOf(opts.op, output.scalar_type(), what);
    const ncclDataType_t type = NcclTypeOf(output.scalar_type(), what);
    std::vector<at::Tensor> buffers = inputs;
    buffers.push_back(output);
    return Issue(what, std::move(buffers), [&] {
      NcclGroup group;
      for (int root = 0; root < size_; ++root) {
        void* recv = root == rank_ ? output.data_ptr() : nullptr;  // only the root's is written
        NCCL_CHECK(ncclReduce(inputs[root].data_ptr(), recv, inputs[root].numel(), type, op, root, state_->comm,
                              stream_.stream()));
      }
      group.End();
    });
  }

  WorkPtr Broadcast(at::Tensor& tensor, const BroadcastOptions& opts) override {
    std::string what = Describe("Broadcast of ", tensor.numel(), " elements from rank ", opts.root);
    comm_detail::CheckRoot(opts.root, size_, what);
    CheckTensor(tensor, what);
    return Issue(what, {tensor}, [&] {
      NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                               NcclTypeOf(tensor.scalar_type(), what), opts.root, state_->comm, stream_.stream()));
    });
  }

  // NCCL has no barrier: an all-reduce of one element, waited for on the host, serves as one.
  WorkPtr Barrier(const BarrierOptions&) override {
    at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(at::kCUDA, device_));
    return Issue(Describe("Barrier"), {token}, [&] {
      NCCL_CHECK(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclInt32, ncclSum, state_->comm,
                               stream_.stream()));
    });
  }

  std::unique_ptr<Communicator> Split(int color, int key) override {
    CheckUsable("Split");
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split(bootstrap_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<NcclCommunicator>(sub, device_);
  }

 private:
  template <typename... Parts>
  std::string Describe(const Parts&... parts) const {
    return detail::StrCat("nccl ", parts..., " on rank ", rank_, " of ", size_, " (cuda:", int(device_), ")");
  }

  void CheckUsable(const std::string& what) const {
    LLAMARL_CHECK(!state_->aborted, what, ": the NCCL communicator was aborted (", state_->abort_reason,
                  "); create a new communicator");
  }

  void CheckTensor(const at::Tensor& t, const std::string& what) const {
    comm_detail::CheckDenseContiguous(t, what);
    LLAMARL_CHECK(t.device().is_cuda() && t.device().index() == device_, what, ": this rank's nccl communicator moves "
                  "tensors on cuda:", int(device_), ", got one on ", t.device(), "; move it with .to() (CPU tensors "
                  "go through the mpi backend)");
    NcclTypeOf(t.scalar_type(), what);
  }

  comm_detail::TensorCheck TensorCheck() const {
    return [this](const at::Tensor& t, const std::string& what) { CheckTensor(t, what); };
  }

  // Orders the communicator's stream after the caller's current stream, enqueues `enqueue` on it,
  // and returns the Work that completes with it.
  template <typename Enqueue>
  WorkPtr Issue(const std::string& what, std::vector<at::Tensor> buffers, Enqueue&& enqueue) {
    CheckUsable(what);
    c10::cuda::CUDAGuard guard(device_);
    CUDA_CHECK(cudaEventRecord(ready_, c10::cuda::getCurrentCUDAStream(device_).stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_.stream(), ready_, 0));
    for (const auto& t : buffers) c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), stream_);
    auto work = std::make_shared<NcclWork>(state_, what, std::move(buffers));
    enqueue();
    work->Record(stream_.stream());
    return work;
  }

  // Validates every op before enqueuing any; one group puts them all in flight together.
  WorkPtr PointToPoint(const std::vector<P2POp>& ops, const std::string& what) {
    std::vector<at::Tensor> buffers;
    for (size_t i = 0; i < ops.size(); ++i) {
      std::string what_i = ops.size() > 1 ? what + ", op " + std::to_string(i) : what;
      comm_detail::CheckPeer(ops[i].peer, size_, what_i);
      CheckTensor(ops[i].tensor, what_i);
      buffers.push_back(ops[i].tensor);
    }
    return Issue(what, std::move(buffers), [&] {
      NcclGroup group;
      for (const auto& op : ops) {
        const at::Tensor& t = op.tensor;
        ncclDataType_t type = NcclTypeOf(t.scalar_type(), what);
        if (op.kind == P2POp::Kind::kSend)
          NCCL_CHECK(ncclSend(t.data_ptr(), t.numel(), type, op.peer, state_->comm, stream_.stream()));
        else
          NCCL_CHECK(ncclRecv(t.data_ptr(), t.numel(), type, op.peer, state_->comm, stream_.stream()));
      }
      group.End();
    });
  }

  MPI_Comm bootstrap_;
  c10::DeviceIndex device_;
  c10::cuda::CUDAStream stream_;
  std::shared_ptr<NcclState> state_;
  cudaEvent_t ready_ = nullptr;  // reused: cudaStreamWaitEvent captures its state when called
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> CreateNcclWorldCommunicator() {
  if (!MpiInitialized()) MpiInit(nullptr, nullptr);
  MPI_Comm world = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  return std::make_unique<NcclCommunicator>(world, LocalDevice(world));
}

}  // namespace llamarl
