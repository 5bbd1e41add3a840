import numpy as np
import pytest
from helpers import check_op, torch

import jitgrad

# index expressions valid for jitgrad, torch and numpy alike; inputs are (3, 4, 5)
GETITEM = {
    "int": lambda m, x: x[1],
    "neg_int": lambda m, x: x[-1, -2],
    "all_ints": lambda m, x: x[1, 2, 3],
    "slices_steps": lambda m, x: x[:, 1::2, ::3],
    "slice_clipped": lambda m, x: x[-10:2, 3:100],
    "none": lambda m, x: x[None, :, None, 1],
    "ellipsis": lambda m, x: x[..., 1],
    "ellipsis_none": lambda m, x: x[1, ..., None],
    "list_repeats": lambda m, x: x[[0, 2, 0, 0]],
    "list_dim1": lambda m, x: x[:, [1, 1, 3]],
    "tensor_2d": lambda m, x: x[m.tensor([[0, 1], [2, 2]])],
    "pairs": lambda m, x: x[[0, 1, 1], [2, 2, 2]],
    "separated_advanced": lambda m, x: x[[0, 1], :, [4, 4]],
    "mixed": lambda m, x: x[1:, [0, 0, 3], ::2],
    "broadcast_advanced": lambda m, x: x[[[0], [1]], [1, 1, 2]],
    "last_dim": lambda m, x: x[..., [4, 4, 0]],
    "mask_full": lambda m, x: x[x > 0.5],
    "mask_rows": lambda m, x: x[m.tensor([True, False, True])],
    "mask_2d": lambda m, x: x[1][x[1] < 0],
    "mask_after_int": lambda m, x: x[2, m.tensor([True, False, True, True])],
    "chain": lambda m, x: x[1][[0, 0]][:, 1:3],
}


def _np_index(fn):
    """The same index applied to a numpy array (torch-style tensors become arrays)."""
    class _NP:
        @staticmethod
        def tensor(v):
            return np.asarray(v)

    return lambda x: fn(_NP, x)


@pytest.mark.parametrize("name", GETITEM)
def test_getitem(name):
    fn = GETITEM[name]
    check_op(fn, _np_index(fn), [(3, 4, 5)])


def test_getitem_numpy_and_int32_indices():
    a = np.arange(60.0).reshape(3, 4, 5)
    x = jitgrad.tensor(a)
    np.testing.assert_array_equal(x[np.array([2, 2, 0])].numpy(), a[[2, 2, 0]])
    np.testing.assert_array_equal(x[np.array([0, 1], np.int32)].numpy(), a[[0, 1]])
    np.testing.assert_array_equal(x[jitgrad.tensor([0, 1]).int()].numpy(), a[[0, 1]])
    np.testing.assert_array_equal(x[np.array([True, False, True])].numpy(), a[[0, 2]])
    np.testing.assert_array_equal(x[[True, False, True]].numpy(), a[[0, 2]])
    np.testing.assert_array_equal(x[jitgrad.tensor([0, -3])].numpy(), a[[0, -3]])
    assert x[jitgrad.tensor(1)].shape == (4, 5)
    assert x[[]].shape == (0, 4, 5)
    assert x[1, 2, 3].shape == () and x[1, 2, 3].item() == a[1, 2, 3]
    assert x[None, ..., None].shape == (1, 3, 4, 5, 1)
    assert x[True].shape == (1, 3, 4, 5) and x[False].shape == (0, 3, 4, 5)


def test_basic_index_is_view_advanced_is_copy():
    base = jitgrad.zeros(3, 4)
    v = base[1, ::2]
    assert np.shares_memory(v.numpy(), base.numpy()) and v._version is base._version
    assert not np.shares_memory(base[[1]].numpy(), base.numpy())
    assert not np.shares_memory(base[base == 0].numpy(), base.numpy())
    with jitgrad.no_grad():
        v[1] = 5.0
    assert base[1, 2].item() == 5.0


def test_getitem_backward_scatter_adds_repeats():
    x = jitgrad.tensor(np.arange(5.0), requires_grad=True)
    x[[0, 0, 3, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 0, 0, 1, 0])
    x.grad = None
    w = jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]])
    (x[jitgrad.tensor([[1, 1], [4, 1]])] * w).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 7, 0, 0, 3])
    x.grad = None
    x[1:4][[0, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 2, 0, 0, 0])


def test_getitem_double_backward():
    x = jitgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x[[0, 0, 2]] ** 2).sum()
    y.backward(create_graph=True)
    g, x.grad = x.grad, None
    np.testing.assert_array_equal(g.detach().numpy(), [4, 0, 6])
    (g * g).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [32, 0, 24])


SETITEM = [
    "y[0] = 5",
    "y[0, 1] = v",
    "y[:, 2] = v",
    "y[..., 1] = 3.5",
    "y[[0, 2]] = v",
    "y[[0, 2], [1, 1]] = v",
    "y[y > 30] = 0",
    "y[y > 30] = v[0]",
    "y[m.tensor([0, 0, 1])] = 2.0",
    "y[1:, ::2] = v * 2",
    "y[:, [1, 3], 2] = v[:2]",
    "y[0, 0, 0] = v[3]",
    "y[m.tensor([True, False, True])] = v",
    "y[None, 0] = v",
    "y[0] = m.tensor(4.0)",
    "y[1] = v.reshape(1, 5)",
    "y[1] = v.unsqueeze(0).expand(4, 5)",
    "y[[1, 1]] = v",
]


@pytest.mark.parametrize("stmt", SETITEM)
def test_setitem_autograd(stmt):
    a = np.arange(60.0).reshape(3, 4, 5)
    w = np.random.default_rng(0).uniform(size=(3, 4, 5))
    results = []
    for m in filter(None, (jitgrad, torch)):
        x = m.tensor(a, requires_grad=True)
        v = m.tensor(np.arange(5.0) + 100, requires_grad=True)
        y = x * 1
        exec(stmt, {"m": m, "y": y, "v": v})  # noqa: S102 - the statement under test
        (y * m.tensor(w)).sum().backward()
        results.append((y.detach().numpy().copy(), x.grad.numpy().copy(),
                        v.grad.numpy().copy() if v.grad is not None else None))
    jy, jgx, jgv = results[0]
    if len(results) == 1:
        pytest.skip("torch not installed")
    ty, tgx, tgv = results[1]
    np.testing.assert_array_equal(jy, ty)
    np.testing.assert_allclose(jgx, tgx, rtol=1e-12)
    assert (jgv is None) == (tgv is None)
    if jgv is not None:
        np.testing.assert_allclose(jgv, tgv, rtol=1e-12)


def test_setitem_autograd_zero_grad_at_overwritten():
    x = jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    y[0] = 5
    np.testing.assert_array_equal(y.detach().numpy(), [[5, 5], [3, 4]])
    assert y.grad_fn.name() == "CopySlices"
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0], [1, 1]])
    v = jitgrad.tensor([7.0], requires_grad=True)
    z = jitgrad.zeros(3)
    z[[0, 2]] = v
    (z * jitgrad.tensor([1.0, 10.0, 100.0])).sum().backward()
    assert v.grad.item() == 101.0 and v.grad.shape == (1,)


def test_setitem_values_and_dtypes():
    x = jitgrad.zeros(2, 3)
    x[0] = jitgrad.tensor([1.0, 2.0, 3.0])
    x[1, 1:] = 7
    x[:, 0] += 1
    np.testing.assert_array_equal(x.numpy(), [[2, 2, 3], [1, 7, 7]])
    x[x > 2] = -1.0
    np.testing.assert_array_equal(x.numpy(), [[2, 2, -1], [1, -1, -1]])
    x[[1, 0], [0, 0]] = jitgrad.tensor([10.0, 20.0])
    np.testing.assert_array_equal(x.numpy()[:, 0], [20, 10])
    x[jitgrad.tensor([True, False])] = jitgrad.tensor([[4.0], ])  # broadcast (1, 1) -> (1, 3)
    np.testing.assert_array_equal(x.numpy()[0], [4, 4, 4])
    i = jitgrad.tensor([1, 2, 3])
    i[0] = 2.7  # truncates like torch
    i[i > 2] = 9
    np.testing.assert_array_equal(i.numpy(), [2, 2, 9])
    assert i.dtype == jitgrad.int64
    f = jitgrad.tensor([1.0, 2.0, 3.0])
    f[1] = jitgrad.tensor(5)
    f[[0]] = True
    np.testing.assert_array_equal(f.numpy(), [1, 5, 3])
    before = f._version[0]
    f[2] = 0
    assert f._version[0] == before + 1


def test_setitem_noncontiguous_target():
    a = np.arange(12.0).reshape(3, 4)
    x = jitgrad.tensor(a)
    t = x.t()
    t[[0, 2], 1] = jitgrad.tensor([-1.0, -2.0], dtype=jitgrad.float64)
    t[1:3, 2] = -5
    expected = a.copy()
    expected[1, [0, 2]] = [-1, -2]
    expected[2, 1:3] = -5
    np.testing.assert_array_equal(x.numpy(), expected)


def test_gather():
    idx = [[[0, 1, 2, 3, 0]] * 2] * 3
    check_op(lambda m, x: x.gather(1, m.tensor(idx)),
             lambda x: np.take_along_axis(x, np.array(idx), 1), [(3, 4, 5)])
    idx2 = [[[4, 4, 0]] * 4] * 3
    check_op(lambda m, x: m.gather(x, -1, m.tensor(idx2)),
             lambda x: np.take_along_axis(x, np.array(idx2), -1), [(3, 4, 5)])
    x = jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    out = x.gather(1, jitgrad.tensor([[0, 0], [1, 0]]))
    np.testing.assert_array_equal(out.detach().numpy(), [[1, 1], [4, 3]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 0], [1, 1]])
    smaller = jitgrad.tensor(np.arange(12.0).reshape(3, 4)).gather(0, jitgrad.tensor([[2, 0]]))
    np.testing.assert_array_equal(smaller.numpy(), [[8, 1]])
    i32 = jitgrad.tensor([[1], [0]]).int()
    np.testing.assert_array_equal(jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]]).gather(1, i32).numpy(),
                                  [[2], [3]])


def test_index_select_take_masked_fill():
    check_op(lambda m, x: x.index_select(1, m.tensor([3, 3, 0])), lambda x: x[:, [3, 3, 0]],
             [(3, 4, 5)])
    check_op(lambda m, x: m.index_select(x, -1, m.tensor([4])), lambda x: x[..., [4]],
             [(3, 4, 5)])
    check_op(lambda m, x: x.take(m.tensor([0, 0, 11])), lambda x: x.reshape(-1)[[0, 0, 11]],
             [(3, 4)])
    check_op(lambda m, x: x.masked_fill(x > 0, 0.5), lambda x: np.where(x > 0, 0.5, x), [(3, 4)])
    x = jitgrad.tensor(np.arange(6.0).reshape(2, 3))
    assert x.index_select(0, jitgrad.tensor(1)).shape == (1, 3)
    if torch is not None:
        assert tuple(torch.arange(6.0).reshape(2, 3).index_select(0, torch.tensor(1)).shape) == (
            1, 3)


def test_iteration_and_0d():
    x = jitgrad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    rows = list(x)
    assert len(rows) == 2 and rows[1].tolist() == [3.0, 4.0]
    (rows[0] * 2 + rows[1]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [1, 1]])
    s = jitgrad.tensor(3.0)
    assert s[...].shape == () and s[None].shape == (1,) and s[True].shape == (1,)
