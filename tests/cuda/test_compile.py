"""jitgrad.compile on CUDA: fused regions as CUDA kernels against eager jitgrad, values and grads.

Sizes stay tiny: the simulator runs every thread in Python.
"""

import numpy as np
import pytest

import jitgrad
from jitgrad.backends.cuda import runtime
from jitgrad.compile import compile

TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _host(t):
    return t.detach().cpu().numpy()


def _inputs(shape=(2, 3), dtype=np.float32, n=2, seed=0, grad=(True, True, True)):
    rng = np.random.default_rng(seed)
    return [jitgrad.tensor(rng.uniform(-1, 1, shape).astype(dtype)).cuda().requires_grad_(grad[i])
            for i in range(n)]


def _run(fn, inputs, weight=None):
    """fn's value and the gradients of sum(value * weight) (or of a 0-d value) on the host."""
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    assert out.device.type == "cuda"
    (out if out.ndim == 0 else (out * weight).sum()).backward()
    return _host(out), [None if t.grad is None else _host(t.grad) for t in inputs]


def _check_same(fn, cfn, inputs, calls=3):
    dtype = inputs[0].dtype
    ref = np.linspace(-1, 1, inputs[0].numel()).reshape(tuple(inputs[0].shape))
    weight = jitgrad.tensor(ref).to(dtype).cuda()
    want, want_grads = _run(fn, inputs, weight)
    tol = TOL[want.dtype.type]
    for _ in range(calls):  # the trace, then replays of the fused plan
        got, grads = _run(cfn, inputs, weight)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)
        for g, w in zip(grads, want_grads):
            if w is None:
                assert g is None
            else:
                np.testing.assert_allclose(g, w, **tol)
    assert not cfn.divergences and all(p is not None for p in cfn.plans.values())


def _regions(cfn):
    return [r for p in cfn.plans.values() if p is not None for r in p.regions]


def _chain(end):
    def fn(x, y):
        v = ((x * 2 + 1).tanh() * y - y / (x * x + 1)).sigmoid()
        return v.sum() if end == "sum" else v.mean() if end == "mean" else v
    return fn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("end", ["sum", "mean", "none"])
def test_chain_matches_eager(end, dtype):
    fn = _chain(end)
    cfn = compile(fn)
    _check_same(fn, cfn, _inputs(dtype=dtype))
    (region,) = _regions(cfn)
    assert region.cuda and region.reduce == (None if end == "none" else end)
    text = cfn.explain()
    assert "@cuda.jit" in text and "njit" not in text
    if end != "none":
        assert "cuda.atomic.add" in text


def test_sum_of_an_uncompiled_region_output_broadcasts_g():
    """A region without a sum whose output is summed eagerly: g arrives as a 0-d broadcast."""
    fn = compile(lambda x, y: (x * y + 1).exp())
    x, y = _inputs()
    for _ in range(3):
        x.grad = y.grad = None
        fn(x, y).sum().backward()
        want_x = np.exp(_host(x) * _host(y) + 1) * _host(y)
        np.testing.assert_allclose(_host(x.grad), want_x, **TOL[np.float32])


def test_python_scalars_int_and_float():
    def fn(x):
        return ((1 - x) * 3 + 0.5 - x / 4).relu() ** 2 * 2.5
    for end in (None, "mean"):
        g = fn if end is None else (lambda x: fn(x).mean())
        _check_same(g, compile(g), _inputs(n=1, dtype=np.float64))


def test_several_inputs_partial_requires_grad():
    def fn(x, y, z):
        return (x * y + z.tanh() * x - y).sum()
    inputs = _inputs(n=3, grad=(True, False, True))
    cfn = compile(fn)
    _check_same(fn, cfn, inputs)
    assert inputs[1].grad is None
    (region,) = _regions(cfn)
    assert region.n_arrays == 3


def test_no_grad_uses_the_forward_kernel():
    cfn = compile(lambda x: (x.exp() * 2).mean())
    (x,) = _inputs(n=1)
    want = np.mean(np.exp(_host(x)) * 2)
    with jitgrad.no_grad():
        for _ in range(3):
            out = cfn(x)
            assert out.grad_fn is None and out.device.type == "cuda"
            np.testing.assert_allclose(_host(out), want, rtol=1e-5)


@pytest.mark.parametrize("end", ["sum", "none"])
def test_retain_graph_twice(end):
    fn = _chain(end)
    cfn = compile(fn)
    x, y = _inputs()
    want = []
    for f in (fn, cfn, cfn, cfn):
        x.grad = y.grad = None
        out = f(x, y)
        loss = out if out.ndim == 0 else (out * out).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        got = [_host(x.grad), _host(y.grad)]
        if not want:
            want = got
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **TOL[np.float32])


def test_gradient_accumulation():
    fn = _chain("mean")
    cfn = compile(fn)
    x, y = _inputs()
    fn(x, y).backward()
    want = [_host(x.grad) * 4, _host(y.grad) * 4]
    x.grad = y.grad = None
    for _ in range(4):  # trace + 3 replays into the same .grad
        cfn(x, y).backward()
    np.testing.assert_allclose(_host(x.grad), want[0], **TOL[np.float32])
    np.testing.assert_allclose(_host(y.grad), want[1], **TOL[np.float32])


@pytest.mark.parametrize("end", ["sum", "none"])
def test_create_graph_falls_back_to_eager_formulas(end):
    fn = _chain(end)
    cfn = compile(fn)
    x, y = _inputs(dtype=np.float64)

    def second_order(f):
        x.grad = y.grad = None
        out = f(x, y)
        loss = out if out.ndim == 0 else (out * out).sum()
        (gx,) = jitgrad.autograd.grad(loss, [x], create_graph=True)
        assert gx.device.type == "cuda"
        (gx * gx).sum().backward()
        return _host(gx), _host(x.grad), _host(y.grad)

    want = second_order(fn)
    for _ in range(3):
        for g, w in zip(second_order(cfn), want):
            np.testing.assert_allclose(g, w, **TOL[np.float64])


def test_unsupported_ops_run_eagerly_around_regions():
    def fn(x, w, y):
        h = (x @ w).tanh() * 2 + 1  # matmul eager, the rest fused
        m = (h > 1.5).to(h.dtype)  # comparisons stay eager
        return (h * m + y[0]).exp().mean()
    rng = np.random.default_rng(1)
    x = jitgrad.tensor(rng.uniform(-1, 1, (2, 3)).astype(np.float32)).cuda().requires_grad_()
    w = jitgrad.tensor(rng.uniform(-1, 1, (3, 2)).astype(np.float32)).cuda().requires_grad_()
    y = jitgrad.tensor(rng.uniform(-1, 1, (1, 2)).astype(np.float32)).cuda().requires_grad_()
    cfn = compile(fn)
    _check_same(fn, cfn, [x, w, y])
    assert _regions(cfn)


def test_non_contiguous_inputs():
    def fn(x, y):  # (3, 2) inputs seen through transposed (2, 3) views
        return _chain("sum")(x.t(), y.t())
    cfn = compile(fn)
    _check_same(fn, cfn, _inputs(shape=(3, 2)))
    assert _regions(cfn)


def test_a_new_device_retraces():
    fn = _chain("sum")
    cfn = compile(fn)
    rng = np.random.default_rng(2)
    host = [rng.uniform(-1, 1, (2, 3)).astype(np.float32) for _ in range(2)]
    cpu = [jitgrad.tensor(h, requires_grad=True) for h in host]
    for _ in range(2):
        want = cfn(*cpu)
    assert len(cfn.plans) == 1 and not _regions(cfn)[0].cuda
    dev = [jitgrad.tensor(h).cuda().requires_grad_() for h in host]
    for _ in range(3):
        out = cfn(*dev)
        assert out.device.type == "cuda"
        np.testing.assert_allclose(_host(out), want.detach().numpy(), **TOL[np.float32])
    assert len(cfn.plans) == 2
    assert sorted(r.cuda for r in _regions(cfn)) == [False, True]
    out.backward()
    want.backward()
    np.testing.assert_allclose(_host(dev[0].grad), cpu[0].grad.numpy(), **TOL[np.float32])


@pytest.mark.parametrize("end", ["mean", "none"])
def test_compiled_forward_and_backward_make_no_host_copies(end):
    fn = _chain(end)
    cfn = compile(fn)
    x, y = _inputs()
    out = cfn(x, y)  # the trace (eager)
    loss = out if out.ndim == 0 else (out * out).sum()
    loss.backward()
    to_host, to_device = runtime.transfers.to_host, runtime.transfers.to_device
    for _ in range(2):
        x.grad = y.grad = None
        out = cfn(x, y)
        loss = out if out.ndim == 0 else (out * out).sum()
        loss.backward()
    assert (runtime.transfers.to_host, runtime.transfers.to_device) == (to_host, to_device)
    assert x.grad.device.type == "cuda" and y.grad.device.type == "cuda"
