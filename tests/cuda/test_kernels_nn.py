"""cuda/nn_kernels against cpu/nn_kernels: the same call on numpy and on device copies.

Arrays stay tiny: the simulator runs every thread in Python.
"""

import numpy as np
import pytest

from jitgrad.backends.cpu import nn_kernels as C
from jitgrad.backends.cuda import array
from jitgrad.backends.cuda import nn_kernels as G

DTYPES = [np.float32, np.float64]


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def both(fn, *args, outs):
    """Run ``fn`` from both modules; ``args`` are numpy arrays or scalars; compare ``outs``."""
    host = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    dev = [array.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
    getattr(C, fn)(*host)
    getattr(G, fn)(*dev)
    return [(host[i], array.to_host(dev[i])) for i in outs]


def check(pairs, dtype, **kw):
    for want, got in pairs:
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **(kw or tol(dtype)))


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


GEOMS = [  # (kh, kw, sh, sw, ph, pw, dh, dw), groups
    ((3, 3, 1, 1, 0, 0, 1, 1), 1),
    ((3, 2, 2, 1, 1, 0, 1, 2), 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geom,groups", GEOMS)
def test_conv(dtype, geom, groups):
    rng = np.random.default_rng(0)
    kh, kw, sh, sw, ph, pw, dh, dw = geom
    n, c, h, w, o = 2, 2, 4, 4, 4
    oh, ow = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    x = rand(rng, (n, c, h, w + 1), dtype)[..., 1:]  # a strided view
    cols = np.zeros((n, c * kh * kw, oh * ow), dtype)
    (_, cols_g), = pairs = both("im2col", x, geom, oh, ow, cols, outs=[4])
    check(pairs, dtype)
    cols = pairs[0][0]

    wt = rand(rng, (groups, o // groups, c // groups * kh * kw), dtype)
    bias = rand(rng, (groups, o // groups), dtype)
    for has_bias in (True, False):
        out = np.empty((n, groups, o // groups, oh * ow), dtype)
        check(both("conv2d_forward", cols, wt, bias, has_bias, out, outs=[4]), dtype)

    grad = rand(rng, (n, groups, o // groups, oh * ow), dtype)
    buf = np.empty((c * kh * kw, oh * ow), dtype)
    dx = np.zeros((n, c, h, w), dtype)
    check(both("conv2d_backward_input", grad, wt, geom, oh, ow, buf, dx, outs=[6]), dtype)
    one = both("conv2d_backward_input", grad[:1], wt, geom, oh, ow, buf, dx[:1], outs=[6])
    check(one, dtype)

    tmp = np.empty(wt.shape[1:], dtype)
    dwt = np.empty(wt.shape, dtype)
    check(both("conv2d_backward_weight", grad, cols, tmp, dwt, outs=[3]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_and_scatter(dtype):
    rng = np.random.default_rng(1)
    x = rand(rng, (2, 5, 5), dtype)
    x[1, 0, 0] = np.nan
    p = (2, 3, 2, 2, 1, 1, 1, 1)
    oh, ow = conv_out(5, 2, 2, 1, 1), conv_out(5, 3, 2, 1, 1)
    out, idx = np.empty((2, oh, ow), dtype), np.empty((2, oh, ow), np.int64)
    pairs = both("max_pool2d_forward", x, p, out, idx, outs=[2, 3])
    np.testing.assert_array_equal(pairs[0][1], pairs[0][0])  # NaN where the CPU has NaN
    np.testing.assert_array_equal(pairs[1][1], pairs[1][0])

    idx = pairs[1][0].reshape(2, -1)
    grad = rand(rng, idx.shape, dtype)
    check(both("index_scatter_add", grad, idx, np.zeros((2, 25), dtype), outs=[2]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_window_mean(dtype):
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 5, 4), dtype)
    hs, he = np.array([0, 1, 3]), np.array([2, 4, 5])  # overlapping windows
    ws, we = np.array([0, 2]), np.array([3, 4])
    div = np.array([[6, 4], [9, 6], [6, 4]], dtype)
    out = np.empty((2, 3, 2), dtype)
    check(both("window_mean_forward", x, hs, he, ws, we, div, out, outs=[6]), dtype)
    grad = rand(rng, (2, 3, 2), dtype)
    check(both("window_mean_backward", grad, hs, he, ws, we, div, np.zeros_like(x), outs=[6]),
          dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise(dtype):
    rng = np.random.default_rng(3)
    x = rand(rng, 12, dtype) * 2
    u = rng.random(12).astype(dtype)
    p = dtype(0.4)
    scale = dtype(1 / 0.6)
    e = np.empty_like(x)
    check(both("dropout_forward", x, u, p, scale, e, e.copy(), outs=[4, 5]), dtype)
    # NOTE: erf comes from CUDA's libdevice on one side and jitgrad's vmath on the other
    loose = {"rtol": 2e-6, "atol": 2e-7} if dtype == np.float32 else {"rtol": 1e-13, "atol": 1e-15}
    check(both("erf", x, e, outs=[1]), dtype, **loose)
    check(both("gelu_forward", x, e, outs=[1]), dtype, **loose)
    check(both("gelu_backward", rand(rng, 12, dtype), x, e, outs=[2]), dtype, **loose)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding(dtype):
    rng = np.random.default_rng(4)
    weight = rand(rng, (5, 3), dtype)
    idx = np.array([1, 3, 1, 0, 4, 1])
    for pad in (-1, 1):
        out = np.empty((idx.size, 3), dtype)
        check(both("embedding_forward", idx, weight, pad, out, outs=[3]), dtype)
    grad = rand(rng, (idx.size, 3), dtype)
    for pad, by_freq in ((-1, False), (3, True)):
        counts = np.zeros(5 if by_freq else 0, np.int64)
        pairs = both("embedding_backward", idx, grad, pad, by_freq, counts, np.zeros_like(weight),
                     outs=[4, 5])
        np.testing.assert_array_equal(pairs[0][1], pairs[0][0])
        check(pairs[1:], dtype)
    w = weight * 3  # rows 1 and 3 exceed max_norm; row 1 is indexed three times
    w[3] /= 10
    check(both("embedding_renorm", idx, w, 2.0, 2.0, outs=[1]), dtype)
    check(both("embedding_renorm", idx, w, 1.5, 1.0, outs=[1]), dtype)


def loss_inputs(rng, dtype, n=3, c=4, d=2):
    x = rand(rng, (n, c, d), dtype)
    target = rng.integers(0, c, (n, d))
    target[0, 1] = -100
    return x, target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll(dtype, reduction, weighted):
    rng = np.random.default_rng(5)
    x, target = loss_inputs(rng, dtype)
    weight = rng.random(4).astype(dtype) + 0.5 if weighted else np.ones(4, dtype)
    losses, result, total = np.empty(target.shape, dtype), np.zeros(1, dtype), np.empty(1)
    check(both("nll_forward", x, target, weight, -100, reduction, losses, result, total,
               outs=[5, 6, 7]), dtype)
    for full in (True, False):
        grad = rand(rng, target.shape if full else (1, 1), dtype)
        check(both("nll_backward", grad, full, 0.25, target, weight, -100, np.zeros_like(x),
                   outs=[6]), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted,smoothing", [(False, 0.0), (True, 0.0), (True, 0.2)])
def test_cross_entropy(dtype, reduction, weighted, smoothing):
    rng = np.random.default_rng(6)
    x, target = loss_inputs(rng, dtype)
    x[2, :, 0] += 50  # large logits: the max shift must hold
    weight = rng.random(4).astype(dtype) + 0.5 if weighted else np.ones(4, dtype)
    logp, losses = np.empty_like(x), np.empty(target.shape, dtype)
    result, total = np.zeros(1, dtype), np.empty(1)
    pairs = both("cross_entropy_forward", x, target, weight, -100, smoothing, reduction, logp,
                 losses, result, total, outs=[6, 7, 8, 9])
    check(pairs, dtype)
    logp = pairs[0][0]
    for full in (True, False):
        grad = rand(rng, target.shape if full else (1, 1), dtype)
        check(both("cross_entropy_backward", grad, full, 0.5, logp, target, weight,
                   float(weight.sum(dtype=np.float64)), -100, smoothing, np.empty_like(x),
                   outs=[9]), dtype)


def test_no_host_transfers():
    from jitgrad.backends.cuda import runtime

    rng = np.random.default_rng(7)
    x, target = loss_inputs(rng, np.float32)
    dev = [array.to_device(a) for a in (x, target, np.ones(4, np.float32),
                                        np.empty(target.shape, np.float32),
                                        np.empty(1, np.float32), np.empty(1))]
    before = (runtime.transfers.to_host, runtime.transfers.to_device)
    G.nll_forward(dev[0], dev[1], dev[2], -100, 1, *dev[3:])
    G.embedding_renorm(array.to_device(np.array([0, 1])), array.to_device(x[0]), 1.0, 2.0)
    assert runtime.transfers.to_host == before[0]
    assert runtime.transfers.to_device == before[1] + 2
