#!/usr/bin/env bash
# Fetches, on a networked Debian 12 machine, the Debian packages that scripts/gpu_check.sh builds
# llamarl against on a CUDA machine without network: Open MPI (headers, libraries, mpirun),
# nlohmann_json, GoogleTest, Google Benchmark, PCRE2, utf8proc, CLI11 and pkgconf, with the libraries
# they need at run time. LibTorch, CUDA, NCCL, the compiler, CMake and ninja come from the CUDA
# machine itself (its PyTorch wheel and CUDA toolkit), so they are not fetched.
#
#   scripts/gpu_fetch_debs.sh OUT_DIR     # then copy OUT_DIR to the CUDA machine
#
# The closure follows Depends and Pre-Depends (first alternative; a virtual package's first
# provider) and leaves out what every CUDA build machine already has and must not be shadowed: the
# base system (Priority required or important), the C library and its headers, the compilers and
# their runtime libraries, perl and the X libraries (hwloc's optional plugins). OUT_DIR gets the
# .deb files and packages.txt (one "name version" a line). Needs apt-get and apt-cache, no root.
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
  echo "usage: $0 OUT_DIR   (fetch the Debian packages scripts/gpu_check.sh needs into OUT_DIR)" >&2
  exit 2
fi
out=$1
if ! command -v apt-get >/dev/null || ! command -v apt-cache >/dev/null; then
  echo "gpu_fetch_debs: needs apt-get and apt-cache (a Debian 12 machine)" >&2
  exit 1
fi

roots=(libopenmpi-dev openmpi-bin nlohmann-json3-dev libgtest-dev libbenchmark-dev libpcre2-dev
       libutf8proc-dev libcli11-dev pkgconf)
# Present on the CUDA machine, or harmful to put beside its own (a second libc, an older libstdc++).
skip_re='^(libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libcrypt-dev|libnsl-dev|libtirpc-dev|rpcsvc-proto|'
skip_re+='gcc(-[0-9]+)?(-base)?|g\+\+(-[0-9]+)?|cpp(-[0-9]+)?|gfortran(-[0-9]+)?|flang-[0-9]+|libflang-.*|'
skip_re+='libgfortran.*|libgcc.*|libstdc\+\+.*|lib[altu]*san[0-9]*|libtsan[0-9]*|libitm[0-9]*|libquadmath[0-9]*|'
skip_re+='libgomp[0-9]*|libcc1-0|libisl[0-9]*|libmpc[0-9]*|libmpfr[0-9]*|libgmp[0-9]*|libllvm.*|libclang.*|'
skip_re+='libmlir.*|libz3-.*|binutils.*|libbinutils|libctf.*|libgprofng.*|libjansson[0-9]*|autoconf|automake|'
skip_re+='autotools-dev|m4|libltdl-dev|perl|perl-base|perl-modules-.*|libperl.*|openssh-client|libx11-.*|'
skip_re+='libxcb[0-9]*|libxau[0-9]*|libxdmcp[0-9]*|libxext[0-9]*|libxnvctrl[0-9]*|zlib1g-dev|libjs-.*|'
skip_re+='debconf|cdebconf|adduser|passwd|dpkg|install-info|tar|libssl[0-9]*|libicu[0-9]*|libxml2)$'

priority() { apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Priority: //p' | head -1; }

# The packages `pkg` needs: one name a line (first alternative of each group, a virtual package's
# first provider).
direct_deps() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$1" |
    awk '
      /^ *\|?(Pre)?Depends: / {
        name = $2; alt = ($1 ~ /^\|/); virtual = (name ~ /^</)
        if (!in_alt && !virtual) print name
        want_provider = (!in_alt && virtual)
        in_alt = alt; next
      }
      /^    [^ ]/ { if (want_provider) { print $1; want_provider = 0 } next }
    ' | sort -u
}

declare -A seen=()
queue=("${roots[@]}")
keep=()
while ((${#queue[@]})); do
  pkg=${queue[0]}
  queue=("${queue[@]:1}")
  pkg=${pkg%%:*}  # drop an architecture qualifier (libfoo:any)
  [[ -n ${seen[$pkg]:-} ]] && continue
  seen[$pkg]=1
  if [[ $pkg =~ $skip_re ]]; then continue; fi
  case $(priority "$pkg") in required | important) continue ;; esac
  keep+=("$pkg")
  while read -r dep; do
    [[ -n $dep && -z ${seen[${dep%%:*}]:-} ]] && queue+=("$dep")
  done < <(direct_deps "$pkg")
done

mkdir -p "$out"
cd "$out"
echo "gpu_fetch_debs: downloading ${#keep[@]} packages into $out" >&2
apt-get download "${keep[@]}"
for pkg in "${keep[@]}"; do
  echo "$pkg $(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')"
done | sort >packages.txt
echo "gpu_fetch_debs: $(find . -maxdepth 1 -name '*.deb' | wc -l) files, $(du -sh . | cut -f1); copy $out to the CUDA machine and run" \
     "scripts/gpu_check.sh --debs $out" >&2
