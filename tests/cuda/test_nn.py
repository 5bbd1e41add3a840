"""nn.functional and nn.Module on CUDA against the CPU: same inputs and parameters, the same
outputs and gradients, no device -> host copies inside ops, and device-mixing errors.

Sizes stay tiny: the simulator runs every thread in Python.
"""

import numpy as np
import pytest

import jitgrad
from jitgrad import nn
from jitgrad.backends.cuda import runtime
from jitgrad.nn import functional as F


def _rng(seed=0):
    return np.random.default_rng(seed)


def t(values, dtype=jitgrad.float64, requires_grad=False):
    return jitgrad.tensor(np.asarray(values), dtype=dtype, requires_grad=requires_grad)


def randn(*shape, dtype=jitgrad.float64, requires_grad=True, seed=0):
    return t(_rng(seed).standard_normal(shape), dtype, requires_grad)


def on_cuda(x):
    if not isinstance(x, jitgrad.Tensor):
        return x
    return x.detach().cuda().requires_grad_(x.requires_grad)


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == jitgrad.float32 else \
        {"rtol": 1e-10, "atol": 1e-12}


def close(got, want, **kw):
    assert got.device.type == "cuda"
    got = got.detach().cpu()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), **(kw or tol(want.dtype)))


def compare(fn, *inputs, **kw):
    """fn on CPU inputs and on CUDA copies: outputs and input gradients match; the CUDA forward
    and backward read nothing back to the host."""
    dev = [on_cuda(x) for x in inputs]
    want = fn(*inputs)
    before = runtime.transfers.to_host
    got = fn(*dev)
    wants, gots = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    if any(isinstance(x, jitgrad.Tensor) and x.requires_grad for x in inputs):
        if want.ndim:
            g = randn(*want.shape, dtype=want.dtype, requires_grad=False, seed=1)
            gd = g.cuda()
            before = runtime.transfers.to_host
            want.backward(g)
            got.backward(gd)
        else:
            want.backward()
            got.backward()
    assert runtime.transfers.to_host == before
    for w, g in zip(wants, gots):
        close(g, w, **kw)
    for x, d in zip(inputs, dev):
        if isinstance(x, jitgrad.Tensor) and x.requires_grad:
            assert d.grad is not None and d.grad.device.type == "cuda"
            close(d.grad, x.grad, **kw)
    return got


# --- activations and dropout -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [jitgrad.float32, jitgrad.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(dtype, approximate):
    compare(lambda x: F.gelu(x, approximate=approximate), randn(2, 5, dtype=dtype))


def test_gelu_double_backward():
    def fn(x):
        (g,) = jitgrad.autograd.grad(F.gelu(x).sum(), x, create_graph=True)
        return g * x
    compare(fn, randn(7))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_pointwise_activations(name):
    compare(getattr(F, name), randn(3, 4))


@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_same_mask_as_cpu(inplace):
    def fn(x):
        jitgrad.manual_seed(3)
        y = x * 1.0
        return F.dropout(y, 0.4, training=True, inplace=inplace)
    x = randn(4, 5)
    sent = runtime.transfers.to_device
    compare(fn, x)
    assert runtime.transfers.to_device > sent  # the host uniforms went over
    assert F.dropout(on_cuda(x), 0.4, training=False).device.type == "cuda"


# --- convolution -------------------------------------------------------------------------------

CONVS = [  # (n, c, o, hw, kernel, kwargs)
    (1, 2, 3, 4, 3, {"padding": 1}),
    (2, 2, 2, 5, 2, {"stride": 2, "groups": 2}),
    (2, 1, 2, 5, 3, {"dilation": 2, "padding": "same"}),
]


@pytest.mark.parametrize("n,c,o,hw,k,kw", CONVS)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d(n, c, o, hw, k, kw, bias):
    x = randn(n, c, hw, hw)
    w = randn(o, c // kw.get("groups", 1), k, k, seed=1)
    b = randn(o, seed=2) if bias else None
    if bias:
        compare(lambda x, w, b: F.conv2d(x, w, b, **kw), x, w, b)
    else:
        compare(lambda x, w: F.conv2d(x, w, **kw), x, w)


def test_conv2d_float32_unbatched():
    compare(lambda x, w: F.conv2d(x, w, padding=1), randn(1, 3, 3, dtype=jitgrad.float32),
            randn(2, 1, 2, 2, dtype=jitgrad.float32, seed=1))


def test_conv2d_double_backward():
    def fn(x, w):
        y = F.conv2d(x, w, padding=1)
        gx, gw = jitgrad.autograd.grad((y * y).sum(), (x, w), create_graph=True)
        return (gx * gx).sum() + (gw * gw).sum()
    compare(fn, randn(1, 1, 3, 3), randn(2, 1, 2, 2, seed=1))


# --- pooling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "stride": 1, "dilation": 2, "ceil_mode": True}])
def test_max_pool2d(kw):
    compare(lambda x: F.max_pool2d(x, **kw), randn(1, 2, 5, 5))


def test_max_pool2d_indices():
    x = randn(2, 4, 4)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    out_d, idx_d = F.max_pool2d(on_cuda(x), 2, return_indices=True)
    close(out_d, out)
    assert idx_d.device.type == "cuda"
    np.testing.assert_array_equal(idx_d.cpu().numpy(), idx.numpy())


@pytest.mark.parametrize("kw", [{"kernel_size": 2},
                                {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 3, "stride": 2, "padding": 1,
                                 "count_include_pad": False, "ceil_mode": True},
                                {"kernel_size": 2, "divisor_override": 3}])
def test_avg_pool2d(kw):
    compare(lambda x: F.avg_pool2d(x, **kw), randn(1, 2, 5, 5))


@pytest.mark.parametrize("size", [2, (3, None), 1])
def test_adaptive_avg_pool2d(size):
    compare(lambda x: F.adaptive_avg_pool2d(x, size), randn(2, 5, 4))


def test_pool_double_backward():
    def fn(x):
        y = F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)
        (g,) = jitgrad.autograd.grad((y * y).sum(), x, create_graph=True)
        return g * g
    compare(fn, randn(1, 4, 4))


# --- embedding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [{}, {"padding_idx": 1}, {"scale_grad_by_freq": True},
                                {"padding_idx": -1, "scale_grad_by_freq": True}])
def test_embedding(kw):
    idx = t([[0, 2, 5], [2, 2, 1]], jitgrad.int64)
    compare(lambda i, w: F.embedding(i, w, **kw), idx, randn(6, 3))


def test_embedding_int32_indices():
    idx = t([3, 0, 3], jitgrad.int32)
    compare(lambda i, w: F.embedding(i, w), idx, randn(4, 2))


def test_embedding_max_norm_renorms_in_place():
    idx = t([0, 2, 2], jitgrad.int64)
    w = randn(4, 3, requires_grad=False) * 3
    wd = on_cuda(w)
    out = F.embedding(idx, w, max_norm=1.0)
    out_d = F.embedding(on_cuda(idx), wd, max_norm=1.0)
    close(out_d, out)
    close(wd, w)


# --- class losses ------------------------------------------------------------------------------

WEIGHT = [0.5, 1.0, 2.0]
TARGET = [0, 2, 1, 2]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [-100, 1])
def test_nll_loss(reduction, weighted, ignore):
    wt = t(WEIGHT) if weighted else None
    compare(lambda x, y: F.nll_loss(x, y, on_cuda(wt) if x.is_cuda else wt,
                                    ignore_index=ignore, reduction=reduction),
            randn(4, 3), t(TARGET, jitgrad.int64))


def test_nll_loss_spatial_float32_and_double_backward():
    def fn(x, y):
        loss = F.nll_loss(x, y)
        (g,) = jitgrad.autograd.grad(loss, x, create_graph=True)
        return F.nll_loss(g * x, y, reduction="sum")
    compare(fn, randn(2, 3, 2, dtype=jitgrad.float32), t([[0, 1], [2, 0]], jitgrad.int64))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy(reduction, weighted, smoothing):
    wt = t(WEIGHT) if weighted else None
    compare(lambda x, y: F.cross_entropy(x, y, on_cuda(wt) if x.is_cuda else wt,
                                         ignore_index=1, reduction=reduction,
                                         label_smoothing=smoothing),
            randn(4, 3), t(TARGET, jitgrad.int64))


@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_double_backward(weighted):
    wt = t(WEIGHT) if weighted else None

    def fn(x, y):
        loss = F.cross_entropy(x, y, on_cuda(wt) if x.is_cuda else wt, ignore_index=2,
                               label_smoothing=0.1)
        (g,) = jitgrad.autograd.grad(loss, x, create_graph=True)
        return (g * g).sum()
    compare(fn, randn(4, 3), t([0, 2, 1, 1], jitgrad.int64))


def test_cross_entropy_spatial_float32():
    compare(lambda x, y: F.cross_entropy(x, y), randn(2, 3, 2, dtype=jitgrad.float32),
            t([[0, 1], [2, 0]], jitgrad.int64))


def test_cross_entropy_probability_targets():
    p = F.softmax(randn(4, 3, requires_grad=False, seed=5), 1)
    compare(lambda x, q: F.cross_entropy(x, q, label_smoothing=0.1), randn(4, 3), p)


# --- pointwise losses, linear, normalization, padding ------------------------------------------

@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_pointwise_losses(name, reduction):
    target = t(_rng(3).uniform(size=(3, 4)))
    compare(lambda x, y: getattr(F, name)(x, y, reduction=reduction), randn(3, 4), target)


def test_binary_cross_entropy():
    x = t(_rng(4).uniform(0.1, 0.9, size=(3, 4)), requires_grad=True)
    target = t(_rng(3).uniform(size=(3, 4)))
    w = t(_rng(5).uniform(size=(3, 4)))
    compare(lambda x, y, w: F.binary_cross_entropy(x, y, w), x, target, w)


def test_linear():
    compare(F.linear, randn(3, 4), randn(2, 4, seed=1), randn(2, seed=2))
    compare(F.linear, randn(2, 3, 4), randn(2, 4, seed=1))


def test_layer_norm_and_batch_norm():
    compare(lambda x, w, b: F.layer_norm(x, (4,), w, b), randn(3, 4), randn(4, seed=1),
            randn(4, seed=2))
    compare(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), randn(3, 2, 2),
            randn(2, seed=1), randn(2, seed=2))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad(mode):
    compare(lambda x: F.pad(x, (1, 2, 1, 0), mode=mode, value=None if mode != "constant"
                            else 0.5), randn(1, 2, 3, 3))


def test_softmax_log_softmax():
    compare(lambda x: F.softmax(x, 1) + F.log_softmax(x, 0), randn(3, 4))


# --- device mixing -----------------------------------------------------------------------------

MIXED = "Expected all tensors to be on the same device"


def test_mixing_devices_raises_before_any_kernel():
    x, w = randn(1, 1, 3, 3), randn(1, 1, 2, 2)
    with pytest.raises(RuntimeError, match=MIXED):
        F.conv2d(on_cuda(x), w)
    with pytest.raises(RuntimeError, match=MIXED):
        F.conv2d(on_cuda(x), on_cuda(w), randn(1))
    with pytest.raises(RuntimeError, match=MIXED):
        F.embedding(t([0, 1], jitgrad.int64), on_cuda(randn(2, 2)))
    logits, target = randn(4, 3), t(TARGET, jitgrad.int64)
    with pytest.raises(RuntimeError, match=MIXED):
        F.cross_entropy(on_cuda(logits), target)
    with pytest.raises(RuntimeError, match=MIXED):
        F.nll_loss(on_cuda(logits), on_cuda(target), t(WEIGHT))
    with pytest.raises(RuntimeError, match=MIXED):
        F.mse_loss(on_cuda(logits), logits)


# --- modules -----------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 2 * 2, 3)
        self.emb = nn.Embedding(3, 8)

    def forward(self, x, tokens):
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        h = h.reshape(h.shape[0], -1) + self.emb(tokens)
        return self.fc(F.gelu(h))


def _net():
    jitgrad.manual_seed(0)
    return TinyNet().double()


def test_module_to_cuda_and_back_keeps_parameters():
    net = _net()
    params = list(net.parameters())
    before = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    assert net.cuda() is net
    assert list(net.parameters()) == params and all(a is b for a, b in zip(net.parameters(),
                                                                          params))
    assert all(p.is_cuda and p.requires_grad for p in net.parameters())
    assert all(b.is_cuda for b in net.buffers())
    assert net.cpu() is net
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert not any(p.is_cuda for p in net.parameters())
    assert net.to("cuda") is net and net.conv.weight.is_cuda and net.bn.running_var.is_cuda
    assert net.to(device="cpu", dtype=jitgrad.float32) is net
    assert net.fc.weight.dtype == jitgrad.float32 and not net.fc.weight.is_cuda
    assert net.bn.num_batches_tracked.dtype == jitgrad.int64
    after = net.double().state_dict()
    for k, v in before.items():
        np.testing.assert_allclose(after[k].numpy(), v, rtol=1e-6)


def test_module_to_moves_gradients():
    lin = nn.Linear(2, 1).double()
    lin(randn(3, 2, requires_grad=False)).sum().backward()
    g = lin.weight.grad.numpy().copy()
    lin.cuda()
    assert lin.weight.grad.is_cuda
    np.testing.assert_array_equal(lin.weight.grad.cpu().numpy(), g)


def test_tiny_model_training_step_matches_cpu():
    cpu_net, cuda_net = _net(), _net().cuda()
    x = randn(2, 1, 4, 4, requires_grad=False)
    tokens = t([0, 2], jitgrad.int64)
    y = t([1, 2], jitgrad.int64)
    xd, tokens_d, yd = x.cuda(), tokens.cuda(), y.cuda()
    opt_c = jitgrad.optim.SGD(cpu_net.parameters(), lr=0.1, momentum=0.9)
    opt_g = jitgrad.optim.SGD(cuda_net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        loss_c = F.cross_entropy(cpu_net(x, tokens), y, label_smoothing=0.1)
        loss_c.backward()
        before = runtime.transfers.to_host
        loss_g = F.cross_entropy(cuda_net(xd, tokens_d), yd, label_smoothing=0.1)
        loss_g.backward()
        opt_g.step()
        assert runtime.transfers.to_host == before  # forward, backward and step stay on device
        close(loss_g, loss_c)
        for p, q in zip(cpu_net.parameters(), cuda_net.parameters()):
            close(q.grad, p.grad)
        opt_c.step()
        opt_c.zero_grad()
        opt_g.zero_grad()
    for p, q in zip(cpu_net.state_dict().values(), cuda_net.state_dict().values()):
        close(q, p)
