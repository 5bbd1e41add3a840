import numpy as np
import pytest
from helpers import torch

import jitgrad

# (expression on a module, expected dtype name, expected values or None for random/empty)
CASES = [
    ("m.tensor(1.5)", "float32", 1.5),
    ("m.tensor(3)", "int64", 3),
    ("m.tensor(True)", "bool", True),
    ("m.tensor([1, 2.5])", "float32", [1, 2.5]),
    ("m.tensor([True, 2])", "int64", [1, 2]),
    ("m.tensor([[1, 2], [3, 4]])", "int64", [[1, 2], [3, 4]]),
    ("m.tensor([])", "float32", []),
    ("m.tensor(np.array([1, 2], np.int32))", "int32", [1, 2]),
    ("m.tensor(np.array([1.0, 2.0]))", "float64", [1, 2]),
    ("m.tensor(np.array([1.0, 2.0], np.float32))", "float32", [1, 2]),
    ("m.tensor(np.array([True]))", "bool", [True]),
    ("m.tensor(np.float64(2.5))", "float64", 2.5),
    ("m.tensor(np.int32(7))", "int32", 7),
    ("m.tensor([1, 2], dtype=m.float64)", "float64", [1, 2]),
    ("m.tensor([1.7, -1.7], dtype=m.int64)", "int64", [1, -1]),
    ("m.tensor([1, 2**40])", "int64", [1, 2**40]),
    ("m.zeros(2, 3)", "float32", [[0] * 3] * 2),
    ("m.zeros((2, 3), dtype=m.int64)", "int64", [[0] * 3] * 2),
    ("m.zeros(())", "float32", 0),
    ("m.ones([2], dtype=m.bool)", "bool", [True, True]),
    ("m.full((2, 2), 7)", "int64", [[7, 7], [7, 7]]),
    ("m.full((2,), 1.5)", "float32", [1.5, 1.5]),
    ("m.full((2,), True)", "bool", [True, True]),
    ("m.full([2], 3, dtype=m.float64)", "float64", [3, 3]),
    ("m.full((), 3.0)", "float32", 3),
    ("m.empty(2, 3)", "float32", None),
    ("m.empty((0,), dtype=m.int64)", "int64", []),
    ("m.arange(5)", "int64", [0, 1, 2, 3, 4]),
    ("m.arange(1, 4)", "int64", [1, 2, 3]),
    ("m.arange(10, 0, -3)", "int64", [10, 7, 4, 1]),
    ("m.arange(0, 1, 0.25)", "float32", [0, 0.25, 0.5, 0.75]),
    ("m.arange(5.0)", "float32", [0, 1, 2, 3, 4]),
    ("m.arange(0.5, 3)", "float32", [0.5, 1.5, 2.5]),
    ("m.arange(1, 2.5, 0.5)", "float32", [1, 1.5, 2]),
    ("m.arange(0, 1, 0.1)", "float32", None),
    ("m.arange(5, dtype=m.float64)", "float64", [0, 1, 2, 3, 4]),
    ("m.arange(m.tensor(3))", "int64", [0, 1, 2]),
    ("m.linspace(0, 1, 5)", "float32", [0, 0.25, 0.5, 0.75, 1]),
    ("m.linspace(0, 1, 1)", "float32", [0]),
    ("m.linspace(0, 10, 0)", "float32", []),
    ("m.linspace(0, 10, 5, dtype=m.int64)", "int64", [0, 2, 5, 7, 10]),
    ("m.eye(3)", "float32", np.eye(3).tolist()),
    ("m.eye(2, 3)", "float32", np.eye(2, 3).tolist()),
    ("m.eye(2, dtype=m.int64)", "int64", [[1, 0], [0, 1]]),
    ("m.zeros_like(m.ones(2, 3, dtype=m.int64))", "int64", [[0] * 3] * 2),
    ("m.ones_like(m.zeros(2, dtype=m.float64))", "float64", [1, 1]),
    ("m.full_like(m.ones(2, dtype=m.int64), 2.7)", "int64", [2, 2]),
    ("m.full_like(m.ones(2), 2)", "float32", [2, 2]),
    ("m.empty_like(m.ones(2, 1))", "float32", None),
    ("m.rand(2, 3)", "float32", None),
    ("m.rand((2, 3), dtype=m.float64)", "float64", None),
    ("m.randn(4)", "float32", None),
    ("m.randint(0, 5, (3,))", "int64", None),
    ("m.randint(5, (2, 2))", "int64", None),
    ("m.randint(0, 5, (3,), dtype=m.int32)", "int32", None),
    ("m.rand_like(m.ones(2, dtype=m.float64))", "float64", None),
    ("m.randn_like(m.ones(3))", "float32", None),
    ("m.randint_like(m.ones(3), 10)", "float32", None),
    ("m.randperm(5)", "int64", None),
    ("m.as_tensor([1, 2])", "int64", [1, 2]),
    ("m.ones(2, 3).new_zeros(4)", "float32", [0] * 4),
    ("m.ones(2).new_full((2,), 3)", "float32", [3, 3]),
]


@pytest.mark.parametrize("expr, dtype, values", CASES, ids=[c[0] for c in CASES])
def test_creation(expr, dtype, values):
    out = eval(expr, {"m": jitgrad, "np": np})
    assert isinstance(out, jitgrad.Tensor)
    assert out.dtype.name == dtype
    assert not out.requires_grad
    if values is not None:
        np.testing.assert_array_equal(out.numpy(), np.array(values, dtype=out.numpy().dtype))
    if torch is not None:
        t = eval(expr, {"m": torch, "np": np})
        assert str(t.dtype) == f"torch.{dtype}"
        assert tuple(t.shape) == tuple(out.shape)
        if values is not None or expr.startswith("m.arange"):
            np.testing.assert_allclose(out.numpy(), t.numpy(), rtol=1e-6, atol=1e-7)


def test_random_ranges_and_shapes():
    jitgrad.manual_seed(0)
    r = jitgrad.rand(1000)
    assert r.shape == (1000,) and 0 <= r.min().item() and r.max().item() < 1
    n = jitgrad.randn(2000, dtype=jitgrad.float64)
    assert abs(n.mean().item()) < 0.1 and 0.9 < n.std().item() < 1.1
    i = jitgrad.randint(3, 7, (500,))
    assert i.min().item() == 3 and i.max().item() == 6
    p = jitgrad.randperm(10)
    np.testing.assert_array_equal(np.sort(p.numpy()), np.arange(10))


def test_manual_seed_reproducible():
    draws = []
    for _ in range(2):
        jitgrad.manual_seed(123)
        draws.append((jitgrad.rand(3).numpy().copy(), jitgrad.randn(2, 2).numpy().copy(),
                      jitgrad.randint(0, 100, (4,)).numpy().copy(), jitgrad.randperm(6).numpy()))
    for a, b in zip(*draws):
        np.testing.assert_array_equal(a, b)
    jitgrad.manual_seed(124)
    assert not np.array_equal(jitgrad.rand(3).numpy(), draws[0][0])


def test_tensor_copies_as_tensor_and_from_numpy_share():
    a = np.arange(3.0)
    t = jitgrad.tensor(a)
    a[0] = 10
    assert t[0].item() == 0.0
    s = jitgrad.as_tensor(a)
    f = jitgrad.from_numpy(a)
    a[1] = 20
    assert s[1].item() == 20 and f[1].item() == 20 and f.dtype == jitgrad.float64
    with jitgrad.no_grad():
        f[2] = 30
    assert a[2] == 30
    assert jitgrad.as_tensor(t) is t
    converted = jitgrad.as_tensor(a, dtype=jitgrad.float32)
    assert converted.dtype == jitgrad.float32 and not np.shares_memory(converted.numpy(), a)
    src = jitgrad.tensor([1.0, 2.0])
    copy = jitgrad.tensor(src)
    assert not np.shares_memory(copy.numpy(), src.numpy())


def test_requires_grad():
    x = jitgrad.zeros(2, requires_grad=True)
    assert x.requires_grad and x.is_leaf and x.grad is None
    assert jitgrad.tensor([1.0], requires_grad=True).requires_grad
    assert jitgrad.arange(3.0, requires_grad=True).requires_grad
    assert jitgrad.randn(2, requires_grad=True).requires_grad
    for make in (lambda m: m.tensor([1, 2], requires_grad=True),
                 lambda m: m.zeros(2, dtype=m.int64, requires_grad=True),
                 lambda m: m.arange(3, requires_grad=True),
                 lambda m: m.tensor([True]).requires_grad_(),
                 lambda m: m.ones(2, dtype=m.int64).requires_grad_(True)):
        for m in filter(None, (jitgrad, torch)):
            with pytest.raises(RuntimeError, match="(?i)only Tensors of floating point"):
                make(m)


def test_creation_errors():
    with pytest.raises(RuntimeError):
        jitgrad.arange(0, 10, 0)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        jitgrad.arange(0, -3)
    with pytest.raises(RuntimeError, match="negative dimension"):
        jitgrad.zeros(-1)
    with pytest.raises(TypeError):
        jitgrad.zeros(2.5)
    with pytest.raises(RuntimeError, match="got -1"):
        jitgrad.eye(-1)
    with pytest.raises(RuntimeError):
        jitgrad.randint(3, 3, (2,))
    with pytest.raises(ValueError, match="Overflow"):
        jitgrad.tensor(2**63)
    with pytest.raises(ValueError):
        jitgrad.tensor([[1, 2], [3]])
    with pytest.raises(TypeError):
        jitgrad.tensor("a")
    with pytest.raises(TypeError):
        jitgrad.from_numpy([1, 2])
    with pytest.raises(TypeError, match="uint16"):
        jitgrad.from_numpy(np.array([1], np.uint16))
