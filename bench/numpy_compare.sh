#!/usr/bin/env bash
# fastattn's exact attention against blocked NumPy attention on OpenBLAS
# (issue 3's benchmark): builds the CLI, makes sure Debian's NumPy runs on
# OpenBLAS, then runs bench/numpy_attention.py, which times both
# alternately on the same .npy inputs at n in {4096, 16384}, d in {64, 128},
# float32 and float64, and prints the ratios, GFLOP/s and the fraction of
# the float32 GEMM peak measured in the same run.
#
# Usage: bench/numpy_compare.sh [numpy_attention.py flags, e.g. --reps 5 --n 16384 --d 64]
#
# Installs only what is missing: python3-numpy if /usr/bin/python3 cannot
# import numpy, and libopenblas0-pthread if OpenBLAS is absent (Debian's
# numpy links the generic libblas.so.3, which is the slow reference BLAS
# unless OpenBLAS provides it). Uses /usr/bin/python3 (Debian's NumPy),
# not whatever python3 comes first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3

apt_install() {
  if ! apt-get install -y "$@" >/dev/null; then
    apt-get update >/dev/null && apt-get install -y "$@" >/dev/null
  fi
}
if ! "$py" -c 'import numpy' 2>/dev/null; then
  echo "installing python3-numpy" >&2
  apt_install python3-numpy
fi
multiarch=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("MULTIARCH") or "")')
openblas=/usr/lib/$multiarch/openblas-pthread
if [ ! -e "$openblas/libblas.so.3" ]; then
  echo "installing libopenblas0-pthread" >&2
  apt_install libopenblas0-pthread
fi
# Load OpenBLAS's libblas.so.3 whatever the system's BLAS alternative is.
export LD_LIBRARY_PATH=$openblas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/fastattn" ./cmd/fastattn
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
  "fastattn kernels: $(go run ./bench/kernelslevel); $(go version | cut -d' ' -f3)"
"$py" bench/numpy_attention.py --fastattn "$dir/fastattn" "$@"
