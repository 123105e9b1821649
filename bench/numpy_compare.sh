#!/usr/bin/env bash
# fastattn's exact attention against blocked NumPy attention on OpenBLAS
# (issue 3's benchmark): builds the CLI, makes sure Debian's NumPy runs on
# OpenBLAS, then runs bench/numpy_attention.py, which times both
# alternately on the same .npy inputs at n in {4096, 16384}, d in {64, 128},
# float32 and float64, and prints the ratios, GFLOP/s and the fraction of
# the GEMM peak (OpenBLAS's, and fastattn's own kernels' from bench/gemmpeak)
# measured in the same run.
#
# OpenBLAS 0.3.21 takes some AVX-512 CPUs for Haswell and runs its AVX2
# kernels at about half the GEMM throughput, and an environment may set
# OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) to that. On a CPU with AVX-512
# this script runs Python alone with OPENBLAS_CORETYPE=SkylakeX and without
# OPENBLAS_L2_SIZE, so the peer and the peak use the AVX-512 kernels, and the
# Python side checks that OpenBLAS really loaded them. Nothing else's
# environment is changed.
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
go build -o "$dir/gemmpeak" ./bench/gemmpeak
core=Haswell
if grep -qw avx512f /proc/cpuinfo; then core=SkylakeX; fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores;" \
  "fastattn kernels: $(go run ./bench/kernelslevel); $(go version | cut -d' ' -f3)"
echo "load: $(uptime | sed 's/.*load average/load average/'); OpenBLAS core asked for: $core"
env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=$core "$py" bench/numpy_attention.py \
  --fastattn "$dir/fastattn" --gemmpeak "$dir/gemmpeak" --expect-core "$core" "$@"
