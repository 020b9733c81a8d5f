// The single-rank backend: a job of size 1. Collectives over one rank are identities (AllGather and
// ReduceScatter copy); point-to-point to oneself is matched in issue order within a tag, as MPI does.
// It rejects exactly the calls the mpi backend rejects (comm_detail checks), so code that passes
// on one rank does not fail later on many.
#include "core/communicator.h"

#include "core/check.h"
#include "core/communicator_checks.h"

#include <ATen/ATen.h>

#include <deque>
#include <map>

namespace llamarl {
namespace {

class DoneWork final : public Work {
 public:
  bool IsCompleted() override { return true; }
  void Wait(std::chrono::milliseconds) override {}
};

// A receive posted before the matching send completes when the send arrives.
class PendingRecvWork final : public Work {
 public:
  bool IsCompleted() override { return done_; }
  void Wait(std::chrono::milliseconds) override {
    LLAMARL_CHECK(done_, "local communicator: Recv from rank 0 was never matched by a Send; with one rank "
                       "a receive can complete only after its send is issued");
  }
  void Complete() { done_ = true; }

 private:
  bool done_ = false;
};

class LocalCommunicator final : public Communicator {
 public:
  int Rank() const override { return 0; }
  int Size() const override { return 1; }
  std::string Backend() const override { return "local"; }

  WorkPtr Send(const at::Tensor& tensor, int dst, const SendOptions& opts) override {
    comm_detail::CheckPeer(dst, 1, "Send");
    CheckTensor(tensor, "Send");
    auto& recvs = pending_recvs_[opts.tag];
    if (!recvs.empty()) {
      auto [target, work] = recvs.front();
      CopyMessage(target, tensor);
      recvs.pop_front();
      work->Complete();
    } else {
      sent_[opts.tag].push_back(tensor.clone());
    }
    return Done();
  }

  WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts) override {
    comm_detail::CheckPeer(src, 1, "Recv");
    CheckTensor(tensor, "Recv");
    auto& sent = sent_[opts.tag];
    if (!sent.empty()) {
      CopyMessage(tensor, sent.front());
      sent.pop_front();
      return Done();
    }
    auto work = std::make_shared<PendingRecvWork>();
    pending_recvs_[opts.tag].emplace_back(tensor, work);
    return work;
  }

  WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions& opts) override {
    CheckTensor(tensor, "AllReduce");
    comm_detail::CheckReduction(opts.op, tensor.scalar_type(), "AllReduce");
    return Done();
  }

  WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input,
                    const AllGatherOptions&) override {
    CheckTensor(input, "AllGather input");
    comm_detail::CheckPerRank({outputs, "outputs", "slot", input, "input"}, 0, 1, "AllGather", CheckTensor);
    CopyMessage(outputs[0], input);
    return Done();
  }

  WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                        const ReduceScatterOptions& opts) override {
    CheckTensor(output, "ReduceScatter output");
    comm_detail::CheckReduction(opts.op, output.scalar_type(), "ReduceScatter");
    comm_detail::CheckPerRank({inputs, "inputs", "part", output, "output"}, 0, 1, "ReduceScatter", CheckTensor);
    CopyMessage(output, inputs[0]);
    return Done();
  }

  WorkPtr Broadcast(at::Tensor& tensor, const BroadcastOptions& opts) override {
    comm_detail::CheckRoot(opts.root, 1, "Broadcast");
    CheckTensor(tensor, "Broadcast");
    return Done();
  }

  WorkPtr Barrier(const BarrierOptions&) override { return Done(); }

  WorkPtr SendRecvBatch(const std::vector<P2POp>& ops, const SendRecvBatchOptions&) override {
    // Sends first, so that a batch holding both halves of a self-exchange always matches.
    std::vector<WorkPtr> works;
    for (const auto& op : ops)
      if (op.kind == P2POp::Kind::kSend) works.push_back(Send(op.tensor, op.peer, SendOptions{op.tag}));
    for (const auto& op : ops) {
      if (op.kind != P2POp::Kind::kRecv) continue;
      at::Tensor t = op.tensor;
      works.push_back(Recv(t, op.peer, RecvOptions{op.tag}));
    }
    WaitAll(works);
    return Done();
  }

  std::unique_ptr<Communicator> Split(int color, int) override {
    if (color < 0) return nullptr;
    return std::make_unique<LocalCommunicator>();
  }

 private:
  static WorkPtr Done() { return std::make_shared<DoneWork>(); }

  // The mpi backend's rule for dtypes; any device, since a message here is a copy (a single-GPU
  // job runs its tensors through this backend).
  static void CheckTensor(const at::Tensor& t, const std::string& what) {
    comm_detail::CheckDenseContiguous(t, what);
    LLAMARL_CHECK(t.device().is_cpu() || t.device().is_cuda(), what, ": the local backend moves CPU or CUDA tensors, ",
                  "got a tensor on ", t.device());
    auto type = t.scalar_type();
    LLAMARL_CHECK(type == at::kFloat || type == at::kDouble || type == at::kBFloat16 || type == at::kHalf ||
                    type == at::kLong || type == at::kInt || type == at::kByte || type == at::kBool,
                  what, ": dtype ", type, " is not supported; supported: ", comm_detail::kSupportedDtypes);
  }

  // Checked before a message is dequeued, so a mismatched receive leaves it queued for the right one.
  static void CopyMessage(at::Tensor& dst, const at::Tensor& src) {
    LLAMARL_CHECK(dst.numel() == src.numel() && dst.scalar_type() == src.scalar_type(),
                  "message mismatch: receiving ", dst.numel(), " elements of ", dst.scalar_type(), ", sent ",
                  src.numel(), " elements of ", src.scalar_type());
    dst.view(-1).copy_(src.reshape(-1));
  }

  std::map<int, std::deque<at::Tensor>> sent_;
  std::map<int, std::deque<std::pair<at::Tensor, std::shared_ptr<PendingRecvWork>>>> pending_recvs_;
};

}  // namespace

std::unique_ptr<Communicator> CreateLocalCommunicator() { return std::make_unique<LocalCommunicator>(); }

}  // namespace llamarl
