// The mpi backend (see core/mpi_communicator.h). Every operation is issued as non-blocking MPI calls
// whose requests an MpiWork polls; messages longer than the per-call limit are cut into chunks, which
// both ends (or all ranks of a collective) cut identically from sizes they share.
#include "core/mpi_communicator.h"

#include "core/check.h"
#include "core/communicator_checks.h"
#include "core/mpi.h"

#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace llamarl {
namespace {

static_assert(sizeof(bool) == 1, "bool tensors travel as MPI_UINT8_T");

MPI_Datatype DatatypeOf(at::ScalarType type, const std::string& what) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kBFloat16:
    case at::kHalf: return MPI_UINT16_T;  // reduced by the user-defined ops below
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte:
    case at::kBool: return MPI_UINT8_T;
    default: break;
  }
  LLAMARL_FAIL(what, ": dtype ", type, " is not supported by the mpi backend; supported: ",
               comm_detail::kSupportedDtypes, " (convert the tensor with .to())");
}

// Element-wise combiners for 16-bit floats, computed in float32. NaN propagates, as in torch.max.
struct SumF { float operator()(float a, float b) const { return a + b; } };
struct MaxF { float operator()(float a, float b) const { return (std::isnan(a) || a > b) ? a : b; } };
struct MinF { float operator()(float a, float b) const { return (std::isnan(a) || a < b) ? a : b; } };

// MPI_User_function: inout[i] = combine(in[i], inout[i]).
template <typename T, typename Combine>
void CombineHalves(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = T(Combine{}(float(a[i]), float(b[i])));
}

// Created once per process after MPI_Init and never freed (MPI_Finalize releases them).
struct HalfOps {
  MPI_Op bf16[3], f16[3];  // [sum, max, min]
};

const HalfOps& GetHalfOps() {
  static HalfOps ops;
  static std::once_flag once;
  std::call_once(once, [] {
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::BFloat16, SumF>, 1, &ops.bf16[0]));
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::BFloat16, MaxF>, 1, &ops.bf16[1]));
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::BFloat16, MinF>, 1, &ops.bf16[2]));
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::Half, SumF>, 1, &ops.f16[0]));
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::Half, MaxF>, 1, &ops.f16[1]));
    MPI_CHECK(MPI_Op_create(&CombineHalves<c10::Half, MinF>, 1, &ops.f16[2]));
  });
  return ops;
}

MPI_Op MpiOpOf(ReduceOp op, at::ScalarType type, const std::string& what) {
  comm_detail::CheckReduction(op, type, what);
  int index = op == ReduceOp::kMax ? 1 : op == ReduceOp::kMin ? 2 : 0;
  if (type == at::kBFloat16) return GetHalfOps().bf16[index];
  if (type == at::kHalf) return GetHalfOps().f16[index];
  return index == 1 ? MPI_MAX : index == 2 ? MPI_MIN : MPI_SUM;
}

char* BytesOf(const at::Tensor& t) { return static_cast<char*>(t.data_ptr()); }

// The start of one buffer that holds tensors[0], tensors[1], ... back to back, or nullptr.
char* ConsecutiveBase(const std::vector<at::Tensor>& tensors) {
  char* next = BytesOf(tensors[0]);
  for (const auto& t : tensors) {
    if (t.numel() == 0 || BytesOf(t) != next) return nullptr;
    next += t.numel() * t.element_size();
  }
  return BytesOf(tensors[0]);
}

bool Overlaps(const at::Tensor& t, const char* begin, size_t num_bytes) {
  const char* p = BytesOf(t);
  size_t n = t.numel() * t.element_size();
  return n > 0 && num_bytes > 0 && p < begin + num_bytes && begin < p + n;
}

std::vector<int> ToInts(const std::vector<int64_t>& values) { return {values.begin(), values.end()}; }

// Operations that were dropped or timed out before MPI finished them, with the buffers MPI may still
// read or write: kept alive until their requests complete, which is tested whenever a new operation
// starts. Guarded by a mutex because Works of different communicators may live on different threads.
struct Parked {
  std::vector<MPI_Request> requests;
  std::vector<at::Tensor> buffers;
  std::deque<std::vector<int>> ints;
};

struct ParkedList {
  std::mutex mutex;
  std::vector<Parked> parked;
};

ParkedList& GetParked() {
  static ParkedList list;
  return list;
}

void Park(Parked parked) {
  ParkedList& list = GetParked();
  std::lock_guard<std::mutex> lock(list.mutex);
  list.parked.push_back(std::move(parked));
}

void ReapParked() {
  ParkedList& list = GetParked();
  std::lock_guard<std::mutex> lock(list.mutex);
  auto& parked = list.parked;
  for (auto it = parked.begin(); it != parked.end();) {
    int done = 0;
    int rc = MPI_Testall(int(it->requests.size()), it->requests.data(), &done, MPI_STATUSES_IGNORE);
    it = (rc != MPI_SUCCESS || done) ? parked.erase(it) : it + 1;
  }
}

// The requests of one operation. MPI progresses non-blocking operations only inside MPI calls, so
// IsCompleted and Wait drive progress by testing. Not thread-safe: used by its communicator's thread.
class MpiWork final : public Work {
 public:
  MpiWork(std::string what, std::vector<at::Tensor> buffers) : what_(std::move(what)), buffers_(std::move(buffers)) {
    ReapParked();
  }

  ~MpiWork() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;  // a handle outliving MPI: nothing can touch its buffers any more
    try {
      Poll();
    } catch (...) {
      // A destructor must not throw; the operation's error is lost with its handle.
    }
    Release();
  }

  void AddSend(MPI_Request request) { Add(request, {}); }
  void AddCollective(MPI_Request request) { Add(request, {}); }
  // The receive must bring exactly `count` elements of `type`.
  void AddRecv(MPI_Request request, MPI_Datatype type, int count) { Add(request, {true, type, count}); }
  // An int array (counts, displacements) that MPI may read until the operation completes.
  const int* HoldInts(std::vector<int> values) {
    ints_.push_back(std::move(values));
    return ints_.back().data();
  }
  void Keep(at::Tensor buffer) { buffers_.push_back(std::move(buffer)); }
  // Runs once after every request succeeded (avg's division, copying out of a staging buffer).
  void OnComplete(std::function<void()> step) { on_complete_.push_back(std::move(step)); }

  bool IsCompleted() override { return Poll(); }

  void Wait(std::chrono::milliseconds timeout) override {
    using Clock = std::chrono::steady_clock;
    const bool bounded = timeout != std::chrono::milliseconds::max();
    const Clock::time_point start = Clock::now();
    for (int polls = 0; !Poll(); ++polls) {
      if (bounded && Clock::now() - start >= timeout) {
        TimeOut(timeout);  // returns only when the operation completed after all
        break;
      }
      comm_detail::PollBackoff(polls);
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Expected {
    bool is_recv = false;
    MPI_Datatype type = MPI_DATATYPE_NULL;
    int count = 0;
  };

  void Add(MPI_Request request, Expected expected) {
    requests_.push_back(request);
    expected_.push_back(expected);
    statuses_.emplace_back();
  }

  // Tests every pending request once; true when the operation finished (successfully or not).
  bool Poll() {
    if (done_) return true;
    const int n = int(requests_.size());
    int num_done = 0;
    std::vector<int> indices(n);
    std::vector<MPI_Status> statuses(n);
    int rc = n == 0 ? MPI_SUCCESS : MPI_Testsome(n, requests_.data(), &num_done, indices.data(), statuses.data());
    if (rc != MPI_SUCCESS) {
      int code = rc;
      for (int k = 0; rc == MPI_ERR_IN_STATUS && k < num_done && code == rc; ++k)
        if (statuses[k].MPI_ERROR != MPI_SUCCESS) code = statuses[k].MPI_ERROR;
      Finish(std::make_exception_ptr(Error(detail::StrCat(what_, " failed: ", MpiErrorString(code)))));
      return true;
    }
    for (int k = 0; num_done != MPI_UNDEFINED && k < num_done; ++k) statuses_[indices[k]] = statuses[k];
    for (MPI_Request r : requests_)
      if (r != MPI_REQUEST_NULL) return false;
    Finish(CheckAndRunSteps());
    return true;
  }

  std::exception_ptr CheckAndRunSteps() {
    try {
      for (size_t i = 0; i < expected_.size(); ++i) {
        if (!expected_[i].is_recv) continue;
        int count = 0;
        MPI_CHECK(MPI_Get_count(&statuses_[i], expected_[i].type, &count));
        LLAMARL_CHECK(count == expected_[i].count, what_, ": expected a message of ", expected_[i].count,
                      " elements, got ", count == MPI_UNDEFINED ? std::string("a partial element") : std::to_string(count),
                      "; the sender's tensor differs in size or dtype");
      }
      for (auto& step : on_complete_) step();
    } catch (...) {
      return std::current_exception();
    }
    return nullptr;
  }

  // Receives can be withdrawn (MPI_Cancel), so that the message they would have matched goes to a
  // later receive; sends and collectives cannot (MPI forbids cancelling collectives) and stay pending.
  void TimeOut(std::chrono::milliseconds timeout) {
    bool withdrawn = false;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (!expected_[i].is_recv || requests_[i] == MPI_REQUEST_NULL) continue;
      MPI_CHECK(MPI_Cancel(&requests_[i]));
      MPI_CHECK(MPI_Wait(&requests_[i], &statuses_[i]));
      int cancelled = 0;
      MPI_CHECK(MPI_Test_cancelled(&statuses_[i], &cancelled));
      withdrawn = withdrawn || cancelled;
    }
    CommTimeoutError error(detail::StrCat(
        what_, " timed out after ", timeout.count(), " ms; the other rank(s) may have failed, be slower, or not "
        "have issued the matching operation", withdrawn ? " (the receive was withdrawn)" : ""));
    if (withdrawn) {
      Finish(std::make_exception_ptr(error));
      throw error;
    }
    if (!Poll()) throw error;  // otherwise every message arrived while receives were being withdrawn
  }

  void Finish(std::exception_ptr error) {
    error_ = error;
    done_ = true;
    Release();
  }

  void Release() {
    bool pending = false;
    for (MPI_Request r : requests_) pending = pending || r != MPI_REQUEST_NULL;
    if (pending) Park({std::move(requests_), std::move(buffers_), std::move(ints_)});
    requests_.clear();
    buffers_.clear();
    ints_.clear();
    on_complete_.clear();
  }

  std::string what_;
  std::vector<MPI_Request> requests_;
  std::vector<Expected> expected_;
  std::vector<MPI_Status> statuses_;
  std::vector<at::Tensor> buffers_;  // kept alive while MPI may touch them
  std::deque<std::vector<int>> ints_;
  std::vector<std::function<void()>> on_complete_;
  bool done_ = false;
  std::exception_ptr error_;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm owned, const MpiCommunicatorOptions& options) : comm_(owned), options_(options) {
    MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
    int* tag_ub = nullptr;
    int found = 0;
    MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found));
    tag_ub_ = found && tag_ub ? *tag_ub : 32767;  // 32767 is the least MPI guarantees
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // Freeing is local; operations still pending on the communicator complete first.
    if (!finalized) MPI_Comm_free(&comm_);
  }

  int Rank() const override { return rank_; }
  int Size() const override { return size_; }
  std::string Backend() const override { return "mpi"; }

  WorkPtr Send(const at::Tensor& tensor, int dst, const SendOptions& opts) override {
    return PointToPoint({P2POp::Send(tensor, dst, opts.tag)}, Describe("Send to rank ", dst, " (tag ", opts.tag, ")"));
  }

  WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts) override {
    return PointToPoint({P2POp::Recv(tensor, src, opts.tag)},
                        Describe("Recv from rank ", src, " (tag ", opts.tag, ")"));
  }

  WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions& opts) override {
    std::string what = Describe("AllReduce ", ReduceOpName(opts.op), " of ", tensor.numel(), " elements");
    CheckTensor(tensor, what);
    MPI_Op op = MpiOpOf(opts.op, tensor.scalar_type(), what);
    MPI_Datatype type = DatatypeOf(tensor.scalar_type(), what);
    auto work = NewWork(what, {tensor});
    ForEachChunk(tensor.numel(), [&](int64_t offset, int count) {
      MPI_Request request;
      MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, BytesOf(tensor) + offset * tensor.element_size(), count, type, op,
                               comm_, &request));
      work->AddCollective(request);
    });
    if (opts.op == ReduceOp::kAvg) work->OnComplete([t = tensor, n = size_]() mutable { t.div_(n); });
    return work;
  }

  WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input, const AllGatherOptions&) override {
    std::string what = Describe("AllGather of ", input.numel(), " elements");
    CheckTensor(input, what);
    comm_detail::CheckPerRank({outputs, "outputs", "slot", input, "input"}, rank_, size_, what, CheckTensor);
    std::vector<at::Tensor> buffers = outputs;
    buffers.push_back(input);
    auto work = NewWork(what, std::move(buffers));
    if (TotalElements(outputs) <= options_.max_elements_per_call) {
      IssueAllGatherv(*work, outputs, input);
    } else {
      // Displacements would overflow int: each rank broadcasts its own part, chunk by chunk.
      if (BytesOf(outputs[rank_]) != BytesOf(input)) outputs[rank_].view(-1).copy_(input.view(-1));
      for (int root = 0; root < size_; ++root) IssueBroadcast(*work, outputs[root], root);
    }
    return work;
  }

  WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                        const ReduceScatterOptions& opts) override {
    std::string what = Describe("ReduceScatter ", ReduceOpName(opts.op), " into ", output.numel(), " elements");
    CheckTensor(output, what);
    comm_detail::CheckPerRank({inputs, "inputs", "part", output, "output"}, rank_, size_, what, CheckTensor);
    MPI_Op op = MpiOpOf(opts.op, output.scalar_type(), what);
    std::vector<at::Tensor> buffers = inputs;
    buffers.push_back(output);
    auto work = NewWork(what, std::move(buffers));
    if (TotalElements(inputs) <= options_.max_elements_per_call) {
      IssueReduceScatter(*work, output, inputs, op);
    } else {
      // Counts would overflow int: one reduction per destination rank, chunk by chunk.
      for (int root = 0; root < size_; ++root) IssueReduce(*work, output, inputs[root], root, op);
    }
    if (opts.op == ReduceOp::kAvg) work->OnComplete([t = output, n = size_]() mutable { t.div_(n); });
    return work;
  }

  WorkPtr Broadcast(at::Tensor& tensor, const BroadcastOptions& opts) override {
    std::string what = Describe("Broadcast of ", tensor.numel(), " elements from rank ", opts.root);
    comm_detail::CheckRoot(opts.root, size_, what);
    CheckTensor(tensor, what);
    auto work = NewWork(what, {tensor});
    IssueBroadcast(*work, tensor, opts.root);
    return work;
  }

  WorkPtr Barrier(const BarrierOptions&) override {
    auto work = NewWork(Describe("Barrier"), {});
    MPI_Request request;
    MPI_CHECK(MPI_Ibarrier(comm_, &request));
    work->AddCollective(request);
    return work;
  }

  WorkPtr SendRecvBatch(const std::vector<P2POp>& ops, const SendRecvBatchOptions&) override {
    return PointToPoint(ops, Describe(comm_detail::DescribeBatch(ops)));
  }

  std::unique_ptr<Communicator> Split(int color, int key) override {
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiCommunicator>(sub, options_);
  }

 private:
  template <typename... Parts>
  std::string Describe(const Parts&... parts) const {
    return detail::StrCat("mpi ", parts..., " on rank ", rank_, " of ", size_);
  }

  std::shared_ptr<MpiWork> NewWork(std::string what, std::vector<at::Tensor> buffers) const {
    return std::make_shared<MpiWork>(std::move(what), std::move(buffers));
  }

  void CheckTag(int tag, const std::string& what) const {
    LLAMARL_CHECK(tag >= 0 && tag <= tag_ub_, what, ": tag ", tag, " is out of range; expected 0 <= tag <= ", tag_ub_,
                  " (MPI_TAG_UB)");
  }

  static void CheckTensor(const at::Tensor& t, const std::string& what) {
    comm_detail::CheckDenseContiguous(t, what);
    LLAMARL_CHECK(t.device().is_cpu(), what, ": the mpi backend moves CPU tensors, got one on ", t.device(),
                  "; copy it with .cpu() or use the nccl backend");
    DatatypeOf(t.scalar_type(), what);
  }

  static int64_t TotalElements(const std::vector<at::Tensor>& tensors) {
    int64_t total = 0;
    for (const auto& t : tensors) total += t.numel();
    return total;
  }

  // Calls f(offset, count) for consecutive chunks of at most max_elements_per_call elements; once
  // with count 0 for an empty message, so that the other end still sees a (zero-length) message.
  template <typename F>
  void ForEachChunk(int64_t numel, F&& f) const {
    int64_t offset = 0;
    do {
      int64_t count = std::min(numel - offset, options_.max_elements_per_call);
      f(offset, int(count));
      offset += count;
    } while (offset < numel);
  }

  // Validates every op before issuing any, so that a bad op leaves nothing in flight.
  WorkPtr PointToPoint(const std::vector<P2POp>& ops, const std::string& what) const {
    std::vector<at::Tensor> buffers;
    for (size_t i = 0; i < ops.size(); ++i) {
      std::string what_i = ops.size() > 1 ? what + ", op " + std::to_string(i) : what;
      comm_detail::CheckPeer(ops[i].peer, size_, what_i);
      CheckTag(ops[i].tag, what_i);
      CheckTensor(ops[i].tensor, what_i);
      buffers.push_back(ops[i].tensor);
    }
    auto work = NewWork(what, std::move(buffers));
    for (const auto& op : ops) {
      const at::Tensor& t = op.tensor;
      MPI_Datatype type = DatatypeOf(t.scalar_type(), what);
      ForEachChunk(t.numel(), [&](int64_t offset, int count) {
        char* data = BytesOf(t) + offset * t.element_size();
        MPI_Request request;
        if (op.kind == P2POp::Kind::kSend) {
          MPI_CHECK(MPI_Isend(data, count, type, op.peer, op.tag, comm_, &request));
          work->AddSend(request);
        } else {
          MPI_CHECK(MPI_Irecv(data, count, type, op.peer, op.tag, comm_, &request));
          work->AddRecv(request, type, count);
        }
      });
    }
    return work;
  }

  void IssueBroadcast(MpiWork& work, const at::Tensor& t, int root) const {
    MPI_Datatype type = DatatypeOf(t.scalar_type(), "Broadcast");
    ForEachChunk(t.numel(), [&](int64_t offset, int count) {
      MPI_Request request;
      MPI_CHECK(MPI_Ibcast(BytesOf(t) + offset * t.element_size(), count, type, root, comm_, &request));
      work.AddCollective(request);
    });
  }

  // Reduces `input` of every rank into `output` on `root` (output is not touched elsewhere).
  void IssueReduce(MpiWork& work, const at::Tensor& output, const at::Tensor& input, int root, MPI_Op op) const {
    MPI_Datatype type = DatatypeOf(input.scalar_type(), "ReduceScatter");
    const bool in_place = rank_ == root && BytesOf(input) == BytesOf(output);
    ForEachChunk(input.numel(), [&](int64_t offset, int count) {
      int64_t at = offset * input.element_size();
      void* send = in_place ? MPI_IN_PLACE : BytesOf(input) + at;
      void* recv = rank_ == root ? BytesOf(output) + at : nullptr;
      MPI_Request request;
      MPI_CHECK(MPI_Ireduce(send, recv, count, type, op, root, comm_, &request));
      work.AddCollective(request);
    });
  }

  // Receives straight into the outputs when they lie back to back in one buffer; otherwise into a
  // flat buffer that is copied out on completion.
  void IssueAllGatherv(MpiWork& work, const std::vector<at::Tensor>& outputs, const at::Tensor& input) const {
    std::vector<int64_t> counts, displs;
    int64_t total = 0;
    for (const auto& t : outputs) {
      counts.push_back(t.numel());
      displs.push_back(total);
      total += t.numel();
    }
    const size_t elem = input.element_size();
    char* base = ConsecutiveBase(outputs);
    if (base && Overlaps(input, base, total * elem) && BytesOf(input) != base + displs[rank_] * elem) base = nullptr;
    void* send = base && BytesOf(input) == base + displs[rank_] * elem ? MPI_IN_PLACE : BytesOf(input);
    if (!base) {
      at::Tensor flat = at::empty({total}, input.options());
      work.Keep(flat);
      base = BytesOf(flat);
      work.OnComplete([flat, outputs, displs]() {
        for (size_t r = 0; r < outputs.size(); ++r)
          outputs[r].view(-1).copy_(flat.narrow(0, displs[r], outputs[r].numel()));
      });
    }
    MPI_Datatype type = DatatypeOf(input.scalar_type(), "AllGather");
    MPI_Request request;
    MPI_CHECK(MPI_Iallgatherv(send, int(input.numel()), type, base, work.HoldInts(ToInts(counts)),
                              work.HoldInts(ToInts(displs)), type, comm_, &request));
    work.AddCollective(request);
  }

  // Sends from the inputs in place when they lie back to back in one buffer (and the output is
  // elsewhere); otherwise from a packed copy.
  void IssueReduceScatter(MpiWork& work, const at::Tensor& output, const std::vector<at::Tensor>& inputs,
                          MPI_Op op) const {
    std::vector<int64_t> counts;
    for (const auto& t : inputs) counts.push_back(t.numel());
    const size_t num_bytes = TotalElements(inputs) * output.element_size();
    char* send = ConsecutiveBase(inputs);
    if (!send || Overlaps(output, send, num_bytes)) {
      std::vector<at::Tensor> flat_inputs;
      for (const auto& t : inputs) flat_inputs.push_back(t.reshape(-1));
      at::Tensor packed = at::cat(flat_inputs);
      work.Keep(packed);
      send = BytesOf(packed);
    }
    MPI_Datatype type = DatatypeOf(output.scalar_type(), "ReduceScatter");
    MPI_Request request;
    MPI_CHECK(MPI_Ireduce_scatter(send, BytesOf(output), work.HoldInts(ToInts(counts)), type, op, comm_, &request));
    work.AddCollective(request);
  }

  MPI_Comm comm_;
  MpiCommunicatorOptions options_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
};

}  // namespace

std::unique_ptr<Communicator> CreateMpiCommunicator(MPI_Comm comm, const MpiCommunicatorOptions& options) {
  LLAMARL_CHECK(options.max_elements_per_call >= 1 && options.max_elements_per_call <= INT_MAX,
                "MpiCommunicatorOptions.max_elements_per_call (", options.max_elements_per_call,
                ") must be in [1, ", INT_MAX, "] (MPI counts are int)");
  if (!MpiInitialized()) MpiInit(nullptr, nullptr);
  MPI_Comm dup = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_dup(comm, &dup));
  return std::make_unique<MpiCommunicator>(dup, options);
}

std::unique_ptr<Communicator> CreateMpiWorldCommunicator() { return CreateMpiCommunicator(MPI_COMM_WORLD); }

}  // namespace llamarl
