import math

import numpy as np
import pytest
from helpers import check_op, torch

import jitgrad

INF = float("inf")

# (module/tensor expression, numpy reference); each runs on a (2, 3, 4) input
DIMS = [None, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


def _np_axis(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean(dim, keepdim):
    ax = _np_axis(dim)
    if dim is None:
        check_op(lambda m, x: x.sum(), np.sum, [(2, 3, 4)])
        check_op(lambda m, x: m.mean(x), np.mean, [(2, 3, 4)])
        return
    check_op(lambda m, x: x.sum(dim, keepdim=keepdim),
             lambda x: np.sum(x, axis=ax, keepdims=keepdim), [(2, 3, 4)])
    check_op(lambda m, x: m.mean(x, dim, keepdim),
             lambda x: np.mean(x, axis=ax, keepdims=keepdim), [(2, 3, 4)])


def test_sum_noncontiguous_and_0d():
    check_op(lambda m, x: x.transpose(0, 2).sum((0, 2)),
             lambda x: x.transpose(2, 1, 0).sum(axis=(0, 2)), [(2, 3, 4)])
    check_op(lambda m, x: x.t().sum(0), lambda x: x.T.sum(0), [(3, 4)])
    check_op(lambda m, x: x[:, ::2].mean(-1, keepdim=True),
             lambda x: x[:, ::2].mean(-1, keepdims=True), [(3, 4)])
    check_op(lambda m, x: x.sum(), np.sum, [()])
    check_op(lambda m, x: x.sum(0), np.sum, [()])
    check_op(lambda m, x: x.mean(-1, keepdim=True), np.mean, [()])


@pytest.mark.parametrize("dtype", [jitgrad.float32, jitgrad.float64])
@pytest.mark.parametrize("name", ["sum", "mean"])
def test_small_full_reduction_matches_the_general_path(dtype, name):
    """A small contiguous tensor's full sum/mean takes a shortcut (``reduce._small_full``); the
    same values behind a transposed view take the general path: same bits, node and gradient."""
    data = np.random.default_rng(0).standard_normal((3, 5))
    fast = jitgrad.tensor(data, dtype=dtype, requires_grad=True)
    general = jitgrad.tensor(data.T.copy(), dtype=dtype, requires_grad=True)
    a, b = getattr(fast, name)(), getattr(general.t(), name)()
    assert a.shape == b.shape == () and a.dtype == b.dtype == dtype
    assert a.item() == b.item()
    np.testing.assert_allclose(a.item(), getattr(np, name)(data), rtol=1e-6)
    assert a.grad_fn.name() == b.grad_fn.name() == f"{name.capitalize()}Backward0"
    a.backward()
    b.backward()
    expected = np.full((3, 5), 1 / 15 if name == "mean" else 1.0)
    np.testing.assert_allclose(fast.grad.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(general.grad.numpy().T, fast.grad.numpy())
    with jitgrad.no_grad():
        assert getattr(fast, name)().grad_fn is None


def test_sum_int_and_bool_to_int64():
    x = jitgrad.tensor([[1, 2, 3], [4, 5, 6]])
    assert x.sum().dtype == jitgrad.int64 and x.sum().item() == 21
    np.testing.assert_array_equal(x.sum(0).numpy(), [5, 7, 9])
    assert x.sum(0).dtype == jitgrad.int64
    x32 = jitgrad.tensor(np.array([2**30, 2**30, 2**30], np.int32))
    assert x32.sum().dtype == jitgrad.int64 and x32.sum().item() == 3 * 2**30
    b = jitgrad.tensor([[True, False, True], [True, True, True]])
    assert b.sum().dtype == jitgrad.int64 and b.sum().item() == 5
    np.testing.assert_array_equal(b.sum(1).numpy(), [2, 3])
    assert x.sum(dtype=jitgrad.float64).dtype == jitgrad.float64
    with pytest.raises(RuntimeError, match="mean"):
        x.mean()


def test_float32_sum_accuracy():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 1_000_000).astype(np.float32)
    exact = a.astype(np.float64).sum()
    got = jitgrad.tensor(a).sum().item()
    assert abs(got - exact) / exact < 1e-6
    got_rows = jitgrad.tensor(a.reshape(1000, 1000)).sum(0).numpy()
    np.testing.assert_allclose(got_rows, a.reshape(1000, 1000).astype(np.float64).sum(0),
                               rtol=1e-6)


@pytest.mark.parametrize("dim", [None, 0, -1])
def test_prod(dim):
    if dim is None:
        check_op(lambda m, x: x.prod(), np.prod, [(2, 3)], low=0.5, high=1.5)
    else:
        check_op(lambda m, x: m.prod(x, dim), lambda x: np.prod(x, axis=dim), [(2, 3)],
                 low=0.5, high=1.5)
        check_op(lambda m, x: x.prod(dim, keepdim=True),
                 lambda x: np.prod(x, axis=dim, keepdims=True), [(2, 3)], low=0.5, high=1.5)


@pytest.mark.parametrize("values", [[[1.0, 0.0, 3.0], [2.0, 4.0, 5.0]],
                                    [[0.0, 0.0, 3.0], [2.0, 0.0, 5.0]]])
def test_prod_with_zeros_gradient(values):
    a = np.array(values)
    x = jitgrad.tensor(a, requires_grad=True)
    x.prod().backward()
    expected = np.array([[np.prod(np.delete(a.ravel(), i)) for i in range(a.size)]]).reshape(
        a.shape)
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    x.grad = None
    x.prod(1).sum().backward()
    expected = np.array([[np.prod(np.delete(r, i)) for i in range(3)] for r in a])
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    x.grad = None
    x.prod(0).sum().backward()
    expected = a[::-1].copy()
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_prod_int():
    x = jitgrad.tensor([[1, 2, 3], [4, 5, 6]])
    assert x.prod().item() == 720 and x.prod().dtype == jitgrad.int64
    np.testing.assert_array_equal(x.prod(0).numpy(), [4, 10, 18])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min(name):
    npf = getattr(np, name)
    arg = getattr(np, "arg" + name)
    check_op(lambda m, x: getattr(x, name)(), npf, [(3, 4)])
    check_op(lambda m, x: getattr(m, name)(x, 0).values, lambda x: npf(x, axis=0), [(3, 4)])
    check_op(lambda m, x: getattr(x, name)(dim=-1, keepdim=True)[0],
             lambda x: npf(x, axis=-1, keepdims=True), [(3, 4)])
    a = np.array([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]], np.float32)
    res = getattr(jitgrad.tensor(a), name)(1)
    assert type(res).__name__ == name and res._fields == ("values", "indices")
    values, indices = res
    np.testing.assert_array_equal(values.numpy(), npf(a, axis=1))
    np.testing.assert_array_equal(indices.numpy(), arg(a, axis=1))
    assert indices.dtype == jitgrad.int64
    kept = getattr(jitgrad.tensor(a), name)(0, keepdim=True)
    assert kept.values.shape == (1, 3) and kept.indices.shape == (1, 3)
    np.testing.assert_array_equal(kept.indices.numpy(), arg(a, axis=0)[None])
    assert getattr(jitgrad.tensor(a), name)().shape == ()


def test_max_dim_gradient_goes_to_index_only():
    x = jitgrad.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    v, i = x.max(1)
    (v * jitgrad.tensor([1.0, 2.0])).sum().backward()
    np.testing.assert_array_equal(i.numpy(), [1, 0])  # first of the ties, like torch on CPU
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [2, 0, 0]])


def test_max_of_0d_and_noncontiguous():
    x = jitgrad.tensor(3.0)
    assert x.max().item() == 3.0
    v, i = x.max(0)
    assert v.item() == 3.0 and i.item() == 0 and i.shape == ()
    check_op(lambda m, x: x.t().max(0).values, lambda x: x.T.max(0), [(3, 4)])


@pytest.mark.parametrize("name", ["amax", "amin"])
def test_amax_amin(name):
    npf = getattr(np, name)
    check_op(lambda m, x: getattr(m, name)(x), npf, [(2, 3, 4)])
    check_op(lambda m, x: getattr(x, name)((0, 2)), lambda x: npf(x, axis=(0, 2)), [(2, 3, 4)])
    check_op(lambda m, x: getattr(x, name)(-1, keepdim=True),
             lambda x: npf(x, axis=-1, keepdims=True), [(2, 3, 4)])


def test_amax_amin_ties_share_gradient():
    a = [[1.0, 3.0, 3.0, 3.0], [2.0, 2.0, 0.0, 0.0]]
    x = jitgrad.tensor(a, requires_grad=True)
    x.amax(1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0, 0]])
    x.grad = None
    x.amin(1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1, 0, 0, 0], [0, 0, 0.5, 0.5]])
    x.grad = None
    x.amax().backward()  # all dims: three tied maxima
    np.testing.assert_allclose(x.grad.numpy(), [[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 0, 0]])
    x.grad = None
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 0, 0]])
    if torch is not None:
        tx = torch.tensor(a, requires_grad=True)
        tx.amax(1).sum().backward()
        np.testing.assert_allclose(tx.grad.numpy(), [[0, 1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0, 0]])


def test_argmax_argmin():
    a = np.array([[[1, 9, 2], [9, 0, 4]], [[3, 3, 8], [-1, 5, 5]]], np.float32)
    x = jitgrad.tensor(a)
    assert x.argmax().item() == np.argmax(a) and x.argmin().item() == np.argmin(a)
    assert x.argmax().shape == () and x.argmax().dtype == jitgrad.int64
    for dim in (0, 1, 2, -1):
        np.testing.assert_array_equal(x.argmax(dim).numpy(), np.argmax(a, dim))
        np.testing.assert_array_equal(jitgrad.argmin(x, dim).numpy(), np.argmin(a, dim))
    assert x.argmax(1, keepdim=True).shape == (2, 1, 3)
    np.testing.assert_array_equal(x.transpose(0, 2).argmax(0).numpy(), np.argmax(a, 2).T)
    assert x.argmax(keepdim=True).shape == (1, 1, 1)
    ints = jitgrad.tensor([[3, 7, 7], [1, 0, 0]])
    np.testing.assert_array_equal(ints.argmax(1).numpy(), [1, 0])
    np.testing.assert_array_equal(ints.argmin(1).numpy(), [0, 1])
    if torch is not None:
        assert x.argmax(keepdim=True).shape == torch.tensor(a).argmax(keepdim=True).shape


@pytest.mark.parametrize("dim", [None, 1, (0, 2)])
def test_var_std(dim):
    ax = _np_axis(dim)
    check_op(lambda m, x: x.var(dim), lambda x: np.var(x, axis=ax, ddof=1), [(2, 3, 4)])
    check_op(lambda m, x: x.std(dim, correction=0, keepdim=True),
             lambda x: np.std(x, axis=ax, keepdims=True), [(2, 3, 4)])
    check_op(lambda m, x: m.var(x, dim, unbiased=False), lambda x: np.var(x, axis=ax),
             [(2, 3, 4)])
    check_op(lambda m, x: m.std(x, dim, correction=2), lambda x: np.std(x, axis=ax, ddof=2),
             [(2, 3, 4)])


def test_var_legacy_positional_unbiased():
    a = np.arange(6.0).reshape(2, 3)
    x = jitgrad.tensor(a)
    np.testing.assert_allclose(x.var(1, False).numpy(), np.var(a, 1))
    np.testing.assert_allclose(x.var(1, True).numpy(), np.var(a, 1, ddof=1))
    np.testing.assert_allclose(x.std(0, True).numpy(), np.std(a, 0, ddof=1))
    np.testing.assert_allclose(x.var(False).numpy(), np.var(a))
    np.testing.assert_allclose(x.std(1, False, True).numpy(), np.std(a, 1, keepdims=True))
    np.testing.assert_allclose(x.var(1, correction=0, keepdim=True).numpy(),
                               np.var(a, 1, keepdims=True))


def np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@pytest.mark.parametrize("dim", [1, -1, (0, 2)])
def test_logsumexp(dim):
    check_op(lambda m, x: x.logsumexp(dim), lambda x: np_logsumexp(x, _np_axis(dim)), [(2, 3, 4)])
    check_op(lambda m, x: m.logsumexp(x, dim, keepdim=True),
             lambda x: np_logsumexp(x, _np_axis(dim), True), [(2, 3, 4)])


def test_logsumexp_large_and_inf():
    big = jitgrad.tensor([[1000.0, 1000.0], [-1000.0, 88.0]], requires_grad=True)
    out = big.logsumexp(1)
    np.testing.assert_allclose(out.detach().numpy(), [1000 + math.log(2), 88.0], rtol=1e-6)
    out.sum().backward()
    # NOTE: exp(x - result) in float32 near 1000 is off by an ulp of 1000; torch gives 0.4999855 too
    np.testing.assert_allclose(big.grad.numpy(), [[0.5, 0.5], [0.0, 1.0]], atol=5e-5)
    x = jitgrad.tensor([[-INF, -INF], [-INF, 0.0], [INF, 1.0]])
    np.testing.assert_array_equal(x.logsumexp(1).numpy(), [-INF, 0.0, INF])
    if torch is not None:
        tx = torch.tensor([[-INF, -INF], [-INF, 0.0], [INF, 1.0]])
        np.testing.assert_array_equal(x.logsumexp(1).numpy(), tx.logsumexp(1).numpy())
    g = jitgrad.tensor([[-INF, 0.0, 0.0]], requires_grad=True)
    g.logsumexp(1).sum().backward()
    np.testing.assert_allclose(g.grad.numpy(), [[0.0, 0.5, 0.5]])


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_log_softmax(dim):
    check_op(lambda m, x: x.softmax(dim), lambda x: np_softmax(x, dim), [(2, 3, 4)])
    check_op(lambda m, x: m.log_softmax(x, dim), lambda x: np.log(np_softmax(x, dim)),
             [(2, 3, 4)])


def test_softmax_stable_noncontiguous_and_0d():
    x = jitgrad.tensor([[1000.0, 0.0, -1000.0], [-INF, 0.0, 0.0]])
    np.testing.assert_allclose(x.softmax(1).numpy(), [[1, 0, 0], [0, 0.5, 0.5]], atol=1e-7)
    np.testing.assert_allclose(x.log_softmax(1).numpy()[0], [0, -1000, -2000], rtol=1e-6)
    check_op(lambda m, x: x.t().softmax(-1), lambda x: np_softmax(x.T, -1), [(3, 4)])
    check_op(lambda m, x: x.softmax(0), lambda x: np.ones_like(x), [()])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("inner", [1, 3])
def test_max_min_long_rows_first_nan_then_first_extreme(dtype, inner):
    # rows longer than the kernel's 256-element search blocks, ties, NaNs and infinities on
    # both sides of block edges; numpy's argmax/argmin find the first extreme, and a NaN wins
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (40, 700, inner)).astype(dtype)
    if dtype != np.int64:
        x[rng.random(x.shape) < 0.0005] = np.nan
        x[rng.random(x.shape) < 0.001] = np.inf
        x[rng.random(x.shape) < 0.001] = -np.inf
        x[5, [255, 256, 600], 0] = np.nan
    t = jitgrad.tensor(x)
    for largest, name in ((True, "max"), (False, "min")):
        values, indices = getattr(t, name)(1)
        nan_rows = np.isnan(x).any(1) if dtype != np.int64 else np.zeros((40, inner), bool)
        want = np.where(nan_rows, np.argmax(np.isnan(x), 1) if dtype != np.int64 else 0,
                        (np.argmax if largest else np.argmin)(np.where(np.isnan(x), 0, x)
                                                              if dtype != np.int64 else x, 1))
        np.testing.assert_array_equal(indices.numpy(), want)
        np.testing.assert_array_equal(values.numpy(), np.take_along_axis(x, want[:, None], 1)[:, 0])
        np.testing.assert_array_equal(getattr(t, "a" + name)(1).numpy(), values.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_special_values_and_long_slices(dtype):
    # an infinite max shifts by 0 (so +inf -> inf, all -inf -> -inf), a NaN gives NaN, an
    # empty slice -inf; long rows and a strided dim against float64 numpy
    nan = float("nan")
    x = jitgrad.tensor(np.array([[1, 2, 3], [-INF, -INF, -INF], [INF, 1, 2], [nan, 1, 2],
                                 [1000, 1000, 0], [-INF, 0, 1]], dtype))
    want = [np.log(np.exp([1, 2, 3]).sum()), -INF, INF, nan, 1000 + np.log(2), np.log(1 + np.e)]
    np.testing.assert_allclose(x.logsumexp(1).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(x.t().logsumexp(0).numpy(), want, rtol=1e-6)
    assert x[:, :0].logsumexp(1).tolist() == [-INF] * 6
    a = np.random.default_rng(5).normal(0, 5, (3, 1030, 4)).astype(dtype)
    a64 = a.astype(np.float64)
    for dim in (1, (0, 1), 2):
        m = a64.max(dim, keepdims=True)
        expected = np.squeeze(m + np.log(np.exp(a64 - m).sum(dim, keepdims=True)), dim)
        np.testing.assert_allclose(jitgrad.tensor(a).logsumexp(dim).numpy(), expected,
                                   rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_softmax_special_values():
    # a NaN anywhere in a slice, an all -inf slice and a +inf make the slice NaN, as in PyTorch
    nan = float("nan")
    x = jitgrad.tensor([[1.0, nan, 2.0], [-INF, -INF, -INF], [INF, 1.0, 2.0], [-INF, 0.0, 1.0]])
    e = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    expected = np.array([[nan] * 3, [nan] * 3, [nan] * 3, [0.0, e[0], e[1]]])
    for y in (x.softmax(1), x.t().contiguous().softmax(0).t()):
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x.log_softmax(1).numpy()[3], [-INF, *np.log(e)], rtol=1e-6)
    assert np.isnan(x.log_softmax(1).numpy()[:3]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, dim", [((7, 1003), -1), ((1003, 7), 0), ((3, 517, 5), 1)])
def test_softmax_long_slices(shape, dim, dtype):
    # long rows take the vectorized passes (and their loop tails), strided slices the running
    # max/total per position; float64 numpy is the reference
    a = np.random.default_rng(1).normal(0, 4, shape)
    x = jitgrad.tensor(a.astype(dtype))
    want = np_softmax(a.astype(dtype).astype(np.float64), dim)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(x.softmax(dim).numpy(), want, rtol=tol, atol=1e-30)
    np.testing.assert_allclose(x.log_softmax(dim).numpy(), np.log(want), rtol=tol, atol=tol)
    # the backward kernels against the formulas in float64
    g = np.random.default_rng(2).normal(size=shape).astype(dtype)
    g64 = g.astype(np.float64)
    for name, expected in (("softmax", want * (g64 - (g64 * want).sum(dim, keepdims=True))),
                           ("log_softmax", g64 - want * g64.sum(dim, keepdims=True))):
        leaf = jitgrad.tensor(a.astype(dtype), requires_grad=True)
        getattr(leaf, name)(dim).backward(jitgrad.tensor(g))
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=10 * tol,
                                   atol=10 * tol * np.abs(expected).max())


def test_softmax_double_backward():
    if torch is None:
        pytest.skip("torch not installed")
    a = np.random.default_rng(0).normal(size=(2, 3))
    for name in ("softmax", "log_softmax"):
        grads = []
        for m in (jitgrad, torch):
            x = m.tensor(a, requires_grad=True)
            getattr(x, name)(1)[:, 0].sum().backward(create_graph=True)
            g, x.grad = x.grad, None
            (g * g).sum().backward()
            grads.append(x.grad.detach().numpy())
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)
        assert np.abs(grads[0]).max() > 1e-3


def test_all_any():
    a = np.array([[1.0, 0.0, 2.0], [3.0, 4.0, 5.0]])
    x = jitgrad.tensor(a)
    assert x.all().dtype == jitgrad.bool and x.all().item() is False
    assert x.any().item() is True
    np.testing.assert_array_equal(x.all(1).numpy(), [False, True])
    np.testing.assert_array_equal(x.any(0).numpy(), [True, True, True])
    np.testing.assert_array_equal(jitgrad.all(x, 1, keepdim=True).numpy(), [[False], [True]])
    np.testing.assert_array_equal((x > 0.5).all(dim=-1).numpy(), [False, True])
    z = jitgrad.zeros(2, 3)
    assert not z.any().item() and not z.bool().all().item()
    ints = jitgrad.tensor([[0, 0], [0, 7]])
    np.testing.assert_array_equal(ints.any(1).numpy(), [False, True])
    empty = jitgrad.zeros(0, 3)
    assert empty.all().item() is True and empty.any().item() is False
    np.testing.assert_array_equal(empty.all(0).numpy(), [True, True, True])


@pytest.mark.parametrize("p", [2, 1, INF])
def test_norm(p):
    ref = {2: lambda x, ax=None, kd=False: np.sqrt(np.sum(x * x, axis=ax, keepdims=kd)),
           1: lambda x, ax=None, kd=False: np.sum(np.abs(x), axis=ax, keepdims=kd),
           INF: lambda x, ax=None, kd=False: np.max(np.abs(x), axis=ax, keepdims=kd)}[p]
    check_op(lambda m, x: x.norm(p), ref, [(3, 4)])
    check_op(lambda m, x: m.norm(x, p, dim=1), lambda x: ref(x, 1), [(3, 4)])
    check_op(lambda m, x: x.norm(p, dim=(0, 2), keepdim=True), lambda x: ref(x, (0, 2), True),
             [(2, 3, 4)])


def test_norm_default_is_2():
    a = np.array([[3.0, 4.0], [6.0, 8.0]])
    x = jitgrad.tensor(a)
    assert x.norm().item() == pytest.approx(np.sqrt(125))
    np.testing.assert_allclose(x.norm(dim=1).numpy(), [5, 10])


def test_sum_to_shape():
    g = jitgrad.tensor(np.arange(24.0).reshape(2, 3, 4))
    out = jitgrad.sum_to_shape(g, (3, 1))
    np.testing.assert_array_equal(out.numpy(), np.arange(24.0).reshape(2, 3, 4).sum(
        (0, 2)).reshape(3, 1))


def test_empty_dim_list_reduces_everything():
    a = np.arange(24.0).reshape(2, 3, 4)
    x = jitgrad.tensor(a, requires_grad=True)
    for dim in ((), []):
        assert x.sum(dim).item() == a.sum()
        assert x.mean(dim).item() == a.mean()
        assert x.var(dim).item() == pytest.approx(a.var(ddof=1))
        assert x.norm(dim=dim).item() == pytest.approx(np.sqrt((a * a).sum()))
        assert x.amax(dim).item() == 23.0
    x.sum(()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones_like(a))
    assert x.sum(()).grad_fn.name() == "SumBackward0"


def test_empty_inputs():
    x = jitgrad.zeros(0, 3)
    assert x.sum().item() == 0 and x.prod().item() == 1
    np.testing.assert_array_equal(x.sum(0).numpy(), [0, 0, 0])
    assert x.sum(1).shape == (0,)
    assert math.isnan(x.mean().item())
    np.testing.assert_array_equal(x.logsumexp(0).numpy(), [-INF] * 3)
    assert x.logsumexp(1).shape == (0,) and x.softmax(0).shape == (0, 3)
    with pytest.raises(RuntimeError, match="numel\\(\\) == 0"):
        x.max()
    with pytest.raises(RuntimeError, match="numel\\(\\) == 0"):
        x.amax()
    with pytest.raises(IndexError, match="numel\\(\\) == 0"):
        x.argmax()
    with pytest.raises(IndexError, match="dim 0 to have non-zero size"):
        x.max(0)
    assert x.max(1).values.shape == (0,)


@pytest.mark.parametrize("shape, dim", [((3, 0), 0), ((2, 0, 3), 0), ((3, 0), (0, 1))])
def test_reductions_keeping_an_empty_dim(shape, dim):
    """Reducing a non-empty dim next to an empty one gives an empty result, as in PyTorch."""
    x = jitgrad.zeros(*shape, requires_grad=True)
    expected = np.zeros(shape).sum(dim).shape
    for result in (x.sum(dim), x.mean(dim), x.sum(dim, dtype=jitgrad.float64)):
        assert result.shape == expected
    if isinstance(dim, int):
        assert x.amax(dim).shape == x.argmax(dim).shape == x.max(dim).values.shape == expected
    x.sum(dim).sum().backward()
    assert x.grad.shape == shape


def test_norm_gradient_at_zero_vector():
    a = [[0.0, 0.0, 0.0], [1.0, -2.0, 0.0]]
    for p in (2, 3, 1.5):
        x = jitgrad.tensor(a, requires_grad=True)
        x.norm(p, dim=1).sum().backward()
        assert np.isfinite(x.grad.numpy()).all()
        np.testing.assert_array_equal(x.grad.numpy()[0], [0, 0, 0])
        if torch is not None:
            tx = torch.tensor(a, requires_grad=True)
            tx.norm(p, dim=1).sum().backward()
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5)
    x = jitgrad.zeros(3, requires_grad=True)
    x.norm().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0])


def test_general_p_norm_and_double_backward():
    check_op(lambda m, x: x.norm(3, dim=0), lambda x: np.sum(np.abs(x) ** 3, 0) ** (1 / 3),
             [(3, 4)])
    x = jitgrad.tensor([[1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    x.norm(dim=1).sum().backward(create_graph=True)
    g, x.grad = x.grad, None
    g.sum().backward()
    if torch is not None:
        tx = torch.tensor([[1.0, 2.0], [3.0, -4.0]], requires_grad=True)
        tx.norm(dim=1).sum().backward(create_graph=True)
        tg, tx.grad = tx.grad, None
        tg.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("expr", ["x.var()", "x.std(0)", "x.norm()", "x.softmax(0)",
                                  "x.log_softmax(0)", "x.mean()"])
def test_integer_inputs_rejected_like_torch(expr):
    errors = []
    for m in filter(None, (jitgrad, torch)):
        x = m.tensor([1, 2, 3])  # noqa: F841 - read by eval
        with pytest.raises((RuntimeError, NotImplementedError)) as info:
            eval(expr)
        errors.append(info.type)
    assert len(set(errors)) == 1
    np.testing.assert_allclose(jitgrad.tensor([1, 2, 3]).softmax(0, dtype=jitgrad.float64).numpy(),
                               np_softmax(np.array([1.0, 2, 3]), 0))


def test_dtype_argument_keeps_gradient_dtype():
    for fn in (lambda x: x.sum(dtype=jitgrad.float64), lambda x: x.mean(dtype=jitgrad.float64),
               lambda x: x.prod(dtype=jitgrad.float64)):
        x = jitgrad.tensor([1.0, 2.0, 4.0], requires_grad=True)
        out = fn(x)
        assert out.dtype == jitgrad.float64
        out.backward()
        assert x.grad.dtype == jitgrad.float32


def test_prod_double_backward():
    x = jitgrad.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    x.prod(1).sum().backward(create_graph=True)
    g, x.grad = x.grad, None
    g.sum().backward()
    # d/dx_i sum_j prod_{k != j} x_k = sum_{j != i} prod_{k != i, j} x_k
    np.testing.assert_allclose(x.grad.numpy(), [[5, 4, 3], [11, 10, 9]], rtol=1e-6)


@pytest.mark.parametrize("reduce", [lambda t: t.prod(), lambda t: t.prod(1, keepdim=True),
                                    lambda t: t.prod(-2)], ids=["all", "dim1_keepdim", "dim-2"])
def test_prod_higher_order_gradients_with_zeros(reduce):
    # one, two and no zeros per row: the create_graph gradient must be exact and differentiable
    x = jitgrad.tensor([[0.0, 2.0, 3.0], [0.0, 0.0, 5.0], [1.5, -2.0, 0.5]], dtype=jitgrad.float64,
                       requires_grad=True)
    assert jitgrad.autograd.gradgradcheck(reduce, (x,))
    (g,) = jitgrad.autograd.grad(reduce(x).sum(), x, create_graph=True)
    (h,) = jitgrad.autograd.grad(g.sum(), x, create_graph=True)
    (h3,) = jitgrad.autograd.grad(h.sum(), x)
    if reduce(x).numel() == 1:
        # third derivatives of the whole product with its three zeros: nonzero only at the
        # zeros, 2 (ordered pairs of the other two) x the product of the nonzeros (-45)
        expected = np.where(x.detach().numpy() == 0, -90.0, 0.0)
        np.testing.assert_allclose(h3.numpy(), expected, atol=1e-12)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    (gt,) = torch.autograd.grad(reduce(xt).sum(), xt, create_graph=True)
    (ht,) = torch.autograd.grad(gt.sum(), xt, create_graph=True)
    (h3t,) = torch.autograd.grad(ht.sum(), xt)
    for ours, theirs in ((g, gt), (h, ht), (h3, h3t)):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-12)


def test_prod_of_a_scalar_double_backward():
    s = jitgrad.tensor(0.0, dtype=jitgrad.float64, requires_grad=True)
    assert jitgrad.autograd.gradgradcheck(lambda t: t.prod(0), (s,))
    assert jitgrad.autograd.gradgradcheck(lambda t: t.prod(), (s,))


def test_prod_backward_with_an_infinite_first_element():
    torch = pytest.importorskip("torch")
    values = [[float("inf"), 2.0, 3.0], [1.0, 0.0, 4.0]]
    x = jitgrad.tensor(values, requires_grad=True)
    x.prod(1).sum().backward()
    ref = torch.tensor(values, requires_grad=True)
    ref.prod(1).sum().backward()
    assert x.grad.tolist() == ref.grad.tolist()
