#include "core/mpi.h"

#include "core/check.h"

#include <cstdlib>

namespace llamarl {
namespace {

int g_thread_level = MPI_THREAD_SINGLE;

void FinalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

bool MpiInitialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

void MpiInit(int* argc, char*** argv) {
  if (MpiInitialized()) {
    MPI_Query_thread(&g_thread_level);
    return;
  }
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &g_thread_level));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  std::atexit(FinalizeAtExit);
}

int MpiThreadLevel() { return g_thread_level; }

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, length);
}

namespace detail {
void ThrowMpiError(int code, const char* call, const char* file, int line) {
  throw Error(StrCat(call, " failed at ", file, ":", line, ": ", MpiErrorString(code)));
}
}  // namespace detail

}  // namespace llamarl
