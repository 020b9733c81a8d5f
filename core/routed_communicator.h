// One Communicator over two backends, chosen per operation by where its tensors live: CPU tensors go
// to `host` (mpi: control messages, rollouts, counts and metrics), every other device's to `device`
// (nccl: weights, gradients, all-gathers). This is how a GPU job keeps one Communicator interface
// (DESIGN.md: NCCL between CUDA tensors, MPI between CPU tensors) and every algorithm runs unchanged.
//
// Contract: both backends span the same ranks in the same order. All tensors of one operation are on
// one device (a SendRecvBatch that mixes CPU and CUDA tensors is an error), and the two ends of a
// message use the same device, so that every rank routes it to the same backend; each backend keeps
// its own ordering rules (NCCL matches a pair's messages in issue order, whatever their tags).
// Split splits both with the same color and key. Thread safety: that of the two backends.
#pragma once

#include "core/communicator.h"

#include <c10/core/Device.h>

#include <memory>
#include <string>

namespace llamarl {

std::unique_ptr<Communicator> RouteByDevice(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> device);

// The communicator of a job whose tensors live on `device`: the control backend
// (DefaultCommunicatorName(): mpi under a launcher, local for one process) alone when it also moves
// the tensors, else routed to the tensor backend PickTensorBackend(`backend`) chooses; `key` names
// `backend` in errors. Collective over the job's ranks.
std::unique_ptr<Communicator> CreateJobCommunicator(c10::Device device, const std::string& backend,
                                                    const std::string& key);

}  // namespace llamarl
