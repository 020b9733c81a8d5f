// The `mpi` backend of the Communicator: CPU tensors over MPI. CreateCommunicator("mpi") builds it over
// MPI_COMM_WORLD; CreateMpiCommunicator wraps any MPI communicator (for example one a launcher made).
//
// Dtypes: float32, float64, bfloat16, float16, int64, int32, uint8 and bool (sent as uint8).
// Reductions:
//   - bfloat16/float16 use user-defined MPI_Ops that combine two values in float32 and round back, so
//     a sum over P ranks is rounded P-1 times (the order is MPI's); exact for small integers.
//   - avg is the sum divided by Size() once the sum arrived; it is an error for integer and bool
//     tensors (the mean of integers is not an integer: reduce sum and divide, or use a float dtype).
//   - sum wraps for uint8 (modulo 256), as MPI_SUM does; bool accepts only max (or) and min (and).
// Messages longer than max_elements_per_call elements (MPI counts are int) go as several MPI calls.
#pragma once

#include "core/communicator.h"

#include "core/mpi.h"  // <mpi.h>, C API only

#include <climits>
#include <cstdint>
#include <memory>

namespace llamarl {

struct MpiCommunicatorOptions {
  // Most elements one MPI call moves; a longer message is cut into chunks of at most this many.
  // Every rank must use the same value, because it decides how both ends cut a message. Values
  // below INT_MAX exist so that tests can exercise the chunked path with small tensors.
  int64_t max_elements_per_call = INT_MAX;
};

// Collective over `comm`. Works on a duplicate of it (MPI_Comm_dup), so that its traffic never
// matches messages that other code sends on `comm`. Initialises MPI when that was not done yet.
std::unique_ptr<Communicator> CreateMpiCommunicator(MPI_Comm comm, const MpiCommunicatorOptions& options = {});

}  // namespace llamarl
