#include "trainer/host_offload.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace llamarl {

void HostOffload::Offload(std::vector<at::Tensor>& tensors) {
  LLAMARL_CHECK(host_.empty(), "HostOffload: ", host_.size(), " tensors are already offloaded; Restore them first");
  at::NoGradGuard no_grad;
  for (auto& t : tensors) {
    LLAMARL_CHECK(t.defined(), "HostOffload: tensor ", host_.size(), " is undefined");
    if (t.device().is_cpu()) {
      // Already host memory: keep the storage itself (a second handle to it), no copy. A copy would
      // hold the state twice at the peak and cost a pass over it each way.
      host_.push_back(t.detach());
    } else {
      at::Tensor host = at::empty(t.sizes(), t.options().device(at::kCPU).pinned_memory(t.device().is_cuda()));
      host.copy_(t);
      host_.push_back(host);
    }
    owners_.push_back(t.unsafeGetTensorImpl());
  }
  // Only after every copy succeeded, so that a failure leaves the tensors untouched.
  for (auto& t : tensors) t.set_data(at::empty({0}, t.options()));
}

void HostOffload::Restore(std::vector<at::Tensor>& tensors) {
  LLAMARL_CHECK(!host_.empty(), "HostOffload: nothing is offloaded; call Offload first");
  LLAMARL_CHECK(tensors.size() == host_.size(), "HostOffload: ", host_.size(), " tensors were offloaded but ",
                tensors.size(), " are restored; pass the same list");
  for (size_t i = 0; i < tensors.size(); ++i)
    LLAMARL_CHECK(tensors[i].unsafeGetTensorImpl() == owners_[i], "HostOffload: tensor ", i,
                  " is not the one that was offloaded; pass the same list in the same order");
  at::NoGradGuard no_grad;
  // to() of a CPU tensor to the CPU is the tensor itself: the storage kept by Offload comes back.
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].set_data(host_[i].to(tensors[i].device()));
  host_.clear();
  owners_.clear();
}

int64_t HostOffload::HostBytes() const {
  int64_t n = 0;
  for (const auto& t : host_) n += int64_t(t.nbytes());
  return n;
}

}  // namespace llamarl
