"""The NumPy API against a float64 reference, its errors, and its memory use."""

import threading
import tracemalloc

import numpy as np
import pytest

import fastattn
from fastattn import _lib

import reference

RNG = np.random.default_rng(1)

# (q shape, k shape, v shape)
SHAPES = [
    ((7, 5), (9, 5), (9, 3)),
    ((3, 17, 8), (3, 17, 8), (3, 17, 8)),
    ((2, 3, 33, 16), (2, 3, 20, 16), (2, 3, 20, 7)),
    ((1, 1, 64, 4), (1, 1, 129, 4), (1, 1, 129, 4)),
]

TOL = {np.float32: 3e-5, np.float64: 1e-10}


def randn(*shape, dtype=np.float64, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype(dtype)


def inputs(shapes, dtype, scale=1.0):
    return [randn(*s, dtype=dtype, scale=scale) for s in shapes]


def check_close(got, want, v, tol):
    # The library's contract: entrywise error relative to max|V| per column.
    if v.ndim >= 3 and v.shape[-3] != got.shape[-3]:  # grouped-query attention
        v = np.repeat(v, got.shape[-3] // v.shape[-3], axis=-3)
    unit = np.abs(v).max(axis=-2, keepdims=True)
    assert np.all(np.abs(got - want) <= tol * unit + 1e-300), np.abs(got - want).max()


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_exact_matches_reference(shapes, dtype, causal):
    q, k, v = inputs(shapes, dtype)
    out, lse, rep = fastattn.attention(q, k, v, causal=causal, return_lse=True, return_report=True)
    want, want_lse = reference.attention(q, k, v, causal=causal)
    assert out.dtype == dtype and out.shape == want.shape
    assert lse.dtype == np.float64 and lse.shape == want_lse.shape
    check_close(out, want, v, TOL[dtype])
    fin = np.isfinite(want_lse)
    assert np.array_equal(fin, np.isfinite(lse))
    assert np.allclose(lse[fin], want_lse[fin], rtol=0, atol=1e-4 if dtype == np.float32 else 1e-10)
    assert rep["method"] == "exact" and rep["dtype"] == np.dtype(dtype).name
    assert rep["n"] == q.shape[-2] and rep["m"] == k.shape[-2] and rep["causal"] == causal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_and_key_lengths(dtype):
    q, k, v = inputs([(2, 3, 10, 6), (2, 3, 12, 6), (2, 3, 12, 6)], dtype)
    for lens in ([12, 5], [3, 0, 12, 7, 1, 9]):
        per_head = np.repeat(lens, 3) if len(lens) == 2 else lens
        out, lse = fastattn.attention(q, k, v, scale=0.7, causal=True, key_lengths=lens, return_lse=True)
        want, want_lse = reference.attention(q, k, v, scale=0.7, causal=True, key_lengths=per_head)
        check_close(out, want, v, TOL[dtype])
        assert np.array_equal(np.isneginf(lse), np.isneginf(want_lse))
        # Rows without keys are zero.
        assert np.all(out[np.isneginf(lse)] == 0)


@pytest.mark.parametrize("method,scale,d", [("poly", 0.25, 4), ("anytemp", 3.0, 2), ("auto", 1.0, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_approximate_methods_meet_eps(method, scale, d, dtype):
    n, eps = 2048, 1e-3
    q, k, v = inputs([(2, n, d), (2, n, d), (2, n, 8)], dtype, scale=scale)
    out, rep = fastattn.attention(q, k, v, method=method, eps=eps, return_report=True)
    want, _ = reference.attention(q, k, v)
    if method != "auto":
        assert rep["method"] == method
    assert rep["method"] in fastattn.methods()
    # The certified bound, plus float32 rounding.
    check_close(out, want, v, eps + (TOL[dtype] if dtype == np.float32 else 0))


def test_merge_of_key_halves_is_the_whole():
    q, k, v = inputs([(2, 9, 4), (2, 30, 4), (2, 30, 5)], np.float64)
    a = fastattn.attention(q, k[:, :11], v[:, :11], return_lse=True)
    b = fastattn.attention(q, k[:, 11:], v[:, 11:], return_lse=True)
    out, lse = fastattn.merge([a, b])
    want, want_lse = fastattn.attention(q, k, v, return_lse=True)
    assert np.allclose(out, want, rtol=0, atol=1e-13)
    assert np.allclose(lse, want_lse, rtol=0, atol=1e-13)


def test_set_worker_poll():
    default = fastattn.set_worker_poll(2e-3)
    try:
        assert default == pytest.approx(1e-4)
        assert fastattn.set_worker_poll(-1) == pytest.approx(2e-3)
        assert fastattn.set_worker_poll(1e-3) == 0
        # The poll changes when the work runs, not its result.
        rng = np.random.default_rng(3)
        q, k, v = (rng.standard_normal((2, 8, s, 64)).astype(np.float32) for s in (1, 3000, 3000))
        fastattn.set_worker_poll(0)
        a = fastattn.attention(q, k, v)
        fastattn.set_worker_poll(1e-3)
        b = fastattn.attention(q, k, v)
        np.testing.assert_array_equal(a, b)
    finally:
        fastattn.set_worker_poll(default)


def test_methods():
    ms = fastattn.methods()
    assert "exact" in ms and "poly" in ms and "anytemp" in ms
    assert set(fastattn.differentiable_methods()) <= set(ms)


def test_non_contiguous_inputs():
    q, k, v = inputs([(9, 2, 5), (11, 2, 5), (11, 2, 3)], np.float64)
    # Transposed views (strided), copied to C order by the wrapper.
    qt, kt, vt = (x.transpose(1, 0, 2) for x in (q, k, v))
    out = fastattn.attention(qt, kt, vt)
    want, _ = reference.attention(qt, kt, vt)
    check_close(out, want, vt, 1e-10)
    out = fastattn.attention(np.asfortranarray(q[:, 0]), k[:, 0], v[:, 0])
    check_close(out, reference.attention(q[:, 0], k[:, 0], v[:, 0])[0], v[:, 0], 1e-10)


@pytest.mark.parametrize("n,m", [(4, 1 << 16), (1 << 15, 64)])
def test_inputs_and_outputs_are_not_copied(n, m):
    # Large K and V with a small output, then a large output with small K
    # and V: any copy of an input, or an output made in Go and copied out,
    # would show.
    q, k, v = inputs([(n, 64), (m, 64), (m, 64)], np.float32)
    fastattn.attention(q, k, v)  # warm up
    tracemalloc.start()
    go_before = _lib.lib.fastattn_go_total_alloc()
    out = fastattn.attention(q, k, v)
    go_after = _lib.lib.fastattn_go_total_alloc()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (n, 64)
    # NumPy reports its allocations to tracemalloc: the output and the
    # log-sum-exps, and small objects.
    assert peak < out.nbytes + n * 8 + (64 << 10), peak
    # The Go heap: small objects (typically 1.3 KB, sometimes 66 KB), not a
    # 16 MiB input or an 8 MiB output.
    assert go_after - go_before < 1 << 20, go_after - go_before


def test_gil_is_released():
    q, k, v = inputs([(4096, 64), (4096, 64), (4096, 64)], np.float32)
    done = threading.Event()

    def run():
        fastattn.attention(q, k, v)
        fastattn.attention(q, k, v)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    spins = 0
    while not done.is_set():
        spins += 1
        done.wait(0.001)
    t.join()
    # The main thread kept running while the library computed.
    assert spins > 5


def test_errors_carry_the_library_message():
    q, k, v = inputs([(8, 4), (8, 4), (8, 4)], np.float64)
    with pytest.raises(ValueError, match="K's last dimension is 3 but Q's is 4"):
        fastattn.attention(q, k[:, :3], v)
    with pytest.raises(ValueError, match="dtype float32, want float64"):
        fastattn.attention(q, k.astype(np.float32), v)
    with pytest.raises(ValueError, match="use float32 or float64"):
        fastattn.attention(q.astype(np.int64), k, v)
    bad = k.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fastattn.attention(q, bad, v)
    with pytest.raises(ValueError, match="unknown method"):
        fastattn.attention(q, k, v, method="nope")
    with pytest.raises(ValueError, match="rank 1"):
        fastattn.attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="key length 9"):
        fastattn.attention(q, k, v, key_lengths=[9])
    with pytest.raises(ValueError, match="scale must be positive"):
        fastattn.attention(q, k, v, scale=0)
    with pytest.raises(ValueError, match="causal_align"):
        fastattn.attention(q, k, v, causal_align="middle")
    with pytest.raises(ValueError, match="same queries|output shape"):
        fastattn.merge([fastattn.attention(q, k, v, return_lse=True),
                        fastattn.attention(q[:4], k, v, return_lse=True)])


def test_declining_method_raises_unsupported():
    # Logits far too large for the polynomial method.
    q, k, v = inputs([(256, 4), (256, 4), (256, 4)], np.float64, scale=30.0)
    with pytest.raises(fastattn.UnsupportedError, match="poly") as e:
        fastattn.attention(q, k, v, method="poly")
    assert isinstance(e.value, ValueError)


def test_gradient_matches_finite_differences():
    q, k, v = inputs([(2, 6, 3), (2, 7, 3), (2, 7, 2)], np.float64)
    w = randn(2, 6, 2)
    out, lse, rep = fastattn.attention(q, k, v, causal=True, return_lse=True, return_report=True)
    dq, dk, dv = fastattn.gradient(q, k, v, w, out, lse, rep, causal=True)

    def loss(q, k, v):
        return float((reference.attention(q, k, v, causal=True)[0] * w).sum())

    h = 1e-6
    for x, g in ((q, dq), (k, dk), (v, dv)):
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + h
            up = loss(q, k, v)
            x[idx] = old - h
            down = loss(q, k, v)
            x[idx] = old
            num[idx] = (up - down) / (2 * h)
        assert np.allclose(g, num, rtol=0, atol=1e-8), np.abs(g - num).max()


# The real-model options: grouped-query attention, top-left causal
# alignment, sliding windows, masks, sinks, workers.

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_query_attention(dtype):
    q, k, v = inputs([(2, 6, 9, 4), (2, 2, 11, 4), (2, 2, 11, 3)], dtype)
    out, lse, rep = fastattn.attention(q, k, v, causal=True, key_lengths=[11, 5],
                                       return_lse=True, return_report=True)
    want, want_lse = reference.attention(q, k, v, causal=True, key_lengths=np.repeat([11, 5], 6))
    check_close(out, want, v, TOL[dtype])
    assert rep["kv_heads"] == 4
    # One key length per kv head.
    out = fastattn.attention(q, k, v, key_lengths=[3, 11, 7, 1])
    want, _ = reference.attention(q, k, v, key_lengths=np.repeat([3, 11, 7, 1], 3))
    check_close(out, want, v, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,m", [(9, 9), (5, 12), (12, 5)])
def test_causal_alignment_and_windows(dtype, n, m):
    q, k, v = inputs([(2, n, 4), (2, m, 4), (2, m, 3)], dtype)
    for align in ("bottom-right", "top-left"):
        top_left = align == "top-left"
        for window, causal in (((2, 1), False), ((3, -1), True), ((-1, 0), False), ((1, None), False)):
            out, lse = fastattn.attention(q, k, v, causal=causal, causal_align=align, window=window,
                                          return_lse=True)
            w = tuple(-1 if x is None else x for x in window)
            want, want_lse = reference.attention(q, k, v, causal=causal, top_left=top_left, window=w)
            check_close(out, want, v, TOL[dtype])
            assert np.array_equal(np.isneginf(lse), np.isneginf(want_lse)), (align, window)
        out = fastattn.attention(q, k, v, causal=True, causal_align=align)
        check_close(out, reference.attention(q, k, v, causal=True, top_left=top_left)[0], v, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masks(dtype):
    q, k, v = inputs([(2, 3, 7, 4), (2, 3, 10, 4), (2, 3, 10, 5)], dtype)
    boolean = RNG.random((2, 1, 7, 10)) < 0.6  # broadcast over heads
    additive = randn(7, 10, dtype=dtype)
    additive[2, 3:] = -np.inf
    for mask in (boolean, additive, additive.astype(np.float64), RNG.random((10,)) < 0.5):
        out, lse = fastattn.attention(q, k, v, mask=mask, causal=True, return_lse=True)
        want, want_lse = reference.attention(q, k, v, mask=mask, causal=True)
        check_close(out, want, v, TOL[dtype])
        assert np.array_equal(np.isneginf(lse), np.isneginf(want_lse))
    with pytest.raises(ValueError, match="mask"):
        fastattn.attention(q, k, v, mask=np.ones((3, 3), dtype=bool))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sinks(dtype):
    q, k, v = inputs([(2, 3, 7, 4), (2, 3, 9, 4), (2, 3, 9, 5)], dtype)
    sinks = np.array([0.5, -np.inf, 2.0])
    out, lse = fastattn.attention(q, k, v, sinks=sinks, causal=True, return_lse=True)
    want, want_lse = reference.attention(q, k, v, sinks=sinks, causal=True)
    check_close(out, want, v, TOL[dtype])
    assert np.allclose(lse, want_lse, rtol=0, atol=1e-4 if dtype == np.float32 else 1e-10)
    with pytest.raises(ValueError, match="sink"):
        fastattn.attention(q, k, v, sinks=[1.0, 2.0])


def test_workers_and_assume_finite_give_the_same_result():
    q, k, v = inputs([(4, 300, 16), (4, 300, 16), (4, 300, 16)], np.float64)
    base = fastattn.attention(q, k, v)
    for kw in ({"workers": 1}, {"workers": 3}, {"assume_finite": True}):
        assert np.array_equal(fastattn.attention(q, k, v, **kw), base), kw


def bfloat16_bits(x):
    """The bfloat16 numbers nearest below x's float32 values (truncation), as bits."""
    return (np.asarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def bfloat16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_16_bit_keys_and_values(fmt):
    q, k, v = inputs([(2, 3, 9, 8), (2, 1, 13, 8), (2, 1, 13, 5)], np.float32)
    if fmt == "float16":
        kh, vh = k.astype(np.float16), v.astype(np.float16)
        kr, vr = kh.astype(np.float64), vh.astype(np.float64)
    else:
        kb, vb = bfloat16_bits(k), bfloat16_bits(v)
        kh, vh = fastattn.bfloat16(kb), fastattn.bfloat16(vb)
        kr, vr = bfloat16_values(kb), bfloat16_values(vb)
    # Against the reference on the stored (rounded) values, with and
    # without a report (the report's path copies, the other writes in place).
    want, want_lse = reference.attention(q, kr, vr, causal=True)
    out, lse, rep = fastattn.attention(q, kh, vh, causal=True, return_lse=True, return_report=True)
    assert out.dtype == np.float32 and rep["method"] == "exact"
    check_close(out, want, vr, 3e-5)
    assert np.allclose(lse, want_lse, rtol=0, atol=1e-4)
    check_close(fastattn.attention(q, kh, vh, causal=True), want, vr, 3e-5)
    # float16 queries are widened; the output comes back in float16.
    out16 = fastattn.attention(q.astype(np.float16), kh, vh, causal=True)
    assert out16.dtype == np.float16
    # Gradients (float32) against those of float32 attention on the stored
    # values: the same computation after widening.
    dout = randn(*out.shape, dtype=np.float32)
    dq, dk, dv = fastattn.gradient(q, kh, vh, dout, out, lse, rep, causal=True)
    k32, v32 = kr.astype(np.float32), vr.astype(np.float32)
    o32, l32, r32 = fastattn.attention(q, k32, v32, causal=True, return_lse=True, return_report=True)
    for got, want in zip((dq, dk, dv), fastattn.gradient(q, k32, v32, dout, o32, l32, r32, causal=True)):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_16_bit_errors():
    q, k, v = inputs([(4, 8), (6, 8), (6, 8)], np.float32)
    with pytest.raises(ValueError, match="one 16-bit format"):
        fastattn.attention(q, k.astype(np.float16), v)
    with pytest.raises(ValueError, match="one 16-bit format"):
        fastattn.attention(q, k.astype(np.float16), fastattn.bfloat16(bfloat16_bits(v)))
    with pytest.raises(ValueError, match="float32"):
        fastattn.attention(q.astype(np.float64), k.astype(np.float16), v.astype(np.float16))
    with pytest.raises(ValueError, match="uint16 or int16"):
        fastattn.bfloat16(v)


def test_16_bit_keys_are_not_copied():
    q, k, v = inputs([(4, 64), (1 << 16, 64), (1 << 16, 64)], np.float32)
    k, v = k.astype(np.float16), v.astype(np.float16)
    fastattn.attention(q, k, v)
    before = _lib.lib.fastattn_go_total_alloc()
    fastattn.attention(q, k, v)
    assert _lib.lib.fastattn_go_total_alloc() - before < 1 << 20


def test_concurrent_calls_from_threads():
    # The GIL is released, so calls overlap in the library: each must get
    # its own result.
    cases = [inputs([(2, 300, 16), (2, 280, 16), (2, 280, 8)], dtype) for dtype in (np.float32, np.float64) * 3]
    want = [fastattn.attention(*c, causal=True) for c in cases]
    got = [None] * len(cases)

    def run(i):
        for _ in range(5):
            got[i] = fastattn.attention(*cases[i], causal=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def _call_in_child(queue):
    x = np.ones((2, 2))
    try:
        fastattn.attention(x, x, x)
        queue.put("ran")
    except RuntimeError as e:
        queue.put(str(e))


def test_a_forked_child_gets_an_error_not_a_hang():
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_call_in_child, args=(queue,))
    p.start()
    msg = queue.get(timeout=60)
    p.join(60)
    assert "spawn" in msg and "fork" in msg, msg
