// MPI start-up and the error boundary for MPI calls. MPI is the launcher and control plane
// (DESIGN.md); this is the only header besides the mpi backend that includes <mpi.h>.
#pragma once

// The C API only: Open MPI's deprecated C++ bindings would otherwise need libmpi_cxx at link time.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <string>

namespace llamarl {

// Initialises MPI once per process, asking for MPI_THREAD_MULTIPLE, and finalises it at exit.
// Safe to call more than once. Errors come back as exceptions (MPI_ERRORS_RETURN on the world).
void MpiInit(int* argc, char*** argv);
bool MpiInitialized();
// The thread level MPI granted (MPI_THREAD_SINGLE .. MPI_THREAD_MULTIPLE).
int MpiThreadLevel();
// The library's own text for an MPI error code.
std::string MpiErrorString(int code);

namespace detail {
[[noreturn]] void ThrowMpiError(int code, const char* call, const char* file, int line);
}

}  // namespace llamarl

// Wraps an MPI call; a failure becomes llamarl::Error with file:line and MPI's own error string.
#define MPI_CHECK(call)                                                                      \
  do {                                                                                       \
    int mpi_check_code_ = (call);                                                            \
    if (mpi_check_code_ != MPI_SUCCESS)                                                      \
      ::llamarl::detail::ThrowMpiError(mpi_check_code_, #call, __FILE__, __LINE__);          \
  } while (0)
