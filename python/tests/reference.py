"""Naive float64 attention for the tests: the n x m score matrix, written out."""

import numpy as np


def attention(q, k, v, scale=None, causal=False, key_lengths=None, top_left=False):
    """Returns (out, lse) in float64 for (..., n, d) inputs. key_lengths:
    per leading index of q (flattened heads) or None."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    n, m, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1 / np.sqrt(d) if scale is None else scale
    lead = q.shape[:-2]
    qh = q.reshape((-1, n, d))
    kh = k.reshape((-1, m, d))
    vh = v.reshape((-1, m, v.shape[-1]))
    out = np.zeros((qh.shape[0], n, v.shape[-1]))
    lse = np.full((qh.shape[0], n), -np.inf)
    for h in range(qh.shape[0]):
        s = scale * qh[h] @ kh[h].T
        L = m if key_lengths is None else int(key_lengths[h])
        i = np.arange(n)[:, None]
        j = np.arange(m)[None, :]
        ok = np.broadcast_to(j < L, (n, m)).copy()
        if causal:
            ok &= j <= (i if top_left else i + L - n)
        s = np.where(ok, s, -np.inf)
        mx = s.max(axis=1, keepdims=True)
        rows = np.isfinite(mx[:, 0])
        p = np.exp(s[rows] - mx[rows])
        tot = p.sum(axis=1, keepdims=True)
        out[h, rows] = (p / tot) @ vh[h]
        lse[h, rows] = mx[rows, 0] + np.log(tot[:, 0])
    return out.reshape(lead + (n, v.shape[-1])), lse.reshape(lead + (n,))
