"""jitgrad.compile: fused programs against eager jitgrad, values and gradients."""

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jitgrad
from jitgrad.compile import compile

TOL = dict(rtol=1e-4, atol=1e-5)

# each step maps (value, x, y) to a new value; the guards keep every chain finite
_STEPS = {
    "add": lambda v, x, y: v + y, "sub": lambda v, x, y: x - v, "mul": lambda v, x, y: v * x,
    "div": lambda v, x, y: v / (y * y + 1), "exp": lambda v, x, y: v.tanh().exp(),
    "tanh": lambda v, x, y: v.tanh(), "sigmoid": lambda v, x, y: v.sigmoid(),
    "relu": lambda v, x, y: v.relu(), "neg": lambda v, x, y: -v,
    "add_s": lambda v, x, y: v + 0.5, "rsub_s": lambda v, x, y: 1 - v,
    "mul_s": lambda v, x, y: 2 * v, "div_s": lambda v, x, y: v / 3,
    "square": lambda v, x, y: v * v, "log": lambda v, x, y: (v * v + 1).log(),
    "pow": lambda v, x, y: (v.sigmoid() + 0.5) ** 2,
}


# how a program ends: full and partial reductions (dims valid for 2-D and 3-D values)
_ENDS = {
    "none": lambda v: v, "sum": lambda v: v.sum(), "mean": lambda v: v.mean(),
    "sum(1)": lambda v: v.sum(1), "sum(0)": lambda v: v.sum(0),
    "mean(-1,keepdim)": lambda v: v.mean(-1, keepdim=True),
    "sum((0,-1))": lambda v: v.sum((0, -1)), "mean([-2],keepdim)": lambda v: v.mean([-2], True),
    "sum(keepdim)": lambda v: v.sum(None, keepdim=True),
}


def _program(steps, end):
    def fn(x, y):
        v = x
        for s in steps:
            v = _STEPS[s](v, x, y)
        return _ENDS[end](v)
    return fn


def _inputs(shape=(3, 5), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [jitgrad.tensor(rng.uniform(-1, 1, shape).astype(dtype), requires_grad=True)
            for _ in range(2)]


def _run(fn, inputs, weight=None):
    """fn's value and the gradients of sum(value * weight) with respect to the inputs."""
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    (out if out.ndim == 0 else (out * weight).sum()).backward()
    return out.detach().numpy(), [t.grad.numpy() if t.grad is not None else None for t in inputs]


def _check_same(fn, cfn, inputs, calls=2):
    """Values and gradients of sum(value * weight) (weight: the output's shape) of ``cfn``
    against ``fn``: the trace, then replays of the fused plan."""
    want_out = fn(*inputs)
    shape = tuple(want_out.shape)
    dtype = inputs[0].detach().numpy().dtype
    weight = jitgrad.tensor(np.linspace(-1, 1, max(1, int(np.prod(shape)))).reshape(shape)
                            .astype(dtype))
    want, want_grads = _run(fn, inputs, weight)
    for _ in range(calls):
        got, grads = _run(cfn, inputs, weight)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **TOL)
        for g, w in zip(grads, want_grads):
            if w is None:
                assert g is None
            else:
                assert g.shape == w.shape
                np.testing.assert_allclose(g, w, **TOL)
    assert not cfn.divergences


@settings(max_examples=16, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(_STEPS)), min_size=2, max_size=5),
       end=st.sampled_from(sorted(_ENDS)))
def test_random_programs_match_eager(steps, end):
    fn = _program(steps, end)
    cfn = compile(fn)
    _check_same(fn, cfn, _inputs())
    plan = next(iter(cfn.plans.values()))
    assert plan is None or plan.regions


def test_the_benchmark_chain_is_one_region_and_one_node():
    fn = _program(["mul", "add_s", "tanh", "mul", "sigmoid"], "sum")
    cfn = compile(lambda x, w: ((x * w + 0.5).tanh() * x).sigmoid().sum())
    x, w = _inputs((64,))
    _check_same(lambda x, w: ((x * w + 0.5).tanh() * x).sigmoid().sum(), cfn, [x, w])
    (plan,) = cfn.plans.values()
    assert [r.describe() for r in plan.regions] == ["mul -> add -> tanh -> mul -> sigmoid -> sum"]
    out = cfn(x, w)
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    assert [type(n).__name__ for n, _ in out.grad_fn.next_functions] == ["AccumulateGrad"] * 2
    del fn


def test_float64_and_scalars_broadcast():
    fn = lambda x, y: (3 - x * 2.5) / (y * y + 1) + 1  # noqa: E731
    _check_same(fn, compile(fn), _inputs((4, 3), np.float64))
    out = compile(fn)(*_inputs((4, 3), np.float64))
    assert out.dtype == jitgrad.float64


def test_float32_stays_float32():
    fn = lambda x: (x * 0.1 + 1.5).sigmoid().sum()  # noqa: E731
    x = _inputs((10,))[0]
    cfn = compile(fn)
    cfn(x)
    assert cfn(x).dtype == jitgrad.float32
    assert "np.float32(1)" in cfn.explain()


def test_signature_change_retraces():
    fn = _program(["mul", "tanh", "add_s"], "sum")
    cfn = compile(fn)
    _check_same(fn, cfn, _inputs((3, 4)))
    _check_same(fn, cfn, _inputs((7,)))
    assert len(cfn.plans) == 2
    x, y = _inputs((7,))
    _check_same(fn, cfn, [x, y.detach()])  # requires_grad is part of the signature
    assert len(cfn.plans) == 3


def test_python_scalar_arguments_are_part_of_the_signature():
    fn = lambda x, s: (x * s).tanh().sum()  # noqa: E731
    cfn = compile(fn)
    x = _inputs((5,))[0]
    for s in (2.0, 3.0, 2.0):
        np.testing.assert_allclose(cfn(x, s).item(), fn(x, s).item(), **TOL)
    assert len(cfn.plans) == 2


@pytest.mark.parametrize("end", ["sum", "mean", "none"])
def test_pow_exponents_are_baked_into_the_kernels(end):
    """``** 2`` runs x*x (and its derivative x), other exponents vmath's pow; an exponent
    that changes between calls (a closure variable here) picks its own kernels."""
    box = {"p": 2.0}

    def fn(x, y):
        v = (x * y - 0.25) ** box["p"] * 0.5 + (y * y + 1) ** 0.5
        return _ENDS[end](v)

    cfn = compile(fn)
    x, y = _inputs((4, 6))
    for p in (2.0, 3.0, 2.5, -1.0, 2.0):  # one type: a changed type retraces
        box["p"] = p
        _check_same(fn, cfn, [x, y]) if end == "none" else _check_same(fn, cfn, [x, y])
    (plan,) = cfn.plans.values()
    (region,) = plan.regions
    sources = [src for k in (region._forward, region._backward, region._forward_grad)
               for src in map(lambda kernel: kernel.kernel.py_func.__module__, k.values())]
    assert sources and region.pow_slots
    text = "".join(inspect.getsource(sys.modules[name]) for name in sources)
    assert "pow_2(" in text and "pow_half(" in text and "pow_3(" in text and "pow(" in text
    assert "**" not in text


def test_unsupported_ops_run_eagerly_inside():
    w = jitgrad.tensor(np.random.default_rng(3).uniform(-1, 1, (5, 4)).astype(np.float32),
                       requires_grad=True)

    def fn(x, b):
        h = ((x @ w) * 0.5 + 1).tanh()  # matmul eager, then a fused chain
        return (h.reshape(-1)[:6] * 2).sigmoid().mean() + (b * b).sum(dim=0).sum()

    x = _inputs((3, 5))[0]
    b = _inputs((2, 4))[1]
    cfn = compile(fn)
    want = fn(x, b)
    want.backward()
    want_grads = [x.grad.numpy().copy(), w.grad.numpy().copy(), b.grad.numpy().copy()]
    for _ in range(2):
        x.grad = w.grad = b.grad = None
        got = cfn(x, b)
        got.backward()
        np.testing.assert_allclose(got.item(), want.item(), **TOL)
        for g, t in zip(want_grads, (x, w, b)):
            np.testing.assert_allclose(t.grad.numpy(), g, **TOL)
    (plan,) = cfn.plans.values()
    assert any(r.describe() == "mul -> add -> tanh" for r in plan.regions)


def test_retain_graph_and_accumulation():
    fn = _program(["mul", "sigmoid", "add"], "none")
    cfn = compile(fn)
    x, y = _inputs((6,))
    cfn(x, y)  # trace
    out = cfn(x, y)
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    out.sum().backward(retain_graph=True)
    once = x.grad.numpy().copy(), y.grad.numpy().copy()
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * once[0], **TOL)
    np.testing.assert_allclose(y.grad.numpy(), 2 * once[1], **TOL)
    with pytest.raises(RuntimeError, match="second time"):
        out.sum().backward()


def test_create_graph_falls_back_to_eager_formulas():
    fn = lambda x, y: ((x * y).tanh() * x).sigmoid().sum()  # noqa: E731
    cfn = compile(fn)
    x, y = _inputs((5,))
    results = []
    for f in (fn, cfn, cfn):
        x.grad = y.grad = None
        (gx,) = jitgrad.autograd.grad(f(x, y), x, create_graph=True)
        (gx * gx).sum().backward()
        results.append((gx.detach().numpy(), x.grad.numpy().copy(), y.grad.numpy().copy()))
    for got in results[1:]:
        for a, b in zip(got, results[0]):
            np.testing.assert_allclose(a, b, **TOL)


def test_inner_value_used_outside_is_not_fused_away():
    def fn(x, y):
        a = x * y
        b = (a + 1).tanh()
        return b * a, a  # a escapes: it is a region output of its own

    cfn = compile(fn)
    x, y = _inputs((4,))
    for _ in range(2):
        got = cfn(x, y)
        want = fn(x, y)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), **TOL)


def test_data_dependent_control_flow_stays_correct():
    def fn(x):
        v = (x * 2).tanh()
        if v.sum().item() > 0:  # reads a fused inner value on replay: the call reruns eagerly
            return (v + 1).sum()
        return (v - 1).sum()

    cfn = compile(fn)
    pos, neg = jitgrad.ones(4, requires_grad=True), -jitgrad.ones(4, requires_grad=True)
    for t in (pos, neg, pos, neg, pos):
        np.testing.assert_allclose(cfn(t).item(), fn(t).item(), **TOL)


def test_no_grad_and_non_contiguous_inputs():
    fn = _program(["mul", "exp", "add"], "none")
    cfn = compile(fn)
    x, y = _inputs((4, 6))
    xt, yt = x.detach().t(), y.detach().t()
    with jitgrad.no_grad():
        for _ in range(2):
            got = cfn(xt, yt)
            assert got.grad_fn is None
            np.testing.assert_allclose(got.numpy(), fn(xt, yt).numpy(), **TOL)


def test_decorator_forms_and_debug_output(capsys):
    @compile
    def f(x):
        return (x * 3 + 1).relu().sum()

    @compile(debug=True)
    def g(x):
        return (x * 3 + 1).relu().sum()

    x = _inputs((5,))[0]
    assert f(x).item() == pytest.approx(g(x).item(), rel=1e-6)
    err = capsys.readouterr().err
    assert "region 0: mul -> add -> relu -> sum" in err
    assert "def forward(" in err and "def backward(" in err
    assert "fastmath" in f.explain() and "@njit(cache=True" in f.explain()


_SUBPROCESS = textwrap.dedent("""
    import numpy as np
    import jitgrad
    from jitgrad.compile import compile

    f = compile(lambda x, w: ((x * w + 0.5).tanh() * x).sigmoid().sum())
    x = jitgrad.tensor(np.linspace(-1, 1, 100, dtype=np.float32), requires_grad=True)
    w = jitgrad.tensor(np.linspace(1, 2, 100, dtype=np.float32), requires_grad=True)
    f(x, w)
    y = f(x, w)  # forward and gradients in one kernel
    y.backward(retain_graph=True)
    y.backward()  # the retained graph recomputes with the backward kernel
    (plan,) = f.plans.values()
    r = plan.regions[0]
    kernels = [r.forward_grad_kernel((True, True)).kernel, r.backward_kernel((True, True)).kernel]
    print(sum(len(k.stats.cache_misses) for k in kernels),
          sum(len(k.stats.cache_hits) for k in kernels), f"{x.grad.sum().item():.6f}")
""")


def test_kernels_are_reused_by_a_new_process(tmp_path):
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, check=True,
                           capture_output=True, text=True).stdout.split() for _ in range(2)]
    assert runs[0][0] != "0"  # the first process compiled the fused kernels
    assert runs[1][:2] == ["0", "2"]  # the second loaded both from numba's cache
    assert runs[0][2] == runs[1][2]
    assert any(p.name.startswith("jitgrad_gen_fused_fwd") for p in tmp_path.iterdir())


def test_debug_environment_variable_and_patches_restored(monkeypatch, capsys):
    from jitgrad.compile import _trace
    from jitgrad.ops import elementwise, reduce

    monkeypatch.setenv("JITGRAD_DEBUG", "1")
    f = compile(lambda x: (x * 3 + 1).relu().sum())
    f(_inputs((5,))[0])
    assert "region 0: mul -> add -> relu -> sum" in capsys.readouterr().err
    assert elementwise.apply is _trace.ORIGINAL_APPLY
    assert jitgrad.Tensor.sum is reduce.sum and jitgrad.mean is reduce.mean
    for owner, name, orig, _ in _trace._PATCHES:
        assert getattr(owner, name) is orig


def test_an_inner_value_kept_aside_says_so():
    kept = []

    def fn(x):
        v = x * 2
        kept.append(v)  # neither read nor returned: fused away
        return (v + 1).tanh().sum()

    cfn = compile(fn)
    x = _inputs((4,))[0]
    np.testing.assert_allclose(cfn(x).item(), fn(x).item(), **TOL)
    np.testing.assert_allclose(cfn(x).item(), fn(x).item(), **TOL)
    with pytest.raises(RuntimeError, match="inner value of a region that jitgrad.compile fused"):
        kept[2].sum()  # the replayed call's inner value


def test_reading_grad_fn_of_an_inner_value_keeps_it():
    names = []

    def fn(x):
        v = x * 2
        names.append(v.grad_fn.name())
        return (v + 1).tanh().sum()

    cfn = compile(fn)
    x = _inputs((4,))[0]
    for _ in range(2):
        np.testing.assert_allclose(cfn(x).item(), fn(x).item(), **TOL)
    assert names == ["MulBackward0"] * 4


@pytest.mark.parametrize("end", ["sum", "mean"])
def test_loss_region_gradients_scaled_retained_and_accumulated(end):
    def fn(x, y):
        v = ((x * y + 0.5).tanh() * x).sigmoid()
        return v.sum() if end == "sum" else v.mean()

    cfn = compile(fn)
    x, y = _inputs((33, 70))  # more than one summation block
    cfn(x, y)  # trace
    want = [jitgrad.autograd.grad(fn(x, y), (x, y), jitgrad.tensor(2.5))]
    got = cfn(x, y)
    assert got.grad_fn.name() == "CompiledFunctionBackward"
    want.append([2 * g for g in jitgrad.autograd.grad(fn(x, y), (x, y))])
    results = [jitgrad.autograd.grad(got, (x, y), jitgrad.tensor(2.5), retain_graph=True),
               [2 * g for g in jitgrad.autograd.grad(got, (x, y), retain_graph=True)]]
    for r, w in zip(results, want):
        for a, b in zip(r, w):
            np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL)
    x.grad = y.grad = None
    got.backward(retain_graph=True)
    got.backward()
    for t, w in zip((x, y), want[1]):
        np.testing.assert_allclose(t.grad.numpy(), w.numpy(), **TOL)


# --- broadcast operands -------------------------------------------------------------------------

# each step maps (value, x, b) to a new value with b broadcast against x's shape
_BSTEPS = {
    "add_b": lambda v, x, b: v + b, "mul_b": lambda v, x, b: v * b,
    "b_sub": lambda v, x, b: b - v, "div_b": lambda v, x, b: v / (b * b + 1),
    "tanh_b": lambda v, x, b: (v * b).tanh(), "pow_b": lambda v, x, b: (v.sigmoid() + b * b) ** 2,
}
_BSHAPES = [(5,), (3, 1), (1, 5), (), (1,), (1, 1), (3, 5), (2, 1, 5), (2, 3, 1)]


def _bprogram(steps, end):
    def fn(x, y, b):
        v = x
        for s in steps:
            v = _BSTEPS[s](v, x, b) if s in _BSTEPS else _STEPS[s](v, x, y)
        return _ENDS[end](v)
    return fn


def _binputs(bshape, shape=(3, 5), dtype=np.float32, b_grad=True, seed=0):
    x, y = _inputs(shape, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    b = jitgrad.tensor(rng.uniform(-1, 1, bshape).astype(dtype), requires_grad=b_grad)
    return [x, y, b]


def _regions(cfn):
    return [r for p in cfn.plans.values() if p is not None for r in p.regions]


@settings(max_examples=20, deadline=None)
@given(steps=st.lists(st.sampled_from(sorted(_STEPS) + sorted(_BSTEPS)), min_size=2, max_size=5),
       end=st.sampled_from(sorted(_ENDS)), bshape=st.sampled_from(_BSHAPES),
       b_grad=st.booleans())
def test_random_programs_with_broadcast_operands_match_eager(steps, end, bshape, b_grad):
    fn = _bprogram(steps, end)
    cfn = compile(fn)
    _check_same(fn, cfn, _binputs(bshape, b_grad=b_grad))


@pytest.mark.parametrize("end", ["sum", "mean", "none"])
@pytest.mark.parametrize("bshape,pattern", [
    ((5,), "r"), ((1, 5), "r"), ((4, 1), "c"), ((), "1"), ((1,), "1"), ((1, 1), "1")])
def test_bias_rows_columns_and_single_elements_fuse(bshape, pattern, end):
    def fn(x, w, b):
        v = ((x * w + b).tanh() * x).sigmoid()
        return v.sum() if end == "sum" else v.mean() if end == "mean" else v

    cfn = compile(fn)
    inputs = _binputs(bshape, shape=(4, 5))
    _check_same(fn, cfn, inputs)
    (region,) = _regions(cfn)
    assert region.describe().startswith("mul -> add -> tanh -> mul -> sigmoid")
    assert region.patterns == ("f", "f", pattern) and region.in_shapes[2] == bshape


def test_several_broadcast_inputs_and_a_larger_output():
    def fn(col, row, s, x):  # every op has x's shape (4, 3, 5)
        return (((x * col + row) * s).exp() * col - row).relu().mean()

    rng = np.random.default_rng(5)
    shapes = [(3, 1), (5,), (), (4, 3, 5)]
    inputs = [jitgrad.tensor(rng.uniform(-1, 1, s).astype(np.float32), requires_grad=True)
              for s in shapes]
    cfn = compile(fn)
    _check_same(fn, cfn, inputs)
    (region,) = _regions(cfn)
    assert region.patterns == ("f", "b", "r", "1")
    no_full = compile(lambda col, row: ((col * row + 1).tanh() * col).sum())  # no full input
    _check_same(lambda col, row: ((col * row + 1).tanh() * col).sum(), no_full,
                      inputs[:2])
    assert _regions(no_full)[0].patterns == ("c", "r")


def test_other_broadcast_patterns_are_expanded_by_a_copy():
    fn = lambda x, b: ((x * b + 1).tanh() * x).sum()  # noqa: E731
    cfn = compile(fn)
    _check_same(fn, cfn, _binputs((2, 1, 5), shape=(2, 3, 5))[::2])
    _check_same(fn, cfn, _binputs((1, 3, 1), shape=(2, 3, 5))[::2])
    patterns = sorted(r.patterns for r in _regions(cfn))
    assert patterns == [("f", "b"), ("f", "x")]


def test_requires_grad_on_broadcast_inputs_only():
    fn = lambda x, w, b: ((x * w + b).tanh() * w).sum()  # noqa: E731
    x, w, b = _binputs((5,), shape=(4, 5))
    for grads in [(False, False, True), (True, False, False), (False, True, True)]:
        for t, g in zip((x, w, b), grads):
            t.requires_grad_(g)
        _check_same(fn, compile(fn), [x, w, b])


def test_chunked_loops_longer_than_a_summation_block():
    """Rows of 5000 elements (the CPU kernels loop per row chunk, in blocks of 2048)."""
    for bshape in [(5000,), (3, 1), (1,)]:
        fn = lambda x, w, b: ((x * w + b).tanh() * x).sigmoid().sum()  # noqa: E731
        _check_same(fn, compile(fn), _binputs(bshape, shape=(3, 5000)))
        fn = lambda x, w, b: (x * w + b).tanh() * x  # noqa: E731
        _check_same(fn, compile(fn), _binputs(bshape, shape=(3, 5000)))


def test_one_kernel_source_serves_every_shape_of_a_pattern():
    fn = lambda x, w, b: ((x * w + b).tanh() * x).sum()  # noqa: E731
    cfn = compile(fn)
    for shape in [(4, 5), (6, 7), (2, 3, 9)]:
        _check_same(fn, cfn, _binputs(shape[-1:], shape=shape))
    regions = _regions(cfn)
    assert len(regions) == 3 and len({r.forward_src for r in regions}) == 1
    assert len({r.index_args for r in regions}) == 3
    col = compile(fn)
    _check_same(fn, col, _binputs((4, 1), shape=(4, 5)))
    assert _regions(col)[0].forward_src != regions[0].forward_src  # the pattern is in the key


def test_float64_broadcast_and_smaller_values_enter_as_inputs():
    def fn(x, b):
        c = (b * 2).tanh() + 1  # a (5,) region of its own
        return ((x * c - b).exp() * 0.5).sum()  # c and b broadcast into a (3, 5) region

    cfn = compile(fn)
    inputs = _binputs((5,), shape=(3, 5), dtype=np.float64)[::2]
    _check_same(fn, cfn, inputs)
    assert sorted(r.shape for r in _regions(cfn)) == [(3, 5), (5,)]
    assert compile(fn)(*inputs).dtype == jitgrad.float64


def _retained_twice_like_eager(fn, cfn, inputs):
    """Gradients of sum(f(*inputs) ** 2) backpropagated twice through a retained graph: eager,
    then the trace and two replays, each equal to eager's. Returns eager's."""
    want = []
    for f in (fn, cfn, cfn, cfn):
        for t in inputs:
            t.grad = None
        loss = (f(*inputs) ** 2).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        got = [t.grad.numpy().copy() for t in inputs]
        want = want or got
        for g, v in zip(got, want):
            np.testing.assert_allclose(g, v, **TOL)
    return want


def test_broadcast_retain_graph_and_accumulation():
    fn = lambda x, w, b: (x * w + b).sigmoid() * b  # noqa: E731
    cfn = compile(fn)
    x, w, b = _binputs((4, 1), shape=(4, 5))
    _retained_twice_like_eager(fn, cfn, (x, w, b))
    loss_fn = compile(lambda x, w, b: ((x * w + b).tanh()).mean())
    x.grad = w.grad = b.grad = None
    for _ in range(3):  # trace + 2 replays into the same .grad
        loss_fn(x, w, b).backward()
    once = [jitgrad.autograd.grad(((x * w + b).tanh()).mean(), (x, w, b))]
    for t, g in zip((x, w, b), once[0]):
        assert t.grad.shape == g.shape
        np.testing.assert_allclose(t.grad.numpy(), 3 * g.numpy(), **TOL)
    x.grad = w.grad = b.grad = None
    out = loss_fn(x, w, b)
    out.backward(retain_graph=True)  # the gradients the forward kernel computed
    out.backward()  # the backward kernel
    for t, g in zip((x, w, b), once[0]):
        np.testing.assert_allclose(t.grad.numpy(), 2 * g.numpy(), **TOL)


@pytest.mark.parametrize("end", ["sum", "none"])
def test_broadcast_create_graph_falls_back_to_eager_formulas(end):
    def fn(x, b):
        v = ((x * b).tanh() * x + b).sigmoid()
        return v.sum() if end == "sum" else (v * v).sum() * 0.5

    x, b = _binputs((5,), shape=(3, 5), dtype=np.float64)[::2]
    cfn = compile(fn) if end == "sum" else compile(lambda x, b: ((x * b).tanh() * x + b).sigmoid())
    f_c = cfn if end == "sum" else (lambda x, b: (cfn(x, b) ** 2).sum() * 0.5)
    results = []
    for f in (fn, f_c, f_c):
        x.grad = b.grad = None
        (gb,) = jitgrad.autograd.grad(f(x, b), b, create_graph=True)
        assert gb.shape == b.shape
        (gb * gb).sum().backward()
        results.append((gb.detach().numpy(), x.grad.numpy().copy(), b.grad.numpy().copy()))
    for got in results[1:]:
        for a, w in zip(got, results[0]):
            np.testing.assert_allclose(a, w, **TOL)


# --- partial reductions -------------------------------------------------------------------------

def _chain_to(reduction):
    def fn(x, w, b):
        return reduction(((x * w + b).tanh() * x).sigmoid())
    return fn


_PARTIAL = [  # (value shape, bias shape, reduction, the region's groups)
    ((4, 5), (5,), lambda v: v.sum(1), "kr"),
    ((4, 5), (4, 1), lambda v: v.mean(-1, keepdim=True), "kr"),
    ((4, 5), (), lambda v: v.sum(0), "rk"),
    ((4, 5), (5,), lambda v: v.mean([0], keepdim=True), "rk"),
    ((2, 3, 4), (4,), lambda v: v.sum((0, 2)), "rkr"),
    ((2, 3, 4), (3, 1), lambda v: v.mean(1), "krk"),
    ((2, 3, 4), (1, 4), lambda v: v.sum((-1, -3), keepdim=True), "rkr"),
    ((2, 3, 4, 5), (5,), lambda v: v.mean((0, 2)), "rkrk"),
    ((2, 3, 4, 5), (3, 1, 1), lambda v: v.sum((1, 3)), "krkr"),
    ((2, 3, 4), (4,), lambda v: v.sum((0, 1, 2)), "r"),
    ((2, 3, 4), (4,), lambda v: v.mean(None, keepdim=True), "r"),
    ((4, 1, 5), (5,), lambda v: v.sum(1), "k"),  # a size-1 dim: nothing to add
    ((3, 5000), (5000,), lambda v: v.sum(1), "kr"),  # rows longer than a summation block
    ((3, 5000), (3, 1), lambda v: v.mean(0), "rk"),
    ((2100, 3), (3,), lambda v: v.sum(0), "rk"),
]


@pytest.mark.parametrize("shape,bshape,reduction,groups", _PARTIAL)
def test_partial_reductions_end_the_region(shape, bshape, reduction, groups):
    fn = _chain_to(reduction)
    cfn = compile(fn)
    _check_same(fn, cfn, _binputs(bshape, shape=shape))
    (region,) = _regions(cfn)
    assert region.groups == groups and region.dims is not None
    assert region.describe().startswith("mul -> add -> tanh -> mul -> sigmoid -> ")
    out = cfn(*_binputs(bshape, shape=shape))
    assert out.grad_fn.name() == "CompiledFunctionBackward"
    assert [type(n).__name__ for n, _ in out.grad_fn.next_functions] == ["AccumulateGrad"] * 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["sum(1)", "mean(0,keepdim)", "sum((0,2))"])
def test_partial_reductions_match_torch(reduction, dtype):
    torch = pytest.importorskip("torch")
    reduce = {"sum(1)": lambda v: v.sum(1), "mean(0,keepdim)": lambda v: v.mean(0, keepdim=True),
              "sum((0,2))": lambda v: v.sum((0, 2))}[reduction]
    shape = (3, 4, 5) if reduction == "sum((0,2))" else (6, 7)
    x, w, b = _binputs(shape[-1:], shape=shape, dtype=dtype)
    cfn = compile(_chain_to(reduce))
    tx, tw, tb = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (x, w, b))
    want = _chain_to(reduce)(tx, tw, tb)
    weight = np.linspace(-1, 1, want.numel()).reshape(tuple(want.shape)).astype(dtype)
    (want * torch.tensor(weight)).sum().backward()
    for _ in range(3):
        for t in (x, w, b):
            t.grad = None
        got = cfn(x, w, b)
        (got * jitgrad.tensor(weight)).sum().backward()
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), **TOL)
        for t, tt in zip((x, w, b), (tx, tw, tb)):
            np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), **TOL)
    assert len(_regions(cfn)) == 1 and not cfn.divergences


def test_partial_reductions_accumulate_float32_accurately():
    rng = np.random.default_rng(7)
    for shape, dim in [((2, 300_000), 1), ((300_000, 2), 0), ((3, 100_000, 2), 1)]:
        x = jitgrad.tensor(rng.uniform(0, 1, shape).astype(np.float32))
        fn = compile(lambda x, dim=dim: (x * 1.5 + 0.25).sum(dim))
        fn(x)
        got = fn(x).numpy()
        want = (x.numpy().astype(np.float64) * 1.5 + 0.25).sum(dim)
        np.testing.assert_allclose(got, want, rtol=2e-6)


def test_one_kernel_source_serves_every_shape_and_sum_or_mean_of_a_grouping():
    def fn(x, w, b):
        return ((x * w + b).tanh() * x).sum(-1)

    cfn = compile(fn)
    for shape in [(4, 5), (6, 7), (2, 3, 9)]:
        _check_same(fn, cfn, _binputs(shape[-1:], shape=shape))
    regions = _regions(cfn)
    assert {r.groups for r in regions} == {"kr"} and len({r.forward_src for r in regions}) == 1
    mean = compile(lambda x, w, b: ((x * w + b).tanh() * x).mean(-1))
    _check_same(lambda x, w, b: ((x * w + b).tanh() * x).mean(-1), mean,
                      _binputs((5,), shape=(4, 5)))
    assert _regions(mean)[0].forward_src == regions[0].forward_src  # the scale is an argument
    assert _regions(mean)[0].backward_kernel((True,) * 3) is not None


def test_partial_reduction_dims_are_checked_on_replay():
    """A dim is part of the trace: an int argument retraces, a change behind its back diverges."""
    fn = lambda x, d: (x * 2 + 1).tanh().sum(d)  # noqa: E731
    cfn = compile(fn)
    x = _inputs((3, 4))[0]
    for d in (0, 1, 0, -1):
        np.testing.assert_allclose(cfn(x, d).detach().numpy(), fn(x, d).detach().numpy(), **TOL)
    assert len(cfn.plans) == 3
    dims = [1]
    gn = compile(lambda x: (x * 2 + 1).tanh().sum(dims[0], keepdim=dims[0] == 0))
    for d in (1, 1, 0, 0, 1):
        dims[0] = d
        want = (x * 2 + 1).tanh().sum(d, keepdim=d == 0)
        got = gn(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), **TOL)


def test_partial_reduction_bad_arguments_raise_python_errors():
    x = _inputs((3, 4))[0]
    with pytest.raises(IndexError, match="[Dd]imension out of range"):
        compile(lambda x: (x * 2).tanh().sum(2))(x)
    with pytest.raises(RuntimeError, match="appears multiple times"):
        compile(lambda x: (x * 2).tanh().mean((1, -1)))(x)
    f = compile(lambda x, d: (x * 2).tanh().sum(d))
    f(x, 1)
    f(x, 1)
    with pytest.raises(IndexError, match="[Dd]imension out of range"):
        f(x, -3)


def test_partial_reductions_that_do_not_fuse_run_eagerly():
    def fn(x, s):
        a = (x * 2 + 1).tanh().sum(1, dtype=jitgrad.float64)  # a dtype: eager
        b = (s * 3).exp().sum(0)  # a 0-d value
        return a.sum() + b

    x = _inputs((3, 4))[0]
    s = jitgrad.tensor(0.5, requires_grad=True)
    cfn = compile(fn)
    for _ in range(2):
        x.grad = s.grad = None
        got = cfn(x, s)
        got.backward()
        assert got.dtype == jitgrad.float64
    want = fn(x, s)
    gx, gs = jitgrad.autograd.grad(want, (x, s))
    np.testing.assert_allclose(got.item(), want.item(), **TOL)
    np.testing.assert_allclose(x.grad.numpy(), gx.numpy(), **TOL)
    np.testing.assert_allclose(s.grad.numpy(), gs.numpy(), **TOL)
    assert all(r.dims is None for r in _regions(cfn))


def test_partial_reduction_inside_a_larger_program():
    w = jitgrad.tensor(np.random.default_rng(3).uniform(-1, 1, (5, 4)).astype(np.float32),
                       requires_grad=True)

    def fn(x, b):  # a row softmax-like normaliser: the reduction's output is broadcast back
        h = (x @ w + b).exp()
        s = h.sum(-1, keepdim=True)
        return ((h / s) * 2 - 1).tanh().mean(0)

    x, b = _inputs((3, 5))[0], _inputs((4,))[1]
    cfn = compile(fn)
    want = fn(x, b)
    weight = jitgrad.tensor(np.linspace(-1, 1, 4).astype(np.float32))
    want_grads = jitgrad.autograd.grad((want * weight).sum(), (x, w, b))
    for _ in range(3):
        got = cfn(x, b)
        grads = jitgrad.autograd.grad((got * weight).sum(), (x, w, b))
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), **TOL)
        for g, v in zip(grads, want_grads):
            np.testing.assert_allclose(g.numpy(), v.numpy(), **TOL)
    # h feeds the sum and the division: its region ends there, the sum runs eagerly
    assert sorted(r.describe() for r in _regions(cfn)) == [
        "add -> exp", "div -> mul -> sub -> tanh -> mean(dim=(0,))"]
    assert not cfn.divergences


def test_partial_reduction_retain_graph_and_accumulation():
    fn = lambda x, w, b: ((x * w + b).sigmoid() * b).mean(1)  # noqa: E731
    cfn = compile(fn)
    x, w, b = _binputs((4, 1), shape=(4, 5))
    want = _retained_twice_like_eager(fn, cfn, (x, w, b))
    out = cfn(x, w, b)
    with pytest.raises(RuntimeError, match="second time"):
        out.sum().backward()
        out.sum().backward()
    x.grad = w.grad = b.grad = None
    for _ in range(3):  # into the same .grad
        (cfn(x, w, b) ** 2).sum().backward()
    for t, g in zip((x, w, b), want):
        np.testing.assert_allclose(t.grad.numpy(), 1.5 * g, **TOL)


def test_partial_reduction_gradients_become_grad_without_copies():
    cfn = compile(lambda x, w: ((x * w + 0.5).tanh() * x).sum(1))
    x, w = _inputs((4, 6))
    for _ in range(2):
        x.grad = w.grad = None
        cfn(x, w).sum().backward()
    assert x.grad._data.base is None and w.grad._data.base is None  # the kernel's buffers
    assert x.grad._data is not w.grad._data


@pytest.mark.parametrize("reduction", ["sum(1)", "mean((0,2),keepdim)"])
def test_partial_reduction_create_graph_falls_back_to_eager_formulas(reduction):
    reduce = {"sum(1)": lambda v: v.sum(1),
              "mean((0,2),keepdim)": lambda v: v.mean((0, 2), keepdim=True)}[reduction]

    def fn(x, b):
        return (reduce(((x * b).tanh() * x + b).sigmoid()) ** 2).sum()

    inner = compile(lambda x, b: reduce(((x * b).tanh() * x + b).sigmoid()))
    x, b = _binputs((5,), shape=(2, 3, 5), dtype=np.float64)[::2]
    results = []
    for f in (fn, lambda x, b: (inner(x, b) ** 2).sum(), lambda x, b: (inner(x, b) ** 2).sum()):
        x.grad = b.grad = None
        (gb,) = jitgrad.autograd.grad(f(x, b), b, create_graph=True)
        (gb * gb).sum().backward()
        results.append((gb.detach().numpy(), x.grad.numpy().copy(), b.grad.numpy().copy()))
    for got in results[1:]:
        for a, w in zip(got, results[0]):
            np.testing.assert_allclose(a, w, **TOL)


def test_partial_reduction_no_grad_and_debug_output(capsys):
    fn = lambda x, w: ((x * w).tanh() + 1).mean(-1, keepdim=True)  # noqa: E731
    cfn = compile(fn, debug=True)
    x, w = _inputs((3, 4))
    with jitgrad.no_grad():
        for _ in range(2):
            got = cfn(x, w)
            assert got.grad_fn is None and got.shape == (3, 1)
            np.testing.assert_allclose(got.numpy(), fn(x, w).numpy(), **TOL)
    err = capsys.readouterr().err
    assert "region 0: mul -> tanh -> add -> mean(dim=(1,), keepdim=True)" in err
    assert "def forward(" in err and "def backward(" in err and "forward_grad" not in err


_PARTIAL_SUBPROCESS = textwrap.dedent("""
    import numpy as np
    import jitgrad
    from jitgrad.compile import compile

    f = compile(lambda x, w: ((x * w + 0.5).tanh() * x).sigmoid().sum(1))
    x = jitgrad.tensor(np.linspace(-1, 1, 120, dtype=np.float32).reshape(10, 12),
                       requires_grad=True)
    w = jitgrad.tensor(np.linspace(1, 2, 120, dtype=np.float32).reshape(10, 12),
                       requires_grad=True)
    f(x, w)
    f(x, w).sum().backward()
    (plan,) = f.plans.values()
    r = plan.regions[0]
    kernels = [r.forward.kernel, r.backward_kernel((True, True)).kernel]
    print(sum(len(k.stats.cache_misses) for k in kernels),
          sum(len(k.stats.cache_hits) for k in kernels), f"{x.grad.sum().item():.6f}")
""")


def test_partial_reduction_kernels_are_reused_by_a_new_process(tmp_path):
    env = dict(os.environ, JITGRAD_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", _PARTIAL_SUBPROCESS], env=env, check=True,
                           capture_output=True, text=True).stdout.split() for _ in range(2)]
    assert runs[0][0] != "0"
    assert runs[1][:2] == ["0", "2"]
    assert runs[0][2] == runs[1][2]
