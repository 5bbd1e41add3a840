"""Fused backward: a repeated elementwise graph's backward as one kernel, against eager."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgrad
from jitgrad.ops import fused_backward

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture
def fuse_always():
    """Fuse every eligible graph on first sight; restore the default afterwards."""
    before = fused_backward.threshold()
    fused_backward.set_threshold(1)
    yield
    fused_backward.set_threshold(before)


def _eager():
    return _Threshold(0)


class _Threshold:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = fused_backward.threshold()
        fused_backward.set_threshold(self.n)

    def __exit__(self, *exc):
        fused_backward.set_threshold(self.before)


def _grads(program, arrays, **backward):
    leaves = [jitgrad.tensor(a, requires_grad=True) for a in arrays]
    program(*leaves).backward(**backward)
    return [None if t.grad is None else t.grad.numpy() for t in leaves]


def _compare(program, arrays, **backward):
    """Gradients with fusion on equal eager ones; returns how many passes were fused."""
    with _eager():
        expected = _grads(program, arrays, **backward)
    before = fused_backward.stats()["fused"]
    with _Threshold(1):
        got = _grads(program, arrays, **backward)
    tol = TOL[arrays[0].dtype.type]
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, **tol)
    return fused_backward.stats()["fused"] - before


def _arrays(dtype, n=3, shape=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, shape).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tutorial_step_fuses_and_matches(dtype):
    def program(x, w, b):
        y = x + 2
        return (y * y * 3).mean()

    assert _compare(program, _arrays(dtype)) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chain_with_shared_inputs_and_scalars(dtype):
    def program(x, w, b):
        y = x
        for _ in range(4):
            y = (y * 0.5 + w).tanh() * y - y.exp() / (w * w + 1) + 2 ** b
        return (y.sigmoid() - 3 * x / (1 + b * b)).sum()

    assert _compare(program, _arrays(dtype)) == 1


_STEPS = {
    "add": lambda v, x, y: v + y, "sub": lambda v, x, y: x - v, "mul": lambda v, x, y: v * x,
    "div": lambda v, x, y: v / (y * y + 1), "exp": lambda v, x, y: v.tanh().exp(),
    "tanh": lambda v, x, y: v.tanh(), "sigmoid": lambda v, x, y: v.sigmoid(),
    "relu": lambda v, x, y: v.relu(), "neg": lambda v, x, y: -v, "abs": lambda v, x, y: v.abs(),
    "add_s": lambda v, x, y: v + 0.5, "rsub_s": lambda v, x, y: 1 - v,
    "mul_i": lambda v, x, y: 2 * v, "div_s": lambda v, x, y: v / 3,
    "square": lambda v, x, y: v * v, "log": lambda v, x, y: (v * v + 1).log(),
    "pow": lambda v, x, y: (v.sigmoid() + 0.5) ** 2, "max": lambda v, x, y: v.maximum(y),
    "where": lambda v, x, y: jitgrad.where(x > 0, v, y), "clamp": lambda v, x, y: v.clamp(-1, 1),
    "sin": lambda v, x, y: v.sin() * v.cos(), "sqrt": lambda v, x, y: (v * v + 1).sqrt(),
}
_ENDS = ["sum", "mean", "none"]


@settings(max_examples=12, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(_STEPS)), min_size=1, max_size=6),
       end=st.sampled_from(_ENDS), dtype=st.sampled_from([np.float32, np.float64]))
def test_random_programs_match_eager(steps, end, dtype):
    def program(x, y):
        v = x
        for s in steps:
            v = _STEPS[s](v, x, y)
        return v.sum() if end == "sum" else v.mean() if end == "mean" else v

    arrays = _arrays(dtype, n=2, shape=(3, 2))
    backward = {"gradient": jitgrad.tensor(_arrays(dtype, 1, (3, 2), 1)[0])} if end == "none" \
        else {}
    _compare(program, arrays, **backward)


def test_float64_gradient_matches_finite_differences(fuse_always):
    x0 = np.array([0.3, -0.7, 1.2, 0.05])

    def f(x):
        return ((x * 0.5 + 1).tanh() * x).sigmoid().sum()

    x = jitgrad.tensor(x0, requires_grad=True)
    before = fused_backward.stats()["fused"]
    f(x).backward()
    assert fused_backward.stats()["fused"] == before + 1
    eps = 1e-6
    numeric = [(f(jitgrad.tensor(x0 + eps * e)).item() - f(jitgrad.tensor(x0 - eps * e)).item())
               / (2 * eps) for e in np.eye(4)]
    np.testing.assert_allclose(x.grad.numpy(), numeric, rtol=1e-7)


def test_matches_torch(fuse_always):
    torch = pytest.importorskip("torch")
    a, b = _arrays(np.float32, 2)

    def program(lib, x, w):
        y = (x * w + 0.5).tanh() * x
        return (y.sigmoid() + y * y).mean()

    xs = [jitgrad.tensor(a, requires_grad=True), jitgrad.tensor(b, requires_grad=True)]
    ts = [torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)]
    program(jitgrad, *xs).backward()
    program(torch, *ts).backward()
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_gradients_accumulate_into_existing_grad(fuse_always):
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    for _ in range(3):
        (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 12.0])
    assert fused_backward.stats()["fused"] >= 3


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_accumulating_records_no_graph_and_keeps_the_grad_mode(fuse_always, grad_enabled):
    """The fused pass runs in the caller's grad mode: adding to an existing .grad must still be
    in place and record nothing, and the mode must be the caller's afterwards."""
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    fused = fused_backward.stats()["fused"]
    losses = (x * 3).sum(), (x * x).sum()
    with jitgrad.set_grad_enabled(grad_enabled):
        losses[0].backward()
        first = x.grad
        losses[1].backward()
        assert x.grad is first  # added in place, as a backward without create_graph does
        assert jitgrad.is_grad_enabled() is grad_enabled
    assert fused_backward.stats()["fused"] == fused + 2
    assert x.grad.grad_fn is None and not x.grad.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0])


def test_retain_graph_and_freed_graph(fuse_always):
    x = jitgrad.tensor([1.0, -2.0], requires_grad=True)
    s = (x.exp() * x).sum()
    s.backward(retain_graph=True)
    s.backward()
    expected = 2 * (np.exp([1.0, -2.0]) * (1 + np.array([1.0, -2.0])))
    np.testing.assert_allclose(x.grad.numpy(), expected)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        s.backward()


def test_in_place_change_of_a_saved_value_raises(fuse_always):
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = (y * y).sum()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()
    assert x.grad is None


def test_hooks_and_retained_grads_run_eagerly(fuse_always):
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    before = fused_backward.stats()["fused"]
    (y * y).sum().backward()
    assert fused_backward.stats()["fused"] == before
    np.testing.assert_allclose(seen[0], [6.0, 12.0])
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [6.0, 12.0])
    assert fused_backward.stats()["fused"] == before


def test_graphs_it_cannot_fuse_run_eagerly(fuse_always):
    x = jitgrad.tensor(np.ones((2, 3)), requires_grad=True)
    b = jitgrad.tensor(np.ones(3), requires_grad=True)
    before = fused_backward.stats()["fused"]
    (x * b).sum().backward()  # broadcasting
    (x @ x.t()).sum().backward()  # matmul
    x.t().exp().sum().backward()  # a view
    (x.float() * 2).sum().backward()  # a cast
    assert fused_backward.stats()["fused"] == before
    np.testing.assert_allclose(b.grad.numpy(), [2.0, 2.0, 2.0])


def test_compiles_only_once_a_graph_is_hot():
    x = jitgrad.tensor([0.25, 0.5], requires_grad=True)
    with _Threshold(3):
        before = fused_backward.stats()
        for _ in range(2):
            (x.sin() * 7.25).sum().backward()
        assert fused_backward.stats() == before
        for _ in range(2):
            (x.sin() * 7.25).sum().backward()
    after = fused_backward.stats()
    assert after["fused"] == before["fused"] + 2
    assert after["compiled"] <= before["compiled"] + 1
    np.testing.assert_allclose(x.grad.numpy(), 4 * 7.25 * np.cos([0.25, 0.5]), rtol=1e-6)


def test_a_kernel_that_fails_falls_back_to_eager_with_a_warning(fuse_always, monkeypatch):
    def broken(*args):
        raise TypeError("no kernel")

    monkeypatch.setattr(fused_backward, "_hot_kernel", lambda key: broken)
    x = jitgrad.tensor([0.5, 1.5], requires_grad=True)
    with pytest.warns(RuntimeWarning, match="fused backward disabled"):
        (x.exp() * 3.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.5 * np.exp([0.5, 1.5]))


def test_two_pows_in_one_kernel_compile_without_numba_warnings(fuse_always):
    import warnings

    x = jitgrad.tensor(np.linspace(0.1, 2, 8), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numba's inlining check would warn on the compile
        (((x.sigmoid() + 0.5) ** 2.25) ** 1.5).sum().backward()
    s = 1 / (1 + np.exp(-np.linspace(0.1, 2, 8)))
    expected = 1.5 * 2.25 * (s + 0.5) ** (2.25 * 1.5 - 1) * s * (1 - s)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("exponent", [2.0, 0.5, -1.0, 3.0, 2.5])
def test_pow_by_a_scalar_matches_eager_bit_for_bit(exponent):
    """Special-cased exponents run eager's formulas (0.5: sqrt, so (-0)**-0.5 is -inf)."""
    x0 = np.array([-0.0, 0.0, 0.25, 1.5, 4.0, -2.0])

    def program(x):
        return (x ** exponent * 1.5).sum()

    with _eager():
        expected = _grads(program, [x0])[0]
    with _Threshold(1):
        got = _grads(program, [x0])[0]
    np.testing.assert_array_equal(got, expected)


def test_one_thread_runs_the_serial_kernel_on_a_big_graph(fuse_always):
    """Splitting off (one thread; a forked child, where OpenMP must not start): a graph over
    MIN_SPLIT elements or more runs the serial fused kernel, never the split one."""
    from jitgrad.backends.cpu import threads

    data = np.random.default_rng(0).uniform(-1, 1, threads.MIN_SPLIT).astype(np.float32)

    def backward():
        x = jitgrad.tensor(data, requires_grad=True)
        (x * x + 1).sum().backward()
        return x.grad.numpy()

    np.testing.assert_allclose(backward(), 2 * data, rtol=1e-6)  # compiles the kernel
    kernels = [k for k in fused_backward._kernels.values() if k is not None]

    split_calls = []

    def refuse(*args):  # an exception here would send the pass to the eager engine unseen
        split_calls.append(args[0])

    before = jitgrad.get_num_threads()
    saved = [k[1] for k in kernels]
    try:
        jitgrad.set_num_threads(1)
        for k in kernels:
            k[1] = refuse
        fused = fused_backward.stats()["fused"]
        np.testing.assert_allclose(backward(), 2 * data, rtol=1e-6)
        assert fused_backward.stats()["fused"] == fused + 1 and split_calls == []
    finally:
        jitgrad.set_num_threads(before)
        for k, split in zip(kernels, saved):
            k[1] = split
