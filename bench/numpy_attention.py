#!/usr/bin/env python3
"""Time fastattn's exact attention against blocked NumPy attention, alternately,
on the same inputs, and print the time ratio, GFLOP/s and the fraction of the
GEMM peak of the same dtype measured in the same run.

Run it through bench/numpy_compare.sh, which builds the CLI and makes sure
NumPy runs on OpenBLAS. Directly:

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/numpy_attention.py
        --fastattn PATH [--gemmpeak PATH] [--expect-core SkylakeX] [--n 4096,16384]
        [--d 64,128] [--dtype float32,float64] [--reps 3] [--block 512] [--causal]

OpenBLAS 0.3.21 takes some AVX-512 CPUs for Haswell (AVX2 kernels, about
half the GEMM throughput), and an environment may force that with
OPENBLAS_CORETYPE; numpy_compare.sh asks for the SkylakeX (AVX-512) kernels
on CPUs with AVX-512 and passes --expect-core, and this script refuses to
run if OpenBLAS loaded another core.

For every size and type it writes Q, K, V (standard normal, scale 1/sqrt(d))
as .npy files, then repeats `reps` times: `fastattn run --method exact
--repeat 2` on the files, then NumPy on the same arrays. fastattn's time is
the faster of the two repeated calls, which run through the serving hot
path (AttendInto) into memory the process has already written, as the
peak's np.dot writes into a kept output; reading and writing the .npy files
are excluded. The first call's time, that of a process that computes once,
is shown too ("1st/peak"): it also pays for the first writes to the fresh
output and packed keys, which cost 1.5-16 us per 4 KiB page on the virtual
machines this was measured on. NumPy's time is its attention computation (arrays already in
memory). The ratio column is fastattn / NumPy of the
fastest runs; "pairs" is the median of the per-repetition ratios. The
GEMM peak of the row's dtype (OpenBLAS's: np.dot of two 4096 x 4096
matrices, one timed call on warm operands) is measured in every
repetition, right before fastattn runs, so the peak and fastattn take
turns under the same load and get the same number of tries. Every fastattn
process starts only once OpenBLAS's threads have stopped spinning after the
last product (blas_idle): started at once, it shared the cores with them for
its first tenth of a second. Each row gives
fastattn's best GFLOP/s over the best of its peaks ("fa/peak"), the median
over repetitions of fastattn's GFLOP/s over the peak measured just before
it (the second "pairs"), and the spread (slowest/fastest - 1) of fastattn's
times and of the peaks ("fa spr", "pk spr"), so the noise of each shows.
With --causal every repetition also runs fastattn with --causal
(bottom-right, n = m), whose GFLOP/s count only the pairs the mask leaves
(the flops of its report), against the same peaks. --gemmpeak
(bench/gemmpeak) gives the peak of fastattn's own GEMM kernels on all
cores, at the start and at the end. Once per size it also runs `fastattn
bench --methods exact` (the library call inside one process, fastest of
--reps, on inputs of its own) for a second fastattn figure. GFLOP/s count
4nmd flops (2nmd for Q K^T, 2nmd for P V).

NumPy attention: for each block of query rows, S = (scale Q_blk) @ K.T,
subtract the row max, exp in place, row sums, (P @ V) / sums. OpenBLAS uses
every core for the two products; the exp and the reductions are NumPy's
single-threaded loops.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def blas_library():
    """The BLAS shared library this process has mapped (after importing NumPy)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if "blas" in name and ".so" in name:
                libs.add(os.path.realpath(path))
    return sorted(libs)


def openblas_core():
    """The OpenBLAS core (kernel set) loaded, by threadpoolctl or by asking
    OpenBLAS directly (openblas_get_corename); None if OpenBLAS is not loaded."""
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("internal_api") == "openblas":
                return info.get("architecture")
    except ImportError:
        pass
    import ctypes
    for lib in blas_library():
        if "openblas" in lib:
            try:
                f = ctypes.CDLL(lib).openblas_get_corename
            except (OSError, AttributeError):
                continue
            f.restype = ctypes.c_char_p
            return f().decode()
    return None


def blas_idle(step=0.02, limit=2.0):
    """Wait until this process's OpenBLAS threads stop spinning. After a
    product OpenBLAS's worker threads busy-wait for more work (here 0.10 s
    of CPU time after each np.dot, measured with the main thread asleep),
    so a fastattn process started at once shared the two cores with them
    for the first part of its run: five 0.2 s calls at n = 16384, d = 64
    spread over 21% of their best without the wait, 6-9% with it. Returns
    once a sleep of `step` seconds sees the process use under a tenth of
    that in CPU time, or after `limit` seconds."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        c = time.process_time()
        time.sleep(step)
        if time.process_time() - c < step / 10:
            return


def run_alone(args):
    """subprocess.run(args) once OpenBLAS's threads are idle (blas_idle),
    with the output captured as text."""
    blas_idle()
    return subprocess.run(args, check=True, capture_output=True, text=True)


def fastattn_gemm_peaks(exe):
    """{dtype: GFLOP/s} of fastattn's own GEMM kernels on all cores (bench/gemmpeak)."""
    out = run_alone([exe, "-json", "-reps", "2", "-seconds", "0.2"]).stdout
    return {r["dtype"]: r["gflops"] for r in (json.loads(l) for l in out.splitlines() if l.strip())}


def numpy_attention(q, k, v, scale, block):
    n, e = q.shape[0], v.shape[1]
    out = np.empty((n, e), dtype=q.dtype)
    kt = k.T
    scale = q.dtype.type(scale)
    for i in range(0, n, block):
        s = (q[i:i + block] * scale) @ kt
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        sums = s.sum(axis=1, keepdims=True)
        o = s @ v
        o /= sums
        out[i:i + block] = o
    return out


def gemm_peak(dtype, size=4096, reps=3):
    """Best GFLOP/s of np.dot on two size x size matrices."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    np.dot(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        np.dot(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


class Peak:
    """OpenBLAS's GEMM rate on two size x size matrices of one dtype, kept
    warm, so that single timed calls can take turns with other runs."""

    def __init__(self, dtype, size=4096):
        rng = np.random.default_rng(1)
        self.a = rng.standard_normal((size, size)).astype(dtype)
        self.b = rng.standard_normal((size, size)).astype(dtype)
        self.c = np.empty((size, size), dtype=dtype)
        self.flops = 2.0 * size**3
        np.dot(self.a, self.b, out=self.c)

    def measure(self):
        t = time.perf_counter()
        np.dot(self.a, self.b, out=self.c)
        return self.flops / (time.perf_counter() - t) / 1e9


def run_fastattn(exe, tmp, causal=False):
    """Seconds of the faster of two warm library calls (--repeat 2), of the
    process's first call, and the flops the report counts (only the pairs
    a mask leaves)."""
    report = os.path.join(tmp, "report.json")
    args = [exe, "run", "--method", "exact", "--scale", "1/sqrt(d)", "--repeat", "2",
            "--q", os.path.join(tmp, "q.npy"), "--k", os.path.join(tmp, "k.npy"), "--v", os.path.join(tmp, "v.npy"),
            "--out", os.path.join(tmp, "o_causal.npy" if causal else "o.npy"), "--report", report]
    if causal:
        args.append("--causal")
    blas_idle()
    subprocess.run(args, check=True, capture_output=True)
    with open(report) as f:
        rep = json.load(f)
    assert rep["method"] == "exact", rep
    return min(rep["repeat_seconds"]), rep["seconds"], rep["flops"]


def spread(xs):
    """slowest/fastest - 1 of positive times or rates."""
    return max(xs) / min(xs) - 1


def run_fastattn_bench(exe, n, d, dtype, reps):
    """Seconds of `fastattn bench --methods exact`: library call, fastest of reps."""
    out = run_alone([exe, "bench", "--methods", "exact", "--n", str(n), "--d", str(d), "--dtype", dtype,
                     "--exact-rows", "0", "--reps", str(reps)]).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == str(n) and f[1] == str(d) and f[2] == dtype:
            return float(f[3])
    raise RuntimeError("no result line in fastattn bench output:\n" + out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fastattn", required=True, help="path to the fastattn binary")
    ap.add_argument("--n", default="4096,16384", help="sequence lengths (n = m)")
    ap.add_argument("--d", default="64,128", help="head dimensions (d = e)")
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions per size")
    ap.add_argument("--block", type=int, default=512, help="query rows per NumPy block")
    ap.add_argument("--no-bench", action="store_true", help="skip `fastattn bench`")
    ap.add_argument("--any-blas", action="store_true", help="run even if NumPy is not on OpenBLAS, or on another core than --expect-core")
    ap.add_argument("--expect-core", help="the OpenBLAS core that must be loaded, e.g. SkylakeX")
    ap.add_argument("--gemmpeak", help="path to the bench/gemmpeak binary (fastattn's own GEMM peak)")
    ap.add_argument("--causal", action="store_true", help="also time fastattn with --causal in every repetition")
    args = ap.parse_args()

    libs = blas_library()
    if not any("openblas" in lib for lib in libs) and not args.any_blas:
        sys.exit(f"NumPy is not running on OpenBLAS (mapped: {libs or 'none'}); "
                 "run bench/numpy_compare.sh, or pass --any-blas")
    core = openblas_core()
    if args.expect_core and (core or "").lower() != args.expect_core.lower() and not args.any_blas:
        sys.exit(f"OpenBLAS loaded core {core!r}, not {args.expect_core!r} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')!r}); "
                 "pass --any-blas to run anyway")
    threads = os.cpu_count()
    print(f"NumPy {np.__version__} on {', '.join(os.path.basename(l) for l in libs)} (core {core}); {threads} cores; "
          f"NumPy block {args.block} rows; {args.reps} alternating repetitions; fastattn = the faster of two warm calls in `fastattn run --repeat 2`; 1st/peak = its first call")
    ns = [int(x) for x in args.n.split(",")]
    ds = [int(x) for x in args.d.split(",")]
    dtypes = args.dtype.split(",")

    own = [fastattn_gemm_peaks(args.gemmpeak)] if args.gemmpeak else []
    peakers = {dt: Peak(np.dtype(dt).type) for dt in dtypes}
    peaks = {dt: [] for dt in dtypes}
    rows = []
    head = (f"{'n':>6} {'d':>4} {'dtype':>8} {'numpy s':>9} {'fastattn s':>10} {'ratio':>6} {'pairs':>6} "
            f"{'numpy GF/s':>10} {'fa GF/s':>8} {'peak':>6} {'fa/peak':>7} {'pairs':>6} {'fa spr':>6} {'pk spr':>6} "
            f"{'1st/peak':>9} {'fa bench s':>10} {'max err':>8}")
    if args.causal:
        head += f" {'causal GF/s':>11} {'c/peak':>6} {'pairs':>6} {'c/non-c':>7} {'1st/peak':>8}"
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            peaker = peakers[dtype]
            for d in ds:
                for n in ns:
                    rng = np.random.default_rng(n + d)
                    q, k, v = (rng.standard_normal((n, d)).astype(dtype) for _ in range(3))
                    for name, x in (("q", q), ("k", k), ("v", v)):
                        np.save(os.path.join(tmp, name + ".npy"), x)
                    scale = 1 / np.sqrt(d)
                    numpy_attention(q[:64], k, v, scale, args.block)  # warm up OpenBLAS threads
                    fa, fa_first, npt, pairs, pk, ca, ca_first, cflops = [], [], [], [], [], [], [], 0.0
                    ref = None
                    for _ in range(args.reps):
                        # The peak, then fastattn right after it (same load).
                        pk.append(peaker.measure())
                        s, first, _ = run_fastattn(args.fastattn, tmp)
                        if args.causal:
                            cs, cfirst, cflops = run_fastattn(args.fastattn, tmp, causal=True)
                            ca.append(cs)
                            ca_first.append(cfirst)
                        t = time.perf_counter()
                        ref = numpy_attention(q, k, v, scale, args.block)
                        t = time.perf_counter() - t
                        fa.append(s)
                        fa_first.append(first)
                        npt.append(t)
                        pairs.append(s / t)
                    got = np.load(os.path.join(tmp, "o.npy"))
                    err = float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(v)))
                    bench = float("nan") if args.no_bench else run_fastattn_bench(args.fastattn, n, d, dtype, args.reps)
                    peaks[dtype] += pk
                    flops = 4.0 * n * n * d
                    # fastattn's best against the peak's best (as many tries,
                    # taking turns), and the median of each repetition's
                    # fastattn rate over the peak measured just before it.
                    fa_gf = flops / min(fa) / 1e9
                    r = dict(n=n, d=d, dtype=dtype, numpy=min(npt), fa=min(fa), ratio=min(fa) / min(npt),
                             pairs=statistics.median(pairs), np_gf=flops / min(npt) / 1e9, fa_gf=fa_gf,
                             first_frac=flops / min(fa_first) / 1e9 / max(pk), bench=bench, err=err, peak=max(pk), frac=fa_gf / max(pk),
                             frac_pairs=statistics.median(flops / f / 1e9 / p for f, p in zip(fa, pk)),
                             fa_spread=spread(fa), pk_spread=spread(pk))
                    line = (f"{n:>6} {d:>4} {dtype:>8} {r['numpy']:>9.4f} {r['fa']:>10.4f} {r['ratio']:>6.2f} {r['pairs']:>6.2f} "
                            f"{r['np_gf']:>10.1f} {fa_gf:>8.1f} {r['peak']:>6.0f} {r['frac']:>7.0%} {r['frac_pairs']:>6.0%} "
                            f"{r['fa_spread']:>6.0%} {r['pk_spread']:>6.0%} "
                            f"{r['first_frac']:>9.0%} {r['bench']:>10.4f} {err:>8.1e}")
                    if args.causal:
                        c_gf = cflops / min(ca) / 1e9
                        r.update(c_gf=c_gf, c_frac=c_gf / max(pk), c_rel=c_gf / fa_gf, c_first_frac=cflops / min(ca_first) / 1e9 / max(pk),
                                 c_pairs=statistics.median(cflops / c / 1e9 / p for c, p in zip(ca, pk)))
                        line += f" {c_gf:>11.1f} {r['c_frac']:>6.0%} {r['c_pairs']:>6.0%} {r['c_rel']:>7.0%} {r['c_first_frac']:>8.0%}"
                    rows.append(r)
                    print(line, flush=True)
    if args.gemmpeak:
        own.append(fastattn_gemm_peaks(args.gemmpeak))
    print()
    for dt, ps in peaks.items():
        print(f"{dt} GEMM peak of OpenBLAS ({core}) in this run (np.dot, 4096^3, one call per repetition): "
              f"best {max(ps):.1f} GFLOP/s (per measurement: {', '.join(f'{p:.0f}' for p in ps)})")
    for dt in ("float32", "float64"):
        if own:
            print(f"{dt} GEMM peak of fastattn's own kernels (bench/gemmpeak, all cores), start and end: "
                  f"{', '.join(f'{o[dt]:.0f}' for o in own)} GFLOP/s")
    cols = ["n", "d", "dtype", "NumPy (s)", "fastattn (s)", "ratio (best)", "ratio (median pair)", "NumPy GFLOP/s",
            "fastattn GFLOP/s", "OpenBLAS GEMM peak (best of the row's)", "fastattn / peak (best)",
            "fastattn / peak (median pair)", "spread of fastattn, of the peak"]
    if args.causal:
        cols += ["causal GFLOP/s", "causal / peak (best)", "causal / peak (median pair)", "causal / non-causal",
                 "causal first call / peak (best)"]
    cols += ["first call / peak (best)"]
    print("\n| " + " | ".join(cols) + " |")
    print("| --- " * len(cols) + "|")
    for r in rows:
        line = (f"| {r['n']} | {r['d']} | {r['dtype']} | {r['numpy']:.3f} | {r['fa']:.3f} | {r['ratio']:.2f} | {r['pairs']:.2f} | "
                f"{r['np_gf']:.0f} | {r['fa_gf']:.0f} | {r['peak']:.0f} | {r['frac']:.0%} | {r['frac_pairs']:.0%} | "
                f"{r['fa_spread']:.0%}, {r['pk_spread']:.0%} |")
        if args.causal:
            line += f" {r['c_gf']:.0f} | {r['c_frac']:.0%} | {r['c_pairs']:.0%} | {r['c_rel']:.0%} | {r['c_first_frac']:.0%} |"
        line += f" {r['first_frac']:.0%} |"
        print(line)


if __name__ == "__main__":
    main()
