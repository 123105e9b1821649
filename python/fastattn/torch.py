"""PyTorch operations over the fastattn library (CPU tensors).

attention(q, k, v, ...) is differentiable through the library's backward
pass: a drop-in for

    torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v

(pass scale; the default is 1/sqrt(d)). ring_attention(q, k, v, group)
computes attention over a sequence sharded across the processes of a
torch.distributed group, K/V shards travelling around a ring.

The library embeds the Go runtime: start worker processes with the "spawn"
method (torch.multiprocessing.spawn does), never fork after importing.
"""

import numpy as np
import torch
import torch.distributed as dist

import fastattn as _fa

__all__ = ["attention", "ring_attention"]


def _numpy(t, name):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    if t.device.type != "cpu":
        raise ValueError("fastattn: %s is on %s; fastattn computes on the CPU" % (name, t.device))
    # A view of the tensor's memory: no copy when it is contiguous.
    return t.detach().numpy()


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
        out, lse, report = _fa.attention(_numpy(q, "q"), _numpy(k, "k"), _numpy(v, "v"), sinks=sn,
                                         return_lse=True, return_report=True, **opts)
        reports.append(report)
        out, lse = torch.from_numpy(out), torch.from_numpy(lse)
        ctx.save_for_backward(q, k, v, sinks, out, lse)
        ctx.opts, ctx.report, ctx.sinks = opts, report, sn
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
                    grads[i] = torch.from_numpy(g)
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
    reports = []
    out, lse = _Attention.apply(q, k, v, sinks, opts, reports)
    if not (return_lse or return_report):
        return out
    result = (out,)
    if return_lse:
        result += (lse,)
    if return_report:
        result += (reports[0],)
    return result


# Ring attention: sequence parallelism over torch.distributed.
#
# Rank r of P holds the r-th contiguous shard of the sequence's queries, keys
# and values, all shards of one size. Forward: P steps; at step s the rank
# holds the K/V shard of rank (r - s) mod P, attends its queries to it with
# the library and merges the partial result into its running one by
# log-sum-exp, while the shard moves on to rank r + 1 (isend/irecv,
# overlapping the computation). Backward runs the same ring: each block's
# dQ stays home, its dK and dV are added to accumulators that travel with
# the K/V shard and are back at their owner after P hops. Each block's
# gradient is the library's backward with the final output and log-sum-exp,
# which is exactly the block's share of the full gradient.
#
# Causal: shard s is entirely visible to the queries of rank r > s, the
# diagonal block s = r is causal and shards s > r are skipped. Shards are
# contiguous, so the load is not balanced: rank r computes r + 1 blocks
# (rank P - 1 does P, rank 0 one), about (P + 1) / 2 times the work of a
# balanced (zig-zag) layout on the slowest rank.

_KV_TAG, _GRAD_TAG = 7301, 7302


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


def _visible(causal, src, rank):
    """"full", "causal" or None: how rank's queries see shard src."""
    if not causal or src < rank:
        return "full"
    return "causal" if src == rank else None


def _check_shards(ring, q, k, v):
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


class _RingAttention(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, group, causal, opts):
        ring = _Ring(group)
        _check_shards(ring, q, k, v)
        qn = _numpy(q, "q")
        kv = _pack(k.detach(), v.detach())
        out = lse = None
        reports = {}
        for step in range(ring.size):
            src = (ring.rank - step) % ring.size
            if step + 1 < ring.size:
                nxt, wait = ring.exchange(kv, _KV_TAG)
            how = _visible(causal, src, ring.rank)
            if how is not None:
                ks, vs = _unpack(kv, k, v)
                o, l, reports[src] = _fa.attention(qn, ks.numpy(), vs.numpy(),
                                                   causal=how == "causal", return_lse=True,
                                                   return_report=True, **opts)
                out, lse = (o, l) if out is None else _fa.merge([(out, lse), (o, l)])
            if step + 1 < ring.size:
                kv = wait()
        out, lse = torch.from_numpy(out), torch.from_numpy(lse)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.ring, ctx.causal, ctx.opts, ctx.reports = ring, causal, opts, reports
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        ring, causal, opts = ctx.ring, ctx.causal, ctx.opts
        qn, on, ln = _numpy(q, "q"), out.numpy(), lse.numpy()
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
            how = _visible(causal, src, ring.rank)
            block = None
            if how is not None:
                ks, vs = _unpack(kv, k, v)
                gq, gk, gv = _fa.gradient(qn, ks.numpy(), vs.numpy(), don, on, ln,
                                          ctx.reports[src],
                                          causal=how == "causal", **opts)
                dq += gq
                block = _pack(torch.from_numpy(gk), torch.from_numpy(gv))
            if acc_wait is not None:
                acc = acc_wait()
            if block is not None:
                acc += block
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
        return dq, dk.clone(), dv.clone(), None, None, None


def ring_attention(q, k, v, group=None, causal=False, *, scale=None, method="exact",
                   eps=_fa.DEFAULT_EPS, workers=None, return_lse=False):
    """Attention over a sequence sharded across the ranks of a
    torch.distributed process group (default: the world), differentiable.

    Each rank passes its contiguous shard of the sequence: q (..., n/P, d),
    k (..., n/P, d), v (..., n/P, e), shard r holding positions
    [r n/P, (r+1) n/P), the same shape on every rank; it gets back its shard
    of the output (and with return_lse its rows' log-sum-exps). Every rank
    must call it (and backward) together. causal masks key j for query i
    when j > i in the global sequence; the shards a rank cannot see are
    skipped (no load balancing: the last rank does the most work). The
    point-to-point sends work on any backend with isend/irecv on CPU
    tensors (gloo; across machines unchanged). Gradients are tested with
    method "exact".
    """
    opts = dict(scale=scale, method=method, eps=eps, workers=workers)
    out, lse = _RingAttention.apply(q, k, v, group, bool(causal), opts)
    return (out, lse) if return_lse else out
