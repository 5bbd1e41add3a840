"""CUDA tensors: devices, transfers, printing, errors, and elementwise ops against the CPU."""

import numpy as np
import pytest
from ops.test_elementwise import BINARY, UNARY

import jitgrad
from jitgrad.backends.cuda import runtime


def _pair(shape, low=-2.0, high=2.0, dtype=jitgrad.float32, seed=0):
    """The same random leaf on the CPU and on CUDA."""
    values = np.random.default_rng(seed).uniform(low, high, shape)
    cpu = jitgrad.tensor(values, dtype=dtype, requires_grad=True)
    return cpu, cpu.detach().cuda().requires_grad_()


def _close(cuda_t, cpu_t, tol=1e-5):
    assert cuda_t.device == jitgrad.device("cuda:0")
    np.testing.assert_allclose(cuda_t.detach().cpu().numpy(), cpu_t.detach().numpy(),
                               rtol=tol, atol=tol)


def test_device_queries_and_moves():
    assert jitgrad.cuda.is_available() and jitgrad.cuda.device_count() == 1
    x = jitgrad.arange(6.0).reshape(2, 3)
    y = x.cuda()
    assert y.is_cuda and not x.is_cuda and str(y.device) == "cuda:0"
    assert y.device == jitgrad.device("cuda:0") and y.device.type == "cuda"
    assert y.to("cpu").device == jitgrad.device("cpu") and y.cpu().tolist() == x.tolist()
    assert y.to("cuda") is y and x.cpu() is x
    assert y.to(jitgrad.float64).dtype == jitgrad.float64 and y.double().is_cuda
    assert y.type() == "jitgrad.cuda.FloatTensor"
    assert jitgrad.zeros(2, device="cuda").device.type == "cuda"
    assert jitgrad.zeros_like(y).is_cuda and y.new_ones(3).is_cuda
    assert jitgrad.tensor([1, 2], device="cuda:0").cpu().tolist() == [1, 2]
    assert jitgrad.tensor(1.5).cuda().shape == () and jitgrad.tensor(2, device="cuda").item() == 2
    assert y[1, 2].item() == 5.0 and float(y[0, 1]) == 1.0
    jitgrad.cuda.synchronize()


def test_printing_names_the_device():
    y = jitgrad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    assert repr(y) == "tensor([1., 2.], device='cuda:0', requires_grad=True)"
    assert repr(y * 2) == "tensor([2., 4.], device='cuda:0', grad_fn=<MulBackward0>)"
    # PyTorch's order: device, then dtype, then the autograd suffix
    assert repr(jitgrad.arange(2.0, dtype=jitgrad.float64, device="cuda")) == (
        "tensor([0., 1.], device='cuda:0', dtype=jitgrad.float64)")


def test_host_only_access_raises():
    y = jitgrad.ones(2, device="cuda")
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        y.numpy()
    with pytest.raises(TypeError, match="cpu"):
        np.asarray(y)


def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="same device.*cuda:0 and cpu"):
        jitgrad.ones(2, device="cuda") + jitgrad.ones(2)
    with pytest.raises(RuntimeError, match="same device"):
        jitgrad.cat([jitgrad.ones(2, device="cuda"), jitgrad.ones(2)])
    # a 0-d CPU tensor is allowed beside CUDA tensors, as in PyTorch
    out = jitgrad.ones(2, device="cuda") * jitgrad.tensor(3.0)
    assert out.is_cuda and out.cpu().tolist() == [3.0, 3.0]


def test_invalid_device_index():
    with pytest.raises(RuntimeError, match="cuda:1"):
        jitgrad.ones(2, device="cuda:1")


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_cpu(name):
    fn, _, domain = UNARY[name]
    x_cpu, x_cuda = _pair((2, 3), *(domain or (-2.0, 2.0)))
    y_cpu, y_cuda = fn(jitgrad, x_cpu), fn(jitgrad, x_cuda)
    _close(y_cuda, y_cpu)
    g = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    y_cpu.backward(jitgrad.tensor(g))
    y_cuda.backward(jitgrad.tensor(g, device="cuda"))
    _close(x_cuda.grad, x_cpu.grad)


_ROUNDING_EDGES = [-2.5, -1.5, -0.5, -0.3, -0.0, 0.0, 0.3, 0.5, 1.5, 2.5, 2.7, -2.7, 1e20, -1e20,
                   np.inf, -np.inf, np.nan, 2.0**52 + 1, -(2.0**52 - 0.5), 2.0**51 + 0.5,
                   -(2.0**51 + 1.5), 1 - 2.0**-53, 2.0**23 + 0.5, -(2.0**23 - 0.5)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, reference", [("floor", np.floor), ("ceil", np.ceil),
                                             ("trunc", np.trunc), ("round", np.rint)])
def test_rounding_edges_match_numpy(name, reference, dtype):
    # halves, signed zeros, values past 2**23 / 2**52, inf and NaN, bit for bit
    values = np.array(_ROUNDING_EDGES, dtype=dtype)
    got = getattr(jitgrad.tensor(values).cuda(), name)().cpu().numpy()
    expected = reference(values)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_matches_cpu(name):
    fn, _, domain = BINARY[name]
    x_cpu, x_cuda = _pair((2, 3), *(domain or (-2.0, 2.0)))
    y_cpu, y_cuda = _pair((2, 3), *(domain or (-2.0, 2.0)), seed=3)
    z_cpu, z_cuda = fn(jitgrad, x_cpu, y_cpu), fn(jitgrad, x_cuda, y_cuda)
    _close(z_cuda, z_cpu)
    g = jitgrad.ones(2, 3)
    z_cpu.backward(g)
    z_cuda.backward(g.cuda())
    _close(x_cuda.grad, x_cpu.grad)
    _close(y_cuda.grad, y_cpu.grad)


def test_strided_and_broadcast_operands():
    x_cpu, x_cuda = _pair((3, 4), dtype=jitgrad.float64)
    r_cpu, r_cuda = _pair((3, 1), dtype=jitgrad.float64, seed=5)
    _close(x_cuda.t() * 2, x_cpu.t() * 2)
    _close(x_cuda[:, 1:] - r_cuda, x_cpu[:, 1:] - r_cpu)
    _close(x_cuda.t().contiguous(), x_cpu.t().contiguous())
    _close(x_cuda.expand(2, 3, 4) * x_cuda, x_cpu.expand(2, 3, 4) * x_cpu)
    _close(x_cuda.view(1, 1, 1, 3, 4).permute(4, 3, 2, 1, 0) + 1,  # 5-D: chunked launches
           x_cpu.view(1, 1, 1, 3, 4).permute(4, 3, 2, 1, 0) + 1)


def test_dtypes_and_comparisons():
    a = jitgrad.tensor([1, 5, -3], device="cuda")
    b = jitgrad.tensor([2, 5, -4], device="cuda")
    assert (a + b).dtype == jitgrad.int64 and (a + b).cpu().tolist() == [3, 10, -7]
    assert (a < b).cpu().tolist() == [True, False, False]
    assert (a / 2).cpu().tolist() == [0.5, 2.5, -1.5]
    assert a.float().dtype == jitgrad.float32 and (a > 0).logical_not().cpu().tolist() == [
        False, False, True]
    nan = jitgrad.tensor([float("nan"), 1.0], device="cuda")
    assert nan.isnan().cpu().tolist() == [True, False]
    assert jitgrad.maximum(nan, jitgrad.zeros(2, device="cuda")).cpu().isnan().tolist() == [
        True, False]


def test_elementwise_ops_make_no_host_copies():
    x = jitgrad.rand(4, device="cuda", requires_grad=True)
    before = runtime.transfers.to_host
    y = ((x * 0.5 + 1).tanh() * x).sigmoid()
    y.backward(jitgrad.ones_like(y))
    x.grad.zero_()
    assert runtime.transfers.to_host == before


def test_in_place_and_copy_between_devices():
    y = jitgrad.zeros(3, device="cuda")
    y.add_(2).mul_(jitgrad.tensor([1.0, 2.0, 3.0], device="cuda"))
    assert y.cpu().tolist() == [2.0, 4.0, 6.0]
    y.copy_(jitgrad.tensor([7.0, 8.0, 9.0]))  # from the host
    assert y.cpu().tolist() == [7.0, 8.0, 9.0]
    host = jitgrad.zeros(3)
    host.copy_(y)
    assert host.tolist() == [7.0, 8.0, 9.0]
    y.fill_(1.5)
    assert y.cpu().tolist() == [1.5] * 3


def test_gradient_flows_across_to():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x.cuda() * 3
    y.backward(jitgrad.ones(2, device="cuda"))
    assert x.grad.device.type == "cpu" and x.grad.tolist() == [3.0, 3.0]


def test_save_and_load_keep_the_device(tmp_path):
    path = tmp_path / "t.npz"
    jitgrad.save({"w": jitgrad.arange(3.0, device="cuda")}, path)
    assert jitgrad.load(path)["w"].is_cuda
    back = jitgrad.load(path, map_location="cpu")["w"]
    assert not back.is_cuda and back.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.skipif(runtime.simulator(), reason="the simulator has no device pointers")
def test_cuda_array_interface_shares_memory():
    from numba import cuda

    dev = cuda.to_device(np.arange(4, dtype=np.float32))
    t = jitgrad.as_tensor(dev)
    assert t.is_cuda and t.cpu().tolist() == [0.0, 1.0, 2.0, 3.0]
    t.add_(1)
    assert dev.copy_to_host().tolist() == [1.0, 2.0, 3.0, 4.0]  # no copy was made
    back = cuda.as_cuda_array(t)
    assert back.copy_to_host().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_gradcheck_on_cuda_inputs():
    """Finite differences in float64, perturbing the CUDA inputs in place on the device."""
    rng = np.random.default_rng(7)
    a = jitgrad.tensor(rng.standard_normal((2, 3)), device="cuda", requires_grad=True)
    b = jitgrad.tensor(rng.standard_normal((3, 2)), device="cuda", requires_grad=True)

    def fn(a, b):
        return ((a @ b).tanh() * 2).softmax(1).sum(0) + (a * a).mean()

    assert jitgrad.autograd.gradcheck(fn, (a, b))
    assert jitgrad.autograd.gradgradcheck(lambda a: (a.sin() * a).sum(1), (a,))


def test_deepcopy_stays_on_the_device():
    import copy

    net = copy.deepcopy(jitgrad.nn.Linear(2, 3).cuda())
    assert net.weight.is_cuda and type(net.weight) is jitgrad.nn.Parameter


def test_pickle_round_trip_stays_on_the_gpu():
    import pickle

    x = jitgrad.tensor([1.0, -2.0], requires_grad=True).cuda()
    back = pickle.loads(pickle.dumps(x))
    assert back.is_cuda and back.requires_grad and back.is_leaf
    np.testing.assert_array_equal(back.cpu().detach().numpy(), [1.0, -2.0])
