#!/usr/bin/env python3
"""The peer table: fastattn's exact attention against NumPy on OpenBLAS for
prefill, decode and backward, float32 and float64, with the GEMM peaks of
OpenBLAS and of fastattn's own kernels measured in the same run.

Run it through bench/peers.sh, which builds bench/peers and bench/gemmpeak
and sets OpenBLAS up (bench/numpy_env.sh). For every row both sides run
`reps` times, alternately, each on inputs of its own (standard normal,
scale 1/sqrt(d), d = e); times are the best of the repetitions. Each
repetition makes its inputs, calls once to warm up and then times one call,
or for the decoding rows (milliseconds a call) the best of --decode-calls
calls back to back, as a serving loop runs them: the first passes over
freshly written keys and values run up to twice as slow as the later ones
on both sides, so one call timed after one warm-up measured mostly that.
fastattn's process starts once OpenBLAS's threads have stopped spinning
after NumPy's last product (numpy_attention.blas_idle).
NumPy does what numpy_attention.py does for a forward (blocks of 512 query rows,
S = scale Q K^T, exp, row sums, P V) and, for the backward, the five
products per block with the forward's log-sum-exp (P = exp(S - lse),
dV += P^T dO, dP = dO V^T, dS = P (dP - delta), dQ = dS K, dK += dS^T Q).
fastattn's time is the library call (bench/peers): "decode" is the
certified call, which also scans the keys and values for its rounding
bound, and "decode-hot" the serving hot path (exact.Workspace.Forward, as
AttendInto and Cache run it), which states no bound. Flops are 4nmd for a
forward and 10nmd for a backward. The peaks are the best of the
measurements before the first row and after the last.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_attention import blas_library, fastattn_gemm_peaks, gemm_peak, numpy_attention, openblas_core, run_alone  # noqa: E402


def numpy_forward_lse(q, k, scale, block):
    """Row log-sum-exps of scale Q K^T, for the backward's inputs."""
    lse = np.empty(q.shape[0], dtype=np.float64)
    for i in range(0, q.shape[0], block):
        s = (q[i:i + block] * q.dtype.type(scale)) @ k.T
        mx = s.max(axis=1, keepdims=True)
        lse[i:i + block] = (mx + np.log(np.exp(s - mx).sum(axis=1, keepdims=True)))[:, 0]
    return lse.astype(q.dtype)


def numpy_backward(q, k, v, o, lse, do, scale, block):
    n = q.shape[0]
    dt = q.dtype.type
    dq = np.empty_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    delta = np.sum(do * o, axis=1)
    for i in range(0, n, block):
        s = (q[i:i + block] * dt(scale)) @ k.T
        s -= lse[i:i + block, None]
        np.exp(s, out=s)
        dv += s.T @ do[i:i + block]
        dp = do[i:i + block] @ v.T
        dp -= delta[i:i + block, None]
        dp *= s
        dq[i:i + block] = (dp @ k) * dt(scale)
        dk += (dp.T @ q[i:i + block]) * dt(scale)
    return dq, dk, dv


def time_numpy(op, n, m, d, dtype, reps, block):
    rng = np.random.default_rng(n + m + d)
    q = rng.standard_normal((n, d)).astype(dtype)
    k = rng.standard_normal((m, d)).astype(dtype)
    v = rng.standard_normal((m, d)).astype(dtype)
    scale = 1 / np.sqrt(d)
    if op == "backward":
        o = numpy_attention(q, k, v, scale, block)
        lse = numpy_forward_lse(q, k, scale, block)
        do = rng.standard_normal((n, d)).astype(dtype)
        f = lambda: numpy_backward(q, k, v, o, lse, do, scale, block)  # noqa: E731
    else:
        f = lambda: numpy_attention(q, k, v, scale, block)  # noqa: E731
    f()  # warm up OpenBLAS's threads
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def time_fastattn(exe, op, n, m, d, dtype, reps):
    out = run_alone([exe, "-op", op, "-n", str(n), "-m", str(m), "-d", str(d), "-dtype", dtype, "-reps", str(reps)]).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", required=True, help="path to the bench/peers binary")
    ap.add_argument("--gemmpeak", required=True, help="path to the bench/gemmpeak binary")
    ap.add_argument("--expect-core", help="the OpenBLAS core that must be loaded, e.g. SkylakeX")
    ap.add_argument("--any-blas", action="store_true", help="run even if OpenBLAS is missing or on another core")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--block", type=int, default=512, help="query rows per NumPy block")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    ap.add_argument("--ops", default="prefill,decode,decode-hot,backward", help="the operations to time, comma-separated")
    ap.add_argument("--decode-calls", type=int, default=20, help="timed calls per repetition of the decoding rows (both sides)")
    args = ap.parse_args()

    core = openblas_core()
    libs = blas_library()
    if not args.any_blas and (core is None or (args.expect_core and core.lower() != args.expect_core.lower())):
        sys.exit(f"OpenBLAS core {core!r} (libraries {libs}), expected {args.expect_core!r}; pass --any-blas to run anyway")
    print(f"NumPy {np.__version__} on OpenBLAS (core {core}); {os.cpu_count()} cores; {args.reps} alternating repetitions, best of each")

    big, dec = (4096, 65536) if not args.quick else (512, 4096)
    rows = []
    ops = args.ops.split(",")
    if bad := set(ops) - {"prefill", "decode", "decode-hot", "backward"}:
        ap.error(f"unknown operations {sorted(bad)}")
    for dtype in ("float32", "float64"):
        for d in (64, 128):
            rows.append(("prefill", big, big, d, dtype))
        rows.append(("decode", 1, dec, 128, dtype))
        rows.append(("decode-hot", 1, dec, 128, dtype))
        for d in (64, 128):
            rows.append(("backward", big, big, d, dtype))
    rows = [r for r in rows if r[0] in ops]

    peaks = {dt: [gemm_peak(np.dtype(dt).type)] for dt in ("float32", "float64")}
    own = [fastattn_gemm_peaks(args.gemmpeak)]
    results = []
    for op, n, m, d, dtype in rows:
        fa, npt = [], []
        calls = max(args.decode_calls, 1) if op.startswith("decode") else 1
        for _ in range(args.reps):
            fa.append(time_fastattn(args.peers, op, n, m, d, dtype, calls))
            npt.append(time_numpy(op, n, m, d, dtype, calls, args.block))
        r = min(fa, key=lambda x: x["seconds"])
        results.append((op, n, m, d, dtype, min(npt), r["seconds"], r["flops"]))
        print(f"  {op} n={n} m={m} d={d} {dtype}: NumPy {min(npt):.4f} s, fastattn {r['seconds']:.4f} s", flush=True)
    for dt in peaks:
        peaks[dt].append(gemm_peak(np.dtype(dt).type))
    own.append(fastattn_gemm_peaks(args.gemmpeak))
    best = {dt: max(ps) for dt, ps in peaks.items()}
    own_best = {dt: max(o[dt] for o in own) for dt in peaks}
    print()
    for dt in peaks:
        print(f"{dt} GEMM peak: OpenBLAS ({core}) {best[dt]:.0f} GFLOP/s (start, end: {', '.join(f'{p:.0f}' for p in peaks[dt])}); "
              f"fastattn's kernels {own_best[dt]:.0f} (start, end: {', '.join(f'{o[dt]:.0f}' for o in own)})")
    print("\n| operation | n | m | d | dtype | NumPy (s) | fastattn (s) | fastattn / NumPy time | NumPy GFLOP/s | "
          "fastattn GFLOP/s | fastattn / OpenBLAS GEMM peak | fastattn / own GEMM peak |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for op, n, m, d, dtype, tn, tf, flops in results:
        print(f"| {op} | {n} | {m} | {d} | {dtype} | {tn:.4f} | {tf:.4f} | {tf / tn:.2f} | {flops / tn / 1e9:.1f} | "
              f"{flops / tf / 1e9:.1f} | {flops / tf / 1e9 / best[dtype]:.0%} | {flops / tf / 1e9 / own_best[dtype]:.0%} |")


if __name__ == "__main__":
    main()
