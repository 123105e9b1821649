#!/usr/bin/env bash
# End-to-end command-line timing of the polynomial method against exact
# attention (issue 4's target): d = 8, entries uniform in [-1, 1], scale 1/d,
# eps = 1e-3, float32. Builds the CLI, writes the inputs once, then times
# `fastattn run` (reading the files, computing, writing the output) for each
# method, alternating, and prints the ratio.
# Usage: bench/poly_cli.sh [N]   (default N = 65536)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-65536}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/fastattn" ./cmd/fastattn
"$dir/fastattn" gen --out "$dir" --n "$n" --d 8 --entries uniform:1 --dtype float32 >/dev/null
time_run() {
  local start end
  start=$(date +%s.%N)
  "$dir/fastattn" run --q "$dir/q.npy" --k "$dir/k.npy" --v "$dir/v.npy" --out "$dir/o_$1.npy" \
    --method "$1" --scale 1/d --eps 1e-3 --report "$dir/r_$1.json" >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { print b - a }'
}
minimum() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }
best_exact=1e9; best_poly=1e9
for rep in 1 2; do
  best_exact=$(minimum "$(time_run exact)" "$best_exact")
  best_poly=$(minimum "$(time_run poly)" "$best_poly")
done
printf "n = %d, d = 8, float32, end to end on the command line (best of 2):\n" "$n"
awk -v e="$best_exact" -v p="$best_poly" 'BEGIN { printf "  exact %.3f s, poly %.3f s, ratio %.1fx\n", e, p, e / p }'
grep -E '"(error_bound|method)"' "$dir/r_poly.json" | tr -d ' \n'; echo
