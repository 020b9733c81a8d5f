// Where a rank's tensors live, and which Communicator moves them. One code path for every device:
// the job picks a device once, puts the model there, and every tensor made from then on follows the
// tensors it is made from (generator/, trainer/, weight_sync/ take the device from the model).
//
//   device "cpu"   every rank on the host; tensors over the mpi backend (local for one process).
//   device "cuda"  each rank drives one GPU: its node-local rank (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK,
//                  Slurm's SLURM_LOCALID, MPICH's MPI_LOCALRANKID, torchrun's LOCAL_RANK, in that order;
//                  0 for a single process) indexes the
//                  GPUs that CUDA_VISIBLE_DEVICES leaves visible, one rank per GPU, as NCCL requires.
//                  Tensors go over the nccl backend; control messages and rollouts stay on MPI.
//   device "auto"  cuda when the build has CUDA and a GPU is visible, else cpu (the default).
//
// PickDevice and PickTensorBackend are pure functions of what they are told, so the choices and
// their errors are tested on any machine; ResolveDevice asks the running process.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace llamarl {

// What the process can see, as PickDevice needs it.
struct DeviceEnvironment {
  bool built_with_cuda = false;  // LLAMARL_CUDA (CUDA kernels and a CUDA LibTorch)
  bool built_with_nccl = false;  // LLAMARL_NCCL
  int num_visible_gpus = 0;      // CUDA devices this process sees (after CUDA_VISIBLE_DEVICES)
  int local_rank = 0;            // this rank's index among the ranks of its node
  int local_size = 1;            // ranks on this node
  std::string visible_devices;   // CUDA_VISIBLE_DEVICES as set ("" when unset), for messages
};

// The node-local rank and size from the launcher's variables; {0, 1} when none is set (a process
// started without mpirun/srun). A variable that is set but not a non-negative integer is an error.
struct LocalRank {
  int rank = 0;
  int size = 1;
};
LocalRank LocalRankFromEnvironment();

// The running process: build options, torch's CUDA device count, the launcher's local rank.
DeviceEnvironment CurrentDeviceEnvironment();

// `requested` is "auto", "cpu" or "cuda"; `key` names where it came from in errors (a recipe key or a
// flag). cuda without a CUDA build or without a visible GPU, or with more ranks on the node than GPUs,
// is an error that names the value, what was found and the fix.
c10::Device PickDevice(const std::string& requested, const DeviceEnvironment& env, const std::string& key);

// The Communicator backend for tensors: `requested` "auto" gives nccl on cuda in a job of more than
// one rank (an error when the build lacks NCCL), otherwise `control_backend` (mpi or local). An
// explicit backend that cannot move tensors of `device` is an error (the mpi backend moves CPU
// tensors, nccl CUDA ones).
std::string PickTensorBackend(const std::string& requested, c10::Device device, int world_size,
                              const std::string& control_backend, const DeviceEnvironment& env,
                              const std::string& key);

// PickDevice on the running process, then makes the chosen GPU the current CUDA device.
c10::Device ResolveDevice(const std::string& requested, const std::string& key);

// The CUDA caching allocator's counts of this process's bytes on a CUDA `device`: allocated now, and
// at the peak since ResetPeakDeviceBytes (what a benchmark reports as GPU working memory). An error
// on any other device or in a build without CUDA.
struct DeviceBytes {
  int64_t current = 0;
  int64_t peak = 0;
};
DeviceBytes AllocatedDeviceBytes(c10::Device device);
void ResetPeakDeviceBytes(c10::Device device);
// Bytes a new allocation on a CUDA `device` can still take: the driver's free memory plus what the
// caching allocator holds but has not handed out. An error elsewhere (the host's is MemAvailable).
int64_t DeviceMemoryAvailableBytes(c10::Device device);

// Waits until the work queued on `device` finished (a no-op on cpu), so that a host timer measures
// kernels rather than their launches.
void SynchronizeDevice(c10::Device device);

}  // namespace llamarl
