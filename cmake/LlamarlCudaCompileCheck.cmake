# llamarl_cuda_compile_check: compiles, without linking, every C++ source that depends on CUDA (the
# nccl backend, the kernels' LibTorch binding, every LLAMARL_HAVE_CUDA / LLAMARL_HAVE_NCCL branch,
# the *_gpu_test.cpp suites) on a machine whose build has no CUDA LibTorch, so that CUDA code that does not
# compile fails the ordinary build (scripts/build.sh builds `all`). It needs only headers: the CUDA
# toolkit's cuda_runtime_api.h, nccl.h, and the c10/cuda and ATen/cuda headers that a CPU LibTorch
# package may ship (Debian's libtorch-dev does). Skipped, with a message, when one is missing, and
# when LLAMARL_NCCL is ON (then these sources are built for real).
#
# The sources are found by content at configure time: every .cpp under the project folders naming
# one of the markers below. The .cu files are not here: kernels/ compiles them wherever nvcc is.

option(LLAMARL_CUDA_COMPILE_CHECK "Compile the CUDA-dependent C++ sources against CUDA headers when the build has no CUDA" ON)

function(llamarl_cuda_compile_check)
  if(NOT LLAMARL_CUDA_COMPILE_CHECK OR LLAMARL_NCCL)
    return()
  endif()
  find_package(CUDAToolkit QUIET)
  find_path(_llamarl_c10_cuda c10/cuda/CUDAStream.h HINTS ${TORCH_INCLUDE_DIRS} NO_CACHE)
  find_path(_llamarl_aten_cuda ATen/cuda/CUDAContext.h HINTS ${TORCH_INCLUDE_DIRS} NO_CACHE)
  if(NOT CUDAToolkit_FOUND OR NOT NCCL_INCLUDE_DIR OR NOT _llamarl_c10_cuda OR NOT _llamarl_aten_cuda)
    message(STATUS "llamarl: CUDA compile check skipped (CUDA toolkit: ${CUDAToolkit_FOUND}, nccl.h: "
                   "${NCCL_INCLUDE_DIR}, c10/cuda: ${_llamarl_c10_cuda}, ATen/cuda: ${_llamarl_aten_cuda})")
    return()
  endif()

  set(_folders core kernels model weight_sync trainer generator reward controller bench cli)
  if(LLAMARL_BUILD_TESTS)
    list(APPEND _folders tests)
  endif()
  # kernels/cuda_ops.h declares the CUDA ops only under LLAMARL_HAVE_CUDA: its callers are checked too.
  set(_markers "LLAMARL_HAVE_CUDA|LLAMARL_HAVE_NCCL|<c10/cuda/|<ATen/cuda/|<cuda_runtime|<nccl\\.h>|kernels/cuda_ops\\.h")
  set(_sources "")
  foreach(folder IN LISTS _folders)
    file(GLOB_RECURSE _candidates CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${folder}/*.cpp)
    list(FILTER _candidates EXCLUDE REGEX "/cuda_ops_unavailable\\.cpp$")  # the CPU-build stand-in
    foreach(source IN LISTS _candidates)
      file(STRINGS ${source} _hits REGEX "${_markers}" LIMIT_COUNT 1)
      if(_hits OR source MATCHES "_gpu_test\\.cpp$")
        list(APPEND _sources ${source})
      endif()
    endforeach()
  endforeach()

  add_library(llamarl_cuda_compile_check OBJECT ${_sources})
  target_compile_definitions(llamarl_cuda_compile_check PRIVATE LLAMARL_HAVE_CUDA=1 LLAMARL_HAVE_NCCL=1)
  if(NOT EXISTS ${_llamarl_c10_cuda}/c10/cuda/impl/cuda_cmake_macros.h)
    # The one generated c10/cuda header (it only says whether c10_cuda is a shared library).
    target_compile_definitions(llamarl_cuda_compile_check PRIVATE C10_CUDA_NO_CMAKE_CONFIGURE_FILE)
  endif()
  target_include_directories(llamarl_cuda_compile_check PRIVATE ${PROJECT_SOURCE_DIR})
  target_include_directories(llamarl_cuda_compile_check SYSTEM PRIVATE ${CUDAToolkit_INCLUDE_DIRS} ${NCCL_INCLUDE_DIR})
  target_compile_options(llamarl_cuda_compile_check PRIVATE ${LLAMARL_WARNINGS})
  # Linked only for their include directories and definitions: an object library links nothing.
  target_link_libraries(llamarl_cuda_compile_check PRIVATE ${TORCH_LIBRARIES} MPI::MPI_C nlohmann_json::nlohmann_json)
  if(TARGET llamarl_test_main)
    find_package(GTest REQUIRED)
    target_link_libraries(llamarl_cuda_compile_check PRIVATE llamarl_test_main GTest::gtest)
  endif()
  list(LENGTH _sources _count)
  message(STATUS "llamarl: CUDA compile check covers ${_count} sources")
endfunction()
