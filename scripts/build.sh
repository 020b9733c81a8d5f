#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds llamarl into build/.
# BUILD_DIR and CMAKE_ARGS override the defaults; extra arguments are passed to ninja (targets).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build_dir=${BUILD_DIR:-$root/build}
if [[ ! -f "$build_dir/build.ninja" ]]; then
  # shellcheck disable=SC2086
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
fi
ninja -C "$build_dir" -j"$(nproc)" "$@"
