import numpy as np
import pytest
from helpers import check_op, torch

import jitgrad

SHAPE_OPS = {
    "reshape": (lambda m, x: x.reshape(4, -1), lambda x: x.reshape(4, -1)),
    "reshape_tuple": (lambda m, x: m.reshape(x, (-1,)), lambda x: x.reshape(-1)),
    "view": (lambda m, x: x.view(2, 12), lambda x: x.reshape(2, 12)),
    "view_noncontig_reshape": (lambda m, x: x.transpose(0, 1).reshape(-1),
                               lambda x: x.transpose(1, 0, 2).reshape(-1)),
    "transpose": (lambda m, x: x.transpose(0, 2), lambda x: x.transpose(2, 1, 0)),
    "transpose_neg": (lambda m, x: m.transpose(x, -1, -2), lambda x: x.swapaxes(-1, -2)),
    "permute": (lambda m, x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    "permute_tuple": (lambda m, x: m.permute(x, (1, -1, 0)), lambda x: x.transpose(1, 2, 0)),
    "flatten": (lambda m, x: x.flatten(), lambda x: x.reshape(-1)),
    "flatten_range": (lambda m, x: m.flatten(x, 1), lambda x: x.reshape(2, 12)),
    "flatten_mid": (lambda m, x: x.flatten(0, 1), lambda x: x.reshape(6, 4)),
    "unsqueeze": (lambda m, x: x.unsqueeze(1), lambda x: x[:, None]),
    "unsqueeze_neg": (lambda m, x: x.unsqueeze(-1), lambda x: x[..., None]),
    "narrow": (lambda m, x: x.narrow(2, 1, 2), lambda x: x[:, :, 1:3]),
    "narrow_neg": (lambda m, x: m.narrow(x, -2, 1, 2), lambda x: x[:, 1:3]),
    "contiguous": (lambda m, x: x.transpose(1, 2).contiguous() * 2,
                   lambda x: x.transpose(0, 2, 1) * 2),
    "T": (lambda m, x: x[0].T, lambda x: x[0].T),
    "mT": (lambda m, x: x.mT, lambda x: x.swapaxes(-1, -2)),
    "t": (lambda m, x: x[1].t(), lambda x: x[1].T),
    "expand_view_chain": (lambda m, x: x[:, :1].expand(2, 3, 4) * x,
                          lambda x: np.broadcast_to(x[:, :1], (2, 3, 4)) * x),
    "movedim": (lambda m, x: m.movedim(x, 0, -1), lambda x: np.moveaxis(x, 0, -1)),
}


@pytest.mark.parametrize("name", SHAPE_OPS)
def test_shape_op(name):
    fn, ref = SHAPE_OPS[name]
    check_op(fn, ref, [(2, 3, 4)])


def test_squeeze():
    check_op(lambda m, x: x.squeeze(), lambda x: x.reshape(3, 4), [(1, 3, 1, 4)])
    check_op(lambda m, x: x.squeeze(2), lambda x: x.reshape(1, 3, 4), [(1, 3, 1, 4)])
    check_op(lambda m, x: m.squeeze(x, -4), lambda x: x.reshape(3, 1, 4), [(1, 3, 1, 4)])
    check_op(lambda m, x: x.squeeze(1), lambda x: x, [(1, 3, 1, 4)])  # not size 1: no-op
    check_op(lambda m, x: x.squeeze((0, 2)), lambda x: x.reshape(3, 4), [(1, 3, 1, 4)])
    x = jitgrad.zeros(1, 1)
    assert x.squeeze().shape == () and jitgrad.zeros(()).squeeze(0).shape == ()


def test_squeeze_noncontiguous_is_view():
    base = jitgrad.zeros(4, 1, 3)
    v = base.transpose(0, 2).squeeze(1)
    assert v.shape == (3, 4)
    with jitgrad.no_grad():
        v[0, 1] = 7.0
    assert base[1, 0, 0].item() == 7.0


def test_expand():
    check_op(lambda m, x: x.expand(2, 3, 4), lambda x: np.broadcast_to(x, (2, 3, 4)), [(3, 1)])
    check_op(lambda m, x: x.expand(-1, 5), lambda x: np.broadcast_to(x, (3, 5)), [(3, 1)])
    check_op(lambda m, x: m.Tensor.expand(x, (4, -1, 2)), lambda x: np.broadcast_to(x, (4, 3, 2)),
             [(3, 1)])
    check_op(lambda m, x, y: x.expand_as(y) + y, lambda x, y: x + y, [(1, 4), (3, 4)])
    x = jitgrad.tensor([[1.0], [2.0]], requires_grad=True)
    x.expand(2, 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[3.0], [3.0]])
    e = jitgrad.tensor([1.0, 2.0]).expand(3, 2)
    assert e.stride() == (0, 1) and not e.is_contiguous()


def test_cat():
    check_op(lambda m, x, y: m.cat([x, y]), lambda x, y: np.concatenate([x, y]),
             [(2, 3), (4, 3)])
    check_op(lambda m, x, y: m.cat((x, y), dim=1), lambda x, y: np.concatenate([x, y], 1),
             [(2, 3), (2, 1)])
    check_op(lambda m, x, y, z: m.cat([x, y.t(), z], -1),
             lambda x, y, z: np.concatenate([x, y.T, z], -1), [(2, 3), (2, 2), (2, 1)])
    a = jitgrad.tensor([[1, 2]])
    b = jitgrad.tensor([[0.5, 1.5]])
    out = jitgrad.cat([a, b])
    assert out.dtype == jitgrad.float32
    np.testing.assert_array_equal(out.numpy(), [[1, 2], [0.5, 1.5]])
    assert jitgrad.cat([a, jitgrad.tensor([[True, False]])]).dtype == jitgrad.int64
    assert jitgrad.cat([b, b.double()]).dtype == jitgrad.float64
    # legacy: 1-D empty tensors are skipped
    np.testing.assert_array_equal(jitgrad.cat([jitgrad.tensor([]), b]).numpy(), b.numpy())


def test_cat_gradient_mixed_requires_grad():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = jitgrad.tensor([3.0])
    z = jitgrad.tensor([4.0, 5.0], dtype=jitgrad.float64, requires_grad=True)
    out = jitgrad.cat([x, y, z])
    assert out.dtype == jitgrad.float64
    (out * jitgrad.tensor([1.0, 2, 3, 4, 5], dtype=jitgrad.float64)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 2])
    assert x.grad.dtype == jitgrad.float32
    np.testing.assert_array_equal(z.grad.numpy(), [4, 5])
    assert y.grad is None
    e = jitgrad.tensor([], requires_grad=True)
    jitgrad.cat([e, x.unsqueeze(0)]).sum().backward()
    assert e.grad.shape == (0,)


def test_stack():
    check_op(lambda m, x, y: m.stack([x, y]), lambda x, y: np.stack([x, y]), [(2, 3), (2, 3)])
    check_op(lambda m, x, y: m.stack((x, y), 1), lambda x, y: np.stack([x, y], 1),
             [(2, 3), (2, 3)])
    check_op(lambda m, x, y: m.stack([x, y], dim=-1), lambda x, y: np.stack([x, y], -1),
             [(2, 3), (2, 3)])
    s = jitgrad.stack([jitgrad.tensor(1.0), jitgrad.tensor(2.0)])
    np.testing.assert_array_equal(s.numpy(), [1.0, 2.0])


def test_split_chunk_unbind():
    check_op(lambda m, x: m.cat([p * (i + 1) for i, p in enumerate(x.split(2))]),
             lambda x: np.concatenate([x[:2], 2 * x[2:4], 3 * x[4:]]), [(5, 3)])
    check_op(lambda m, x: x.split([1, 2], dim=1)[1], lambda x: x[:, 1:], [(5, 3)])
    check_op(lambda m, x: x.chunk(3, -1)[1] * x.chunk(3, -1)[2],
             lambda x: x[:, 2:4] * x[:, 4:6], [(2, 6)])
    check_op(lambda m, x: x.unbind(1)[2] - x.unbind(1)[0], lambda x: x[:, 2] - x[:, 0],
             [(2, 3)])
    x = jitgrad.tensor(np.arange(10.0))
    assert [p.shape[0] for p in x.split(4)] == [4, 4, 2]
    assert [p.shape[0] for p in jitgrad.split(x, [3, 7])] == [3, 7]
    assert [p.shape[0] for p in x.chunk(3)] == [4, 4, 2]
    assert [p.shape[0] for p in x.chunk(4)] == [3, 3, 3, 1]
    assert [p.shape[0] for p in jitgrad.arange(6).chunk(4)] == [2, 2, 2]
    np.testing.assert_array_equal(x.split(4)[2].numpy(), [8, 9])
    assert [u.item() for u in x[:3].unbind()] == [0.0, 1.0, 2.0]
    if torch is not None:
        for n in (1, 2, 3, 4, 5, 6, 7):
            t = torch.arange(6).chunk(n)
            j = jitgrad.arange(6).chunk(n)
            assert [p.shape[0] for p in t] == [p.shape[0] for p in j]


def test_views_share_storage():
    base = jitgrad.zeros(2, 3, 4)
    views = [base.view(6, 4), base.reshape(24), base.transpose(0, 1), base.permute(2, 0, 1),
             base.unsqueeze(0), base[0:1].squeeze(0), base.flatten(), base.narrow(1, 1, 2),
             base.split(1)[1], base.chunk(2, 2)[1], base.unbind(2)[3], base.T,
             base.expand(2, 2, 3, 4)]
    with jitgrad.no_grad():
        views[0][5, 3] = 1.0  # base[1, 2, 3]
        views[2][0, 1, 1] = 2.0  # base[1, 0, 1]
        views[3][2, 0, 1] = 3.0  # base[0, 1, 2]
        views[7][1, 0, 0] = 4.0  # base[1, 1, 0]
        views[10][0, 0] = 5.0  # base[0, 0, 3]
    expected = np.zeros((2, 3, 4))
    expected[1, 2, 3], expected[1, 0, 1], expected[0, 1, 2] = 1, 2, 3
    expected[1, 1, 0], expected[0, 0, 3] = 4, 5
    np.testing.assert_array_equal(base.numpy(), expected)
    for v in views:
        assert np.shares_memory(v.numpy(), base.numpy())
        assert v._version is base._version
    assert views[1][23].item() == 1.0 and views[11][3, 2, 1].item() == 1.0
    assert views[8][0, 0, 1].item() == 2.0  # split(1)[1] is base[1:2]
    base.add_(1.0)
    assert views[0][0, 0].item() == 1.0 and views[12][1, 1, 2, 3].item() == 2.0


def test_view_and_reshape_of_noncontiguous():
    base = jitgrad.tensor(np.arange(6.0).reshape(2, 3))
    t = base.t()
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        t.view(6)
    r = t.reshape(6)
    np.testing.assert_array_equal(r.numpy(), [0, 3, 1, 4, 2, 5])
    assert not np.shares_memory(r.numpy(), base.numpy())
    assert r.is_contiguous()
    assert t.view(3, 2).shape == (3, 2)  # same shape is always a view
    assert np.shares_memory(t.unsqueeze(0).view(1, 3, 2).numpy(), base.numpy())
    c = t.contiguous()
    assert c.is_contiguous() and not np.shares_memory(c.numpy(), base.numpy())
    assert base.contiguous() is base
    np.testing.assert_array_equal(c.view(-1).numpy(), [0, 3, 1, 4, 2, 5])
    if torch is not None:
        with pytest.raises(RuntimeError):
            torch.arange(6.0).reshape(2, 3).t().view(6)


def test_reshape_shape_arguments():
    x = jitgrad.tensor(np.arange(24.0))
    assert x.reshape(2, -1, 4).shape == (2, 3, 4)
    assert x.reshape([4, 6]).shape == (4, 6)
    assert x.view((-1, 8)).shape == (3, 8)
    assert x.view(jitgrad.Size([6, 4])).shape == (6, 4)
    assert jitgrad.zeros(0, 4).reshape(-1, 2).shape == (0, 2)
    assert jitgrad.tensor(5.0).reshape(1, 1).shape == (1, 1)
    assert jitgrad.zeros(1).view(()).shape == ()
    assert x.view_as(jitgrad.zeros(4, 6)).shape == (4, 6)


def test_shape_ops_on_0d():
    x = jitgrad.tensor(2.0, requires_grad=True)
    y = x.unsqueeze(0).expand(3).flatten()
    assert y.shape == (3,)
    (y * jitgrad.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.item() == 6.0
    assert x.flatten().shape == (1,) and x.t().shape == () and x.T.shape == ()
    assert x.transpose(0, -1).shape == () and x.squeeze().shape == ()


def test_to_dtype_gradient_and_clone():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == jitgrad.float64 and y.grad_fn.name() == "ToCopyBackward0"
    (y * 3).sum().backward()
    assert x.grad.dtype == jitgrad.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])
    c = x.clone()
    assert c.grad_fn.name() == "CloneBackward0" and not np.shares_memory(c._data, x._data)
    assert x.to(jitgrad.float32) is x


def test_grad_fn_names_match_torch():
    if torch is None:
        pytest.skip("torch not installed")
    exprs = ["x.view(6)", "x.reshape(3, 2)", "x.t().reshape(6)", "x.transpose(0, 1)",
             "x.permute(1, 0)", "x.unsqueeze(0)", "x.unsqueeze(0).squeeze(0)",
             "x.unsqueeze(0).squeeze()", "x.expand(2, 2, 3)", "x.narrow(1, 0, 2)",
             "x.split(1)[0]", "x.unbind()[0]", "m.cat([x, x])", "x.clone()", "x.double()"]
    for e in exprs:
        names = []
        for m in (jitgrad, torch):
            x = m.ones(2, 3, requires_grad=True)  # noqa: F841 - read by eval
            names.append(eval(e).grad_fn.name())
        assert names[0] == names[1], (e, names)
