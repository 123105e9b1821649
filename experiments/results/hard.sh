#!/bin/sh
FA=$1
D=${2:-/tmp/harddemo}
rm -rf $D; mkdir -p $D
run() {
  label=$1; shift
  out=$($FA hard solve "$@" --check 2>&1)
  echo "$out" | python3 -c "
import json,sys
d=json.load(sys.stdin); r=d['report']; c=d.get('check') or {}
print('%s: method=%s certified=%s yes=%d seconds=%.3g error_bound=%.3g disagree_outside_gap=%s in_gap=%s' % (sys.argv[1], r['method'], d['certified'], d['yes'], r['seconds'], r['error_bound'], c.get('disagree_outside_gap'), c.get('in_gap')))" "$label" 2>/dev/null || echo "$label: $out"
}
for n in 1024 4096; do
  $FA hard ann --n $n --dim 64 --seed 1 --out $D/ann$n
  for m in exact poly anytemp auto; do run "ann n=$n $m" --dir $D/ann$n --method $m; done
  for m in poly anytemp; do run "ann n=$n $m eps=1e-3" --dir $D/ann$n --method $m --eps 1e-3; done
done
for dim in 4 16; do
  $FA hard maxip --n 4096 --dim $dim --seed 1 --out $D/mip$dim
  for m in exact poly anytemp auto; do run "maxip dim=$dim $m" --dir $D/mip$dim --method $m; done
done
