#!/usr/bin/env python3
"""Benchmarks of the Python package (run after python/build.py):

    PYTHONPATH=python python3 python/bench.py [--reps 7] [--ring 2,4] [--ring-n 4096]

1. The Python call's overhead: wall time of fastattn.attention(...,
   return_report=True) around the library against the library's own time
   (the report's seconds), at n = 1024 and 4096, d = 64, float32 and
   float64. The overhead is everything the call adds: argument checks, the
   options' JSON, ctypes, the library's input checks, copying the output
   into Python's arrays, the report's JSON. The last column times the call
   without a report (exact attention then writes into Python's arrays
   directly), which has no library time to compare with.
2. Ring attention: forward and forward+backward time per rank on P gloo
   processes (spawned) against one process on the whole sequence, in the
   same run, for the contiguous layout (causal or not) and the zigzag one
   (causal): wall time (wall_ratio: the slowest rank's over one process's)
   and CPU time of each rank's process (cpu_ratio: the busiest rank's over
   one process's; 1/P is a perfect split of the work). On one machine the
   processes share its cores, so wall times there say little; CPU times
   show the split of the work and the ring's own costs.
Medians over --reps calls after a warm-up.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastattn  # noqa: E402


def overhead(reps):
    rows = []
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n in (1024, 4096):
            q, k, v = (rng.standard_normal((1, n, 64)).astype(dtype) for _ in range(3))
            fastattn.attention(q, k, v)
            walls, libs, direct = [], [], []
            for _ in range(reps):
                t = time.perf_counter()
                _, rep = fastattn.attention(q, k, v, return_report=True)
                walls.append(time.perf_counter() - t)
                libs.append(rep["seconds"])
                t = time.perf_counter()
                fastattn.attention(q, k, v)
                direct.append(time.perf_counter() - t)
            # Overhead per call, then the median: robust to load spikes
            # that hit one call's library time and wall time alike.
            over = statistics.median(w - s for w, s in zip(walls, libs))
            lib = statistics.median(libs)
            rows.append(dict(dtype=np.dtype(dtype).name, n=n, d=64, library_s=lib,
                             wall_s=statistics.median(walls), overhead_s=over,
                             overhead_pct=100 * over / lib,
                             wall_without_report_s=statistics.median(direct)))
    return rows


def _timed(f):
    """(wall seconds, CPU seconds of the whole process, Go's threads
    included) of f()."""
    w, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w, time.process_time() - c


def _ring_worker(rank, world, init, n, reps, results):
    import torch
    import torch.distributed as dist
    import fastattn.torch as ft
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    shard = n // world
    full = [torch.randn(1, 1, n, 64, generator=g) for _ in range(3)]
    times = {"forward": [], "forward_backward": []}
    for causal, layout in ((False, "contiguous"), (True, "contiguous"), (True, "zigzag")):
        if layout == "zigzag":
            q, k, v = (ft.zigzag_shard(x, rank, world) for x in full)
        else:
            q, k, v = (x[:, :, rank * shard:(rank + 1) * shard] for x in full)
        case = layout + (" causal" if causal else "")
        for i in range(reps + 1):
            dist.barrier()
            fwd = _timed(lambda: ft.ring_attention(q, k, v, causal=causal, layout=layout))
            leaves = [x.clone().requires_grad_() for x in (q, k, v)]
            dist.barrier()
            both = _timed(lambda: ft.ring_attention(*leaves, causal=causal, layout=layout).sum().backward())
            if i:
                times["forward"].append((case,) + fwd)
                times["forward_backward"].append((case,) + both)
    with open(os.path.join(results, "rank%d.json" % rank), "w") as f:
        json.dump(times, f)
    dist.destroy_process_group()


def ring(worlds, n, reps):
    import torch
    import torch.multiprocessing as mp
    import fastattn.torch as ft
    rows = []
    q, k, v = (torch.randn(1, 1, n, 64) for _ in range(3))
    single = {}
    for causal in (False, True):
        fwd, both = [], []
        for i in range(reps + 1):
            f = _timed(lambda: ft.attention(q, k, v, causal=causal))
            leaves = [x.clone().requires_grad_() for x in (q, k, v)]
            b = _timed(lambda: ft.attention(*leaves, causal=causal).sum().backward())
            if i:
                fwd.append(f)
                both.append(b)
        single[causal] = [[statistics.median(t[j] for t in ts) for j in (0, 1)] for ts in (fwd, both)]
    for world in worlds:
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_ring_worker, args=(world, "file://" + os.path.join(tmp, "store"), n, reps, tmp),
                     nprocs=world, join=True)
            per_rank = []
            for r in range(world):
                with open(os.path.join(tmp, "rank%d.json" % r)) as f:
                    per_rank.append(json.load(f))
        for case in ("contiguous", "contiguous causal", "zigzag causal"):
            causal = case.endswith("causal")
            for kind, idx in (("forward", 0), ("forward_backward", 1)):
                wall = [statistics.median(w for c, w, _ in pr[kind] if c == case) for pr in per_rank]
                cpu = [statistics.median(u for c, _, u in pr[kind] if c == case) for pr in per_rank]
                one_wall, one_cpu = single[causal][idx]
                rows.append(dict(processes=world, n=n, d=64, case=case, pass_=kind,
                                 one_process_s=one_wall, slowest_rank_s=max(wall),
                                 wall_ratio=max(wall) / one_wall, one_process_cpu_s=one_cpu,
                                 rank_cpu_s="/".join("%.3g" % c for c in cpu),
                                 cpu_ratio=max(cpu) / one_cpu))
    return rows


def table(rows):
    keys = list(rows[0])
    print(" | ".join(k.rstrip("_") for k in keys))
    print(" | ".join("---" for _ in keys))
    for r in rows:
        print(" | ".join("%.4g" % r[k] if isinstance(r[k], float) else str(r[k]) for k in keys))
    print()


def main():
    ap = argparse.ArgumentParser(description="fastattn Python benchmarks")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--ring", default="2,4", help="process counts for ring attention ('' to skip)")
    ap.add_argument("--ring-n", type=int, default=4096)
    args = ap.parse_args()
    print("load before:", os.getloadavg(), "cores:", os.cpu_count())
    table(overhead(args.reps))
    if args.ring:
        table(ring([int(x) for x in args.ring.split(",")], args.ring_n, args.reps))
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
