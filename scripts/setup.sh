#!/usr/bin/env bash
# Installs the Debian 12 packages llamarl needs (only those missing; safe to run again) and checks
# that LibTorch will run on OpenBLAS: Debian's LibTorch otherwise falls back to the reference BLAS,
# which is ~13x slower and would make every benchmark and the demo meaningless.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp
  libopenmpi-dev openmpi-bin
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev libutf8proc-dev libcli11-dev
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Which BLAS will libtorch_cpu really load? Resolve its libblas.so.3 through the alternatives symlinks.
torch_lib=$(ldconfig -p | awk '/libtorch_cpu\.so /&&!f{print $NF; f=1}')
[[ -n "$torch_lib" ]] || { echo "setup: libtorch_cpu.so not found after installing libtorch-dev" >&2; exit 1; }
blas=$(ldd "$torch_lib" | awk '/libblas\.so/&&!f{print $3; f=1}')
blas_real=$(readlink -f "${blas:-/nonexistent}")
if [[ "$blas_real" != *openblas* ]]; then
  cat >&2 <<MSG
setup: ERROR: LibTorch would use the reference BLAS ($blas -> $blas_real), ~13x slower than OpenBLAS.
       Fix: apt-get install libopenblas0-openmp, then
            update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
MSG
  exit 1
fi
echo "setup: ok (LibTorch BLAS: $blas_real)"
