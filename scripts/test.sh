#!/usr/bin/env bash
# Builds llamarl and runs every test that this machine can run: the cpu and mpi suites through
# CTest (gpu-labelled tests too when the build has CUDA), then each fuzz target for FUZZ_SECONDS
# (default 60) on its seed corpus. Any failure fails the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
export BUILD_DIR=$build_dir
"$root/scripts/build.sh"
# Several MPI ranks share the cores: one LibTorch thread each.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)"
if [[ -x "$root/fuzz/run_fuzzers.sh" ]]; then
  "$root/fuzz/run_fuzzers.sh" "${FUZZ_SECONDS:-60}"
fi
