"""Reduce, index and in-place ops on CUDA tensors against the same ops on the CPU.

Each case builds equal inputs on both devices (tiny: the simulator runs every thread in
Python), runs forward and backward on both and compares values and gradients on the host.
Ops whose results do not depend on values must not copy anything back to the host.
"""

import numpy as np
import pytest

import jitgrad as jg
from jitgrad.backends.cuda import runtime

RNG = np.random.default_rng(0)


def _host(t):
    return t.detach().cpu().numpy()


def _values(shape, dtype=np.float64):
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-3, 4, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def _leaves(arrays, device):
    return [jg.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]


def _outputs(out):
    if isinstance(out, jg.Tensor):
        return [out]
    return [o for o in out if isinstance(o, jg.Tensor)]


def _compare(got, expected):
    got, expected = _host(got), _host(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (got, expected)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)


def check(fn, *arrays, reads=0):
    """fn on CPU and CUDA leaves made from ``arrays``: values and gradients must agree.

    ``reads``: host copies the CUDA forward may make (value-dependent index checks); the
    backward must make none.
    """
    cpu = _leaves(arrays, "cpu")
    gpu = _leaves(arrays, "cuda")
    before = runtime.transfers.to_host
    out_g = _outputs(fn(*gpu))
    assert runtime.transfers.to_host - before == reads
    out_c = _outputs(fn(*cpu))
    for g, c in zip(out_g, out_c, strict=True):
        assert g.device.type == "cuda"
        _compare(g, c)
    weights = [_values(o.shape) for o in out_c]
    if not any(o.requires_grad for o in out_c):
        return out_g
    loss_c = sum((o * jg.tensor(w)).sum() for o, w in zip(out_c, weights) if o.requires_grad)
    loss_g = sum((o * jg.tensor(w, device="cuda")).sum()
                 for o, w in zip(out_g, weights) if o.requires_grad)
    loss_c.backward()
    before = runtime.transfers.to_host
    loss_g.backward()
    assert runtime.transfers.to_host == before, "backward copied data to the host"
    for g, c in zip(gpu, cpu):
        if c.requires_grad:
            assert (g.grad is None) == (c.grad is None)
            if c.grad is not None:
                assert g.grad.device.type == "cuda"
                _compare(g.grad, c.grad)
    return out_g


X = _values((2, 3, 4))


# --- reductions -----------------------------------------------------------------------------
REDUCTIONS = {
    "sum": lambda x: x.sum(),
    "sum_dim": lambda x: x.sum(1),
    "sum_dims_keep": lambda x: x.sum((0, 2), keepdim=True),
    "sum_neg": lambda x: x.sum(-1),
    "sum_split_dims": lambda x: jg.sum(x, (0, 2)),
    "sum_noncontig": lambda x: x.transpose(0, 2).sum(1),
    "mean": lambda x: x.mean(),
    "mean_dim": lambda x: x.mean(-2, keepdim=True),
    "prod": lambda x: x.prod(),
    "prod_dim": lambda x: x.prod(1),
    "prod_noncontig_keep": lambda x: x.permute(2, 0, 1).prod(-1, keepdim=True),
    "max": lambda x: x.max(),
    "min": lambda x: x.min(),
    "max_dim": lambda x: x.max(1),
    "min_dim_keep": lambda x: x.min(-1, keepdim=True),
    "max_noncontig": lambda x: x.transpose(1, 2).max(0),
    "maximum": lambda x: jg.max(x, x.flip(0) if hasattr(x, "flip") else x * 0.5),
    "amax": lambda x: x.amax((0, 2)),
    "amin_keep": lambda x: x.amin(1, keepdim=True),
    "argmax": lambda x: x.argmax(),
    "argmin_dim": lambda x: x.argmin(-1),
    "argmax_keep": lambda x: x.argmax(1, keepdim=True),
    "all": lambda x: (x > -1).all(),
    "any_dim": lambda x: (x > 1).any(1),
    "count_nonzero": lambda x: jg.count_nonzero(x > 0, 2),
    "var": lambda x: x.var(),
    "var_dim": lambda x: x.var(1, keepdim=True),
    "std": lambda x: x.std(-1, correction=0),
    "std_dims": lambda x: x.std((0, 2)),
    "logsumexp": lambda x: x.logsumexp(1),
    "logsumexp_keep": lambda x: jg.logsumexp(x, (0, -1), keepdim=True),
    "softmax": lambda x: x.softmax(-1),
    "softmax_dim0": lambda x: jg.softmax(x, 0),
    "log_softmax": lambda x: x.log_softmax(1),
    "log_softmax_noncontig": lambda x: x.transpose(0, 2).log_softmax(-1),
    "norm": lambda x: x.norm(),
    "norm_1": lambda x: x.norm(1, dim=1),
    "norm_inf": lambda x: x.norm(float("inf"), dim=-1),
    "norm_3": lambda x: x.norm(3, dim=(0, 1)),
    "sum_to_shape": lambda x: jg.sum_to_shape(x, (3, 1)),
}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction(name):
    check(REDUCTIONS[name], X)


def test_prod_with_zeros():
    x = X.copy()
    x[0, 1, 2] = 0
    x[1, 2, :2] = 0
    check(lambda t: t.prod(-1), x)
    check(lambda t: t.prod(), x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_reductions(dtype):
    x = _values((3, 4), dtype)
    check(lambda t: t.sum(), x)
    check(lambda t: t.sum(0, keepdim=True), x)
    check(lambda t: t.amax(1), x)
    check(lambda t: t.max(0), x)
    check(lambda t: t.argmin(), x)
    if dtype != np.bool_:
        check(lambda t: t.prod(1), x)


def test_float32_and_dtype_arguments():
    x = X.astype(np.float32)
    check(lambda t: t.sum(1), x)
    check(lambda t: t.mean(0, dtype=jg.float64), x)
    check(lambda t: t.softmax(1, dtype=jg.float64), x)
    check(lambda t: jg.sum(t > 0, dtype=jg.float32), x)


def test_empty_reductions():
    e = np.zeros((0, 3))
    check(lambda t: t.sum(0), e)
    check(lambda t: t.mean(), e)
    check(lambda t: (t > 0).all(), e)
    check(lambda t: (t > 0).any(1), e)
    # NOTE: not logsumexp of an empty tensor: log(0) raises in the simulator (scalar.py)


def test_reduction_errors_match_cpu():
    for t in (jg.tensor(X), jg.tensor(X, device="cuda")):
        with pytest.raises(RuntimeError, match="Expected reduction dim"):
            jg.zeros(0, device=t.device).max()
        with pytest.raises(IndexError, match="Dimension out of range"):
            t.sum(3)
        with pytest.raises(RuntimeError, match="mean"):
            t.long().mean()


def test_prod_double_backward():
    # create_graph reads one bool back (the formula depends on whether x holds zeros)
    for x in (X,):
        grads = []
        for device in ("cpu", "cuda"):
            t = jg.tensor(x[0], device=device, requires_grad=True)
            (g,) = jg.autograd.grad(t.prod(1).sum(), t, create_graph=True)
            (gg,) = jg.autograd.grad(g.sum(), t)
            grads.append((g, gg))
        _compare(grads[1][0], grads[0][0])
        _compare(grads[1][1], grads[0][1])


# --- gather / scatter ----------------------------------------------------------------------
def test_gather():
    index = np.array([[[0, 1, 1, 0], [1, 1, 0, 0]]])  # (1, 2, 4), dim 1 of a (2, 3, 4)
    for dim, idx in ((0, index), (1, index), (-1, np.array([[[3, 0], [2, 2], [1, 0]]]))):
        check(lambda x, i, d=dim: x.gather(d, i), X, idx, reads=1)
    check(lambda x, i: x.gather(1, i), X, index.astype(np.int32), reads=1)
    check(lambda x, i: x.transpose(0, 1).gather(0, i), X, np.array([[[1, 0, 0, 1]]]), reads=1)
    check(lambda x, i: x.gather(0, i), _values((2, 3), np.int64), np.array([[1, 0, 1]]),
          reads=1)


def test_gather_errors_match_cpu():
    for device in ("cpu", "cuda"):
        x = jg.tensor(X, device=device)
        with pytest.raises(RuntimeError, match="index 3 is out of bounds for dimension 1 with "
                                               "size 3"):
            x.gather(1, jg.tensor([[[0, 3, 5, -1]]], device=device))
        with pytest.raises(RuntimeError, match="index -1 is out of bounds"):
            x.gather(2, jg.tensor([[[0, -1]]], device=device))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        jg.tensor(X, device="cuda").gather(1, jg.tensor([[[0]]]))


# --- indexing -------------------------------------------------------------------------------
class _On:
    """``m.tensor`` making index tensors on a device."""

    def __init__(self, device):
        self.device = device

    def tensor(self, v):
        return jg.tensor(v, device=self.device)


GETITEM = {  # name: (index expression, host reads on CUDA)
    "int": (lambda m, x: x[1], 0),
    "neg_int": (lambda m, x: x[-1, -2], 0),
    "slices": (lambda m, x: x[:, 1::2, ::3], 0),
    "none_ellipsis": (lambda m, x: x[None, ..., 1], 0),
    "list": (lambda m, x: x[[0, 1, 1]], 0),
    "list_dim1": (lambda m, x: x[:, [2, 0, 2]], 0),
    "tensor": (lambda m, x: x[m.tensor([1, 0, 1])], 1),
    "tensor_neg": (lambda m, x: x[:, m.tensor([-1, 0])], 1),
    "tensor_2d": (lambda m, x: x[m.tensor([[0, 1], [1, 1]])], 1),
    "pairs": (lambda m, x: x[m.tensor([0, 1, 1]), m.tensor([2, 2, 0])], 1),
    "separated": (lambda m, x: x[m.tensor([0, 1]), :, m.tensor([3, -4])], 1),
    "int_and_tensor": (lambda m, x: x[0, :, m.tensor([1, 3])], 1),
    "broadcast": (lambda m, x: x[m.tensor([[0], [1]]), m.tensor([1, 1, 2])], 1),
    "tensor_and_list": (lambda m, x: x[1:, m.tensor([0, 2]), [3, 1]], 1),
    "last_dim": (lambda m, x: x[..., m.tensor([3, 3, 0])], 1),
    "int32_index": (lambda m, x: x[:, m.tensor(np.array([2, 1], np.int32))], 1),
    "empty_index": (lambda m, x: x[m.tensor(np.zeros(0, np.int64))], 0),
    "zero_d_index": (lambda m, x: x[m.tensor([1])[0]], 1),
    "mask": (lambda m, x: x[m.tensor(X > 0)], 1),
    "mask_rows": (lambda m, x: x[:, m.tensor([True, False, True])], 1),
    "mask_and_tensor": (lambda m, x: x[m.tensor([True, False]), :, m.tensor([1, 2])], 2),
    "chain": (lambda m, x: x[1][m.tensor([0, 0])][:, 1:3], 1),
    "noncontig": (lambda m, x: x.transpose(0, 2)[m.tensor([3, 0]), 1:], 1),
}


@pytest.mark.parametrize("name", GETITEM)
def test_getitem(name):
    fn, reads = GETITEM[name]
    out = check(lambda x: fn(_On(x.device), x), X, reads=reads)
    assert out[0].device.type == "cuda"


def test_getitem_errors_match_cpu():
    for device in ("cpu", "cuda"):
        x = jg.tensor(X, device=device)
        m = _On(device)
        cases = [
            (lambda: x[5], "index 5 is out of bounds for dimension 0 with size 2"),
            (lambda: x[0, 0, 0, 0], "too many indices for tensor of dimension 3"),
            (lambda: x[m.tensor([0, 2])], "index 2 is out of bounds for dimension 0 with size 2"),
            (lambda: x[:, m.tensor([-4])], "index -4 is out of bounds for dimension 1"),
            (lambda: x[m.tensor([0, 1]), m.tensor([0, 1, 2])], "shape mismatch"),
            (lambda: x[m.tensor([True, False, True])], "The shape of the mask"),
        ]
        for fn, msg in cases:
            with pytest.raises(IndexError, match=msg):
                fn()
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        jg.tensor(X)[jg.tensor([0, 1], device="cuda")]


def test_index_select_take_masked_fill():
    idx = np.array([2, 0, 2])
    check(lambda x, i: x.index_select(1, i), X, idx, reads=1)
    check(lambda x, i: jg.index_select(x.transpose(0, 2), -1, i), X, np.array([1]), reads=1)
    check(lambda x, i: x.take(i), X, np.array([[0, 23], [-1, 5]]), reads=1)
    mask = X[0] > 0
    check(lambda x, m: x.masked_fill(m, -2.0), X, mask)
    check(lambda x, m: x.masked_fill(m, jg.tensor(3.0)), X, mask)
    for device in ("cpu", "cuda"):
        x = jg.tensor(X, device=device)
        with pytest.raises(IndexError, match="index out of range in self"):
            x.index_select(0, jg.tensor([0, 2], device=device))
        with pytest.raises(RuntimeError, match="id=-1 axis_dim=2"):
            x.index_select(0, jg.tensor([0, -1], device=device))
    x = jg.tensor(X, device="cuda")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x.index_select(0, jg.tensor([0]))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x.masked_fill(jg.tensor(mask), 1.0)


# --- setitem and in-place writes ------------------------------------------------------------
SETITEM = {  # name: (write, host reads on CUDA)
    "basic_scalar": (lambda m, y, v: y.__setitem__((0, slice(1, 3)), 5.0), 0),
    "basic_tensor": (lambda m, y, v: y.__setitem__((slice(None), 1), v[:, 0]), 0),
    "broadcast_tensor": (lambda m, y, v: y.__setitem__((1,), v[0, 0]), 0),
    "advanced_scalar": (lambda m, y, v: y.__setitem__(m.tensor([1, 0]), -1.0), 1),
    "advanced_tensor": (lambda m, y, v: y.__setitem__(
        (m.tensor([0, 1]), slice(None), m.tensor([3, 0])), v[:, :, 0]), 1),
    "advanced_broadcast": (lambda m, y, v: y.__setitem__(
        (slice(None), m.tensor([2, 0])), v[0, 0, :4]), 1),
    "mask": (lambda m, y, v: y.__setitem__(m.tensor(X > 0.5), 0.0), 1),
    "list": (lambda m, y, v: y.__setitem__((1, [0, 2]), v[0, :2]), 0),
}


@pytest.mark.parametrize("name", SETITEM)
def test_setitem(name):
    write, reads = SETITEM[name]
    v = _values((2, 3, 4))

    def fn(x, v):
        y = x * 1.0
        write(_On(x.device), y, v)
        return y

    check(fn, X, v, reads=reads)
    # without autograd: writes straight into the tensor
    for device in ("cpu", "cuda"):
        y = jg.tensor(X, device=device)
        write(_On(device), y, jg.tensor(v, device=device))
        if device == "cpu":
            expected = y
    _compare(y, expected)


def test_setitem_int_tensor_and_device_errors():
    v = _values((4,))
    check(lambda x: _written(x, (1, 2), jg.tensor(v, device=x.device) * 2), X)
    x = jg.tensor(_values((3, 4), np.int64), device="cuda")
    x[x > 0] = 7  # mask read back
    x[1] = jg.tensor(-5)  # a CPU scalar tensor is copied over, as in PyTorch
    h = jg.tensor(_host(x))
    assert (_host(h) == _host(x)).all()
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x[0] = jg.tensor([1, 2, 3, 4])
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        jg.tensor(X)[0] = jg.tensor(X[0], device="cuda")
    for device in ("cpu", "cuda"):
        with pytest.raises(RuntimeError, match="shape mismatch"):
            y = jg.tensor(X, device=device)
            y[jg.tensor([0, 1], device=device)] = jg.tensor(np.ones(5), device=device)
        with pytest.raises(RuntimeError, match="expand"):
            y[0] = jg.tensor(np.ones(5), device=device)


def _written(x, index, value):
    y = x * 1.0
    y[index] = value
    return y


def test_inplace_through_views():
    def fn(x, v):
        y = x * 2.0
        y[0].mul_(v[0, 0])  # a view of an intermediate: CopySlices on y
        row = y[:, 1]
        row.add_(v[:, 1])
        y.transpose(0, 2)[1:3].sub_(1.0)
        return y.sum(1), row

    check(fn, X, _values((2, 3, 4)))


def test_sibling_view_sees_a_write_through_another():
    def fn(x, v):
        y = x * 1.0
        first, column = y[0], y[:, 1]  # overlapping at y[0, 1]
        first.mul_(v[0])
        return column * column

    check(fn, X, _values((2, 3, 4)))


def test_no_host_copies_without_autograd():
    x = jg.tensor(X, device="cuda")
    before = runtime.transfers.to_host
    y = x.clone()
    y[0, 1:] = 3.0
    y[:, 2].add_(x[:, 0])
    jg.softmax(y, 1).sum(0).max(1)
    y.argmax(0)
    assert runtime.transfers.to_host == before
