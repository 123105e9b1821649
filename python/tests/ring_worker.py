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
                check(rank, world, dtype, causal, "contiguous")
            check(rank, world, dtype, True, "zigzag")
        if world == 4:
            # Two rings of two on subgroups: group ranks differ from global ones.
            groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
            check(rank % 2, 2, torch.float64, True, "contiguous", group=groups[rank // 2])
        check_approximate_forward(rank, world)
        check_zigzag_round_trip(world)
        check_mismatched_shards(rank)
    finally:
        dist.destroy_process_group()


def check(rank, world, dtype, causal, layout, group=None):
    # Every rank draws the same full sequence, then keeps its shard.
    g = torch.Generator().manual_seed(11)
    B, H, shard, d, e = 2, 3, 10, 8, 5
    # The zigzag cases also use grouped-query attention (one kv head).
    Hkv = 1 if layout == "zigzag" else H
    n = shard * world
    q = torch.randn(B, H, n, d, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, n, d, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, n, e, generator=g, dtype=dtype)
    w = torch.randn(B, H, n, e, generator=g, dtype=dtype)

    full = [x.clone().requires_grad_() for x in (q, k, v)]
    out = ft.attention(*full, causal=causal)
    (out * w).sum().backward()

    if layout == "zigzag":
        def part(x):
            return ft.zigzag_shard(x, rank, world)
    else:
        def part(x):
            return x[:, :, rank * shard:(rank + 1) * shard]
    mine = [part(x).clone().requires_grad_() for x in (q, k, v)]
    got, lse = ft.ring_attention(*mine, group=group, causal=causal, layout=layout, return_lse=True)
    (got * part(w)).sum().backward()

    tol = TOL[dtype]
    what = "rank %d of %d, %s, causal=%s, %s%s" % (rank, world, dtype, causal, layout,
                                                   "" if group is None else ", subgroup")
    err = (got - part(out)).abs().max().item()
    assert err <= tol * v.abs().max().item(), "%s: output off by %g" % (what, err)
    _, full_lse = ft.attention(*full, causal=causal, return_lse=True)
    assert torch.allclose(lse, part(full_lse[..., None])[..., 0], rtol=0,
                          atol=1e-4 if dtype == torch.float32 else 1e-12), what
    for name, a, b in zip("qkv", mine, full):
        want = part(b.grad)
        err = (a.grad - want).abs().max().item()
        assert err <= tol * max(1.0, want.abs().max().item()), "%s: d%s off by %g" % (what, name, err)


def check_approximate_forward(rank, world):
    # anytemp per block, merged: within its eps of exact attention. Its
    # backward is refused (it assumes its own forward's output).
    g = torch.Generator().manual_seed(3)
    shard, eps = 64, 1e-4
    q, k, v = (2 * torch.randn(1, 2, shard * world, 2, generator=g, dtype=torch.float64) for _ in range(3))
    want = ft.attention(q, k, v, causal=True)
    part = slice(rank * shard, (rank + 1) * shard)
    with torch.no_grad():
        got = ft.ring_attention(q[:, :, part], k[:, :, part], v[:, :, part], causal=True,
                                method="anytemp", eps=eps)
    err = (got - want[:, :, part]).abs().max().item()
    assert err <= eps * v.abs().max().item(), "anytemp ring: off by %g" % err
    try:
        ft.ring_attention(q[:, :, part].requires_grad_(), k[:, :, part], v[:, :, part], method="anytemp")
    except NotImplementedError as e:
        assert "exact" in str(e)
    else:
        raise AssertionError("an approximate ring with gradients was accepted")


def check_zigzag_round_trip(world):
    x = torch.arange(2 * world * 3.0).reshape(1, -1, 1)
    shards = [ft.zigzag_shard(x, r, world) for r in range(world)]
    assert torch.equal(ft.zigzag_unshard(shards), x)


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
