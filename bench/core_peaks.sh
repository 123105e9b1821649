#!/usr/bin/env bash
# Per-core figures for exact prefill that hold up on a shared machine: in
# one run, OpenBLAS's float32 GEMM on one thread (np.dot of two 4096 x 4096
# matrices, AVX-512 kernels where the CPU has them, timed in the thread's
# CPU time, best of 7), then fastattn's float32 forward on one worker
# (TestPassRates: whole passes at n = m = 16384, process CPU time) and the
# split of its loop into steps (TestForwardPhases: thread CPU time). Other
# jobs' time slices do not count in CPU time, so the ratios hold under load
# better than two-core wall times do; they say nothing of how two cores
# share the machine (bench/numpy_compare.sh measures that).
#
# Usage: bench/core_peaks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/numpy_env.sh
banner
OPENBLAS_NUM_THREADS=1 run_numpy - "$core" <<'PY'
import sys, time
import numpy as np
n = 4096
rng = np.random.default_rng(1)
a = rng.standard_normal((n, n)).astype(np.float32)
b = rng.standard_normal((n, n)).astype(np.float32)
np.dot(a, b)
best = min((lambda t0: (np.dot(a, b), time.thread_time() - t0)[1])(time.thread_time()) for _ in range(7))
try:
    from threadpoolctl import threadpool_info
    cores = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
except ImportError:
    cores = {"unknown (no threadpoolctl)"}
print(f"OpenBLAS float32 GEMM, one thread, {n}^3, thread CPU time, best of 7: {2 * n**3 / best / 1e9:.1f} GFLOP/s "
      f"(kernels: {', '.join(sorted(map(str, cores)))}; asked for {sys.argv[1]})")
PY
FASTATTN_LOOP_RATES=1 go test -count=1 -run 'TestPassRates|TestForwardPhases' -v ./exact | grep -v '^=== RUN\|^--- PASS\|^PASS\|^ok'
