#!/usr/bin/env python3
"""Check `fastattn run` against a float64 NumPy reference on real .npy files.

Usage: python3 bench/numpy_check.py [path/to/fastattn]
Needs NumPy (Debian: apt-get install python3-numpy). Not part of `go test`:
the Go tests use their own float64 reference; this is the independent check
that files written by NumPy go in and come out as NumPy expects.
"""
import json, os, subprocess, sys, tempfile
import numpy as np

def attention(q, k, v, scale, causal, key_lens=None):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    s = scale * q @ np.swapaxes(k, -1, -2)
    n, m = s.shape[-2], s.shape[-1]
    mask = np.zeros(s.shape, dtype=bool)
    if causal:  # bottom-right aligned, as fastattn documents
        i = np.arange(n)[:, None]
        j = np.arange(m)[None, :]
        mask |= j > i + m - n
    s = np.where(mask, -np.inf, s)
    mx = np.max(s, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0)
    p = np.exp(s - mx)
    den = p.sum(-1, keepdims=True)
    return np.where(den > 0, (p @ v) / np.where(den > 0, den, 1), 0)

def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "./fastattn"
    rng = np.random.default_rng(0)
    cases = [((), 7, 9, 4, 3), ((3,), 70, 33, 8, 5), ((2, 2), 5, 300, 16, 16), ((1, 3), 130, 130, 64, 64)]
    worst = {"float32": 0.0, "float64": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for lead, n, m, d, e in cases:
            for dtype in (np.float32, np.float64):
                for causal in (False, True):
                    for scale_flag, scale in (("1/sqrt(d)", 1 / np.sqrt(d)), ("1/d", 1 / d)):
                        q = rng.standard_normal(lead + (n, d)).astype(dtype)
                        k = rng.standard_normal(lead + (m, d)).astype(dtype)
                        v = rng.standard_normal(lead + (m, e)).astype(dtype)
                        for name, x in (("q", q), ("k", k), ("v", v)):
                            np.save(os.path.join(tmp, name + ".npy"), x)
                        args = [exe, "run", "--q", f"{tmp}/q.npy", "--k", f"{tmp}/k.npy", "--v", f"{tmp}/v.npy",
                                "--out", f"{tmp}/o.npy", "--scale", scale_flag]
                        if causal:
                            args.append("--causal")
                        subprocess.run(args, check=True, capture_output=True)
                        out = np.load(f"{tmp}/o.npy")
                        assert out.dtype == dtype and out.shape == lead + (n, e), (out.dtype, out.shape)
                        ref = attention(q, k, v, scale, causal)
                        err = np.max(np.abs(out - ref)) / np.max(np.abs(v))
                        key = np.dtype(dtype).name
                        worst[key] = max(worst[key], err)
    print(json.dumps({"max_error_relative_to_max_abs_v": worst}))
    ok = worst["float64"] <= 1e-10 and worst["float32"] <= 3e-5
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)

if __name__ == "__main__":
    main()
