# Finds what every build needs and decides the CUDA/NCCL options.
#   LLAMARL_CUDA  ON when LibTorch was built with CUDA and nvcc is found: CUDA tensors and kernels.
#   LLAMARL_NCCL  ON when LLAMARL_CUDA is ON and nccl.h with libnccl is found: the `nccl` backend.
# Either can be forced OFF; forcing one ON without its requirements is an error.

find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
find_package(Threads REQUIRED)
find_package(CLI11 CONFIG REQUIRED)  # header-only; the llamarl program's option parsing

# A CUDA LibTorch exports c10_cuda; Debian's CPU LibTorch does not.
set(_torch_has_cuda OFF)
if(TARGET c10_cuda OR TORCH_CUDA_LIBRARIES OR CAFFE2_USE_CUDA)
  set(_torch_has_cuda ON)
endif()

include(CheckLanguage)
check_language(CUDA)
set(_have_nvcc OFF)
if(CMAKE_CUDA_COMPILER)
  set(_have_nvcc ON)
endif()

set(_cuda_default OFF)
if(_torch_has_cuda AND _have_nvcc)
  set(_cuda_default ON)
endif()
option(LLAMARL_CUDA "CUDA tensors and kernels (needs a CUDA LibTorch and nvcc)" ${_cuda_default})
if(LLAMARL_CUDA AND NOT (_torch_has_cuda AND _have_nvcc))
  message(FATAL_ERROR "LLAMARL_CUDA=ON needs a CUDA LibTorch (found CUDA: ${_torch_has_cuda}) and nvcc "
                      "(found: ${_have_nvcc}); point CMAKE_PREFIX_PATH at a CUDA LibTorch or set LLAMARL_CUDA=OFF")
endif()

find_path(NCCL_INCLUDE_DIR nccl.h HINTS $ENV{NCCL_HOME}/include ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
find_library(NCCL_LIBRARY nccl HINTS $ENV{NCCL_HOME}/lib /usr/local/cuda/lib /usr/local/cuda/lib64)
set(_nccl_default OFF)
if(LLAMARL_CUDA AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  set(_nccl_default ON)
endif()
option(LLAMARL_NCCL "The nccl Communicator backend (needs LLAMARL_CUDA and NCCL)" ${_nccl_default})
if(LLAMARL_NCCL AND NOT (LLAMARL_CUDA AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY))
  message(FATAL_ERROR "LLAMARL_NCCL=ON needs LLAMARL_CUDA=ON and NCCL (nccl.h: ${NCCL_INCLUDE_DIR}, "
                      "libnccl: ${NCCL_LIBRARY}); set NCCL_HOME or LLAMARL_NCCL=OFF")
endif()
if(LLAMARL_CUDA)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()
message(STATUS "llamarl: LibTorch ${Torch_VERSION} (CUDA: ${_torch_has_cuda}), nvcc: ${_have_nvcc}, "
               "LLAMARL_CUDA=${LLAMARL_CUDA}, LLAMARL_NCCL=${LLAMARL_NCCL}")

set(LLAMARL_WARNINGS -Wall -Wextra -Wno-unused-parameter)
