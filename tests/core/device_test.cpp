// Device and tensor-backend choice (core/device.h) on made-up environments: auto, explicit cpu and
// cuda, one GPU per node-local rank, the errors that name the key, what was found and the fix; and
// the launchers' local-rank variables.
#include "core/check.h"
#include "core/device.h"
#include "tests/core/communicator_test_util.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // ScopedEnv, ExpectThrowsWith

DeviceEnvironment GpuNode(int num_gpus, int local_rank, int local_size) {
  DeviceEnvironment env;
  env.built_with_cuda = env.built_with_nccl = true;
  env.num_visible_gpus = num_gpus;
  env.local_rank = local_rank;
  env.local_size = local_size;
  return env;
}

TEST(PickDeviceTest, AutoTakesTheLocalRanksGpuWhenTheBuildHasCudaAndAGpuIsVisible) {
  EXPECT_EQ(PickDevice("auto", GpuNode(8, 3, 8), "device"), c10::Device(c10::kCUDA, 3));
  EXPECT_EQ(PickDevice("auto", GpuNode(0, 0, 1), "device"), c10::Device(c10::kCPU));
  DeviceEnvironment cpu_build = GpuNode(2, 0, 1);
  cpu_build.built_with_cuda = false;
  EXPECT_EQ(PickDevice("auto", cpu_build, "device"), c10::Device(c10::kCPU));
  EXPECT_EQ(PickDevice("cpu", GpuNode(8, 1, 2), "device"), c10::Device(c10::kCPU));
}

TEST(PickDeviceTest, ExplicitCudaIsAnErrorWithoutACudaBuildOrAVisibleGpu) {
  DeviceEnvironment cpu_build;
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("cuda", cpu_build, "device"); },
                               {"device is 'cuda' but this llamarl was built without CUDA (LLAMARL_CUDA=OFF)",
                                "set device to 'cpu'"});
  DeviceEnvironment hidden = GpuNode(0, 0, 1);
  hidden.visible_devices = "";
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("cuda", hidden, "--device"); },
                               {"--device is 'cuda' but this process sees no GPU (CUDA_VISIBLE_DEVICES unset)"});
  hidden.visible_devices = "-1";
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("cuda", hidden, "device"); }, {"CUDA_VISIBLE_DEVICES '-1'"});
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("gpu", GpuNode(1, 0, 1), "device"); },
                               {"device: unknown device 'gpu'; known: auto, cpu, cuda"});
}

TEST(PickDeviceTest, EachRankOfANodeNeedsAGpuOfItsOwn) {
  EXPECT_EQ(PickDevice("cuda", GpuNode(2, 1, 2), "device"), c10::Device(c10::kCUDA, 1));
  DeviceEnvironment crowded = GpuNode(2, 1, 4);
  crowded.visible_devices = "0,1";
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("cuda", crowded, "device"); },
                               {"with 4 ranks on this node but 2 visible GPUs (CUDA_VISIBLE_DEVICES '0,1')",
                                "start at most 2 ranks per node"});
  ExpectThrowsWith<llamarl::Error>([&] { PickDevice("auto", crowded, "device"); }, {"device (auto) is 'cuda' with 4"});
}

TEST(PickTensorBackendTest, AutoIsNcclOnCudaAcrossRanksAndTheControlBackendOtherwise) {
  const DeviceEnvironment env = GpuNode(8, 0, 8);
  const c10::Device gpu(c10::kCUDA, 0), cpu(c10::kCPU);
  EXPECT_EQ(PickTensorBackend("auto", gpu, 8, "mpi", env, "comm.backend"), "nccl");
  EXPECT_EQ(PickTensorBackend("auto", gpu, 1, "local", env, "comm.backend"), "local");
  EXPECT_EQ(PickTensorBackend("auto", cpu, 4, "mpi", env, "comm.backend"), "mpi");
  EXPECT_EQ(PickTensorBackend("auto", cpu, 1, "local", env, "comm.backend"), "local");
  EXPECT_EQ(PickTensorBackend("nccl", gpu, 1, "local", env, "comm.backend"), "nccl");
}

TEST(PickTensorBackendTest, ABackendThatCannotMoveTheDevicesTensorsIsAnError) {
  DeviceEnvironment env = GpuNode(8, 0, 8);
  const c10::Device gpu(c10::kCUDA, 0), cpu(c10::kCPU);
  ExpectThrowsWith<llamarl::Error>([&] { PickTensorBackend("mpi", gpu, 2, "mpi", env, "comm.backend"); },
                               {"comm.backend is 'mpi', which moves CPU tensors, but the device is cuda:0"});
  ExpectThrowsWith<llamarl::Error>([&] { PickTensorBackend("nccl", cpu, 2, "mpi", env, "comm.backend"); },
                               {"comm.backend is 'nccl', which moves CUDA tensors, but the device is cpu"});
  ExpectThrowsWith<llamarl::Error>([&] { PickTensorBackend("local", cpu, 2, "mpi", env, "comm.backend"); },
                               {"comm.backend is 'local' but the job has 2 ranks"});
  ExpectThrowsWith<llamarl::Error>([&] { PickTensorBackend("gloo", cpu, 2, "mpi", env, "comm.backend"); },
                               {"comm.backend: unknown backend 'gloo'; known: auto, local, mpi, nccl"});
  env.built_with_nccl = false;
  ExpectThrowsWith<llamarl::Error>([&] { PickTensorBackend("auto", gpu, 2, "mpi", env, "comm.backend"); },
                               {"comm.backend is 'nccl' (device cuda:0) but this llamarl was built without NCCL"});
}

TEST(LocalRankTest, ReadsOpenMpiThenSlurmThenMpichThenTorchrunAndDefaultsToOneProcess) {
  ScopedEnv ompi("OMPI_COMM_WORLD_LOCAL_RANK", nullptr), ompi_size("OMPI_COMM_WORLD_LOCAL_SIZE", nullptr),
      slurm("SLURM_LOCALID", nullptr), mpich("MPI_LOCALRANKID", nullptr), mpich_size("MPI_LOCALNRANKS", nullptr),
      torchrun("LOCAL_RANK", nullptr), torchrun_size("LOCAL_WORLD_SIZE", nullptr);
  EXPECT_EQ(LocalRankFromEnvironment().rank, 0);
  EXPECT_EQ(LocalRankFromEnvironment().size, 1);
  {
    ScopedEnv id("LOCAL_RANK", "3"), count("LOCAL_WORLD_SIZE", "8");
    EXPECT_EQ(LocalRankFromEnvironment().rank, 3);
    EXPECT_EQ(LocalRankFromEnvironment().size, 8);
    ScopedEnv slurm_id("SLURM_LOCALID", "1");  // a launcher's own variable wins over torchrun's
    EXPECT_EQ(LocalRankFromEnvironment().rank, 1);
  }
  {
    ScopedEnv id("SLURM_LOCALID", "2");
    EXPECT_EQ(LocalRankFromEnvironment().rank, 2);
    EXPECT_EQ(LocalRankFromEnvironment().size, 3);  // Slurm gives no plain count: at least rank + 1
    ScopedEnv rank("OMPI_COMM_WORLD_LOCAL_RANK", "1"), size("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    EXPECT_EQ(LocalRankFromEnvironment().rank, 1);
    EXPECT_EQ(LocalRankFromEnvironment().size, 4);
  }
  ScopedEnv rank("MPI_LOCALRANKID", "5"), size("MPI_LOCALNRANKS", "6");
  EXPECT_EQ(LocalRankFromEnvironment().rank, 5);
  EXPECT_EQ(LocalRankFromEnvironment().size, 6);
}

TEST(LocalRankTest, AMalformedVariableIsAnErrorNamingIt) {
  ScopedEnv ompi("OMPI_COMM_WORLD_LOCAL_RANK", "x1");
  ExpectThrowsWith<llamarl::Error>([] { LocalRankFromEnvironment(); },
                               {"environment variable OMPI_COMM_WORLD_LOCAL_RANK='x1' is not an integer >= 0"});
  ScopedEnv negative("OMPI_COMM_WORLD_LOCAL_RANK", "-1");
  ExpectThrowsWith<llamarl::Error>([] { LocalRankFromEnvironment(); }, {"'-1' is not an integer >= 0"});
}

TEST(ResolveDeviceTest, CpuIsAlwaysAvailableAndAutoMatchesWhatTheProcessSees) {
  EXPECT_EQ(ResolveDevice("cpu", "device"), c10::Device(c10::kCPU));
  const DeviceEnvironment env = CurrentDeviceEnvironment();
  const c10::Device chosen = ResolveDevice("auto", "device");
  EXPECT_EQ(chosen.is_cuda(), env.built_with_cuda && env.num_visible_gpus > 0);
}

}  // namespace
}  // namespace llamarl
