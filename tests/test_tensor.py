import numpy as np
import pytest

import jitgrad


def test_metadata():
    x = jitgrad.zeros(2, 3)
    assert x.shape == (2, 3) and repr(x.shape) == "jitgrad.Size([2, 3])"
    assert x.size() == (2, 3) and x.size(1) == 3 and x.size(-1) == 3
    assert x.dim() == 2 and x.ndim == 2 and x.numel() == 6 and len(x) == 2
    assert x.dtype == jitgrad.float32 and repr(x.dtype) == "jitgrad.float32"
    assert str(x.device) == "cpu" and repr(x.device) == "device(type='cpu')"
    assert x.T.shape == (3, 2) and x.is_leaf and x.grad is None and x.grad_fn is None
    assert str(type(x)) == "<class 'jitgrad.Tensor'>"


def test_host_access():
    x = jitgrad.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert x[0, 0].item() == 1.5 and isinstance(x.sum().item(), float)
    assert x.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert np.asarray(x).shape == (2, 2) and x.numpy().dtype == np.float32
    assert float(x[1, 1]) == 4.0 and int(jitgrad.tensor(3)) == 3
    assert [row.tolist() for row in x] == [[1.5, 2.0], [3.0, 4.0]]
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(RuntimeError, match="Use tensor.detach"):
        jitgrad.ones(1, requires_grad=True).numpy()


def test_data_is_detached_and_shares_storage():
    x = jitgrad.ones(2, requires_grad=True)
    d = x.data
    assert not d.requires_grad
    d.mul_(3)
    np.testing.assert_allclose(x.detach().numpy(), [3.0, 3.0])


def test_norm_matches_numpy():
    v = np.array([3.0, -4.0, 12.0], np.float32)
    assert jitgrad.tensor(v).norm().item() == pytest.approx(13.0)
    assert jitgrad.tensor(v).norm(p=1).item() == pytest.approx(19.0)


@pytest.mark.parametrize("make,expected", [
    (lambda: jitgrad.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: jitgrad.tensor([1, 2], dtype=jitgrad.int32), "tensor([1, 2], dtype=jitgrad.int32)"),
    (lambda: jitgrad.tensor([True, False]), "tensor([ True, False])"),
    (lambda: jitgrad.tensor([1.5], dtype=jitgrad.float64),
     "tensor([1.5000], dtype=jitgrad.float64)"),
    (lambda: jitgrad.tensor(2.0, requires_grad=True) * 2, "tensor(4., grad_fn=<MulBackward0>)"),
    (lambda: jitgrad.zeros(0, 3), "tensor([], size=(0, 3))"),
])
def test_repr(make, expected):
    assert repr(make()) == expected


def test_hash_is_identity_and_eq_is_elementwise():
    a, b = jitgrad.ones(2), jitgrad.ones(2)
    assert len({a, b}) == 2
    assert (a == b).all().item()


def test_legacy_constructor():
    assert jitgrad.Tensor([1, 2]).dtype == jitgrad.float32
    assert jitgrad.Tensor(2, 3).shape == (2, 3)
    assert jitgrad.Tensor().shape == (0,)


@pytest.mark.skipif(jitgrad.cuda.is_available(), reason="a CUDA device (or simulator) is present")
def test_cuda_queries_report_no_device():
    assert jitgrad.cuda.device_count() == 0
    hint = "CUDA is not available.*NUMBA_ENABLE_CUDASIM=1"
    with pytest.raises(RuntimeError, match=hint):
        jitgrad.cuda.synchronize()
    with pytest.raises(RuntimeError, match=hint):
        jitgrad.ones(2).to("cuda")
    with pytest.raises(RuntimeError, match=hint):
        jitgrad.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match=hint):
        jitgrad.ones(2).cuda()


def test_deepcopy_copies_leaves_and_refuses_graph_outputs():
    import copy

    x = jitgrad.ones(2, requires_grad=True)
    x.grad = jitgrad.tensor([1.0, 2.0])
    y = copy.deepcopy(x)
    assert y is not x and y.requires_grad and y.is_leaf and y.grad.tolist() == [1.0, 2.0]
    y.data.add_(1)
    assert x.tolist() == [1.0, 1.0]  # storage is not shared
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)
    w = copy.deepcopy(jitgrad.nn.Linear(2, 2)).weight
    assert type(w) is jitgrad.nn.Parameter


def _pickled(t):
    import pickle

    return pickle.loads(pickle.dumps(t))


@pytest.mark.parametrize("m", ["jitgrad", "torch"])
def test_pickle_keeps_values_dtype_and_requires_grad_but_not_grad_or_graph(m):
    """As PyTorch pickles a tensor: a leaf that took part in a graph, one with views, a
    non-leaf (back as a leaf) and an integer tensor; torch itself is the oracle."""
    lib = pytest.importorskip(m)
    x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    view = x.view(3)
    cases = [(x, True), (view * 2, True), (lib.tensor([1, 2]), False)]
    for t, requires_grad in cases:
        back = _pickled(t)
        np.testing.assert_array_equal(back.detach().numpy(), t.detach().numpy())
        assert back.dtype == t.dtype
        assert back.requires_grad is requires_grad
        assert back.grad is None and back.grad_fn is None and back.is_leaf


def test_pickled_module_keeps_its_parameters():
    layer = jitgrad.nn.Linear(3, 2)
    layer(jitgrad.ones(4, 3)).sum().backward()  # its parameters are now in a graph's history
    back = _pickled(layer)
    assert type(back.weight) is jitgrad.nn.Parameter and back.weight.requires_grad
    np.testing.assert_array_equal(back.weight.detach().numpy(), layer.weight.detach().numpy())
    np.testing.assert_array_equal(back(jitgrad.ones(1, 3)).detach().numpy(),
                                  layer(jitgrad.ones(1, 3)).detach().numpy())
