#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds llamarl, then trains a tiny Llama
# on 1-digit addition: a short SFT warm start, then asynchronous GRPO-style RL with split placement
# on 2 ranks (rank 0 generates, rank 1 trains and is the controller). The held-out reward (greedy,
# 64 prompts) is printed at the start and the end of RL; the run directory gets metrics.jsonl,
# trace.json and checkpoints (`llamarl report runs/tiny_grpo` renders them).
# Extra arguments go to `llamarl train` (e.g. --set steps=30).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$root/build}
"$root/scripts/build.sh" llamarl
llamarl=$BUILD_DIR/cli/llamarl
cd "$root"
run_dir=${DEMO_DIR:-runs/tiny_grpo}
rm -rf "$run_dir"
mpi_flags=(--oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LLAMARL_TORCH_THREADS=1)
[[ $(id -u) -ne 0 ]] || mpi_flags+=(--allow-run-as-root)
time mpirun -np 2 "${mpi_flags[@]}" "$llamarl" train recipes/tiny_grpo.json --set "run_dir=$run_dir" "$@"
