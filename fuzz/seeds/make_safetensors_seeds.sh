#!/usr/bin/env bash
# Regenerates the checked-in seed corpus fuzz/seeds/safetensors/*.safetensors: small valid files
# covering metadata, every dtype, zero-sized and scalar tensors, and a misaligned layout.
# Python-free on purpose (bash printf only), so the seeds do not depend on the writers under test.
#   fuzz/seeds/make_safetensors_seeds.sh
set -euo pipefail
OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/safetensors"
mkdir -p "$OUT"

# seed NAME HEADER_JSON DATA_HEX: u64 little-endian header length, the header padded with spaces
# to a multiple of 8 (as HF does), then the data bytes given in hex.
seed() {
  local name="$1" header="$2" hex="${3:-}" length i
  while (( ${#header} % 8 != 0 )); do header+=" "; done
  length=${#header}
  {
    for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(( (length >> (8 * i)) & 255 )))"; done
    printf '%s' "$header"
    if [[ -n "$hex" ]]; then printf "$(sed 's/../\\x&/g' <<<"$hex")"; fi
  } >"$OUT/$name.safetensors"
}

seed empty '{}'
seed metadata_only '{"__metadata__":{"format":"pt","note":"seed"}}'
seed one_f32 '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 0000803f000000c0
seed mixed '{"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},"c":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]},"d":{"dtype":"U8","shape":[1],"data_offsets":[19,20]},"e":{"dtype":"F16","shape":[0,7],"data_offsets":[20,20]}}' 0700000000000000803f00c0004080c0010001ff
seed every_dtype '{"f64":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"i64":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"f32":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},"i32":{"dtype":"I32","shape":[1],"data_offsets":[20,24]},"u32":{"dtype":"U32","shape":[1],"data_offsets":[24,28]},"f16":{"dtype":"F16","shape":[1],"data_offsets":[28,30]},"bf16":{"dtype":"BF16","shape":[1],"data_offsets":[30,32]},"i16":{"dtype":"I16","shape":[1],"data_offsets":[32,34]},"u16":{"dtype":"U16","shape":[1],"data_offsets":[34,36]},"i8":{"dtype":"I8","shape":[1],"data_offsets":[36,37]},"u8":{"dtype":"U8","shape":[1],"data_offsets":[37,38]},"bool":{"dtype":"BOOL","shape":[1],"data_offsets":[38,39]},"e4m3":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[39,40]},"e5m2":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[40,41]},"u64":{"dtype":"U64","shape":[],"data_offsets":[41,49]}}' 000000000000f03f0100000000000000000080bf0200000003000000003c803f0400050006070138390800000000000000
seed misaligned '{"b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"f":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}}' 0102030000c03f0000e8c0
