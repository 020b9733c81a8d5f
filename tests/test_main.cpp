// GoogleTest main for every suite. Under mpirun it initialises MPI, pins LibTorch to one intra-op
// thread per rank (several ranks share 2 cores), and keeps the report of ranks other than 0 quiet
// unless they fail, so that a failure on any rank is seen and fails the run (mpirun exits non-zero).
#include "core/communicator.h"
#include "core/host_allocator.h"
#include "core/mpi.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace {

class FailureOnlyPrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailureOnlyPrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                   result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  llamarl::TuneHostAllocator();  // as the CLI does: the suites run the same allocation patterns
  ::testing::InitGoogleTest(&argc, argv);
  if (const char* threads = std::getenv("LLAMARL_TORCH_THREADS")) at::set_num_threads(std::atoi(threads));
  if (llamarl::DefaultCommunicatorName() == "mpi") {
    llamarl::MpiInit(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new FailureOnlyPrinter(rank));
    }
  }
  return RUN_ALL_TESTS();
}
