"""Naive float64 attention for the tests: the n x m score matrix, written out."""

import numpy as np


def attention(q, k, v, scale=None, causal=False, key_lengths=None, top_left=False,
              window=None, mask=None, sinks=None):
    """Returns (out, lse) in float64 for q (..., Hq, n, d), k (..., Hkv, m, d),
    v (..., Hkv, m, e), query head h using kv head h // (Hq / Hkv).
    key_lengths: one per flattened query head, or None. window: (left,
    right), -1 unbounded. mask: boolean or additive, broadcasting to
    q.shape[:-1] + (m,). sinks: one logit per query head of a batch
    element."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    n, m, d, e = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    scale = 1 / np.sqrt(d) if scale is None else scale
    if q.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k = np.repeat(k, group, axis=-3)
        v = np.repeat(v, group, axis=-3)
    lead = q.shape[:-2]
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask), lead + (n, m)).reshape((-1, n, m))
    qh, kh, vh = q.reshape((-1, n, d)), k.reshape((-1, m, d)), v.reshape((-1, m, e))
    out = np.zeros((qh.shape[0], n, e))
    lse = np.full((qh.shape[0], n), -np.inf)
    i = np.arange(n)[:, None]
    j = np.arange(m)[None, :]
    for h in range(qh.shape[0]):
        s = scale * qh[h] @ kh[h].T
        L = m if key_lengths is None else int(key_lengths[h])
        off = 0 if top_left else L - n
        ok = np.broadcast_to(j < L, (n, m)).copy()
        if causal:
            ok &= j <= i + off
        if window is not None:
            left, right = window
            if left >= 0:
                ok &= j >= i + off - left
            if right >= 0:
                ok &= j <= i + off + right
        if mask is not None:
            if mask.dtype == np.bool_:
                ok &= mask[h]
            else:
                s = s + mask[h]
        s = np.where(ok, s, -np.inf)
        sink = -np.inf if sinks is None else float(sinks[h % len(sinks)])
        mx = np.maximum(s.max(axis=1), sink)[:, None]
        rows = np.isfinite(mx[:, 0])
        p = np.exp(s[rows] - mx[rows])
        tot = p.sum(axis=1, keepdims=True) + np.exp(sink - mx[rows])
        out[h, rows] = (p / tot) @ vh[h]
        lse[h, rows] = mx[rows, 0] + np.log(tot[:, 0])
    return out.reshape(lead + (n, e)), lse.reshape(lead + (n,))
