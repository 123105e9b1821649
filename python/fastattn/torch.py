"""PyTorch operations over the fastattn library (CPU tensors).

attention(q, k, v, ...) is differentiable through the library's backward
pass: a drop-in for

    torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v

(pass scale; the default is 1/sqrt(d)). ring_attention(q, k, v, group)
computes attention over a sequence sharded across the processes of a
torch.distributed group, K/V shards travelling around a ring; zigzag_shard
and zigzag_unshard lay a sequence out so that causal attention's work is
balanced across the ranks.

The library embeds the Go runtime: start worker processes with the "spawn"
method (torch.multiprocessing.spawn does), never fork after importing.
"""

import numpy as np
import torch
import torch.distributed as dist

import fastattn as _fa

__all__ = ["attention", "ring_attention", "zigzag_shard", "zigzag_unshard"]


def _numpy(t, name):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    if t.device.type != "cpu":
        raise ValueError("fastattn: %s is on %s; fastattn computes on the CPU" % (name, t.device))
    if t.dtype == torch.bfloat16:
        # NumPy has no bfloat16: the bits, marked.
        return _fa.bfloat16(t.detach().contiguous().view(torch.int16).numpy())
    # A view of the tensor's memory: no copy when it is contiguous.
    return t.detach().numpy()


_HALF = (torch.float16, torch.bfloat16)


def _options(scale, causal, causal_align, window, mask, key_lengths, method, eps, workers,
             assume_finite):
    if isinstance(mask, torch.Tensor) and mask.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError("fastattn: the mask is a constant here; gradients with respect "
                                  "to an additive mask are not computed")
    return dict(scale=scale, causal=causal, causal_align=causal_align, window=window,
                mask=_numpy(mask, "mask"), key_lengths=_numpy(key_lengths, "key_lengths"),
                method=method, eps=eps, workers=workers, assume_finite=assume_finite)


class _Attention(torch.autograd.Function):
    """Forward saves the output and log-sum-exp; backward is the library's
    (fastattn.gradient), which recomputes the softmax from them."""

    @staticmethod
    def forward(ctx, q, k, v, sinks, opts, reports):
        sn = None if sinks is None else _numpy(sinks, "sinks").astype(np.float64, copy=False)
        # The backward pass needs the report only to know an approximate
        # method's choices; exact attention without one is written straight
        # into the output (no copy).
        want = reports is not None or opts["method"] not in ("exact", None, "")
        res = _fa.attention(_numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), sinks=sn,
                            return_lse=True, return_report=want, **opts)
        out, lse, report = res if want else res + ({},)
        if reports is not None:
            reports.append(report)
        out, lse = torch.from_numpy(out), torch.from_numpy(lse)
        ctx.save_for_backward(q, k, v, sinks, out, lse)
        ctx.opts, ctx.report, ctx.sinks = opts, report, sn
        ctx.dtypes = (q.dtype, k.dtype, v.dtype, torch.float64)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, sinks, out, lse = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads = [None] * 6
        dout = dout.contiguous()
        if any(need[:4]):
            gs = _fa.gradient(_numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"),
                              _numpy(dout, "dout"), out.numpy(), lse.numpy(),
                              ctx.report, sinks=ctx.sinks, **ctx.opts)
            for i, g in enumerate(gs):
                if need[i]:
                    # float32 gradients of 16-bit keys and values, in their dtype.
                    grads[i] = torch.from_numpy(g).to(ctx.dtypes[i])
            if need[3]:
                grads[3] = grads[3].to(sinks.dtype).reshape(sinks.shape)
        return tuple(grads)


def attention(q, k, v, *, scale=None, causal=False, causal_align="bottom-right", window=None,
              mask=None, sinks=None, key_lengths=None, method="exact", eps=_fa.DEFAULT_EPS,
              workers=None, assume_finite=False, return_lse=False, return_report=False):
    """fastattn.attention on CPU tensors, differentiable in q, k, v and sinks
    (the mask and key lengths are constants). Same arguments and results as
    the NumPy function; the report is the forward pass's."""
    opts = _options(scale, causal, causal_align, window, mask, key_lengths, method, eps, workers,
                    assume_finite)
    if sinks is not None and not isinstance(sinks, torch.Tensor):
        sinks = torch.as_tensor(sinks, dtype=torch.float64)
    qf = q
    if k.dtype in _HALF or v.dtype in _HALF:
        # 16-bit keys and values (a key/value cache): float32 queries and
        # output (16-bit queries are widened, the output rounded back).
        qf = q.float() if q.dtype in _HALF else q
    reports = [] if return_report else None
    out, lse = _Attention.apply(qf, k, v, sinks, opts, reports)
    out = out.to(q.dtype)
    return _fa._results(out, lse, reports[0] if return_report else None, return_lse, return_report)



# Ring attention: sequence parallelism over torch.distributed.
#
# Rank r of P holds a shard of the sequence's queries, keys and values, all
# shards of one size. Forward: P steps; at step s the rank holds the K/V
# shard of rank (r - s) mod P, attends its queries to it with the library
# and merges the partial result into its running one by log-sum-exp, while
# the shard moves on to rank r + 1 (isend/irecv, overlapping the
# computation). Backward runs the same ring: each block's dQ stays home, its
# dK and dV are added to accumulators that travel with the K/V shard and
# are back at their owner after P hops. Each block's gradient is the
# library's backward with the final output and log-sum-exp, which is
# exactly the block's share of the full gradient.
#
# Causal attention skips what a rank's queries cannot see. With the
# "contiguous" layout (rank r holds positions [r c, (r+1) c)) the diagonal
# block is causal, earlier shards are whole and later ones skipped: rank r
# computes r + 1 blocks, so the last rank does P times the first one's work.
# The "zigzag" layout balances it (as ring-flash-attention does): with the
# sequence cut into 2P chunks, rank r holds chunks r and 2P-1-r; then at
# every step other than the diagonal, each rank computes exactly half a
# block (all its queries against the first half of the shard, when it comes
# from a lower rank; the second half of its queries against the whole
# shard, when from a higher one).

_KV_TAG, _GRAD_TAG = 7301, 7302
LAYOUTS = ("contiguous", "zigzag")


class _Ring:
    """Neighbours and point-to-point exchange on a process group."""

    def __init__(self, group):
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        glob = (lambda r: r) if group is None else (lambda r: dist.get_global_rank(group, r))
        self.next = glob((self.rank + 1) % self.size)
        self.prev = glob((self.rank - 1) % self.size)

    def exchange(self, send, tag):
        """Starts sending `send` to the next rank and receiving a tensor of
        its shape from the previous one; returns (received, wait)."""
        recv = torch.empty_like(send)
        reqs = [dist.isend(send, self.next, group=self.group, tag=tag),
                dist.irecv(recv, self.prev, group=self.group, tag=tag)]

        def wait():
            for r in reqs:
                r.wait()
            return recv
        return recv, wait


def _pack(*ts):
    return torch.cat([t.reshape(-1) for t in ts])


def _unpack(buf, *likes):
    out, i = [], 0
    for t in likes:
        out.append(buf[i:i + t.numel()].view(t.shape))
        i += t.numel()
    return out


_ALL = slice(None)


def _blocks(layout, causal, src, rank, n):
    """The blocks rank's queries compute against shard src: a list of
    (query rows, key rows, causal) of the shards (n rows each)."""
    if not causal:
        return [(_ALL, _ALL, False)]
    if src == rank:
        return [(_ALL, _ALL, True)]
    if layout == "contiguous":
        return [(_ALL, _ALL, False)] if src < rank else []
    half = n // 2
    if src < rank:
        return [(_ALL, slice(0, half), False)]
    return [(slice(half, n), _ALL, False)]


def _rows(x, rows, axis=-2):
    """x's rows along axis, C-contiguous (a copy only for a part)."""
    if rows == _ALL:
        return x
    index = [slice(None)] * x.ndim
    index[axis] = rows
    return np.ascontiguousarray(x[tuple(index)])


def _check_shards(ring, layout, q, k, v):
    # Every rank must hold shards of one shape: check once, collectively,
    # rather than deadlock in a receive of the wrong size.
    dims = torch.tensor(list(q.shape) + list(k.shape) + list(v.shape), dtype=torch.int64)
    lo, hi = dims.clone(), dims.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=ring.group)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=ring.group)
    if not torch.equal(lo, hi):
        raise ValueError("fastattn: ring_attention needs shards of one shape on every rank; rank %d "
                         "has q %s, k %s, v %s" % (ring.rank, tuple(q.shape), tuple(k.shape),
                                                   tuple(v.shape)))
    if q.shape[-2] != k.shape[-2]:
        raise ValueError("fastattn: ring_attention needs query and key shards of one length, got "
                         "%d and %d" % (q.shape[-2], k.shape[-2]))
    if layout == "zigzag" and q.shape[-2] % 2:
        raise ValueError("fastattn: the zigzag layout needs shards of even length (two chunks), "
                         "got %d" % q.shape[-2])


class _RingAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, group, causal, layout, opts):
        ring = _Ring(group)
        _check_shards(ring, layout, q, k, v)
        qn, n = _numpy(q, "q"), q.shape[-2]
        kv = _pack(k.detach(), v.detach())
        out = lse = None
        reports = {}
        for step in range(ring.size):
            src = (ring.rank - step) % ring.size
            if step + 1 < ring.size:
                nxt, wait = ring.exchange(kv, _KV_TAG)
            ks, vs = _unpack(kv, k, v)
            for i, (qr, kr, blk_causal) in enumerate(_blocks(layout, causal, src, ring.rank, n)):
                o, l, reports[src, i] = _fa.attention(
                    _rows(qn, qr), _rows(ks.numpy(), kr), _rows(vs.numpy(), kr), causal=blk_causal,
                    return_lse=True, return_report=True, **opts)
                if out is None:  # step 0: the diagonal block, every row
                    out, lse = o, l
                elif qr == _ALL:
                    out, lse = _fa.merge([(out, lse), (o, l)])
                else:
                    out[..., qr, :], lse[..., qr] = _fa.merge([(_rows(out, qr), _rows(lse, qr, -1)),
                                                               (o, l)])
            if step + 1 < ring.size:
                kv = wait()
        out, lse = torch.from_numpy(out), torch.from_numpy(lse)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.ring, ctx.causal, ctx.layout, ctx.opts, ctx.reports = ring, causal, layout, opts, reports
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        ring, opts = ctx.ring, ctx.opts
        qn, on, ln, n = _numpy(q, "q"), out.numpy(), lse.numpy(), q.shape[-2]
        don = _numpy(dout.contiguous(), "dout")
        dq = np.zeros(q.shape, dtype=np.float64)
        kv = _pack(k.detach(), v.detach())
        # dK and dV of the shard this rank holds, accumulated so far.
        acc = torch.zeros_like(kv)
        acc_wait = None
        for step in range(ring.size):
            src = (ring.rank - step) % ring.size
            if step + 1 < ring.size:
                nxt, wait = ring.exchange(kv, _KV_TAG)
            ks, vs = _unpack(kv, k, v)
            gk_sum, gv_sum = np.zeros(k.shape, dtype=np.float64), np.zeros(v.shape, dtype=np.float64)
            blocks = _blocks(ctx.layout, ctx.causal, src, ring.rank, n)
            for i, (qr, kr, blk_causal) in enumerate(blocks):
                gq, gk, gv = _fa.gradient(
                    _rows(qn, qr), _rows(ks.numpy(), kr), _rows(vs.numpy(), kr), _rows(don, qr),
                    _rows(on, qr), _rows(ln, qr, -1), ctx.reports[src, i], causal=blk_causal, **opts)
                dq[..., qr, :] += gq
                gk_sum[..., kr, :] += gk
                gv_sum[..., kr, :] += gv
            if acc_wait is not None:
                acc = acc_wait()
            if blocks:
                acc += _pack(torch.from_numpy(gk_sum), torch.from_numpy(gv_sum)).to(acc.dtype)
            # The accumulator moves on with its shard; after the last step
            # it reaches the shard's owner.
            if ring.size > 1:
                acc, acc_wait = ring.exchange(acc, _GRAD_TAG)
            if step + 1 < ring.size:
                kv = wait()
        if acc_wait is not None:
            acc = acc_wait()
        dk, dv = _unpack(acc, k, v)
        dq = torch.from_numpy(dq.astype(qn.dtype, copy=False))
        return dq, dk.clone(), dv.clone(), None, None, None, None


def ring_attention(q, k, v, group=None, causal=False, *, layout="contiguous", scale=None,
                   method="exact", eps=_fa.DEFAULT_EPS, workers=None, return_lse=False):
    """Attention over a sequence sharded across the ranks of a
    torch.distributed process group (default: the world), differentiable.

    Each rank passes its shard of the sequence: q (..., c, d), k (..., c, d),
    v (..., c, e), the same shape on every rank, and gets back its shard of
    the output (with return_lse, and its rows' log-sum-exps). With layout
    "contiguous", rank r holds positions [r c, (r+1) c); with "zigzag" (c
    even), the sequence is cut into 2P chunks of c/2 and rank r holds chunks
    r and 2P-1-r, in that order (see zigzag_shard), which balances causal
    attention's work across ranks. causal masks key j for query i when
    j > i in the global sequence. Every rank must call it (and backward)
    together. The point-to-point sends work on any backend with isend/irecv
    on CPU tensors (gloo; across machines unchanged). Any method runs the
    forward pass (each block within the method's eps); the backward pass
    needs "exact".
    """
    if layout not in LAYOUTS:
        raise ValueError("fastattn: layout must be one of %s, got %r" % (LAYOUTS, layout))
    if method != "exact" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        # Each block's backward runs with the merged output and log-sum-exp:
        # exact's backward is right for any such block, but an approximate
        # method's backward assumes the output its own forward produced.
        raise NotImplementedError("fastattn: ring_attention's backward pass needs method 'exact'; "
                                  "approximate methods run forward only here (under torch.no_grad())")
    opts = dict(scale=scale, method=method, eps=eps, workers=workers)
    out, lse = _RingAttention.apply(q, k, v, group, bool(causal), layout, opts)
    return (out, lse) if return_lse else out


def zigzag_shard(x, rank, world, dim=-2):
    """Rank's shard of the full sequence x in the zigzag layout: chunks rank
    and 2*world-1-rank of 2*world equal chunks along dim, concatenated."""
    chunks = x.chunk(2 * world, dim=dim)
    if len(chunks) != 2 * world or x.shape[dim] % (2 * world):
        raise ValueError("fastattn: a sequence of %d cannot be cut into %d equal chunks"
                         % (x.shape[dim], 2 * world))
    return torch.cat([chunks[rank], chunks[2 * world - 1 - rank]], dim=dim)


def zigzag_unshard(shards, dim=-2):
    """The full sequence from every rank's zigzag shard (in rank order)."""
    world = len(shards)
    halves = [s.chunk(2, dim=dim) for s in shards]
    order = [halves[r][0] for r in range(world)] + [halves[r][1] for r in reversed(range(world))]
    return torch.cat(order, dim=dim)
