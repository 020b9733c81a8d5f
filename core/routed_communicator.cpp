#include "core/routed_communicator.h"

#include "core/check.h"
#include "core/device.h"

namespace llamarl {
namespace {

class RoutedCommunicator final : public Communicator {
 public:
  RoutedCommunicator(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device)
      : host_(std::move(host)), device_(std::move(device)) {
    LLAMARL_ASSERT(host_ && device_, "RouteByDevice needs two communicators");
    LLAMARL_CHECK(host_->Rank() == device_->Rank() && host_->Size() == device_->Size(), "RouteByDevice: the ",
                  host_->Backend(), " communicator is rank ", host_->Rank(), " of ", host_->Size(), " but the ",
                  device_->Backend(), " one is rank ", device_->Rank(), " of ", device_->Size(),
                  "; both must span the same ranks in the same order");
  }

  int Rank() const override { return host_->Rank(); }
  int Size() const override { return host_->Size(); }
  std::string Backend() const override { return device_->Backend() + "+" + host_->Backend(); }

  WorkPtr Send(const at::Tensor& tensor, int dst, const SendOptions& opts) override {
    return For(tensor).Send(tensor, dst, opts);
  }
  WorkPtr Recv(at::Tensor& tensor, int src, const RecvOptions& opts) override {
    return For(tensor).Recv(tensor, src, opts);
  }
  WorkPtr AllReduce(at::Tensor& tensor, const AllReduceOptions& opts) override {
    return For(tensor).AllReduce(tensor, opts);
  }
  WorkPtr AllGather(std::vector<at::Tensor>& outputs, const at::Tensor& input, const AllGatherOptions& opts) override {
    return For(input).AllGather(outputs, input, opts);
  }
  WorkPtr ReduceScatter(at::Tensor& output, const std::vector<at::Tensor>& inputs,
                        const ReduceScatterOptions& opts) override {
    return For(output).ReduceScatter(output, inputs, opts);
  }
  WorkPtr Broadcast(at::Tensor& tensor, const BroadcastOptions& opts) override {
    return For(tensor).Broadcast(tensor, opts);
  }
  // Barriers order host work (the control plane); device streams are ordered by their own operations.
  WorkPtr Barrier(const BarrierOptions& opts) override { return host_->Barrier(opts); }

  WorkPtr SendRecvBatch(const std::vector<P2POp>& ops, const SendRecvBatchOptions& opts) override {
    if (ops.empty()) return host_->SendRecvBatch(ops, opts);
    Communicator& target = For(ops.front().tensor);
    for (const P2POp& op : ops) {
      LLAMARL_CHECK(&For(op.tensor) == &target, "SendRecvBatch on the ", Backend(), " communicator mixes tensors on ",
                    ops.front().tensor.device(), " and ", op.tensor.device(),
                    "; a batch moves tensors of one device: issue one batch per device");
    }
    return target.SendRecvBatch(ops, opts);
  }

  std::unique_ptr<Communicator> Split(int color, int key) override {
    std::unique_ptr<Communicator> host = host_->Split(color, key);
    std::unique_ptr<Communicator> device = device_->Split(color, key);
    if (!host) return nullptr;
    return std::make_unique<RoutedCommunicator>(std::move(host), std::move(device));
  }

 private:
  Communicator& For(const at::Tensor& t) { return t.defined() && !t.device().is_cpu() ? *device_ : *host_; }

  std::unique_ptr<Communicator> host_;
  std::unique_ptr<Communicator> device_;
};

}  // namespace

std::unique_ptr<Communicator> RouteByDevice(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device) {
  return std::make_unique<RoutedCommunicator>(std::move(host), std::move(device));
}

std::unique_ptr<Communicator> CreateJobCommunicator(c10::Device device, const std::string& backend,
                                                    const std::string& key) {
  const std::string control = DefaultCommunicatorName();
  std::unique_ptr<Communicator> host = CreateCommunicator(control);
  const std::string tensors =
      PickTensorBackend(backend, device, host->Size(), control, CurrentDeviceEnvironment(), key);
  if (tensors == control) return host;
  return RouteByDevice(std::move(host), CreateCommunicator(tensors));
}

}  // namespace llamarl
