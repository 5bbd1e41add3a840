"""CUDA linalg and optimizer kernels against their CPU twins, on tiny inputs (the simulator runs
every thread in Python)."""

import itertools
import math

import numpy as np
import pytest

from jitgrad.backends.cpu import linalg_kernels as cpu_linalg
from jitgrad.backends.cpu import optim_kernels as cpu_optim
from jitgrad.backends.cuda import array, runtime

if not runtime.available():  # the kernel modules import numba.cuda, which may be missing
    pytest.skip(runtime.unavailable_reason(), allow_module_level=True)

from jitgrad.backends.cuda import linalg_kernels as cuda_linalg  # noqa: E402
from jitgrad.backends.cuda import optim_kernels as cuda_optim  # noqa: E402

FLOATS = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _operand(rng, shape, dtype, transposed):
    """(numpy, device) copies of one random operand; ``transposed`` makes both strided views."""
    if not transposed:
        x = _rand(rng, shape, dtype)
        return x, array.to_device(x)
    x = _rand(rng, shape[:-2] + shape[-2:][::-1], dtype)
    return x.swapaxes(-1, -2), array.to_device(x).swapaxes(-1, -2)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_mm(dtype, ta, tb):
    rng = np.random.default_rng(0)
    a, da = _operand(rng, (5, 7), dtype, ta)
    b, db = _operand(rng, (7, 6), dtype, tb)
    assert ta == (not da.flags.c_contiguous) and tb == (not db.flags.c_contiguous)
    out = np.empty((5, 6), dtype)
    cpu_linalg.mm(a, b, out)
    dout = array.empty((5, 6), dtype)
    assert cuda_linalg.mm(da, db, dout) is None
    got = array.to_host(dout)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, out, **TOL[dtype])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_bmm(dtype, ta, tb):
    rng = np.random.default_rng(1)
    a, da = _operand(rng, (2, 5, 7), dtype, ta)
    b, db = _operand(rng, (2, 7, 6), dtype, tb)
    out = np.empty((2, 5, 6), dtype)
    cpu_linalg.bmm(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    dout = array.empty((2, 5, 6), dtype)
    cuda_linalg.bmm(da, db, dout)
    np.testing.assert_allclose(array.to_host(dout), out, **TOL[dtype])


def test_bmm_broadcast_batch():
    """A stride-0 batch operand (matmul broadcasting) needs no copy on the device."""
    rng = np.random.default_rng(2)
    a = _rand(rng, (5, 3), np.float32)
    b = _rand(rng, (2, 3, 4), np.float32)
    da = array.to_device(a)[None].broadcast_to((2, 5, 3))
    assert da.strides[0] == 0
    out = np.empty((2, 5, 4), np.float32)
    cpu_linalg.bmm(np.ascontiguousarray(np.broadcast_to(a, (2, 5, 3))), b, out)
    dout = array.empty((2, 5, 4), np.float32)
    cuda_linalg.bmm(da, array.to_device(b), dout)
    np.testing.assert_allclose(array.to_host(dout), out, **TOL[np.float32])


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_bmm_int(dtype):
    rng = np.random.default_rng(3)
    # int64 sums above float64's 53 bits pass only with exact integer math; int32 stays in range
    # because the simulator raises (where a GPU wraps) when a result overflows its dtype
    hi = 2**29 if dtype == np.int64 else 2**13
    a = rng.integers(-hi, hi, (2, 5, 7)).astype(dtype)
    bt = rng.integers(-hi, hi, (2, 6, 7)).astype(dtype)
    b = bt.swapaxes(1, 2)
    out = np.empty((2, 5, 6), dtype)
    cpu_linalg.bmm_int(a, np.ascontiguousarray(b), out)
    dout = array.empty((2, 5, 6), dtype)
    cuda_linalg.bmm_int(array.to_device(a), array.to_device(bt).swapaxes(1, 2), dout)
    np.testing.assert_array_equal(array.to_host(dout), out)


def test_bmm_int_empty_inner_dim():
    dout = array.empty((1, 2, 3), np.int64)
    cuda_linalg.bmm_int(array.empty((1, 2, 0), np.int64), array.empty((1, 0, 3), np.int64), dout)
    np.testing.assert_array_equal(array.to_host(dout), np.zeros((1, 2, 3), np.int64))


# --- optimizers: several steps, the CPU and device states compared after each ---------------

N = 10


def _run_steps(dtype, present, step_args, steps=3):
    """Runs both kernels ``steps`` times on random param/grad and zero state buffers.

    ``present[j]`` says whether state buffer j is in use (else both get empty arrays);
    ``step_args(t, k)`` gives the (state-excluded) scalar arguments for step k.
    """
    rng = np.random.default_rng(4)
    t = np.dtype(dtype).type
    param = _rand(rng, N, dtype)
    dparam = array.to_device(param)
    state = [np.zeros(N if p else 0, dtype) for p in present]
    dstate = [array.to_device(s) if s.size else array.empty((0,), dtype) for s in state]
    for k in range(1, steps + 1):
        grad = _rand(rng, N, dtype)
        scalars = step_args(t, k)
        yield (param, grad, *state, *scalars), (dparam, array.to_device(grad), *dstate, *scalars)
        np.testing.assert_allclose(array.to_host(dparam), param, **TOL[dtype])
        for s, ds in zip(state, dstate):
            if s.size:
                np.testing.assert_allclose(array.to_host(ds), s, **TOL[dtype])


SGD_FLAGS = [(m, d, nest, wd, mx) for m, d, nest, wd, mx in
             itertools.product([0.0, 0.9], [0.0, 0.1], [False, True], [0.0, 0.01], [False, True])
             if not nest or (m > 0 and d == 0)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("momentum,dampening,nesterov,weight_decay,maximize", SGD_FLAGS)
def test_sgd_step(dtype, momentum, dampening, nesterov, weight_decay, maximize):
    def args(t, k):
        return (t(0.1), t(momentum), t(1 - dampening), t(weight_decay), nesterov, maximize,
                k == 1)

    for cpu_args, dev_args in _run_steps(dtype, [momentum != 0], args):
        cpu_optim.sgd_step(*cpu_args)
        assert cuda_optim.sgd_step(*dev_args) is None


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("weight_decay,decoupled,amsgrad,maximize",
                         list(itertools.product([0.0, 0.01], [False, True], [False, True],
                                                [False, True])))
def test_adam_step(dtype, weight_decay, decoupled, amsgrad, maximize):
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8

    def args(t, k):
        return (t(1 - beta1), t(beta2), t(1 - beta2), t(weight_decay), t(1 - lr * weight_decay),
                t(lr / (1 - beta1**k)), t(math.sqrt(1 - beta2**k)), t(eps), decoupled, amsgrad,
                maximize)

    for cpu_args, dev_args in _run_steps(dtype, [True, True, amsgrad], args):
        cpu_optim.adam_step(*cpu_args)
        cuda_optim.adam_step(*dev_args)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("weight_decay,momentum,centered,maximize",
                         list(itertools.product([0.0, 0.01], [0.0, 0.9], [False, True],
                                                [False, True])))
def test_rmsprop_step(dtype, weight_decay, momentum, centered, maximize):
    alpha = 0.99

    def args(t, k):
        return (t(0.01), t(alpha), t(1 - alpha), t(1e-8), t(weight_decay), t(momentum), centered,
                maximize)

    for cpu_args, dev_args in _run_steps(dtype, [True, centered, momentum > 0], args):
        cpu_optim.rmsprop_step(*cpu_args)
        cuda_optim.rmsprop_step(*dev_args)


def test_optim_numpy_dummy_buffer():
    """An unused state buffer may still be the CPU path's ``np.empty(0)``."""
    rng = np.random.default_rng(5)
    p = _rand(rng, N, np.float32)
    g = _rand(rng, N, np.float32)
    dp = array.to_device(p)
    f = np.float32
    cpu_optim.sgd_step(p, g, np.empty(0, np.float32), f(0.1), f(0), f(1), f(0), False, False, True)
    cuda_optim.sgd_step(dp, array.to_device(g), np.empty(0, np.float32), f(0.1), f(0), f(1), f(0),
                        False, False, True)
    np.testing.assert_allclose(array.to_host(dp), p, **TOL[np.float32])
