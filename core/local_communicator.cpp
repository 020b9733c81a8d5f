// The single-rank backend: a job of size 1. Collectives over one rank are identities (AllGather and
// ReduceScatter copy); point-to-point to oneself is matched in issue order within a tag, as MPI does.
#include "core/communicator.h"

#include "core/check.h"

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
    TORCH_CHECK(done_, "local communicator: Recv from rank 0 was never matched by a Send; with one rank "
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
    CheckPeer(dst, "Send");
    auto& recvs = pending_recvs_[opts.tag];
    if (!recvs.empty()) {
      auto [target, work] = recvs.front();
      recvs.pop_front();
      CopyMessage(target, tensor);
      work->Complete();
    } else {
      sent_[opts.tag].push_back(tensor.clone());
    }
    return Done();
  }

  WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts) override {
    CheckPeer(src, "Recv");
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

  WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions&) override { return Done(); }

  WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input,
                    const AllGatherOptions&) override {
    TORCH_CHECK(outputs.size() == 1, "AllGather: expected 1 output tensor (one per rank), got ", outputs.size());
    CopyMessage(outputs[0], input);
    return Done();
  }

  WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                        const ReduceScatterOptions&) override {
    TORCH_CHECK(inputs.size() == 1, "ReduceScatter: expected 1 input tensor (one per rank), got ", inputs.size());
    CopyMessage(output, inputs[0]);
    return Done();
  }

  WorkPtr Broadcast(at::Tensor&, const BroadcastOptions& opts) override {
    TORCH_CHECK(opts.root == 0, "Broadcast: root ", opts.root, " out of range for 1 rank");
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

  static void CheckPeer(int peer, const char* op) {
    TORCH_CHECK(peer == 0, op, ": peer rank ", peer, " out of range for a communicator of 1 rank");
  }

  static void CopyMessage(at::Tensor& dst, const at::Tensor& src) {
    TORCH_CHECK(dst.numel() == src.numel() && dst.scalar_type() == src.scalar_type(),
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
