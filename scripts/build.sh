#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then configures and builds llamarl into build/.
# BUILD_DIR and CMAKE_ARGS override the defaults; extra arguments are passed to ninja (targets).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build_dir=${BUILD_DIR:-$root/build}
# ccache hits across build directories and clones: paths under the checkout are hashed relative to
# it, and the working directory (only in the debug info of RelWithDebInfo) is left out of the hash.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
if [[ ! -f "$build_dir/build.ninja" ]]; then
  # shellcheck disable=SC2086
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
fi
ninja -C "$build_dir" -j"$(nproc)" "$@"
