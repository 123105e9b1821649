"""The worker of test_ring.py: one rank of a gloo group (a spawned process)."""

import torch
import torch.distributed as dist

import fastattn.torch as ft

# float32 within 1e-5 of max|V| (of max|gradient| for gradients), float64 1e-12.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def run(rank, world, init):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        for dtype in (torch.float32, torch.float64):
            for causal in (False, True):
                check(rank, world, dtype, causal)
        check_mismatched_shards(rank)
    finally:
        dist.destroy_process_group()


def check(rank, world, dtype, causal):
    # Every rank draws the same full sequence, then keeps its shard.
    g = torch.Generator().manual_seed(11)
    B, H, shard, d, e = 2, 3, 9, 8, 5
    n = shard * world
    q = torch.randn(B, H, n, d, generator=g, dtype=dtype)
    k = torch.randn(B, H, n, d, generator=g, dtype=dtype)
    v = torch.randn(B, H, n, e, generator=g, dtype=dtype)
    w = torch.randn(B, H, n, e, generator=g, dtype=dtype)

    full = [x.clone().requires_grad_() for x in (q, k, v)]
    out = ft.attention(*full, causal=causal)
    (out * w).sum().backward()

    part = slice(rank * shard, (rank + 1) * shard)
    mine = [x[:, :, part].clone().requires_grad_() for x in (q, k, v)]
    got, lse = ft.ring_attention(*mine, causal=causal, return_lse=True)
    (got * w[:, :, part]).sum().backward()

    tol = TOL[dtype]
    what = "rank %d of %d, %s, causal=%s" % (rank, world, dtype, causal)
    err = (got - out[:, :, part]).abs().max().item()
    assert err <= tol * v.abs().max().item(), "%s: output off by %g" % (what, err)
    _, full_lse = ft.attention(*full, causal=causal, return_lse=True)
    assert torch.allclose(lse, full_lse[:, :, part], rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-12)
    for name, a, b in zip("qkv", mine, full):
        want = b.grad[:, :, part]
        err = (a.grad - want).abs().max().item()
        assert err <= tol * max(1.0, want.abs().max().item()), "%s: d%s off by %g" % (what, name, err)


def check_mismatched_shards(rank):
    # A rank with a shard of another size: every rank gets a ValueError
    # rather than a hang.
    n = 4 + (rank == 0)
    x = torch.randn(1, n, 4)
    try:
        ft.ring_attention(x, x, x)
    except ValueError as e:
        assert "shards of one shape" in str(e), e
    else:
        raise AssertionError("mismatched shards were accepted")
