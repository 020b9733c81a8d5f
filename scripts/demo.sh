#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds llamarl, then trains a tiny Llama
# on 1-digit addition: a short SFT warm start, then asynchronous GRPO-style RL with split placement
# on 2 ranks (rank 0 generates, rank 1 trains and is the controller). The held-out reward (greedy,
# 64 prompts) is printed at the start and the end of RL; the run directory gets metrics.jsonl,
# trace.json and checkpoints (`llamarl report runs/tiny_grpo` renders them).
# `--recipe FILE` (first) runs another 2-rank recipe the same way, e.g. recipes/tiny_calculator.json
# (the model learns to call a calculator); its run directory is runs/<recipe name>.
# Extra arguments go to `llamarl train` (e.g. --set steps=30).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
recipe=recipes/tiny_grpo.json
if [[ ${1:-} == --recipe ]]; then
  [[ $# -ge 2 ]] || { echo "demo.sh: --recipe needs a recipe file" >&2; exit 2; }
  recipe=$2
  shift 2
fi
export BUILD_DIR=${BUILD_DIR:-$root/build}
"$root/scripts/build.sh" llamarl
llamarl=$BUILD_DIR/cli/llamarl
cd "$root"
run_dir=${DEMO_DIR:-runs/$(basename "$recipe" .json)}
rm -rf "$run_dir"
mpi_flags=(--oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x LLAMARL_TORCH_THREADS=1)
[[ $(id -u) -ne 0 ]] || mpi_flags+=(--allow-run-as-root)
time mpirun -np 2 "${mpi_flags[@]}" "$llamarl" train "$recipe" --set "run_dir=$run_dir" "$@"
