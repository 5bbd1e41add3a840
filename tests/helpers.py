"""One helper checks an op: forward against numpy/torch, backward against float64 differences."""

import numpy as np

import jitgrad

try:
    import torch
except ImportError:  # torch is an optional oracle
    torch = None

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def random_inputs(shapes, dtype=np.float64, low=-2.0, high=2.0, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(low, high, s).astype(dtype) for s in shapes]


def numerical_grads(fn, arrays, weight, eps=1e-6):
    """d sum(fn(*arrays) * weight) / d arrays by central differences, all in float64."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(*a.shape):
            saved = a[idx]
            a[idx] = saved + eps
            hi = np.sum(fn(*arrays) * weight)
            a[idx] = saved - eps
            lo = np.sum(fn(*arrays) * weight)
            a[idx] = saved
            g[idx] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def _jit_forward(fn, arrays):
    ts = [jitgrad.tensor(a, requires_grad=True) for a in arrays]
    return ts, fn(jitgrad, *ts)


def check_op(fn, np_fn, shapes, dtypes=(np.float32, np.float64), low=-2.0, high=2.0, grad=True,
             rtol=None, atol=None, grad_tol=1e-6):
    """Check ``fn(module, *tensors)`` against ``np_fn(*arrays)`` and torch, forward and backward.

    Backward is checked in float64 against central finite differences of ``np_fn`` (float64), and
    against torch's autograd in every dtype when torch is installed.
    """
    for dtype in dtypes:
        arrays = random_inputs(shapes, dtype, low, high)
        tol = dict(TOL[dtype])
        if rtol is not None:
            tol = dict(rtol=rtol, atol=atol if atol is not None else rtol)
        ts, out = _jit_forward(fn, arrays)
        expected = np_fn(*[a.astype(np.float64) for a in arrays])
        assert out.shape == np.shape(expected), (out.shape, np.shape(expected))
        assert out.dtype.np == dtype, (out.dtype, dtype)
        np.testing.assert_allclose(out.detach().numpy(), expected, **tol)
        if torch is not None:
            tts = [torch.tensor(a, requires_grad=True) for a in arrays]
            tout = fn(torch, *tts)
            np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), **tol)
        if not grad:
            continue
        weight = np.random.default_rng(1).uniform(0.5, 1.5, out.shape).astype(dtype)
        out.backward(jitgrad.tensor(weight))
        if dtype == np.float64:
            f64 = [a.astype(np.float64) for a in arrays]
            expected_grads = numerical_grads(np_fn, f64, weight.astype(np.float64))
            for t, eg in zip(ts, expected_grads):
                np.testing.assert_allclose(t.grad.numpy(), eg, rtol=grad_tol, atol=grad_tol)
        if torch is not None:
            tout.backward(torch.tensor(weight))
            for t, tt in zip(ts, tts):
                assert t.grad.shape == tuple(tt.grad.shape)
                np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(),
                                           **({k: v * 10 for k, v in tol.items()}))
