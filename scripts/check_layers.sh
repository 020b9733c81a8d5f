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
checked=0
for folder in "${folders[@]}"; do
  while IFS= read -r -d '' file; do
    checked=$((checked + 1))
    # Lines like: 12:#include "generator/engine.h"
    while IFS=: read -r line text; do
      target=${text#*\"}
      target=${target%%/*}
      [[ "$known" == *" $target "* ]] || continue
      if [[ "${allowed[$folder]}" != *" $target "* ]]; then
        rel=${file#"$src"/}
        uses=$(echo ${allowed[$folder]# $folder })
        echo "$rel:$line: $folder/ may not include $target/ ($text); $folder may use: ${uses:-nothing}." \
             "Move the code to a lower layer, or declare $target in $folder's DEPS if the design says so" >&2
        violations=$((violations + 1))
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[A-Za-z0-9_]+/' "$file" || true)
  done < <(module_sources "$folder")
done

if [[ $violations -gt 0 ]]; then
  echo "layer check: $violations include(s) break the module table in $deps_file" >&2
  exit 1
fi
echo "layer check: $checked files in ${#folders[@]} folders include only their declared dependencies"
