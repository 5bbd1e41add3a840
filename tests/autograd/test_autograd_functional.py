"""jacobian / hessian / vjp / jvp / hvp / vhp against torch.autograd.functional."""

import numpy as np
import pytest

import jitgrad
from jitgrad.autograd import functional as F

torch = pytest.importorskip("torch")
TF = torch.autograd.functional


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 1.5, s) for s in shapes]


def _to(mod, arrays, single):
    ts = tuple(mod.tensor(a) for a in arrays)
    return ts[0] if single else ts


def _same(ours, theirs):
    """Same nesting (Tensor vs tuple), same shapes, same values."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            _same(o, t)
        return
    assert isinstance(ours, jitgrad.Tensor), type(ours)
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert not ours.requires_grad
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


# (function of module-free tensor ops, input shapes, single input?)
FUNCS = {
    "elementwise": (lambda x: x.exp() * x, [(3,)], True),
    "matrix_to_vector": (lambda x: (x @ x.t()).sum(0), [(2, 3)], True),
    "scalar_out": (lambda x: (x.tanh() ** 2).sum(), [(2, 2)], True),
    "two_in_one_out": (lambda a, b: a * b.sin(), [(3,), (3,)], False),
    "two_in_two_out": (lambda a, b: (a @ b, (a ** 2).sum()), [(2, 3), (3,)], False),
    "tuple_one_in": (lambda a: (a.log(), a.sigmoid().sum(0)), [(2, 2)], False),
    "unused_input": (lambda a, b: a * 2, [(2,), (3,)], False),
}


@pytest.mark.parametrize("name", list(FUNCS))
def test_jacobian(name):
    fn, shapes, single = FUNCS[name]
    arrays = _arrays(shapes)
    _same(F.jacobian(fn, _to(jitgrad, arrays, single)), TF.jacobian(fn, _to(torch, arrays, single)))


@pytest.mark.parametrize("name", ["elementwise", "two_in_two_out"])
def test_jacobian_vectorize_and_forward_mode(name):
    fn, shapes, single = FUNCS[name]
    arrays = _arrays(shapes)
    ref = TF.jacobian(fn, _to(torch, arrays, single))
    _same(F.jacobian(fn, _to(jitgrad, arrays, single), vectorize=True), ref)
    _same(F.jacobian(fn, _to(jitgrad, arrays, single), vectorize=True, strategy="forward-mode"),
          ref)


def test_jacobian_tuple_of_one_input_keeps_tuples():
    arrays = _arrays([(3,)])
    fn = FUNCS["elementwise"][0]
    _same(F.jacobian(fn, (jitgrad.tensor(arrays[0]),)), TF.jacobian(fn, (torch.tensor(arrays[0]),)))


HESS = {
    "single": (lambda x: (x.exp() * x).sum(), [(3,)], True),
    "matrix": (lambda x: (x @ x.t()).tanh().sum(), [(2, 2)], True),
    "two_inputs": (lambda a, b: (a * b.sin()).sum() + (a ** 3).mean(), [(2,), (2,)], False),
    "linear": (lambda a, b: (a * 3).sum() + b.sum(), [(2,), (3,)], False),
}


@pytest.mark.parametrize("name", list(HESS))
def test_hessian(name):
    fn, shapes, single = HESS[name]
    arrays = _arrays(shapes)
    _same(F.hessian(fn, _to(jitgrad, arrays, single)), TF.hessian(fn, _to(torch, arrays, single)))


def test_hessian_forward_outer_strategy():
    fn, shapes, single = HESS["two_inputs"]
    arrays = _arrays(shapes)
    _same(F.hessian(fn, _to(jitgrad, arrays, single), vectorize=True,
                    outer_jacobian_strategy="forward-mode"),
          TF.hessian(fn, _to(torch, arrays, single)))


@pytest.mark.parametrize("name", list(FUNCS))
def test_vjp_and_jvp(name):
    fn, shapes, single = FUNCS[name]
    arrays = _arrays(shapes)
    out = fn(*[torch.tensor(a) for a in arrays])
    outs = out if isinstance(out, tuple) else (out,)
    v_out = _arrays([tuple(o.shape) for o in outs], seed=1)
    v_in = _arrays(shapes, seed=2)
    single_out = not isinstance(out, tuple)
    _same(F.vjp(fn, _to(jitgrad, arrays, single), _to(jitgrad, v_out, single_out)),
          TF.vjp(fn, _to(torch, arrays, single), _to(torch, v_out, single_out)))
    _same(F.jvp(fn, _to(jitgrad, arrays, single), _to(jitgrad, v_in, single)),
          TF.jvp(fn, _to(torch, arrays, single), _to(torch, v_in, single)))


@pytest.mark.parametrize("name", ["single", "two_inputs", "linear"])
def test_hvp_and_vhp(name):
    fn, shapes, single = HESS[name]
    arrays, v = _arrays(shapes), _arrays(shapes, seed=4)
    for ours, theirs in ((F.hvp, TF.hvp), (F.vhp, TF.vhp)):
        _same(ours(fn, _to(jitgrad, arrays, single), _to(jitgrad, v, single)),
              theirs(fn, _to(torch, arrays, single), _to(torch, v, single)))


def test_v_may_be_omitted_only_for_single_elements():
    x = jitgrad.tensor([2.0], dtype=jitgrad.float64)
    _same(F.vjp(lambda t: (t ** 3).sum(), x), TF.vjp(lambda t: (t ** 3).sum(), torch.tensor([2.0],
                                                     dtype=torch.float64)))
    _same(F.jvp(lambda t: t ** 3, x), TF.jvp(lambda t: t ** 3, torch.tensor([2.0],
                                                                             dtype=torch.float64)))
    for mod, fns in ((jitgrad, F), (torch, TF)):
        with pytest.raises(RuntimeError, match="The vector v can only be None"):
            fns.vjp(lambda t: t * 2, mod.ones(2))
        with pytest.raises(RuntimeError, match="The vector v can only be None"):
            fns.jvp(lambda t: t * 2, mod.ones(2))


def test_errors_match_torch():
    for mod, fns in ((jitgrad, F), (torch, TF)):
        x = mod.ones(2, dtype=mod.float64)
        with pytest.raises(RuntimeError, match="v has invalid size: should be"):
            fns.vjp(lambda t: t * 2, x, mod.ones(3, dtype=mod.float64))
        with pytest.raises(RuntimeError, match="v is a tuple of invalid length"):
            fns.jvp(lambda a, b: a * b, (x, x), (x,))
        with pytest.raises(TypeError, match="The inputs given to jacobian must be either a "
                                            "Tensor or a tuple of Tensors"):
            fns.jacobian(lambda t: t, [x])
        with pytest.raises(RuntimeError, match="should return a single Tensor"):
            fns.hessian(lambda t: (t.sum(), t.sum()), x)
        with pytest.raises(RuntimeError, match="should contain a single element"):
            fns.hessian(lambda t: t * 2, x)
        with pytest.raises(RuntimeError, match="Output 0 of the user-provided function is "
                                               "independent of input 1"):
            fns.jacobian(lambda a, b: a * 2, (x, x), strict=True)
        with pytest.raises(RuntimeError, match="does not require gradients"):
            fns.vjp(lambda t: t.detach(), x, x, strict=True)


def test_create_graph_results_are_differentiable():
    for mod, fns in ((jitgrad, F), (torch, TF)):
        x = mod.tensor([0.5, 1.0], dtype=mod.float64, requires_grad=True)
        jac = fns.jacobian(lambda t: t ** 3, x, create_graph=True)
        assert jac.requires_grad
        (g,) = mod.autograd.grad(jac.sum(), x)
        np.testing.assert_allclose(g.detach().numpy(), 6 * np.array([0.5, 1.0]))
        _, jv = fns.jvp(lambda t: t.sin(), x, mod.ones(2, dtype=mod.float64), create_graph=True)
        assert jv.requires_grad
        jac = fns.jacobian(lambda t: t ** 3, x)
        assert not jac.requires_grad


def test_inputs_are_not_modified_or_given_grads():
    x = jitgrad.tensor([0.5, 1.0], dtype=jitgrad.float64, requires_grad=True)
    F.jacobian(lambda t: t.exp(), x)
    F.hessian(lambda t: t.exp().sum(), x)
    assert x.grad is None
    np.testing.assert_array_equal(x.detach().numpy(), [0.5, 1.0])
