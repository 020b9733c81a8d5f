# Sourced by scripts/check_layers.sh and scripts/check_errors.sh: both take SOURCE_DIR DEPS_FILE, read
# the module table CMake writes (build/module_deps.txt: one line per folder, "folder dep dep ..."),
# and walk the source files of each folder of the table.

# Checks the arguments (exit 2 when wrong); sets src and deps_file.
module_table_args() {
  if [[ $# -ne 2 || ! -d "$1" || ! -f "$2" ]]; then
    echo "usage: $0 SOURCE_DIR DEPS_FILE (got: $*)" >&2
    exit 2
  fi
  src=$1
  deps_file=$2
}

# Fills folders (the table's folders, in order) and allowed[folder] (" folder dep dep ... ");
# exit 2 when the table declares no module.
read_module_table() {
  declare -gA allowed=()
  folders=()
  local folder rest
  while read -r folder rest; do
    [[ -z "$folder" || "$folder" == \#* ]] && continue
    folders+=("$folder")
    allowed[$folder]=" $folder $rest "
  done <"$deps_file"
  if [[ ${#folders[@]} -eq 0 ]]; then
    echo "$deps_file declares no module" >&2
    exit 2
  fi
}

# The C++/CUDA sources of FOLDER under src, NUL-separated (nothing when the folder does not exist).
module_sources() {
  [[ -d "$src/$1" ]] || return 0
  find "$src/$1" -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0
}

# Calls CHECK FOLDER REL LINE TEXT for every line of the table's sources that matches the extended
# regex PATTERN (REL: the file's path under src, LINE: its line number); sets checked to the number
# of files read.
scan_module_lines() {
  local pattern=$1 check=$2 folder file line text
  checked=0
  for folder in "${folders[@]}"; do
    while IFS= read -r -d '' file; do
      checked=$((checked + 1))
      while IFS=: read -r line text; do
        "$check" "$folder" "${file#"$src"/}" "$line" "$text"
      done < <(grep -nE "$pattern" "$file" || true)
    done < <(module_sources "$folder")
  done
}
