#!/usr/bin/env bash
# Issue 16's performance targets in one run, each a ratio against a baseline
# measured in the same run, then a summary table: target, measured, met.
# Run it on an idle machine (it takes 4-7 minutes on 2 cores); the CPU
# and the load average are printed at the start, the load at the end.
#
#   prefill, float32, n = 16384, d = 64 and 128, causal and not: >= 85% of
#     OpenBLAS's float32 GEMM peak (AVX-512 kernels), taking turns with it
#     (bench/numpy_compare.sh --causal). Both sides are warm: the peak is
#     np.dot into a kept output, fastattn the faster of two calls after the
#     first in one `fastattn run --repeat 2` process (the serving hot path,
#     into the first call's output). The first call, which also pays for
#     first writes to fresh memory, is shown beside it.
#   prefill, float64: >= 75% of OpenBLAS's float64 GEMM peak (same script)
#   bfloat16 prefill >= 1.5x float32 GFLOP/s (BenchmarkBF16Prefill, on AMX
#     tiles or VDPBF16PS): the verdict is on P rounded to bfloat16 as the
#     issue and FlashAttention-3 do; P split in two (the default at eps
#     1e-3, which costs a second P V product) is shown beside it
#   backward / forward <= 2.5 (BenchmarkBackwardRatio: the ratio of the
#     best times decides; the median of the per-iteration ratios is shown
#     beside it), for one head at d = 64 and 128, n = 4096 and 16384, and
#     for training's shapes: 8 causal heads at n = 2048 and 4 heads with a
#     1024-key sliding window at n = 4096
#   poly at n = 2^20, d = 8, eps = 1e-3: >= 600x exact (fastattn bench)
#   anytemp at d = 2, e = 8, n = 2^16: >= 20x exact (fastattn bench)
#
# Usage: bench/targets.sh [--reps R]   (R: repetitions of the prefill rows, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5
if [[ "${1:-}" == "--reps" ]]; then reps=$2; fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/fastattn" ./cmd/fastattn
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "start: $(uptime)"

summary=()
verdict() { # name, measured, target text, met (0/1, or - when it could not be measured)
	case $4 in
	1) summary+=("| $1 | $3 | $2 | yes |") ;;
	-) summary+=("| $1 | $3 | $2 | not measured |") ;;
	*) summary+=("| $1 | $3 | $2 | no |") ;;
	esac
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }' && echo 1 || echo 0; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }' && echo 1 || echo 0; }

echo; echo "== prefill against OpenBLAS's GEMM peak (bench/numpy_compare.sh)"
bench/numpy_compare.sh --n 16384 --d 64,128 --dtype float32,float64 --reps "$reps" --causal --no-bench | tee "$dir/prefill"
# Markdown rows: | n | d | dtype | ... | fa/peak (best) [11] | ... | causal/peak
# (best) [15] | ... | causal first call/peak [18] | first call/peak [19] |
while IFS='|' read -r _ n d dtype _ _ _ _ _ _ _ frac _ _ _ cfrac _ _ cfirst first _; do
	n=${n// /}; d=${d// /}; dtype=${dtype// /}; frac=${frac// /}; cfrac=${cfrac// /}; cfirst=${cfirst// /}; first=${first// /}
	[[ $n =~ ^[0-9]+$ ]] || continue
	want=85; [[ $dtype == float64 ]] && want=75
	verdict "prefill $dtype d=$d n=$n" "$frac of the peak (first call $first)" ">= $want%" "$(ge "${frac%\%}" $want)"
	if [[ $dtype == float32 ]]; then
		verdict "prefill $dtype d=$d n=$n causal" "$cfrac of the peak (first call $cfirst)" ">= $want%" "$(ge "${cfrac%\%}" $want)"
	fi
done < <(grep '^| [0-9]' "$dir/prefill")

metric() { # file, benchmark name fragment, unit: the value before the unit on that line
	grep -F "$2" "$1" | awk -v u="$3" '{ for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' | head -1 || true
}

echo; echo "== bfloat16 prefill on hardware bfloat16 products against float32 (BenchmarkBF16Prefill)"
# Ten calls of each path, as for the backward below: with three, one run's
# best at d = 64, n = 4096 (40 ms a call) fell short on a shared machine.
go test ./exact -run - -bench BF16Prefill -benchtime 10x -v | grep -v '^=== ' | tee "$dir/bf16"
for s in d=64/n=4096 d=64/n=16384 d=128/n=4096 d=128/n=16384; do
	r=$(metric "$dir/bf16" "$s-" bf16r/float32)
	split=$(metric "$dir/bf16" "$s-" bf16/float32)
	if [[ -n $r ]]; then verdict "bfloat16 prefill $s" "${r}x float32 (P split: ${split}x)" ">= 1.5x" "$(ge "$r" 1.5)"; fi
done
if ! grep -q bf16r/float32 "$dir/bf16"; then
	# The benchmark skips without AMX or a fast VDPBF16PS: say so rather
	# than drop the target.
	verdict "bfloat16 prefill" "skipped: $(grep -m1 -o 'no hardware[^"]*' "$dir/bf16" || echo 'no result')" ">= 1.5x" -
fi

echo; echo "== backward / forward (BenchmarkBackwardRatio)"
go test ./exact -run - -bench BackwardRatio -benchtime 10x | tee "$dir/bwd"
for dt in float32 float64; do
	for s in d=64/n=4096 d=64/n=16384 d=128/n=4096 d=128/n=16384 causal/heads=8/d=64/n=2048 causal/heads=8/d=128/n=2048 window=1024/heads=4/d=128/n=4096; do
		r=$(metric "$dir/bwd" "$dt/$s-" bwd/fwd)
		pair=$(metric "$dir/bwd" "$dt/$s-" bwd/fwd-pair)
		if [[ -n $r ]]; then verdict "backward $dt $s" "$r (median pair $pair)" "<= 2.5" "$(le "$r" 2.5)"; fi
	done
done

speedup() { # file: the method's x column of the result line
	awk '$1 ~ /^[0-9]+$/ { for (i = 1; i <= NF; i++) if ($i ~ /x$/) { sub(/x$/, "", $i); print $i } }' "$1" | head -1
}

echo; echo "== poly at n = 2^20, d = 8, eps = 1e-3 (fastattn bench)"
"$dir/fastattn" bench --methods poly --n 1048576 --d 8 --dtype float32 --entries uniform:1 --scale 1/d --eps 1e-3 --reps 3 | tee "$dir/poly"
r=$(speedup "$dir/poly"); verdict "poly n=2^20 d=8" "${r}x exact" ">= 600x" "$(ge "$r" 600)"

echo; echo "== anytemp at d = 2, e = 8, n = 2^16 (fastattn bench, exact on every row)"
"$dir/fastattn" bench --methods anytemp --n 65536 --d 2 --e 8 --dtype float32 --reps 5 --exact-rows 0 | tee "$dir/anytemp"
r=$(speedup "$dir/anytemp"); verdict "anytemp d=2 e=8 n=2^16" "${r}x exact" ">= 20x" "$(ge "$r" 20)"

echo; echo "end: $(uptime)"
echo
echo "| target | wanted | measured | met |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${summary[@]}"
