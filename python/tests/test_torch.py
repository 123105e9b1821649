"""fastattn.torch.attention against the softmax written out, gradcheck, and a
training step."""

import pytest
import torch

import fastattn
import fastattn.torch as ft


def softmax_attention(q, k, v, scale=None, causal=False):
    # torch 1.13 has no scaled_dot_product_attention: the formula, written out.
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = q @ k.transpose(-1, -2) * scale
    if causal:
        n, m = s.shape[-2:]
        i = torch.arange(n)[:, None]
        j = torch.arange(m)[None, :]
        s = s.masked_fill(j > i + m - n, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def leaves(*shapes, dtype, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(*s, generator=g, dtype=dtype)).requires_grad_() for s in shapes]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_and_backward_match_softmax(dtype, tol, causal):
    q, k, v = leaves((2, 3, 17, 8), (2, 3, 23, 8), (2, 3, 23, 5), dtype=dtype)
    w = torch.randn(2, 3, 17, 5, dtype=dtype)
    out = ft.attention(q, k, v, causal=causal)
    assert out.dtype == dtype and out.shape == (2, 3, 17, 5)
    grads = torch.autograd.grad((out * w).sum(), (q, k, v))
    want = softmax_attention(q, k, v, causal=causal)
    want_grads = torch.autograd.grad((want * w).sum(), (q, k, v))
    assert (out - want).abs().max() <= tol * v.abs().max()
    for g, wg in zip(grads, want_grads):
        assert (g - wg).abs().max() <= tol * max(1.0, wg.abs().max()), (g - wg).abs().max()


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_exact(causal):
    q, k, v = leaves((2, 5, 3), (2, 7, 3), (2, 7, 4), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q, k, v: ft.attention(q, k, v, causal=causal), (q, k, v))
    # Key lengths and scale pass through to the backward pass.
    assert torch.autograd.gradcheck(
        lambda q, k, v: ft.attention(q, k, v, scale=0.3, key_lengths=[7, 4], causal=causal),
        (q, k, v))


def test_gradcheck_anytemp():
    # At eps = 1e-10 the treecode's forward and backward are accurate enough
    # for finite differences.
    q, k, v = leaves((1, 12, 2), (1, 15, 2), (1, 15, 3), dtype=torch.float64, scale=2.0)
    assert torch.autograd.gradcheck(
        lambda q, k, v: ft.attention(q, k, v, method="anytemp", eps=1e-10), (q, k, v))


def test_gradcheck_poly():
    # poly declines small problems (exact is cheaper), hence n = 160 and
    # small entries; a low-dimensional head keeps the rank small.
    q, k, v = leaves((1, 160, 1), (1, 160, 1), (1, 160, 2), dtype=torch.float64, scale=0.5)
    out, rep = ft.attention(q, k, v, method="poly", eps=1e-10, return_report=True)
    assert rep["method"] == "poly"
    # Random projections (fast_mode) keep this to seconds; poly's parallel
    # reductions make repeated backward passes differ in the last bits.
    assert torch.autograd.gradcheck(
        lambda q, k, v: ft.attention(q, k, v, method="poly", eps=1e-10), (q, k, v),
        atol=1e-6, fast_mode=True, nondet_tol=1e-12)


def test_approximate_gradients_within_their_error():
    # Entries small enough for poly, so that every method applies.
    q, k, v = leaves((2, 512, 2), (2, 512, 2), (2, 512, 4), dtype=torch.float64, scale=0.5)
    w = torch.randn(2, 512, 4, dtype=torch.float64)
    want = torch.autograd.grad((softmax_attention(q, k, v) * w).sum(), (q, k, v))
    eps = 1e-4
    for method in fastattn.differentiable_methods():
        out, rep = ft.attention(q, k, v, method=method, eps=eps, return_report=True)
        assert rep["method"] == method
        got = torch.autograd.grad((out * w).sum(), (q, k, v))
        for g, wg in zip(got, want):
            # The documented observed error: within 10 eps of the largest term.
            assert (g - wg).abs().max() <= 10 * eps * wg.abs().max(), (method, (g - wg).abs().max())


def test_training_step_as_drop_in():
    torch.manual_seed(3)

    class Block(torch.nn.Module):
        def __init__(self, attend):
            super().__init__()
            self.qkv = torch.nn.Linear(16, 48)
            self.out = torch.nn.Linear(16, 16)
            self.attend = attend

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
            y = self.attend(q, k, v).transpose(1, 2).reshape(b, n, 16)
            return self.out(y)

    ours = Block(lambda q, k, v: ft.attention(q, k, v, causal=True)).double()
    theirs = Block(lambda q, k, v: softmax_attention(q, k, v, causal=True)).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 10, 16, dtype=torch.float64)
    y = torch.randn(2, 10, 16, dtype=torch.float64)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss(ours(x), y)
    ref = torch.nn.functional.mse_loss(theirs(x), y)
    loss.backward()
    ref.backward()
    for (name, p), p2 in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p.grad, p2.grad, rtol=0, atol=1e-12), name
    opt.step()
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(ours(x), y) < loss


def test_no_grad_report_and_lse():
    q, k, v = (torch.randn(4, 6, dtype=torch.float32) for _ in range(3))
    with torch.no_grad():
        out, lse, rep = ft.attention(q, k, v, return_lse=True, return_report=True)
    assert rep["method"] == "exact" and rep["dtype"] == "float32"
    assert lse.dtype == torch.float64 and lse.shape == (4,)
    assert torch.allclose(out, softmax_attention(q, k, v), atol=1e-6)


def test_errors():
    q = torch.randn(4, 6)
    with pytest.raises(ValueError, match="Q's is 6"):
        ft.attention(q, torch.randn(4, 5), torch.randn(4, 5))
    with pytest.raises(ValueError, match="float32 or float64"):
        ft.attention(q.to(torch.int32), q, q)


@pytest.mark.parametrize("option", [
    dict(causal=True, causal_align="top-left"),
    dict(window=(2, 1)),
    dict(causal=True, window=(3, None)),
    dict(mask="bool"),
    dict(mask="additive", causal=True),
])
def test_gradcheck_options(option):
    option = dict(option)
    # Two kv heads for four query heads (grouped-query attention).
    q, = leaves((1, 4, 6, 3), dtype=torch.float64, seed=1)
    k, v = leaves((1, 2, 8, 3), (1, 2, 8, 2), dtype=torch.float64, seed=2)
    g = torch.Generator().manual_seed(5)
    if option.get("mask") == "bool":
        option["mask"] = torch.rand(1, 4, 6, 8, generator=g) < 0.7
    elif option.get("mask") == "additive":
        option["mask"] = torch.randn(6, 8, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q, k, v: ft.attention(q, k, v, **option), (q, k, v))


def test_gradcheck_sinks():
    q, k, v = leaves((2, 3, 5, 3), (2, 3, 7, 3), (2, 3, 7, 2), dtype=torch.float64)
    sinks = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v, s: ft.attention(q, k, v, sinks=s, causal=True),
                              (q, k, v, sinks))


def test_mask_gradient_is_refused():
    q = torch.randn(3, 4)
    with pytest.raises(NotImplementedError, match="mask"):
        ft.attention(q, q, q, mask=torch.zeros(3, 3, requires_grad=True))


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_16_bit_keys_and_values(half):
    g = torch.Generator().manual_seed(9)
    q = torch.randn(1, 4, 7, 8, generator=g)
    k, v = (torch.randn(1, 2, 11, 8, generator=g).to(half) for _ in range(2))
    with torch.no_grad():
        out = ft.attention(q, k, v, causal=True)
        want = softmax_attention(q, k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1),
                                 causal=True)
        assert out.dtype == torch.float32
        assert (out - want).abs().max() <= 1e-5 * v.float().abs().max()
        assert ft.attention(q.to(half), k, v).dtype == half
    # Differentiable: gradients in the inputs' dtypes, equal to float32
    # attention's on the widened values.
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    w = torch.randn(1, 4, 7, 8, generator=g)
    (ft.attention(*leaves, causal=True) * w).sum().backward()
    wide = [x.float().clone().requires_grad_() for x in (q, k, v)]
    (ft.attention(*wide, causal=True) * w).sum().backward()
    for a, b in zip(leaves, wide):
        assert a.grad.dtype == a.dtype
        assert (a.grad.float() - b.grad.to(a.dtype).float()).abs().max() <= 1e-5 * b.grad.abs().max()
