#!/usr/bin/env bash
# The GPU check, for a CUDA machine with PyTorch installed and no network, in under 10 minutes:
#   1. unpacks the Debian packages that scripts/gpu_fetch_debs.sh fetched (on a networked machine)
#      with dpkg -x into a prefix (never into /), dropping any library the machine already has;
#   2. builds llamarl and the gpu test suites against that PyTorch's LibTorch
#      (torch.utils.cmake_prefix_path), its NCCL wheel and the machine's nvcc;
#   3. runs `ctest -L gpu`, `llamarl bench generate|train|logprobs --device cuda` (generate also times
#      the fp8-weight engine), `bench weight-sync` over NCCL when two GPUs are visible (NCCL needs a
#      GPU per rank), and a colocated tiny_grpo on one GPU;
#   4. prints one JSON line of figures on stdout (everything else goes to stderr and WORK/logs/).
#
#   scripts/gpu_check.sh --debs DIR [--work DIR] [--jobs N]
#
# Exits non-zero when the build fails; a failing step afterwards is recorded in the JSON ("ok": false
# and the step's log tail) so that one broken piece does not hide the others' figures.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
debs="" work=${TMPDIR:-/tmp}/llamarl_gpu_check jobs=$(nproc)
while [[ $# -gt 0 ]]; do
  case $1 in
    --debs) debs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
[[ -n $debs && -d $debs ]] || { echo "gpu_check: --debs DIR (from scripts/gpu_fetch_debs.sh) is required" >&2; exit 2; }
debs=$(cd "$debs" && pwd)
start_s=$SECONDS
log_dir=$work/logs
mkdir -p "$log_dir"
say() { echo "gpu_check [$((SECONDS - start_s)) s]: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- the machine: PyTorch with CUDA, nvcc, NCCL from the wheel -------------------------------------
python=${PYTHON:-python3}
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)') || die "$python has no torch"
torch_info=$("$python" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count())')
read -r torch_version torch_cuda num_gpus <<<"$torch_info"
[[ $torch_cuda != None && $num_gpus -ge 1 ]] || die "torch $torch_version sees no GPU (CUDA $torch_cuda, $num_gpus devices)"
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || die "nvcc not found (looked on PATH and in /usr/local/cuda/bin)"
nccl_home=$("$python" -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null) || nccl_home=""
nccl_args=()
if [[ -n $nccl_home && -f $nccl_home/include/nccl.h ]]; then
  nccl_lib=$(find "$nccl_home/lib" -name 'libnccl.so*' | sort | head -1)
  nccl_args=(-DNCCL_INCLUDE_DIR="$nccl_home/include" -DNCCL_LIBRARY="$nccl_lib")
fi
torch_lib=$(cd "$torch_prefix/../.." && pwd)/lib
say "torch $torch_version (CUDA $torch_cuda), $num_gpus GPU(s), nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), nccl ${nccl_home:-none}"

# --- the Debian packages, unpacked into a prefix ----------------------------------------------------
prefix=$work/prefix
rm -rf "$prefix"
mkdir -p "$prefix"
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$prefix" || die "dpkg -x $deb failed"; done
multiarch=$prefix/usr/lib/x86_64-linux-gnu
# The build links against the prefix; at run time a library the machine already has stays the
# machine's (the prefix must not shadow a newer copy): the loader's path gets a folder of links to
# the prefix's libraries that the machine lacks.
runtime=$work/runtime_libs
rm -rf "$runtime"
mkdir -p "$runtime"
system_libs=$(ldconfig -p | awk '{print $1}')
while read -r lib; do
  name=$(basename "$lib")
  grep -qxF "$name" <<<"$system_libs" || ln -sf "$lib" "$runtime/$name"
done < <(find "$multiarch" -maxdepth 1 -name 'lib*.so.*' \( -type f -o -type l \))
mpi_include=$multiarch/openmpi/include
[[ -f $mpi_include/mpi.h ]] || die "the packages hold no mpi.h (libopenmpi-dev): rerun scripts/gpu_fetch_debs.sh"
export OPAL_PREFIX=$prefix/usr  # Open MPI finds its components and help files under the prefix
export PATH=$prefix/usr/bin:$PATH
export LD_LIBRARY_PATH=$runtime:$torch_lib${nccl_home:+:$nccl_home/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$multiarch/pkgconfig:$prefix/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$prefix
pkg_config=$(command -v pkg-config || command -v pkgconf || echo "$prefix/usr/bin/pkgconf")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# --- build -------------------------------------------------------------------------------------------
build=$work/build
mapfile -t gpu_targets < <(cd "$root/tests" && for f in */*_gpu_test.cpp; do
                             [[ -f $f ]] && echo "$(dirname "$f")_$(basename "$f" .cpp)"; done)
say "configuring into $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr" -DPKG_CONFIG_EXECUTABLE="$pkg_config" \
  -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_C_HEADER_DIR="$mpi_include" -DMPI_C_LIB_NAMES=mpi \
  -DMPI_mpi_LIBRARY="$multiarch/openmpi/lib/libmpi.so" -DMPIEXEC_EXECUTABLE="$prefix/usr/bin/mpirun.openmpi" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCUDAToolkit_ROOT="$(dirname "$(dirname "$(command -v nvcc)")")" \
  -DLLAMARL_CUDA=ON "${nccl_args[@]}" >"$log_dir/configure.log" 2>&1 ||
  { tail -30 "$log_dir/configure.log" >&2; die "cmake failed (full log: $log_dir/configure.log)"; }
grep "llamarl:" "$log_dir/configure.log" >&2
say "building llamarl ${gpu_targets[*]} with $jobs jobs"
ninja -C "$build" -j"$jobs" llamarl "${gpu_targets[@]}" >"$log_dir/build.log" 2>&1 ||
  { grep -m20 -B2 -A8 "error" "$log_dir/build.log" >&2; die "build failed (full log: $log_dir/build.log)"; }
build_s=$((SECONDS - start_s))
llamarl=$build/cli/llamarl

# --- steps: each writes WORK/logs/NAME.log; its JSON (the last line starting with '{') is kept --------
declare -A step_ok=() step_json=()
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  if timeout "$limit" "$@" >"$log_dir/$name.log" 2>&1; then step_ok[$name]=true; else step_ok[$name]=false; fi
  step_json[$name]=$(grep '^{' "$log_dir/$name.log" | tail -1)
  [[ ${step_ok[$name]} == true ]] || { say "$name failed:"; tail -15 "$log_dir/$name.log" >&2; }
}

step ctest_gpu 180 ctest --test-dir "$build" -L gpu --output-on-failure
step bench_generate 150 "$llamarl" bench generate --device cuda --batches 1,64 --new-tokens 128 --fp8 --json
step bench_train 120 "$llamarl" bench train --device cuda --compute-dtype bfloat16 --steps 3 --json
step bench_logprobs 60 "$llamarl" bench logprobs --device cuda --repeats 3 --json
if ((num_gpus >= 2)); then
  step bench_weight_sync 120 mpirun.openmpi -np 2 --oversubscribe --allow-run-as-root --bind-to none \
    "$llamarl" bench weight-sync --device cuda --json
fi
run_dir=$work/tiny_grpo
rm -rf "$run_dir"
step tiny_grpo 240 env CUDA_VISIBLE_DEVICES=0 "$llamarl" train "$root/recipes/tiny_grpo.json" --json \
  --set device=cuda --set placement.mode=colocated --set steps=40 --set "run_dir=$run_dir"

# --- one JSON line ------------------------------------------------------------------------------------
summary=$(for name in "${!step_ok[@]}"; do
  printf '%s\t%s\t%s\n' "$name" "${step_ok[$name]}" "${step_json[$name]:-null}"
done | "$python" -c '
import json, sys
out = {"torch": sys.argv[1], "cuda": sys.argv[2], "gpus": int(sys.argv[3]), "gpu": sys.argv[4],
       "build_s": int(sys.argv[5]), "total_s": int(sys.argv[6]), "steps": {}}
for line in sys.stdin:
    name, ok, text = line.rstrip("\n").split("\t", 2)
    try:
        figures = json.loads(text) if text else None
    except ValueError:
        figures = None
    out["steps"][name] = {"ok": ok == "true", "figures": figures}
out["ok"] = all(s["ok"] for s in out["steps"].values())
print(json.dumps(out, sort_keys=True))
' "$torch_version" "$torch_cuda" "$num_gpus" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
  "$build_s" "$((SECONDS - start_s))")
echo "$summary"
