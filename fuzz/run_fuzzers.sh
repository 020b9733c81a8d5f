#!/usr/bin/env bash
# Builds every fuzz/*_fuzz.cpp as a libFuzzer binary with clang (ASan + UBSan) and runs each one
# for a fixed time, starting from its checked-in seeds. Exits non-zero if any target fails to build
# or finds a crash, a leak, a timeout or undefined behaviour; the reproducer is in the artifacts dir.
#
#   fuzz/run_fuzzers.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]   (default: every target)
#
# Everything generated (objects, binaries, the growing corpus, crash artifacts, logs) lives under
# $LLAMARL_FUZZ_BUILD_DIR (default: <repo>/build/fuzz), never in the source tree.
# Environment: CXX (default clang++), LLAMARL_FUZZ_BUILD_DIR.
set -euo pipefail

# ---- Targets --------------------------------------------------------------------------------------
# One line per fuzz/<name>.cpp:  name | sources it needs (globs, relative to the repo) | link flags |
# seed directory under fuzz/seeds. Targets build against the LibTorch-free sources only; a
# fuzz/<name>.dict file, when present, is passed to libFuzzer as its dictionary.
TARGETS=(
  "safetensors_header_fuzz | core/check.cpp core/config.cpp model/safetensors_header.cpp |                         | safetensors"
  "tokenizer_fuzz          | core/check.cpp core/config.cpp model/tokenizer*.cpp model/chat_template*.cpp | -lpcre2-8 -lutf8proc | tokenizer"
)
# ----------------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${LLAMARL_FUZZ_BUILD_DIR:-$ROOT/build/fuzz}"
SECONDS_PER_TARGET="${1:-60}"
shift || true
CXX="${CXX:-clang++}"
LAUNCHER=""
command -v ccache >/dev/null && LAUNCHER=ccache

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [[ "$SECONDS_PER_TARGET" -eq 0 ]]; then
  echo "run_fuzzers.sh: seconds per target must be a positive integer, got '$SECONDS_PER_TARGET'" >&2
  exit 2
fi
if ! "$CXX" --version 2>/dev/null | grep -q clang; then
  echo "run_fuzzers.sh: CXX='$CXX' is not clang; libFuzzer needs clang (apt install clang libclang-rt-dev)" >&2
  exit 2
fi

COMPILE_FLAGS=(-std=c++17 -g -O1 -fno-omit-frame-pointer -I"$ROOT"
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
LINK_FLAGS=(-fsanitize=fuzzer,address,undefined)

trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }

# Looks up fuzz target $1 in TARGETS; sets SOURCES, LIBS, SEEDS.
lookup() {
  local line name
  for line in "${TARGETS[@]}"; do
    IFS='|' read -r name SOURCES LIBS SEEDS <<<"$line"
    if [[ "$(trim "$name")" == "$1" ]]; then
      SOURCES="$(trim "$SOURCES")"; LIBS="$(trim "$LIBS")"; SEEDS="$(trim "$SEEDS")"
      return 0
    fi
  done
  echo "run_fuzzers.sh: fuzz/$1.cpp has no line in the TARGETS table at the top of this script; add one" >&2
  return 1
}

# Compiles each source to its own object (so ccache can reuse the shared ones), then links.
build() {
  local target="$1" patterns=() sources=() objects=() pattern source matches
  read -ra patterns <<<"$SOURCES"  # read does no globbing: the patterns expand below, in the repo
  for pattern in "${patterns[@]}"; do
    mapfile -t matches < <(cd "$ROOT" && compgen -G "$pattern" || true)
    if [[ ${#matches[@]} -eq 0 ]]; then
      echo "run_fuzzers.sh: $target: no source matches '$pattern'" >&2
      return 1
    fi
    sources+=("${matches[@]}")
  done
  sources+=("fuzz/$target.cpp")
  mkdir -p "$BUILD/obj/$target" "$BUILD/bin"
  for source in "${sources[@]}"; do
    local object="$BUILD/obj/$target/${source//\//_}.o"
    $LAUNCHER "$CXX" "${COMPILE_FLAGS[@]}" -c "$ROOT/$source" -o "$object"
    objects+=("$object")
  done
  # shellcheck disable=SC2086  # LIBS is a list of flags
  "$CXX" "${LINK_FLAGS[@]}" "${objects[@]}" $LIBS -o "$BUILD/bin/$target"
}

# Runs one target; returns non-zero when libFuzzer reports a failure.
run() {
  local target="$1" corpus="$BUILD/corpus/$target" seeds="$ROOT/fuzz/seeds/$SEEDS" log="$BUILD/logs/$target.log"
  local args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$BUILD/artifacts/$target-")
  mkdir -p "$corpus" "$BUILD/artifacts" "$BUILD/logs"
  [[ -f "$ROOT/fuzz/$target.dict" ]] && args+=(-dict="$ROOT/fuzz/$target.dict")
  local dirs=("$corpus")  # new inputs go to the first directory: the build tree, not the seeds
  [[ -d "$seeds" ]] && dirs+=("$seeds")
  echo "== $target: fuzzing for ${SECONDS_PER_TARGET}s (log: $log)"
  if UBSAN_OPTIONS=print_stacktrace=1 "$BUILD/bin/$target" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+.*DONE)' "$log" || true
    return 0
  fi
  echo "!! $target FAILED; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  return 1
}

main() {
  local targets=("$@") failed=() target
  if [[ ${#targets[@]} -eq 0 ]]; then
    for file in "$ROOT"/fuzz/*_fuzz.cpp; do targets+=("$(basename "$file" .cpp)"); done
  fi
  for target in "${targets[@]}"; do
    if [[ ! -f "$ROOT/fuzz/$target.cpp" ]]; then
      echo "run_fuzzers.sh: no fuzz/$target.cpp" >&2; failed+=("$target"); continue
    fi
    echo "== $target: building"
    if ! lookup "$target" || ! build "$target"; then failed+=("$target (build)"); continue; fi
    run "$target" || failed+=("$target")
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run_fuzzers.sh: FAILED: ${failed[*]} (artifacts in $BUILD/artifacts)" >&2
    exit 1
  fi
  echo "run_fuzzers.sh: all targets ran clean"
}

main "$@"
