import numpy as np
import pytest

import jitgrad


def _t(values, **kw):
    return jitgrad.tensor(values, **kw)


@pytest.mark.parametrize("method,arg,expected", [
    ("add_", 2.0, [3.0, 4.0]),
    ("sub_", 0.5, [0.5, 1.5]),
    ("mul_", 3.0, [3.0, 6.0]),
    ("div_", 4.0, [0.25, 0.5]),
    ("fill_", 7.0, [7.0, 7.0]),
])
def test_inplace_scalar_ops(method, arg, expected):
    x = _t([1.0, 2.0])
    before = x._version[0]
    out = getattr(x, method)(arg)
    assert out is x
    np.testing.assert_allclose(x.numpy(), expected)
    assert x._version[0] == before + 1


def test_inplace_operators_and_broadcasting():
    x = jitgrad.ones(2, 3)
    x += _t([1.0, 2.0, 3.0])
    x -= 1
    x *= 2
    x /= _t([[1.0], [2.0]])
    np.testing.assert_allclose(x.numpy(), [[2.0, 4.0, 6.0], [1.0, 2.0, 3.0]])


def test_inplace_add_with_alpha_and_tensor():
    x = _t([1.0, 2.0])
    x.add_(_t([1.0, 1.0]), alpha=-2)
    np.testing.assert_allclose(x.numpy(), [-1.0, 0.0])


def test_zero_clamp_copy():
    x = _t([[-2.0, 0.5], [3.0, 1.0]])
    x.clamp_(-1, 1)
    np.testing.assert_allclose(x.numpy(), [[-1.0, 0.5], [1.0, 1.0]])
    x.copy_(_t([5.0, 6.0]))
    np.testing.assert_allclose(x.numpy(), [[5.0, 6.0], [5.0, 6.0]])
    x.copy_(_t([[1, 2], [3, 4]]))  # copy_ converts dtypes
    np.testing.assert_allclose(x.numpy(), [[1.0, 2.0], [3.0, 4.0]])
    x.zero_()
    np.testing.assert_array_equal(x.numpy(), np.zeros((2, 2)))


def test_inplace_on_non_contiguous_view_writes_base():
    base = jitgrad.zeros(3, 4)
    base.t()[1].add_(5.0)  # column 1 of base
    expected = np.zeros((3, 4))
    expected[:, 1] = 5
    np.testing.assert_allclose(base.numpy(), expected)


def test_int_tensor_keeps_dtype_and_rejects_float_result():
    x = _t([1, 2])
    x += 3
    assert x.dtype == jitgrad.int64
    np.testing.assert_array_equal(x.numpy(), [4, 5])
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        x += 1.5
    np.testing.assert_array_equal(x.numpy(), [4, 5])


def test_inplace_broadcast_mismatch_raises_and_leaves_input():
    x = jitgrad.ones(3)
    with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the broadcast "
                                           r"shape \[2, 3\]"):
        x.add_(jitgrad.ones(2, 3))
    np.testing.assert_array_equal(x.numpy(), np.ones(3))


def test_inplace_on_leaf_requiring_grad_raises_outside_no_grad():
    w = jitgrad.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1)
    with jitgrad.no_grad():
        w.sub_(0.5)  # what an optimizer does
    np.testing.assert_allclose(w.detach().numpy(), [0.5, 0.5])
    assert w.grad_fn is None and w.requires_grad


def test_inplace_on_non_leaf_records_the_op():
    x = _t([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.add_(x)  # y = 2x
    assert y.grad_fn.name() == "AddBackward0"
    y.exp_()  # y = exp(2x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * np.array([1.0, 2.0])), rtol=1e-6)


def test_inplace_matches_torch():
    torch = pytest.importorskip("torch")
    for mod in (jitgrad, torch):
        x = mod.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 2
        y.mul_(x).sub_(1).clamp_(0, 10)
        y.sum().backward()
        if mod is jitgrad:
            ours = (y.detach().numpy().copy(), x.grad.numpy().copy())
        else:
            np.testing.assert_allclose(ours[0], y.detach().numpy())
            np.testing.assert_allclose(ours[1], x.grad.numpy())


VIEW_PROGRAMS = {
    "mul_through_select": lambda m, x, v: _mul_row(x),
    "setitem_on_view": lambda m, x, v: _set_through_view(x, v),
    "copy_into_slice": lambda m, x, v: _copy_into_slice(x, v),
    "zero_through_transpose": lambda m, x, v: _zero_column(x),
}


def _mul_row(x):
    y = x * 1
    y[0].mul_(2)
    return (y * y).sum()


def _set_through_view(x, v):
    y = x * 2
    y[1][0] = v.sum()
    return (y * y).sum()


def _copy_into_slice(x, v):
    y = x + 1
    y[:, 1:].copy_(v[:, :1] * 3)
    return (y * x).sum()


def _zero_column(x):
    y = x * x
    y.t()[1].zero_()
    return (y * 3).sum()


@pytest.mark.parametrize("name", VIEW_PROGRAMS)
def test_inplace_through_views_matches_torch(name):
    torch = pytest.importorskip("torch")
    results = []
    for mod in (jitgrad, torch):
        x = mod.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        v = mod.tensor([[0.5, -1.0], [2.0, 1.5]], requires_grad=True)
        out = VIEW_PROGRAMS[name](mod, x, v)
        out.backward()
        results.append([out.item(), x.grad.numpy().copy(),
                        None if v.grad is None else v.grad.numpy().copy()])
    ours, theirs = results
    assert ours[0] == pytest.approx(theirs[0], rel=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6)
    assert (ours[2] is None) == (theirs[2] is None)
    if ours[2] is not None:
        np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-6)


def test_inplace_through_view_of_leaf_raises():
    w = jitgrad.ones(2, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        w[0].add_(1)


def test_a_base_forgets_dead_views():
    # the root's view list (for re-deriving sibling histories) drops views nothing holds
    base = jitgrad.zeros(1000) * 1
    for i in range(1000):
        base[i : i + 1].sum()
    assert len(base._views) <= 32
    kept = [base[i : i + 2] for i in range(0, 100, 2)]
    base[10:12].add_(jitgrad.ones(2, requires_grad=True))
    assert all(v.requires_grad and v.grad_fn.name() == "AsStridedBackward0" for v in kept)
