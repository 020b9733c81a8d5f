#include "core/device.h"

#include "core/check.h"

#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#ifdef LLAMARL_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace llamarl {
namespace {

// The value of the first of `names` that is set: {name, value}; {nullptr, nullptr} when none is.
std::pair<const char*, const char*> FirstSet(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (const char* value = std::getenv(name)) return {name, value};
  }
  return {nullptr, nullptr};
}

int ParseCount(const char* name, const char* value, int min) {
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  LLAMARL_CHECK(end != value && *end == '\0' && parsed >= min && parsed < (1L << 20), "environment variable ", name,
                "='", value, "' is not an integer >= ", min, "; the launcher (mpirun or srun) sets it, so unset it ",
                "when starting a process by hand");
  return int(parsed);
}

std::string Quoted(const std::string& s) { return s.empty() ? "unset" : "'" + s + "'"; }

c10::Device PickCuda(const DeviceEnvironment& env, const std::string& key) {
  LLAMARL_CHECK(env.built_with_cuda, key, " is 'cuda' but this llamarl was built without CUDA (LLAMARL_CUDA=OFF); ",
                "rebuild with a CUDA LibTorch in CMAKE_PREFIX_PATH and nvcc on PATH, or set ", key, " to 'cpu'");
  LLAMARL_CHECK(env.num_visible_gpus > 0, key, " is 'cuda' but this process sees no GPU (CUDA_VISIBLE_DEVICES ",
                Quoted(env.visible_devices), "); run on a GPU node, fix CUDA_VISIBLE_DEVICES, or set ", key, " to 'cpu'");
  LLAMARL_CHECK(env.local_rank >= 0 && env.local_rank < env.local_size, "local rank ", env.local_rank,
                " is outside the ", env.local_size, " ranks of its node");
  LLAMARL_CHECK(env.local_size <= env.num_visible_gpus, key, " is 'cuda' with ", env.local_size,
                " ranks on this node but ", env.num_visible_gpus, " visible GPUs (CUDA_VISIBLE_DEVICES ",
                Quoted(env.visible_devices), "); each rank drives one GPU: start at most ", env.num_visible_gpus,
                " ranks per node");
  return c10::Device(c10::kCUDA, c10::DeviceIndex(env.local_rank));
}

}  // namespace

LocalRank LocalRankFromEnvironment() {
  LocalRank local;
  const auto [rank_name, rank] = FirstSet({"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"});
  // Slurm has no plain per-node count (SLURM_TASKS_PER_NODE reads "2(x3)"): there the size is at
  // least rank + 1, which still catches a rank without a GPU of its own.
  const auto [size_name, size] = FirstSet({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE"});
  if (rank) local.rank = ParseCount(rank_name, rank, 0);
  if (size) local.size = ParseCount(size_name, size, 1);
  if (local.size <= local.rank) local.size = local.rank + 1;
  return local;
}

DeviceEnvironment CurrentDeviceEnvironment() {
  DeviceEnvironment env;
#ifdef LLAMARL_HAVE_CUDA
  env.built_with_cuda = true;
#endif
#ifdef LLAMARL_HAVE_NCCL
  env.built_with_nccl = true;
#endif
  env.num_visible_gpus = env.built_with_cuda ? int(torch::cuda::device_count()) : 0;
  const LocalRank local = LocalRankFromEnvironment();
  env.local_rank = local.rank;
  env.local_size = local.size;
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) env.visible_devices = visible;
  return env;
}

c10::Device PickDevice(const std::string& requested, const DeviceEnvironment& env, const std::string& key) {
  if (requested == "cpu") return c10::Device(c10::kCPU);
  if (requested == "cuda") return PickCuda(env, key);
  LLAMARL_CHECK(requested == "auto", key, ": unknown device '", requested, "'; known: auto, cpu, cuda");
  if (env.built_with_cuda && env.num_visible_gpus > 0) return PickCuda(env, key + " (auto)");
  return c10::Device(c10::kCPU);
}

std::string PickTensorBackend(const std::string& requested, c10::Device device, int world_size,
                              const std::string& control_backend, const DeviceEnvironment& env,
                              const std::string& key) {
  const std::string backend = requested != "auto" ? requested
                              : device.is_cuda() && world_size > 1 ? "nccl"
                                                                   : control_backend;
  LLAMARL_CHECK(backend == "local" || backend == "mpi" || backend == "nccl", key, ": unknown backend '", backend,
                "'; known: auto, local, mpi, nccl");
  LLAMARL_CHECK(backend != "local" || world_size == 1, key, " is 'local' but the job has ", world_size,
                " ranks; the local backend serves one process: use 'auto'");
  LLAMARL_CHECK(backend != "nccl" || device.is_cuda(), key, " is 'nccl', which moves CUDA tensors, but the device is ",
                device, "; set device to 'cuda' or the backend to 'auto'");
  LLAMARL_CHECK(backend != "nccl" || env.built_with_nccl, key, " is '", backend, "' (device ", device,
                ") but this llamarl was built without NCCL (LLAMARL_NCCL=OFF); set NCCL_HOME to an NCCL >= 2.10 ",
                "and rebuild, or run on device 'cpu'");
  LLAMARL_CHECK(backend != "mpi" || !device.is_cuda(), key, " is 'mpi', which moves CPU tensors, but the device is ",
                device, "; use 'nccl' (or 'auto') on cuda, or set device to 'cpu'");
  return backend;
}

c10::Device ResolveDevice(const std::string& requested, const std::string& key) {
  const c10::Device device = PickDevice(requested, CurrentDeviceEnvironment(), key);
#ifdef LLAMARL_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::set_device(device.index());
#endif
  return device;
}

DeviceBytes AllocatedDeviceBytes(c10::Device device) {
  LLAMARL_CHECK(device.is_cuda(), "device memory statistics are the CUDA caching allocator's; ", device, " has none");
  DeviceBytes bytes;
#ifdef LLAMARL_HAVE_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  // Index 0 is StatType::AGGREGATE (every pool), whose namespace differs between LibTorch 1.13 and 2.x.
  bytes.current = int64_t(stats.allocated_bytes[0].current);
  bytes.peak = int64_t(stats.allocated_bytes[0].peak);
#else
  LLAMARL_FAIL("this llamarl was built without CUDA (LLAMARL_CUDA=OFF): no statistics for ", device);
#endif
  return bytes;
}

int64_t DeviceMemoryAvailableBytes(c10::Device device) {
  LLAMARL_CHECK(device.is_cuda(), "DeviceMemoryAvailableBytes measures CUDA devices; ", device, " is not one");
#ifdef LLAMARL_HAVE_CUDA
  const c10::cuda::CUDAGuard guard(device.index());
  size_t free_bytes = 0, total_bytes = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  const int64_t cached = int64_t(stats.reserved_bytes[0].current) - int64_t(stats.allocated_bytes[0].current);
  return int64_t(free_bytes) + std::max<int64_t>(cached, 0);
#else
  LLAMARL_FAIL("this llamarl was built without CUDA (LLAMARL_CUDA=OFF): no memory figures for ", device);
#endif
}

void ResetPeakDeviceBytes(c10::Device device) {
  LLAMARL_CHECK(device.is_cuda(), "device memory statistics are the CUDA caching allocator's; ", device, " has none");
#ifdef LLAMARL_HAVE_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#else
  LLAMARL_FAIL("this llamarl was built without CUDA (LLAMARL_CUDA=OFF): no statistics for ", device);
#endif
}

void SynchronizeDevice(c10::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace llamarl
