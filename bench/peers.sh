#!/usr/bin/env bash
# The peer table: fastattn's exact attention against NumPy on OpenBLAS
# (AVX-512 kernels where the CPU has them, see bench/numpy_env.sh) for
# prefill, decode and backward in float32 and float64, with the GEMM peaks
# of OpenBLAS and of fastattn's own kernels measured in the same run.
# bench/peers.py does the timing; bench/peers (Go) runs fastattn.
#
# Usage: bench/peers.sh [peers.py flags, e.g. --reps 5 --quick --ops decode,decode-hot]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/numpy_env.sh

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/peers" ./bench/peers
go build -o "$dir/gemmpeak" ./bench/gemmpeak
banner
run_numpy bench/peers.py --peers "$dir/peers" --gemmpeak "$dir/gemmpeak" --expect-core "$core" "$@"
