#!/usr/bin/env bash
# The layer check (CTest: layers/includes): fails when a source file includes a header of a module
# that its folder does not declare as a dependency.
#
#   scripts/check_layers.sh SOURCE_DIR DEPS_FILE
#
# DEPS_FILE is written by CMake at configure time (build/module_deps.txt) from the DEPS of each
# llamarl_module() / llamarl_layer() call, the one place where the rules are written down: one line
# per folder, "folder dep dep ...". A file in folder F may include "F/..." and "D/..." for each
# declared D; an include of any other folder of the table ("X/...") is a violation. Folders outside
# the table (tests/, fuzz/) are not checked. Every violation is printed as file:line with the rule
# and the fix; the exit status is 1 when there is any, 2 when the arguments are wrong.
set -euo pipefail
# shellcheck source=scripts/module_table.sh
source "$(dirname "$0")/module_table.sh"
module_table_args "$@"
read_module_table
known=" ${folders[*]} "

violations=0
# Lines like: 12:#include "generator/engine.h"
check_include() {  # folder, file, line, text
  local target=${4#*\"}
  target=${target%%/*}
  [[ "$known" == *" $target "* ]] || return 0
  if [[ "${allowed[$1]}" != *" $target "* ]]; then
    local uses
    uses=$(echo ${allowed[$1]# $1 })
    echo "$2:$3: $1/ may not include $target/ ($4); $1 may use: ${uses:-nothing}." \
         "Move the code to a lower layer, or declare $target in $1's DEPS if the design says so" >&2
    violations=$((violations + 1))
  fi
}
scan_module_lines '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[A-Za-z0-9_]+/' check_include

if [[ $violations -gt 0 ]]; then
  echo "layer check: $violations include(s) break the module table in $deps_file" >&2
  exit 1
fi
echo "layer check: $checked files in ${#folders[@]} folders include only their declared dependencies"
