// Offload of trainer state (master weights, optimizer moments) to host memory while the generator
// runs on the same devices (colocated placement), and back before the next optimizer step.
//
// Offload copies every tensor into a separate host buffer (pinned when the tensor lives on a CUDA
// device, so that the copies run at full PCIe bandwidth) and swaps the tensor's data for an empty one
// of the same dtype and device: the device memory is released while the tensor object, and every
// module or optimizer holding it, stays valid. Restore copies the bytes back and gives each tensor
// its original shape.
//
// On a CPU-only build this is honest but pointless for memory: "host" and "device" are the same RAM,
// so offloading moves bytes from one CPU allocation to another and frees the first; it exercises the
// same code path and guarantees the same bit-exact round trip, nothing more.
//
// Not thread-safe: nothing may use the tensors between Offload and Restore.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace llamarl {

class HostOffload {
 public:
  // Moves the tensors' data to host memory; the tensors become empty (numel 0) until Restore.
  // Throws if already offloaded.
  void Offload(std::vector<at::Tensor>& tensors);
  // Copies the data back into the same tensors (same shapes, dtypes and devices as before).
  // Throws if nothing is offloaded or `tensors` is not the list that was offloaded.
  void Restore(std::vector<at::Tensor>& tensors);
  bool offloaded() const { return !host_.empty(); }
  int64_t HostBytes() const;

 private:
  std::vector<at::Tensor> host_;
  std::vector<at::TensorImpl*> owners_;  // identity of the offloaded tensors, checked by Restore
};

}  // namespace llamarl
