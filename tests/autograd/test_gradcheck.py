"""gradcheck / gradgradcheck: pass for correct gradients, fail (raise or False) for wrong ones."""

import warnings

import numpy as np
import pytest

import jitgrad
from jitgrad.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck

try:
    import torch
except ImportError:  # torch is an optional oracle
    torch = None


def _x(mod=jitgrad, shape=(2, 3), seed=0):
    data = np.random.default_rng(seed).uniform(0.5, 1.5, shape)
    return mod.tensor(data, requires_grad=True)


class Cube(jitgrad.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * grad_output


class WrongCube(jitgrad.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 2 * x ** 2 * grad_output  # wrong factor


class DetachedCube(jitgrad.autograd.Function):
    """First derivative right, but computed from detached values: second derivative wrong."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 3 * x.detach() ** 2 * grad_output


class ScaleAdd(jitgrad.autograd.Function):
    """Two tensor inputs, a non-tensor argument, two outputs."""

    @staticmethod
    def forward(ctx, a, b, k):
        ctx.save_for_backward(a, b)
        ctx.k = k
        return a * b * k, a + b

    @staticmethod
    def backward(ctx, g_prod, g_sum):
        a, b = ctx.saved_tensors
        return g_prod * b * ctx.k + g_sum, g_prod * a * ctx.k + g_sum, None


def test_gradcheck_passes_for_correct_function():
    assert gradcheck(Cube.apply, (_x(),))
    assert gradcheck(ScaleAdd.apply, (_x(), _x(seed=1), 2.5))
    assert gradcheck(Cube.apply, _x())  # a single tensor is accepted as inputs


@pytest.mark.parametrize("fn", [
    lambda a, b: (a * b).tanh(),
    lambda a, b: (a @ b.t()).softmax(1),
    lambda a, b: (a / b).log().sum(0),
    lambda a, b: (a.exp(), b.sqrt().mean()),
])
def test_gradcheck_passes_for_ops(fn):
    assert gradcheck(fn, (_x(), _x(seed=1)))


def test_gradcheck_raises_for_wrong_backward():
    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to "
                                             "input 0,\nnumerical:") as err:
        gradcheck(WrongCube.apply, (_x(),))
    assert "\nanalytical:" in str(err.value)
    assert isinstance(err.value, RuntimeError)


def test_gradcheck_returns_false_without_raising():
    assert gradcheck(WrongCube.apply, (_x(),), raise_exception=False) is False


def test_gradcheck_restores_inputs():
    x = _x()
    before = x.detach().numpy().copy()
    gradcheck(Cube.apply, (x,))
    np.testing.assert_array_equal(x.detach().numpy(), before)
    assert x.grad is None


def test_gradcheck_only_checks_inputs_that_require_grad():
    a, b = _x(), _x(seed=1).detach()
    assert gradcheck(lambda a, b: a * b, (a, b))


def test_gradcheck_warns_for_float32_input():
    x = jitgrad.tensor([0.5, 1.0], requires_grad=True)
    with pytest.warns(UserWarning, match="Input #0 requires gradient and is not a double"):
        gradcheck(lambda t: t * 2, (x,), eps=1e-3, atol=1e-2, rtol=1e-2)


def test_gradcheck_float64_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradcheck(Cube.apply, (_x(),))


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(lambda t: t * 2, (_x().detach(),))


def test_gradcheck_tolerances():
    # 2x^2 vs 3x^2 at x near 1: off by about 1, inside atol=2 only
    assert gradcheck(WrongCube.apply, (_x(),), atol=2.0)
    assert not gradcheck(WrongCube.apply, (_x(),), atol=0.1, rtol=0.0, raise_exception=False)


def test_gradcheck_unused_input_and_non_differentiable_output():
    a, b = _x(), _x(seed=1)
    assert gradcheck(lambda a, b: (a * 2, (a > 1)), (a, b))


def test_gradcheck_nondeterministic_backward_is_caught():
    calls = [0]

    class Flaky(jitgrad.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            calls[0] += 1
            return g * (2 + 1e-7 * calls[0])

    with pytest.raises(GradcheckError, match="not reentrant"):
        gradcheck(Flaky.apply, (_x(),))
    assert gradcheck(Flaky.apply, (_x(),), nondet_tol=1e-4)


def test_gradgradcheck_passes_and_fails():
    assert gradgradcheck(Cube.apply, (_x(),))
    assert gradgradcheck(lambda a, b: (a * b).sin(), (_x(), _x(seed=1)))
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradgradcheck(DetachedCube.apply, (_x(),))
    assert gradgradcheck(DetachedCube.apply, (_x(),), raise_exception=False) is False
    assert gradcheck(DetachedCube.apply, (_x(),))  # first order is fine


def test_gradgradcheck_with_given_and_non_contiguous_grad_outputs():
    x = _x()
    go = jitgrad.tensor(np.full((2, 3), 0.7), requires_grad=True)
    assert gradgradcheck(lambda t: t.tanh(), (x,), (go,))
    assert gradgradcheck(lambda t: t.exp() * t, (x,), gen_non_contig_grad_outputs=True)


@pytest.mark.skipif(torch is None, reason="torch is the reference")
@pytest.mark.parametrize("fn", [
    lambda t: t.sigmoid() * t,  # passes both checks
    lambda t: (t * t).detach() * t,  # a hidden dependency: first order fails
    lambda t: t * t.detach().exp(),  # right first order, hidden second-order dependency
])
def test_pass_fail_agrees_with_torch(fn):
    results = []
    for mod, check, ggcheck in ((jitgrad, gradcheck, gradgradcheck),
                                (torch, torch.autograd.gradcheck, torch.autograd.gradgradcheck)):
        results.append((check(fn, (_x(mod),), raise_exception=False),
                        ggcheck(fn, (_x(mod),), raise_exception=False)))
    assert results[0] == results[1]


@pytest.mark.skipif(torch is None, reason="torch is the reference")
def test_wrong_backward_fails_in_both():
    class TorchWrongCube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return 2 * x ** 2 * grad_output

    ours = gradcheck(WrongCube.apply, (_x(),), raise_exception=False)
    theirs = torch.autograd.gradcheck(TorchWrongCube.apply, (_x(torch),), raise_exception=False)
    assert ours is theirs is False
    with pytest.raises(RuntimeError) as terr:  # torch's GradcheckError
        torch.autograd.gradcheck(TorchWrongCube.apply, (_x(torch),))
    with pytest.raises(GradcheckError) as jerr:
        gradcheck(WrongCube.apply, (_x(),))
    assert type(terr.value).__name__ == "GradcheckError"
    assert str(jerr.value).split("numerical")[0] == str(terr.value).split("numerical")[0]
