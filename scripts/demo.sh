#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds llamarl, writes a tiny Llama
# checkpoint with a real tokenizer.json, and generates from it (greedy, then sampled).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export BUILD_DIR=${BUILD_DIR:-$root/build}
"$root/scripts/build.sh" llamarl
llamarl=$BUILD_DIR/cli/llamarl
out=${DEMO_DIR:-$root/runs/demo}
mkdir -p "$out"

"$llamarl" init --model tiny --out "$out/tiny-model" --seed 1
echo "== tokenize"
"$llamarl" tokenize --model "$out/tiny-model" --text "Natalia sold 48 clips in April." --json
echo "== generate (greedy)"
"$llamarl" generate --model "$out/tiny-model" --prompt "Natalia sold 48 clips in April." --max-new-tokens 24 \
  --temperature 0 --json
echo "== generate (sampled, seed 7)"
"$llamarl" generate --model "$out/tiny-model" --prompt-tokens 78,97,116 --max-new-tokens 24 \
  --temperature 0.8 --top-p 0.95 --seed 7 --json
