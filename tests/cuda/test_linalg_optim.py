"""Matrix products and optimizers on CUDA tensors against the same calls on CPU tensors.

Tiny sizes: under NUMBA_ENABLE_CUDASIM=1 every GPU thread runs as a Python thread. Results are
only brought to the host (``.cpu()``) after the counted section, so the tests also check that
the ops themselves make no host copies.
"""

import numpy as np
import pytest

import jitgrad
from jitgrad import optim
from jitgrad.backends.cuda import runtime
from jitgrad.nn import Parameter
from jitgrad.nn import functional as F
from jitgrad.ops import linalg

if not runtime.available():
    pytest.skip(runtime.unavailable_reason(), allow_module_level=True)

TOL = {jitgrad.float32: dict(rtol=1e-5, atol=1e-6), jitgrad.float64: dict(rtol=1e-12, atol=1e-13)}
SAME_DEVICE = "Expected all tensors to be on the same device"


def _host(t):
    return t.detach().cpu().numpy()


def _close(cpu, cuda, dtype=jitgrad.float64):
    assert cuda.device.type == "cuda"
    np.testing.assert_allclose(_host(cuda), cpu.detach().numpy(), **TOL[dtype])


def _pair(rng, shape, dtype=jitgrad.float64, grad=True):
    """The same random values as a CPU leaf and a CUDA leaf."""
    x = jitgrad.tensor(rng.standard_normal(shape), dtype=dtype)
    y = x.cuda()
    if grad:
        x.requires_grad_()
        y.requires_grad_()
    return x, y


def _cuda_sum_works():
    try:
        jitgrad.ones(2, 2, device="cuda").sum(0)
        return True
    except Exception:
        return False


# reductions (sum_to_shape over broadcast batch dims, addmm's bias grad) are wired to CUDA
# separately; these tests run once they are
needs_cuda_sum = pytest.mark.skipif(not _cuda_sum_works(), reason="sum is not wired to CUDA yet")


@pytest.fixture
def no_host_copies():
    """Asserts the test body's counted section copies nothing to the host."""
    before = runtime.transfers.to_host

    def check():
        assert runtime.transfers.to_host == before

    return check


@pytest.fixture
def no_copies(monkeypatch):
    """Fails if linalg makes a contiguous copy of an operand (CUDA kernels take any strides)."""
    cast = linalg.cast

    def refuse(array, dtype):
        if type(array) is not np.ndarray:
            raise AssertionError("contiguous copy of a matmul operand on CUDA")
        return cast(array, dtype)

    monkeypatch.setattr(linalg, "cast", refuse)


def _fwd_bwd(rng, sa, sb, dtype=jitgrad.float64, transform=None, check=None):
    """``a @ b`` and its backward on both devices; compares output and both grads."""
    (a, ac), (b, bc) = _pair(rng, sa, dtype), _pair(rng, sb, dtype)
    ta, tb, tac, tbc = a, b, ac, bc
    if transform is not None:
        ta, tb = transform(a, b)
        tac, tbc = transform(ac, bc)
    out = ta @ tb
    g = jitgrad.tensor(rng.standard_normal(tuple(out.shape)), dtype=dtype)
    gc = g.reshape(-1).cuda().reshape(g.shape)  # array.to_device makes 0-d arrays 1-d
    before = runtime.transfers.to_host
    outc = tac @ tbc
    outc.backward(gc)
    assert runtime.transfers.to_host == before
    out.backward(g)
    assert outc.shape == out.shape and outc.dtype == out.dtype
    _close(out, outc, dtype)
    _close(a.grad, ac.grad, dtype)
    _close(b.grad, bc.grad, dtype)
    assert ac.grad.device.type == "cuda" and bc.grad.device.type == "cuda"


# --- forward and backward against CPU ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [jitgrad.float32, jitgrad.float64])
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)), ((4,), (4,)),
                                   ((3, 4), (4,)), ((4,), (4, 2)), ((5, 1), (1, 3))])
def test_matmul_matches_cpu(dtype, sa, sb, no_copies):
    _fwd_bwd(np.random.default_rng(0), sa, sb, dtype)


@pytest.mark.parametrize("name,transform", [
    ("a.T", lambda a, b: (a.t(), b)),
    ("b.T", lambda a, b: (a, b.t())),
    ("both.T", lambda a, b: (a.t(), b.t())),
    ("sliced", lambda a, b: (a[:, ::2], b[1:, :])),
])
def test_mm_strided_operands(name, transform, no_copies):
    rng = np.random.default_rng(1)
    shapes = {"a.T": ((4, 3), (4, 2)), "b.T": ((3, 4), (2, 4)), "both.T": ((4, 3), (2, 4)),
              "sliced": ((3, 8), (5, 2))}[name]
    _fwd_bwd(rng, *shapes, transform=transform)


def test_bmm_transposed_batch_operands(no_copies):
    _fwd_bwd(np.random.default_rng(2), (2, 4, 3), (2, 5, 4),
             transform=lambda a, b: (a.transpose(-1, -2), b.transpose(1, 2)))
    _fwd_bwd(np.random.default_rng(3), (3, 2, 4), (2, 4, 3),
             transform=lambda a, b: (a.transpose(0, 1), b))  # strided batch dim


@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (4, 2)), ((3, 4), (2, 4, 2)), ((1, 3, 4), (2, 4, 2)),
                                   ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 3))])
def test_broadcast_batch_forward(sa, sb, no_host_copies):
    rng = np.random.default_rng(4)
    (a, ac), (b, bc) = _pair(rng, sa, grad=False), _pair(rng, sb, grad=False)
    outc = ac @ bc
    no_host_copies()
    _close(a @ b, outc)


def test_broadcast_batch_needs_no_copy(no_copies):
    """A single broadcast batch dim stays a stride-0 view for the kernel."""
    rng = np.random.default_rng(5)
    (a, ac), (b, bc) = _pair(rng, (2, 3, 4), grad=False), _pair(rng, (4, 2), grad=False)
    _close(a @ b, ac @ bc)
    _close(b.t() @ a.transpose(-1, -2), bc.t() @ ac.transpose(-1, -2))


@needs_cuda_sum
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (4, 2)), ((3, 4), (2, 4, 2)), ((1, 3, 4), (2, 4, 2)),
                                   ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 3))])
def test_broadcast_batch_backward(sa, sb):
    _fwd_bwd(np.random.default_rng(6), sa, sb)


@pytest.mark.parametrize("dtype", [jitgrad.int64, jitgrad.int32])
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (4, 2)), ((4,), (4,))])
def test_int_matmul(dtype, sa, sb):
    rng = np.random.default_rng(7)
    a = jitgrad.tensor(rng.integers(-50, 50, sa), dtype=dtype)
    b = jitgrad.tensor(rng.integers(-50, 50, sb), dtype=dtype)
    outc = a.cuda() @ b.cuda()
    assert outc.dtype == dtype and outc.device.type == "cuda"
    np.testing.assert_array_equal(_host(outc), (a @ b).numpy())


def test_named_products(no_host_copies):
    rng = np.random.default_rng(8)
    m, mc = _pair(rng, (3, 4), grad=False)
    n, nc = _pair(rng, (4, 2), grad=False)
    v, vc = _pair(rng, (4,), grad=False)
    w, wc = _pair(rng, (3,), grad=False)
    x, xc = _pair(rng, (2, 3, 4), grad=False)
    y, yc = _pair(rng, (2, 4, 2), grad=False)
    results = [(jitgrad.mm(m, n), jitgrad.mm(mc, nc)), (jitgrad.bmm(x, y), jitgrad.bmm(xc, yc)),
               (jitgrad.dot(v, v), jitgrad.dot(vc, vc)), (jitgrad.mv(m, v), jitgrad.mv(mc, vc)),
               (jitgrad.outer(w, v), jitgrad.outer(wc, vc)), (m.matmul(n), mc.matmul(nc))]
    no_host_copies()
    for cpu, cuda in results:
        _close(cpu, cuda)


def test_double_backward_matches_cpu():
    """create_graph=True records the backward's products, as on CPU (gradients given
    explicitly, so no reduction is involved)."""
    rng = np.random.default_rng(9)
    (a, ac), (b, bc) = _pair(rng, (2, 3)), _pair(rng, (3, 4))
    g = jitgrad.tensor(rng.standard_normal((2, 4)))
    h = jitgrad.tensor(rng.standard_normal((2, 3)))
    grads = []
    for x, y, gx, hx in ((a, b, g, h), (ac, bc, g.cuda(), h.cuda())):
        (x @ y).backward(gx, create_graph=True)
        first = x.grad
        assert first.grad_fn is not None
        x.grad = y.grad = None
        first.backward(hx)
        grads.append((first, y.grad))
    assert grads[0][1] is not None
    for cpu, cuda in zip(*grads):
        _close(cpu, cuda)


def test_linear_forward_and_weight_grad():
    rng = np.random.default_rng(10)
    (x, xc), (w, wc) = _pair(rng, (3, 4)), _pair(rng, (2, 4))
    bias, biasc = _pair(rng, (2,), grad=False)
    out, outc = F.linear(x, w, bias), F.linear(xc, wc, biasc)
    _close(out, outc)
    g = jitgrad.tensor(rng.standard_normal((3, 2)))
    F.linear(x, w).backward(g)
    F.linear(xc, wc).backward(g.cuda())
    _close(x.grad, xc.grad)
    _close(w.grad, wc.grad)


@needs_cuda_sum
def test_linear_with_bias_backward():
    rng = np.random.default_rng(11)
    (x, xc), (w, wc), (b, bc) = _pair(rng, (3, 4)), _pair(rng, (2, 4)), _pair(rng, (2,))
    g = jitgrad.tensor(rng.standard_normal((3, 2)))
    F.linear(x, w, b).backward(g)
    F.linear(xc, wc, bc).backward(g.cuda())
    for cpu, cuda in ((x, xc), (w, wc), (b, bc)):
        _close(cpu.grad, cuda.grad)


# --- errors -------------------------------------------------------------------------------------

@pytest.fixture
def no_kernels(monkeypatch):
    class Refuse:
        def __call__(self, data):
            raise AssertionError("a kernel was looked up before the device check")

    monkeypatch.setattr(linalg, "_KERNELS", Refuse())


@pytest.mark.parametrize("fn,sa,sb", [
    (jitgrad.matmul, (3, 4), (4, 2)), (jitgrad.matmul, (2, 3, 4), (4,)),
    (jitgrad.matmul, (3, 4), (5, 2)),  # also mis-shaped: the device error comes first, as torch
    (jitgrad.mm, (3, 4), (4, 2)), (jitgrad.bmm, (2, 3, 4), (2, 4, 2)), (jitgrad.dot, (4,), (4,)),
    (jitgrad.mv, (3, 4), (4,)), (lambda a, b: a @ b, (3, 4), (4, 2)),
])
@pytest.mark.parametrize("cuda_first", [True, False])
def test_device_mixing_raises(fn, sa, sb, cuda_first, no_kernels):
    a, b = jitgrad.ones(sa), jitgrad.ones(sb)
    if cuda_first:
        a = a.cuda()
    else:
        b = b.cuda()
    with pytest.raises(RuntimeError, match=SAME_DEVICE) as info:
        fn(a, b)
    assert "cuda:0" in str(info.value) and "cpu" in str(info.value)


def test_device_mixing_with_grad_inputs():
    a = jitgrad.ones(3, 4, requires_grad=True)
    b = jitgrad.ones(4, 2, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        a @ b
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        F.linear(a, b.t())


@pytest.mark.parametrize("fn,sa,sb", [
    (jitgrad.matmul, (3, 4), (5, 2)), (jitgrad.matmul, (3, 4), (5,)),
    (jitgrad.matmul, (4,), (5,)), (jitgrad.matmul, (2, 3, 4), (3, 4, 2)),
    (jitgrad.mm, (2, 3, 4), (4, 2)), (jitgrad.bmm, (2, 3, 4), (3, 4, 2)),
    (jitgrad.dot, (4, 1), (4,)),
])
def test_shape_errors_as_on_cpu(fn, sa, sb):
    a, b = jitgrad.ones(sa), jitgrad.ones(sb)
    with pytest.raises(RuntimeError) as cpu:
        fn(a, b)
    with pytest.raises(RuntimeError) as cuda:
        fn(a.cuda(), b.cuda())
    assert str(cuda.value) == str(cpu.value)


def test_dtype_errors_on_cuda():
    a = jitgrad.ones(3, 4, device="cuda")
    with pytest.raises(RuntimeError, match="same dtype"):
        a @ jitgrad.ones(4, 2, dtype=jitgrad.float32, device="cuda").double()
    with pytest.raises(NotImplementedError, match="addmm_cuda"):
        a.bool() @ jitgrad.ones(4, 2, device="cuda").bool()


# --- optimizers ---------------------------------------------------------------------------------

OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    (optim.Adam, dict(lr=0.05)),
    (optim.Adam, dict(lr=0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    (optim.AdamW, dict(lr=0.05, amsgrad=True)),
    (optim.RMSprop, dict(lr=0.02)),
    (optim.RMSprop, dict(lr=0.02, centered=True, momentum=0.5, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=0.02, centered=True, maximize=True)),
]
SHAPES = [(3, 2), (4,)]


def _params(dtype, device=None):
    rng = np.random.default_rng(12)
    return [Parameter(jitgrad.tensor(rng.uniform(-1, 1, s), dtype=dtype, device=device))
            for s in SHAPES]


def _coeffs(dtype, device=None):
    rng = np.random.default_rng(13)
    return [(jitgrad.tensor(rng.uniform(0.5, 2, s), dtype=dtype, device=device),
             jitgrad.tensor(rng.uniform(-1, 1, s), dtype=dtype, device=device)) for s in SHAPES]


def _set_grads(params, coeffs):
    """grad = c * p + d: changes with the parameters, computed on their device."""
    with jitgrad.no_grad():
        for p, (c, d) in zip(params, coeffs):
            p.grad = c * p + d


def _run(cls, options, dtype, device, steps=3):
    params, coeffs = _params(dtype, device), _coeffs(dtype, device)
    opt = cls(params, **options)
    for _ in range(steps):
        _set_grads(params, coeffs)
        opt.step()
    return params, opt


def _compare_state(cpu_opt, cuda_opt, cpu_params, cuda_params, dtype):
    for p, pc in zip(cpu_params, cuda_params):
        state, statec = cpu_opt.state[p], cuda_opt.state[pc]
        assert state.keys() == statec.keys()
        for key, value in state.items():
            got = statec[key]
            if key == "step":  # a host counter, as in torch
                assert got.device.type == "cpu" and got.item() == value.item()
                continue
            assert got.device.type == "cuda" and got.dtype == value.dtype
            np.testing.assert_allclose(_host(got), value.numpy(), **TOL[dtype])


@pytest.mark.parametrize("cls,options", OPTIMIZERS)
def test_optimizer_matches_cpu(cls, options):
    dtype = jitgrad.float32
    params, opt = _run(cls, options, dtype, None)
    params_c, coeffs_c = _params(dtype, "cuda"), _coeffs(dtype, "cuda")
    opt_c = cls(params_c, **options)
    before = runtime.transfers.to_host
    for _ in range(3):
        _set_grads(params_c, coeffs_c)
        opt_c.step()
    assert runtime.transfers.to_host == before
    for p, pc in zip(params, params_c):
        assert pc.device.type == "cuda" and pc.dtype == dtype
        np.testing.assert_allclose(_host(pc), p.detach().numpy(), **TOL[dtype])
    _compare_state(opt, opt_c, params, params_c, dtype)


@pytest.mark.parametrize("cls,options", [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[7]])
def test_optimizer_float64(cls, options):
    dtype = jitgrad.float64
    params, opt = _run(cls, options, dtype, None, steps=2)
    params_c, opt_c = _run(cls, options, dtype, "cuda", steps=2)
    for p, pc in zip(params, params_c):
        np.testing.assert_allclose(_host(pc), p.detach().numpy(), **TOL[dtype])
    _compare_state(opt, opt_c, params, params_c, dtype)


def test_zero_grad_and_missing_grads():
    params, coeffs = _params(jitgrad.float32, "cuda"), _coeffs(jitgrad.float32, "cuda")
    opt = optim.Adam(params, lr=0.1)
    _set_grads(params, coeffs)
    params[1].grad = None  # only the first parameter steps
    before = _host(params[1])
    opt.step()
    np.testing.assert_array_equal(_host(params[1]), before)
    assert params[1] not in opt.state
    opt.zero_grad()
    assert params[0].grad is None


@pytest.mark.parametrize("cls,options", [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[7]])
def test_state_dict_round_trips_across_devices(cls, options):
    dtype = jitgrad.float32
    params, opt = _run(cls, options, dtype, None, steps=2)
    params_c, opt_c = _run(cls, options, dtype, "cuda", steps=2)
    saved = opt_c.state_dict()
    for state in saved["state"].values():  # saving leaves CUDA state where it is
        for key, value in state.items():
            assert value.device.type == ("cpu" if key == "step" else "cuda")

    # CPU state into a CUDA optimizer: moved to the parameters' device
    fresh_c = [Parameter(p.detach().cuda()) for p in params]
    opt2 = cls(fresh_c, **options)
    opt2.load_state_dict(opt.state_dict())
    _compare_state(opt, opt2, params, fresh_c, dtype)
    # CUDA state into a CPU optimizer: moved to the host, copies (not aliases)
    fresh = [Parameter(p.detach().cpu()) for p in params_c]
    opt3 = cls(fresh, **options)
    opt3.load_state_dict(saved)
    for p, pc in zip(fresh, params_c):
        for key, value in opt3.state[p].items():
            assert value.device.type == "cpu"
            np.testing.assert_allclose(value.numpy(), _host(opt_c.state[pc][key]),
                                       **TOL[dtype])
    # all four continue in step
    coeffs, coeffs_c = _coeffs(dtype), _coeffs(dtype, "cuda")
    for o, ps, cs in ((opt, params, coeffs), (opt_c, params_c, coeffs_c), (opt2, fresh_c, coeffs_c),
                      (opt3, fresh, coeffs)):
        _set_grads(ps, cs)
        o.step()
    for p, pc, p2, p3 in zip(params, params_c, fresh_c, fresh):
        for q in (pc, p2, p3):
            np.testing.assert_allclose(_host(q), p.detach().numpy(), **TOL[dtype])


def test_load_state_dict_copies_cuda_state():
    params_c, opt_c = _run(optim.SGD, dict(lr=0.1, momentum=0.9), jitgrad.float32, "cuda",
                           steps=1)
    other = [Parameter(p.detach().clone()) for p in params_c]
    opt2 = optim.SGD(other, lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt_c.state_dict())
    for p, q in zip(params_c, other):
        mine, theirs = opt2.state[q]["momentum_buffer"], opt_c.state[p]["momentum_buffer"]
        assert mine.device.type == "cuda"
        assert mine._data is not theirs._data
        np.testing.assert_array_equal(_host(mine), _host(theirs))


def test_optimizer_grad_on_other_device_raises():
    p = Parameter(jitgrad.ones(3, device="cuda"))
    p.grad = jitgrad.ones(3)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(RuntimeError, match=SAME_DEVICE):
        opt.step()
    np.testing.assert_array_equal(_host(p), np.ones(3, np.float32))
