import numpy as np
import pytest
from helpers import check_op

import jitgrad


@pytest.mark.parametrize("shape,dim", [((7,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 3, 4), 1),
                                       ((), 0)])
def test_cumsum(shape, dim):
    check_op(lambda m, x: x.cumsum(dim), lambda x: np.cumsum(x, axis=dim) if x.ndim else x,
             [shape])


def test_cumsum_dtypes_and_double_backward():
    assert jitgrad.tensor([True, True, False]).cumsum(0).tolist() == [1, 2, 2]
    ints = jitgrad.tensor([2**40, 3, -7])
    assert ints.cumsum(0).tolist() == [2**40, 2**40 + 3, 2**40 - 4]
    assert jitgrad.tensor([1, 2], dtype=jitgrad.int32).cumsum(0).dtype == jitgrad.int64
    x = jitgrad.tensor([0.5, 1.5], requires_grad=True)
    y = x.cumsum(0, dtype=jitgrad.float64)
    assert y.dtype == jitgrad.float64 and y.grad_fn.name() == "CumsumBackward0"
    y.sum().backward()
    assert x.grad.dtype == jitgrad.float32 and x.grad.tolist() == [2.0, 1.0]
    x64 = jitgrad.tensor(np.random.default_rng(0).uniform(-1, 1, (3, 5)), requires_grad=True)
    assert jitgrad.autograd.gradgradcheck(lambda t: t.cumsum(1) ** 2, (x64,))
    with pytest.raises(IndexError, match="Dimension out of range"):
        x64.cumsum(2)


def test_cumsum_of_float32_accumulates_in_float64():
    x = jitgrad.full((100_000,), 0.1)
    ref = np.cumsum(np.full(100_000, 0.1, np.float32).astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(x.cumsum(0).numpy(), ref)


def test_cumsum_in_place():
    y = jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]])
    y.cumsum_(0)
    assert y.tolist() == [[1.0, 2.0], [4.0, 6.0]]


@pytest.mark.parametrize("shape,dims", [((5,), (0,)), ((3, 4), (0, 1)), ((3, 4), [-1]),
                                        ((2, 3, 4), (0, 2)), ((), ())])
def test_flip(shape, dims):
    axes = (dims,) if isinstance(dims, int) else tuple(dims)
    check_op(lambda m, x: m.flip(x, dims), lambda x: np.flip(x, axes) if x.ndim else x, [shape])


def test_flip_copies_and_checks_dims():
    x = jitgrad.tensor([[1, 2, 3]])
    y = x.flip(1)
    y[0, 0] = 9
    assert x.tolist() == [[1, 2, 3]] and y.tolist() == [[9, 2, 1]]
    with pytest.raises(RuntimeError, match="multiple times"):
        x.flip((1, 1))
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.flip(2)
    xf = jitgrad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert xf.flip(0).grad_fn.name() == "FlipBackward0"
    assert jitgrad.autograd.gradgradcheck(lambda t: t.flip(0) * t, (xf.double(),))


@pytest.mark.parametrize("sizes,shape", [((2, 3), (2, 2)), ((2, 1, 1), (2, 2)), ((3,), ()),
                                         ((1, 0), (2, 2)), ((2, 2), (3,))])
def test_repeat(sizes, shape):
    check_op(lambda m, x: x.repeat(*sizes), lambda x: np.tile(x, sizes), [shape])


def test_repeat_errors_and_double_backward():
    x = jitgrad.tensor([[1.0, 2.0]])
    with pytest.raises(RuntimeError, match="can not be smaller"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="negative dimension"):
        x.repeat(-1, 2)
    t = jitgrad.tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3)), requires_grad=True)
    assert t.repeat(2, 1).grad_fn.name() == "RepeatBackward0"
    assert jitgrad.autograd.gradgradcheck(lambda u: u.repeat(2, 1, 2) ** 2, (t,))


@pytest.mark.parametrize("weight", [0.3, 0.7, "tensor"])
def test_lerp(weight):
    if weight == "tensor":
        check_op(lambda m, x, y, w: m.lerp(x, y, w), lambda x, y, w: x + w * (y - x),
                 [(3, 4), (4,), (3, 1)])
    else:
        check_op(lambda m, x, y: x.lerp(y, weight), lambda x, y: x + weight * (y - x),
                 [(3, 4), (3, 4)])


def test_lerp_is_exact_at_the_ends_and_checks_dtypes():
    x, y = jitgrad.tensor([0.1, -3.3]), jitgrad.tensor([7.7, 1e-8])
    assert x.lerp(y, 0.0).tolist() == x.tolist() and x.lerp(y, 1.0).tolist() == y.tolist()
    assert jitgrad.lerp(x, y, 0.5).grad_fn is None
    with pytest.raises(RuntimeError, match="expected dtype float for `end` but got dtype long"):
        jitgrad.lerp(x, jitgrad.tensor([1, 2]), 0.5)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        jitgrad.lerp(jitgrad.tensor([1, 2]), jitgrad.tensor([1, 2]), 0.5)
    x.lerp_(y, 0.5)
    np.testing.assert_allclose(x.numpy(), [3.9, -1.65], rtol=1e-6)
