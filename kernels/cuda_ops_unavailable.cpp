#include "kernels/cuda_ops.h"

#include "core/check.h"

#ifndef LLAMARL_HAVE_CUDA
namespace llamarl::kernels::cuda {

void ThrowBuiltWithoutCuda(const char* op) {
  LLAMARL_FAIL(op, ": got a CUDA tensor, but llamarl was built without CUDA kernels (LLAMARL_CUDA=OFF); ",
               "configure with a CUDA LibTorch in CMAKE_PREFIX_PATH and nvcc on PATH, or move the tensors to CPU");
}

}  // namespace llamarl::kernels::cuda
#endif
