#!/usr/bin/env bash
# fastattn's exact attention against blocked NumPy attention on OpenBLAS
# (issue 3's benchmark): builds the CLI, makes sure Debian's NumPy runs on
# OpenBLAS's AVX-512 kernels where the CPU has them (bench/numpy_env.sh),
# then runs bench/numpy_attention.py, which times both alternately on the
# same .npy inputs at n in {4096, 16384}, d in {64, 128}, float32 and
# float64, and prints the ratios, GFLOP/s and the fraction of the GEMM peak
# (OpenBLAS's, and fastattn's own kernels' from bench/gemmpeak) measured in
# the same run.
#
# Usage: bench/numpy_compare.sh [numpy_attention.py flags, e.g. --reps 5 --n 16384 --d 64]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/numpy_env.sh

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/fastattn" ./cmd/fastattn
go build -o "$dir/gemmpeak" ./bench/gemmpeak
banner
run_numpy bench/numpy_attention.py \
  --fastattn "$dir/fastattn" --gemmpeak "$dir/gemmpeak" --expect-core "$core" "$@"
