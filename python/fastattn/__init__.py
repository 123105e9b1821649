"""fastattn: softmax attention, exact or approximate with a certified
entrywise error bound, computed in-process by the Go library.

    out = fastattn.attention(q, k, v, causal=True)

Arrays are NumPy arrays shaped (n, d), (heads, n, d) or (batch, heads, n, d)
(K: (..., m, d), V: (..., m, e)), float32 or float64 (keys and values also
16-bit). C-contiguous inputs of the right dtype are read in place; outputs
are allocated here and filled by the library (exact attention without a
report writes into them directly; otherwise the library's result is copied
in). The GIL is released while the library computes.

Errors: ValueError for invalid input, UnsupportedError (a ValueError) when
the chosen method declines the input, NotImplementedError for an option
this build of the library lacks, RuntimeError otherwise; each carries the
library's message.

The library embeds the Go runtime, which does not survive fork(): start
worker processes with the "spawn" method of multiprocessing (a forked child
that calls fastattn gets a RuntimeError).

fastattn.torch (imported on first use) has the PyTorch operations:
fastattn.torch.attention (differentiable) and fastattn.torch.ring_attention
(sequence-parallel over torch.distributed).
"""

import ctypes
import json
import math

import numpy as np

from . import _lib

__all__ = ["attention", "gradient", "merge", "methods", "differentiable_methods",
           "set_worker_poll", "bfloat16", "UnsupportedError", "DEFAULT_EPS"]

DEFAULT_EPS = _lib.INFO["default_eps"]


class UnsupportedError(ValueError):
    """The chosen method does not apply to this input (for example entries
    too large for the polynomial method); another method, such as "exact",
    may."""


def methods():
    """The method names `method` accepts, besides "auto" (the planner)."""
    return list(_lib.INFO["methods"])


def differentiable_methods():
    """The methods with a backward pass (gradient accepts them)."""
    return list(_lib.INFO["differentiable"])


def set_worker_poll(seconds):
    """Sets how long the library's worker threads keep polling for their
    next call after finishing one, before they sleep, and returns the
    previous setting, in seconds (1e-4 by default; negative counts as 0).
    A call that finds its workers asleep waits for one to wake, about 1e-4
    s on a VM: a model with other work between its attention calls can
    keep them polling across it (1e-3 made decoding steps that each
    followed 3e-4 s of other work take about two thirds of the time), at
    the cost of a busy core while they poll."""
    return _lib.lib.fastattn_set_worker_poll(int(round(float(seconds) * 1e9))) / 1e9


_ALIGNMENTS = ("bottom-right", "top-left")


class bfloat16:
    """Keys or values stored as bfloat16, which NumPy lacks: wraps an
    array of their bits (uint16 or int16, for example
    torch_tensor.view(torch.int16).numpy()). Pass fastattn.bfloat16(bits)
    as k and v."""

    def __init__(self, bits):
        a = np.asarray(bits)
        if a.dtype not in (np.uint16, np.int16):
            raise ValueError("fastattn: bfloat16 wraps the bits as uint16 or int16, got dtype %s" % a.dtype)
        self.bits = np.ascontiguousarray(a).view(np.uint16)
        self.shape, self.ndim = self.bits.shape, self.bits.ndim
        self.dtype = "bfloat16"


def _is_half(x):
    return isinstance(x, bfloat16) or (isinstance(x, np.ndarray) and x.dtype == np.float16)


def _float_input(x, name, dtype=None):
    a = np.asarray(x)
    if dtype is None and a.dtype not in (np.float32, np.float64):
        raise ValueError("fastattn: %s has dtype %s; use float32 or float64" % (name, a.dtype))
    if dtype is not None and a.dtype != dtype:
        raise ValueError("fastattn: %s has dtype %s, want %s (the inputs share Q's dtype)"
                         % (name, a.dtype, np.dtype(dtype)))
    # No copy when a is already C-contiguous.
    return np.ascontiguousarray(a)


def _options(q, *, scale, causal, causal_align, window, mask, sinks, key_lengths,
             method, eps, workers, assume_finite):
    """The JSON options object and the array options, checked as far as
    Python must (the library checks the rest)."""
    opts = {"Method": method, "Eps": float(eps)}
    if scale is not None:
        scale = float(scale)
        # The library reads 0 as "default"; an explicit scale must be valid.
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError("fastattn: scale must be positive and finite, got %r" % scale)
        opts["Scale"] = scale
    if causal:
        opts["Causal"] = True
    if causal_align not in _ALIGNMENTS:
        raise ValueError("fastattn: causal_align must be one of %s, got %r" % (_ALIGNMENTS, causal_align))
    if causal_align != "bottom-right":
        opts["CausalAlign"] = causal_align
    if window is not None:
        try:
            left, right = window
        except (TypeError, ValueError):
            raise ValueError("fastattn: window must be a pair (left, right), got %r" % (window,))
        opts["Window"] = {"Left": -1 if left is None else int(left),
                          "Right": -1 if right is None else int(right)}
    if workers is not None:
        opts["Workers"] = int(workers)
    if assume_finite:
        opts["AssumeFinite"] = True
    arrays = {}
    if key_lengths is not None:
        kl = np.asarray(key_lengths)
        if kl.dtype.kind not in "iu":
            raise ValueError("fastattn: key_lengths must be integers, got dtype %s" % kl.dtype)
        arrays["key_lengths"] = np.ascontiguousarray(kl.reshape(-1), dtype=np.int64)
    if sinks is not None:
        arrays["sinks"] = np.ascontiguousarray(np.asarray(sinks, dtype=np.float64).reshape(-1))
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            if m.dtype.kind not in "fiu":
                raise ValueError("fastattn: mask must be boolean or additive (float), got dtype %s" % m.dtype)
            m = m.astype(q.dtype, copy=False)
        arrays["mask"] = np.ascontiguousarray(m)
    return json.dumps(opts).encode(), arrays


def _raise(status, err):
    msg = _lib.take_string(err.value) or "fastattn: error status %d" % status
    if status == _lib.INVALID:
        raise ValueError(msg)
    if status == _lib.UNSUPPORTED:
        raise UnsupportedError(msg)
    if status == _lib.UNKNOWN_OPTION:
        raise NotImplementedError(msg)
    raise RuntimeError(msg)


class _Call:
    """Argument marshalling for one library call: keeps every array and
    shape buffer alive until the call returns."""

    def __init__(self):
        _lib.check_not_forked()
        self.keep = []

    def arr(self, a):
        if a is None:
            return None
        if isinstance(a, bfloat16):
            desc, shape, a = _lib.describe(a.bits, _lib.BFLOAT16)
        else:
            desc, shape, a = _lib.describe(a)
        self.keep.append((desc, shape, a))
        return ctypes.byref(desc)

    def arrays(self, items):
        n = len(items)
        descs = (_lib.Array * max(n, 1))()
        for i, a in enumerate(items):
            d, shape, a = _lib.describe(a)
            descs[i] = d
            self.keep.append((shape, a))
        self.keep.append(descs)
        return descs


def _qkv(q, k, v):
    q = _float_input(q, "Q")
    return q, _float_input(k, "K", q.dtype), _float_input(v, "V", q.dtype)


def _half_qkv(q, k, v):
    """q, k, v for 16-bit keys and values: q becomes float32 (the
    library's queries and output; a float16 q is converted), k and v must
    share one 16-bit format. Returns them and the output dtype."""
    for name, x in (("K", k), ("V", v)):
        if not _is_half(x):
            raise ValueError("fastattn: K and V share one 16-bit format; %s has dtype %s"
                             % (name, getattr(x, "dtype", type(x).__name__)))
    if type(k) is not type(v):
        raise ValueError("fastattn: K is %s and V is %s; give both in one 16-bit format"
                         % (k.dtype, v.dtype))
    q = np.asarray(q)
    if q.dtype not in (np.float16, np.float32):
        raise ValueError("fastattn: with 16-bit keys and values Q is float32 (or float16), got %s" % q.dtype)
    out_dtype = q.dtype
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not isinstance(k, bfloat16):
        k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
    return q, k, v, out_dtype


def attention(q, k, v, *, scale=None, causal=False, causal_align="bottom-right",
              window=None, mask=None, sinks=None, key_lengths=None, method="exact",
              eps=DEFAULT_EPS, workers=None, assume_finite=False, return_lse=False,
              return_report=False):
    """softmax(scale * q k^T) v.

    q: (..., n, d), k: (..., m, d), v: (..., m, e), with 2-4 dimensions,
    (batch, heads, n, d) as PyTorch; k and v may have fewer heads than q
    (grouped-query attention: query head h uses kv head h // (Hq / Hkv),
    PyTorch's enable_gqa). float32 or float64; k and v may also be 16-bit
    (float16, or fastattn.bfloat16(bits)) with a float32 or float16 q
    (a key/value cache: exact attention, computed in float32). Returns
    (..., n, e) in q's dtype, and with return_lse each row's
    log-sum-exp (float64, -inf for a row without keys), with return_report
    the library's report as a dict (method, seconds, error bound, ...).

    scale: default 1/sqrt(d). causal: mask key j for query i when
    j > i + L - n (causal_align "bottom-right", FlashAttention's; "top-left"
    is PyTorch's is_causal). window: (left, right) as FlashAttention's
    window_size, None or -1 for unbounded. mask: PyTorch's attn_mask,
    boolean (True takes part) or additive, broadcasting to
    (batch, heads, n, m). sinks: one logit per query head joining each
    softmax denominator. key_lengths: valid keys per batch element or per
    head, or per kv head. method: "exact", "auto" or any of methods(); eps:
    the entrywise error target of approximate methods, relative to max|v|
    per column. workers: threads (default all cores). assume_finite: skip
    the NaN/Inf scans of q, k and v (a broken promise gives unspecified
    output).
    """
    out_dtype = None
    if _is_half(k) or _is_half(v):
        q, k, v, out_dtype = _half_qkv(q, k, v)
    else:
        q, k, v = _qkv(q, k, v)
    opts, extra = _options(q, scale=scale, causal=causal, causal_align=causal_align,
                           window=window, mask=mask, sinks=sinks, key_lengths=key_lengths,
                           method=method, eps=eps, workers=workers,
                           assume_finite=assume_finite)
    out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)
    lse = np.empty(q.shape[:-1], dtype=np.float64)
    c = _Call()
    rep, err = ctypes.c_void_p(), ctypes.c_void_p()
    status = _lib.lib.fastattn_attend(
        c.arr(q), c.arr(k), c.arr(v), opts,
        c.arr(extra.get("key_lengths")), c.arr(extra.get("sinks")), c.arr(extra.get("mask")),
        c.arr(out), c.arr(lse), ctypes.byref(rep) if return_report else None, ctypes.byref(err))
    if status != _lib.OK:
        _raise(status, err)
    if out_dtype is not None and out_dtype != out.dtype:
        out = out.astype(out_dtype)
    return _results(out, lse, json.loads(_lib.take_string(rep.value)) if return_report else None,
                    return_lse, return_report)


def _results(out, lse, report, return_lse, return_report):
    """out, or the tuple of out and what was asked for (lse, report)."""
    if not (return_lse or return_report):
        return out
    return (out,) + ((lse,) if return_lse else ()) + ((report,) if return_report else ())


def gradient(q, k, v, dout, out, lse, report, *, scale=None, causal=False,
             causal_align="bottom-right", window=None, mask=None, sinks=None,
             key_lengths=None, method="exact", eps=DEFAULT_EPS, workers=None,
             assume_finite=False, return_report=False):
    """The gradients (dq, dk, dv; float32 for 16-bit keys and values), and
    with sinks dsinks (float64, summed over the batch), of a loss whose
    gradient with respect to attention's output is dout, given that forward pass's out, lse and report
    (from attention(..., return_lse=True, return_report=True)) and the same
    inputs and options. The method is the report's; it must have a backward
    pass (differentiable_methods()). Each block of a split computation (for
    example over key shards) may pass the merged out and lse with its own
    block's report: the result is the block's share of the gradient."""
    if _is_half(k) or _is_half(v):
        # 16-bit keys and values: float32 queries, output and gradients.
        q, k, v, _ = _half_qkv(q, k, v)
    else:
        q, k, v = _qkv(q, k, v)
    dout = _float_input(dout, "dout", q.dtype)
    out = _float_input(out, "out", q.dtype)
    lse = _float_input(lse, "lse", np.float64)
    if isinstance(report, dict):
        report = json.dumps(report)
    opts, extra = _options(q, scale=scale, causal=causal, causal_align=causal_align,
                           window=window, mask=mask, sinks=sinks, key_lengths=key_lengths,
                           method=method, eps=eps, workers=workers,
                           assume_finite=assume_finite)
    dq, dk, dv = (np.empty(x.shape, dtype=q.dtype) for x in (q, k, v))
    dsinks = None if sinks is None else np.empty(extra["sinks"].shape, dtype=np.float64)
    c = _Call()
    rep, err = ctypes.c_void_p(), ctypes.c_void_p()
    status = _lib.lib.fastattn_gradient(
        c.arr(q), c.arr(k), c.arr(v), opts,
        c.arr(extra.get("key_lengths")), c.arr(extra.get("sinks")), c.arr(extra.get("mask")),
        c.arr(out), c.arr(lse), report.encode(), c.arr(dout),
        c.arr(dq), c.arr(dk), c.arr(dv), c.arr(dsinks), ctypes.byref(rep), ctypes.byref(err))
    if status != _lib.OK:
        _raise(status, err)
    grad_report = json.loads(_lib.take_string(rep.value))
    result = (dq, dk, dv)
    if sinks is not None:
        result += (dsinks,)
    if return_report:
        result += (grad_report,)
    return result


def merge(parts):
    """Combines attention results over disjoint sets of keys for the same
    queries into the result over their union, exactly, through the rows'
    log-sum-exps. parts: a sequence of (out, lse) pairs, out (..., n, e) of
    one float dtype and lse (..., n) float64. Returns (out, lse)."""
    parts = list(parts)
    if not parts:
        raise ValueError("fastattn: merge needs at least one part")
    outs, lses = [], []
    for i, part in enumerate(parts):
        try:
            o, l = part
        except (TypeError, ValueError):
            raise ValueError("fastattn: merge part %d is not an (out, lse) pair" % i)
        outs.append(_float_input(o, "part %d's output" % i, None if not outs else outs[0].dtype))
        lses.append(_float_input(l, "part %d's log-sum-exp" % i, np.float64))
    out = np.empty_like(outs[0])
    lse = np.empty(outs[0].shape[:-1], dtype=np.float64)
    c = _Call()
    err = ctypes.c_void_p()
    status = _lib.lib.fastattn_merge(len(parts), c.arrays(outs), c.arrays(lses),
                                     c.arr(out), c.arr(lse), ctypes.byref(err))
    if status != _lib.OK:
        _raise(status, err)
    return out, lse


def __getattr__(name):
    # fastattn.torch on first use, so that NumPy users need not have torch.
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
