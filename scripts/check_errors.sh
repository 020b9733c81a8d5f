#!/usr/bin/env bash
# The error-family check (CTest: layers/errors): the project's own code throws one exception type,
# llamarl::Error, through core/check.h's LLAMARL_CHECK / LLAMARL_ASSERT / LLAMARL_FAIL, and turns a
# caught exception into a message through one helper, core/error_text.h's ErrorText. Fails on
#   - a LibTorch check macro (TORCH_CHECK, TORCH_CHECK_*, TORCH_INTERNAL_ASSERT*), which throws
#     c10::Error with a C++ backtrace, in any folder of the module table;
#   - c10::Error's what_without_backtrace() anywhere but core/error_text.cpp (a second helper);
#   - a standard exception thrown (`throw std::...`) or derived from (`public std::...error`,
#     `public std::exception`, ...) anywhere but core/check.h, whose Error is the one root.
#
#   scripts/check_errors.sh SOURCE_DIR DEPS_FILE
#
# DEPS_FILE is the module table CMake writes (build/module_deps.txt; scripts/check_layers.sh reads
# the same file): its folders are the project's own code. tests/ and fuzz/ are not checked (tests
# may name c10::Error to check what LibTorch's own ops throw). Text after // on a line is a comment
# and is not checked. The exit status is 1 on any violation, 2 when the arguments are wrong.
set -euo pipefail
# shellcheck source=scripts/module_table.sh
source "$(dirname "$0")/module_table.sh"
module_table_args "$@"
read_module_table

violations=0
report() {  # file:line, the text, what to do instead
  echo "$1: $2 ($3)" >&2
  violations=$((violations + 1))
}
check_line() {  # folder, file, line, text
  local code=${4%%//*}
  if [[ "$code" =~ TORCH_(CHECK|INTERNAL_ASSERT)[A-Z_]*[[:space:]]*\( ]]; then
    report "$2:$3" "${BASH_REMATCH[0]}" "use LLAMARL_CHECK (a user's error) or LLAMARL_ASSERT (our invariant) from core/check.h: one exception type, llamarl::Error"
  fi
  if [[ "$code" =~ throw[[:space:]]+std:: ]]; then
    report "$2:$3" "${BASH_REMATCH[0]}" "throw through LLAMARL_CHECK / LLAMARL_FAIL / LLAMARL_ASSERT, or a class derived from llamarl::Error"
  fi
  if [[ "$code" =~ public[[:space:]]+std::[a-z_]*(error|exception|argument|range) && "$2" != core/check.h ]]; then
    report "$2:$3" "${BASH_REMATCH[0]}" "derive from llamarl::Error (core/check.h), the one exception root"
  fi
  if [[ "$code" == *what_without_backtrace* && "$2" != core/error_text.cpp ]]; then
    report "$2:$3" "what_without_backtrace" "catch std::exception and use ErrorText from core/error_text.h, the one helper"
  fi
}
scan_module_lines 'TORCH_(CHECK|INTERNAL_ASSERT)|what_without_backtrace|throw[[:space:]]+std::|public[[:space:]]+std::' check_line

if [[ $violations -gt 0 ]]; then
  echo "error check: $violations use(s) of a second error family in $src" >&2
  exit 1
fi
echo "error check: $checked files in ${#folders[@]} folders throw llamarl::Error only"
