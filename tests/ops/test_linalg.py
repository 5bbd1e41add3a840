import numpy as np
import pytest
from helpers import check_op, torch

import jitgrad

SHAPES = [
    ((4,), (4,)),
    ((4,), (4, 3)),
    ((3, 4), (4,)),
    ((3, 4), (4, 2)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((2, 3, 4), (4, 2)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((1, 3, 4), (2, 4, 2)),
]


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_matmul(shapes):
    check_op(lambda m, a, b: a @ b, np.matmul, list(shapes), rtol=1e-5)
    check_op(lambda m, a, b: m.matmul(a, b), np.matmul, list(shapes), dtypes=(np.float64,))


def test_matmul_transposed_operands():
    check_op(lambda m, a, b: a.t() @ b.t(), lambda a, b: a.T @ b.T, [(4, 3), (2, 4)], rtol=1e-5)
    check_op(lambda m, a, b: a.transpose(1, 2) @ b[:, ::2],
             lambda a, b: a.transpose(0, 2, 1) @ b[:, ::2], [(2, 4, 3), (2, 8, 2)], rtol=1e-5)
    check_op(lambda m, a, b: a[:, 1::2] @ b.permute(1, 0), lambda a, b: a[:, 1::2] @ b.T,
             [(3, 8), (5, 4)], rtol=1e-5)
    check_op(lambda m, a, b: a.expand(3, 2, 4) @ b, lambda a, b: np.broadcast_to(a, (3, 2, 4)) @ b,
             [(2, 4), (3, 4, 2)], rtol=1e-5)


@pytest.mark.parametrize("a_view, b_view", [
    ("x[:, 2:7]", "x[1:6, :4]"),  # row and column slices: unit stride, longer rows
    ("x.T[3:8]", "x.T[:, 1:5]"),  # slices of transposes (unit stride down columns)
    ("x[1:2, :5]", "x[:5, 3:4]"),  # one row times one column
    ("x[:, ::2][:, :5]", "x[::2][:5, :4]"),  # no unit stride: copied for BLAS
])
def test_matmul_reads_strided_slices_in_place(a_view, b_view):
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((9, 12)), rng.standard_normal((10, 9))
    a = jitgrad.tensor(a_np, requires_grad=True)
    b = jitgrad.tensor(b_np, requires_grad=True)
    x_a, x_b = eval(a_view, {"x": a}), eval(b_view, {"x": b})
    out = x_a @ x_b
    expected = eval(a_view, {"x": a_np}) @ eval(b_view, {"x": b_np})
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    out.backward(jitgrad.tensor(g))
    ga, gb = np.zeros_like(a_np), np.zeros_like(b_np)
    eval(a_view, {"x": ga})[...] = g @ eval(b_view, {"x": b_np}).T
    eval(b_view, {"x": gb})[...] = eval(a_view, {"x": a_np}).T @ g
    np.testing.assert_allclose(a.grad.numpy(), ga, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, k, m", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)])
def test_matmul_and_linear_with_empty_dims(n, k, m):
    rng = np.random.default_rng(0)
    a_np, b_np, bias_np = rng.standard_normal((n, k)), rng.standard_normal((k, m)), \
        rng.standard_normal(m)
    out = jitgrad.tensor(a_np) @ jitgrad.tensor(b_np)
    np.testing.assert_array_equal(out.numpy(), np.zeros((n, m)))
    w = jitgrad.tensor(b_np.T.copy(), requires_grad=True)
    bias = jitgrad.tensor(bias_np, requires_grad=True)
    y = jitgrad.nn.functional.linear(jitgrad.tensor(a_np), w, bias)
    np.testing.assert_array_equal(y.detach().numpy(), np.broadcast_to(bias_np, (n, m)))
    y.sum().backward()
    np.testing.assert_array_equal(bias.grad.numpy(), np.full(m, n, np.float64))
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((m, k)))


def test_matmul_int64():
    a = np.arange(24).reshape(2, 3, 4) - 10
    b = np.arange(8).reshape(4, 2) * 3
    out = jitgrad.tensor(a) @ jitgrad.tensor(b)
    assert out.dtype == jitgrad.int64
    np.testing.assert_array_equal(out.numpy(), a @ b)
    a2, b2 = a[0], b
    np.testing.assert_array_equal((jitgrad.tensor(a2) @ jitgrad.tensor(b2)).numpy(), a2 @ b2)
    v = jitgrad.tensor([1, 2, 3, 4])
    assert (v @ v).item() == 30 and (v @ v).shape == ()
    big = jitgrad.tensor([[2**40]]) @ jitgrad.tensor([[3]])
    assert big.item() == 3 * 2**40


def test_matmul_values_and_1d_shapes():
    a = np.arange(6.0).reshape(2, 3)
    v = np.array([1.0, -1.0, 2.0])
    x, y = jitgrad.tensor(a), jitgrad.tensor(v)
    np.testing.assert_array_equal((x @ y).numpy(), a @ v)
    assert (y @ y).shape == () and (y @ y).item() == 6.0
    assert (y @ x.t()).shape == (2,)
    assert jitgrad.dot(y, y).item() == 6.0 and jitgrad.mv(x, y).shape == (2,)
    assert jitgrad.mm(x, x.t()).shape == (2, 2)
    assert jitgrad.bmm(x[None], x.t()[None]).shape == (1, 2, 2)
    np.testing.assert_array_equal(jitgrad.outer(y, y).numpy(), np.outer(v, v))


def test_matmul_float32_accuracy_and_grad_fn():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 128)).astype(np.float32)
    b = rng.standard_normal((128, 32)).astype(np.float32)
    out = jitgrad.tensor(a) @ jitgrad.tensor(b)
    assert out.dtype == jitgrad.float32
    np.testing.assert_allclose(out.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    x = jitgrad.tensor(a, requires_grad=True)
    assert (x @ jitgrad.tensor(b)).grad_fn.name() == "MmBackward0"
    if torch is not None:
        t = torch.tensor(a, requires_grad=True)
        assert (t @ torch.tensor(b)).grad_fn.name() == "MmBackward0"


def test_matmul_gradient_only_where_needed():
    a = jitgrad.tensor(np.ones((2, 3)), requires_grad=True)
    b = jitgrad.tensor(np.arange(6.0).reshape(3, 2))
    (a @ b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), np.ones((2, 2)) @ np.arange(6.0).reshape(3, 2).T)
    assert b.grad is None


def test_matmul_double_backward():
    if torch is None:
        pytest.skip("torch not installed")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    grads = []
    for m in (jitgrad, torch):
        x, y = m.tensor(a, requires_grad=True), m.tensor(b, requires_grad=True)
        ((x @ y) ** 2).sum().backward(create_graph=True)
        gx, x.grad, y.grad = x.grad, None, None
        (gx * gx).sum().backward()
        grads.append((x.grad.detach().numpy(), y.grad.detach().numpy()))
    for j, t in zip(*grads):
        np.testing.assert_allclose(j, t, rtol=1e-10)
