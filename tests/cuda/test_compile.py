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
    """Values and gradients of sum(value * weight) (weight: the output's shape) of ``cfn``
    against ``fn``: the trace, then replays of the fused plan."""
    out = fn(*inputs)
    ref = np.linspace(-1, 1, max(1, out.numel())).reshape(tuple(out.shape))
    weight = jitgrad.tensor(ref).to(inputs[0].dtype).cuda()
    want, want_grads = _run(fn, inputs, weight)
    tol = TOL[want.dtype.type]
    for _ in range(calls):
        got, grads = _run(cfn, inputs, weight)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)
        for g, w in zip(grads, want_grads):
            if w is None:
                assert g is None
            else:
                assert g.shape == w.shape
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


# --- broadcast operands -------------------------------------------------------------------------

def _bcast_inputs(bshape, shape=(2, 3), dtype=np.float32, b_grad=True, seed=0):
    x, w = _inputs(shape, dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    b = jitgrad.tensor(rng.uniform(-1, 1, bshape).astype(dtype)).cuda().requires_grad_(b_grad)
    return [x, w, b]


@pytest.mark.parametrize("end", ["sum", "mean", "none"])
@pytest.mark.parametrize("bshape,pattern", [((3,), "r"), ((2, 1), "c"), ((), "1"), ((1,), "1")])
def test_broadcast_bias_rows_columns_and_single_elements(bshape, pattern, end):
    def fn(x, w, b):
        v = ((x * w + b).tanh() * x).sigmoid()
        return v.sum() if end == "sum" else v.mean() if end == "mean" else v

    cfn = compile(fn)
    _check_same(fn, cfn, _bcast_inputs(bshape))
    (region,) = _regions(cfn)
    assert region.cuda and region.patterns == ("f", "f", pattern)


def test_broadcast_several_inputs_middle_blocks_and_expanded_copies():
    def fn(x, col, row, s):  # every op has x's shape (2, 2, 3)
        return (((x * col + row) * s).exp() * col - row).relu().mean()

    rng = np.random.default_rng(4)
    shapes = [(2, 2, 3), (2, 1), (3,), ()]
    inputs = [jitgrad.tensor(rng.uniform(-1, 1, s).astype(np.float64)).cuda().requires_grad_()
              for s in shapes]
    cfn = compile(fn)
    _check_same(fn, cfn, inputs)
    assert _regions(cfn)[0].patterns == ("f", "b", "r", "1")
    gn = compile(lambda x, b: ((x * b + 1).tanh() * x).sum())  # (2, 1, 3): expanded by a copy
    _check_same(lambda x, b: ((x * b + 1).tanh() * x).sum(), gn,
                      [inputs[0], jitgrad.tensor(rng.uniform(-1, 1, (2, 1, 3))).cuda()
                       .requires_grad_()])
    assert _regions(gn)[0].patterns == ("f", "x")


def test_broadcast_partial_requires_grad_retain_graph_and_accumulation():
    fn = _chain("none")

    def bfn(x, w, b):
        return fn(x, w) * b + b

    cfn = compile(bfn)
    x, w, b = _bcast_inputs((2, 1), b_grad=True)
    w.requires_grad_(False)
    _check_same(bfn, cfn, [x, w, b])
    want = None
    for f in (bfn, cfn, cfn):
        x.grad = b.grad = None
        loss = (f(x, w, b) ** 2).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        got = [_host(x.grad), _host(b.grad)]
        want = want or got
        for g, v in zip(got, want):
            np.testing.assert_allclose(g, v, **TOL[np.float32])
    loss_fn = compile(lambda x, b: (x * b).tanh().mean())
    x.grad = b.grad = None
    for _ in range(3):  # trace + 2 replays into the same .grad
        loss_fn(x, b).backward()
    once = jitgrad.autograd.grad((x * b).tanh().mean(), (x, b))
    for t, g in zip((x, b), once):
        assert t.grad.shape == g.shape and t.grad.device.type == "cuda"
        np.testing.assert_allclose(_host(t.grad), 3 * _host(g), **TOL[np.float32])
    x.grad = b.grad = None
    out = loss_fn(x, b)
    out.backward(retain_graph=True)  # the gradients the forward kernel computed
    out.backward()  # the backward kernel (a sum's g read on the device)
    for t, g in zip((x, b), once):
        np.testing.assert_allclose(_host(t.grad), 2 * _host(g), **TOL[np.float32])


@pytest.mark.parametrize("bshape", [(3,), (2, 1), ()])
def test_broadcast_regions_make_no_host_copies(bshape):
    cfn = compile(lambda x, w, b: ((x * w + b).tanh() * x).sigmoid().mean())
    x, w, b = _bcast_inputs(bshape)
    cfn(x, w, b).backward()  # the trace (eager)
    to_host, to_device = runtime.transfers.to_host, runtime.transfers.to_device
    for _ in range(2):
        x.grad = w.grad = b.grad = None
        cfn(x, w, b).backward()
    assert (runtime.transfers.to_host, runtime.transfers.to_device) == (to_host, to_device)
    assert b.grad.device.type == "cuda" and b.grad.shape == b.shape


# --- partial reductions -------------------------------------------------------------------------

_PARTIAL = [  # (value shape, bias shape, reduction, the region's groups)
    ((2, 3), (3,), lambda v: v.sum(1), "kr"),
    ((2, 3), (2, 1), lambda v: v.mean(0, keepdim=True), "rk"),
    ((2, 2, 3), (3,), lambda v: v.sum((0, -1)), "rkr"),
    ((2, 2, 2), (), lambda v: v.mean(1), "krk"),
]


@pytest.mark.parametrize("shape,bshape,reduction,groups", _PARTIAL)
def test_partial_reductions_end_the_region(shape, bshape, reduction, groups):
    def fn(x, w, b):
        return reduction(((x * w + b).tanh() * x).sigmoid())

    cfn = compile(fn)
    _check_same(fn, cfn, _bcast_inputs(bshape, shape=shape), calls=2)
    (region,) = _regions(cfn)
    assert region.cuda and region.groups == groups
    text = cfn.explain()
    assert "@cuda.jit" in text and "njit" not in text and "range(nred_)" in text


def test_partial_reduction_float64_retain_graph_accumulation_and_no_host_copies():
    cfn = compile(lambda x, w: ((x * 2 + 1).tanh() * w).mean(-1, keepdim=True))
    x, w = _inputs(dtype=np.float64)
    want = jitgrad.autograd.grad((((x * 2 + 1).tanh() * w).mean(-1, keepdim=True) ** 2).sum(),
                                 (x, w))
    (cfn(x, w) ** 2).sum().backward()  # the trace (eager)
    to_host, to_device = runtime.transfers.to_host, runtime.transfers.to_device
    x.grad = w.grad = None
    loss = (cfn(x, w) ** 2).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    (cfn(x, w) ** 2).sum().backward()  # accumulated: three times the gradient
    assert (runtime.transfers.to_host, runtime.transfers.to_device) == (to_host, to_device)
    for t, g in zip((x, w), want):
        assert t.grad.device.type == "cuda" and t.grad.shape == g.shape
        np.testing.assert_allclose(_host(t.grad), 3 * _host(g), **TOL[np.float64])


def test_partial_reduction_create_graph_falls_back_to_eager_formulas():
    cfn = compile(lambda x, w: ((x * w).tanh() * x).sum(0))
    x, w = _inputs(dtype=np.float64)
    results = []
    for f in (lambda x, w: ((x * w).tanh() * x).sum(0), cfn, cfn):
        x.grad = w.grad = None
        (gx,) = jitgrad.autograd.grad((f(x, w) ** 2).sum(), [x], create_graph=True)
        (gx * gx).sum().backward()
        results.append((_host(gx), _host(x.grad), _host(w.grad)))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_allclose(a, b, **TOL[np.float64])
