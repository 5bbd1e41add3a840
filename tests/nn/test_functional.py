"""jitgrad.nn.functional against torch.nn.functional (forward, gradients, errors) and against
float64 finite differences of its own forward, so values are still checked without torch."""

import os
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from helpers import numerical_grads, torch  # noqa: E402

import jitgrad  # noqa: E402
from jitgrad.nn import functional as F  # noqa: E402

TF = torch.nn.functional if torch is not None else None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is the reference")
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-10)}


def _modules():
    return [(jitgrad, F)] + ([(torch, TF)] if torch is not None else [])


def check(fn, shapes, dtypes=(np.float32, np.float64), low=-2.0, high=2.0, fd=True, seed=0,
          grad=True, fd_tol=1e-6):
    """``fn(m, F, *tensors)`` in jitgrad and torch: outputs and input gradients must agree.

    In float64 the gradients are also checked against central differences of jitgrad's own
    forward, which needs no torch.
    """
    for dtype in dtypes:
        rng = np.random.default_rng(seed)
        arrays = [rng.uniform(low, high, s).astype(dtype) for s in shapes]
        results = []
        for m, mf in _modules():
            ts = [m.tensor(a, requires_grad=grad) for a in arrays]
            out = fn(m, mf, *ts)
            outs = out if isinstance(out, tuple) else (out,)
            weight = np.random.default_rng(1).uniform(0.5, 1.5, outs[0].shape).astype(dtype)
            if grad:
                outs[0].backward(m.tensor(weight))
            results.append(([o.detach().numpy() for o in outs],
                            [t.grad.numpy() if t.grad is not None else None for t in ts]))
        (jouts, jgrads) = results[0]
        tol = TOL[dtype]
        if len(results) == 2:
            touts, tgrads = results[1]
            for a, b in zip(jouts, touts):
                assert a.shape == b.shape and a.dtype == b.dtype
                np.testing.assert_allclose(a, b, **tol)
            for a, b in zip(jgrads, tgrads):
                assert (a is None) == (b is None)
                if a is not None:
                    np.testing.assert_allclose(a, b, **{k: v * 10 for k, v in tol.items()})
        if grad and fd and dtype == np.float64:
            def forward(*arrs):
                out = fn(jitgrad, F, *[jitgrad.tensor(a, requires_grad=True) for a in arrs])
                return (out[0] if isinstance(out, tuple) else out).detach().numpy()

            expected = numerical_grads(forward, [a.copy() for a in arrays], weight)
            for g, e in zip(jgrads, expected):
                np.testing.assert_allclose(np.zeros_like(e) if g is None else g, e, rtol=fd_tol,
                                           atol=fd_tol)


def _ints(m, values):
    return m.tensor(np.asarray(values, np.int64))


# --- activations -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "leaky_relu",
                                  "softmax", "log_softmax", "softmax_dim0"])
def test_activations(name):
    calls = {
        "relu": lambda m, f, x: f.relu(x),
        "sigmoid": lambda m, f, x: f.sigmoid(x),
        "tanh": lambda m, f, x: f.tanh(x),
        "gelu": lambda m, f, x: f.gelu(x),
        "gelu_tanh": lambda m, f, x: f.gelu(x, approximate="tanh"),
        "leaky_relu": lambda m, f, x: f.leaky_relu(x, 0.2),
        "softmax": lambda m, f, x: f.softmax(x, dim=-1),
        "log_softmax": lambda m, f, x: f.log_softmax(x, 1),
        "softmax_dim0": lambda m, f, x: f.softmax(x, 0, dtype=m.float64),
    }
    check(calls[name], [(3, 5)])


def test_activation_values_and_names():
    x = jitgrad.tensor([-2.0, -0.5, 0.0, 1.5], requires_grad=True)
    np.testing.assert_allclose(F.leaky_relu(x).detach().numpy(), [-0.02, -0.005, 0.0, 1.5],
                               rtol=1e-6)
    np.testing.assert_allclose(F.relu(x).detach().numpy(), [0, 0, 0, 1.5])
    from math import erf, sqrt
    expected = [v * 0.5 * (1 + erf(v / sqrt(2))) for v in (-2.0, -0.5, 0.0, 1.5)]
    np.testing.assert_allclose(F.gelu(x).detach().numpy(), expected, rtol=1e-6)
    assert F.gelu(x).grad_fn.name() == "GeluBackward0"
    assert F.leaky_relu(x).grad_fn.name() == "LeakyReluBackward0"
    y = jitgrad.tensor([-1.0, 2.0])
    F.leaky_relu(y, 0.1, inplace=True)
    np.testing.assert_allclose(y.numpy(), [-0.1, 2.0], rtol=1e-6)
    with pytest.raises(RuntimeError, match="none or tanh"):
        F.gelu(x, approximate="fast")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_double_backward(approximate):
    def second(m, f, x):
        (g,) = m.autograd.grad(f.gelu(x, approximate=approximate).sum(), x, create_graph=True)
        return g * g
    check(second, [(6,)], dtypes=(np.float64,), fd_tol=1e-5)


# --- linear and dropout --------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3), (3,)])
def test_linear(bias, shape):
    if bias:
        check(lambda m, f, x, w, b: f.linear(x, w, b), [shape, (5, 3), (5,)])
    else:
        check(lambda m, f, x, w: f.linear(x, w), [shape, (5, 3)])


def test_dropout():
    x = jitgrad.ones(200, 50, requires_grad=True)
    jitgrad.manual_seed(0)
    y = F.dropout(x, 0.3)
    kept = y.detach().numpy() != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.7, rtol=1e-6)
    assert y.grad_fn.name() == "NativeDropoutBackward0"
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7, rtol=1e-6)
    jitgrad.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(x, 0.3).detach().numpy(), y.detach().numpy())
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).detach().numpy().any()
    z = jitgrad.ones(4, 4, dtype=jitgrad.float64)
    F.dropout(z, 0.5, inplace=True)
    assert set(np.unique(z.numpy())) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)


# --- convolution ----------------------------------------------------------------------------------

CONV_CASES = [  # (x shape, weight shape, stride, padding, dilation, groups, bias)
    ((2, 3, 6, 7), (4, 3, 3, 3), 1, 0, 1, 1, True),
    ((1, 2, 7, 6), (2, 2, 3, 2), 2, 1, 1, 1, False),
    ((2, 4, 6, 6), (4, 2, 3, 3), 1, "same", 2, 2, True),
    ((1, 4, 7, 8), (6, 2, 2, 3), (2, 1), (1, 2), (2, 1), 2, True),
    ((1, 3, 5, 5), (3, 1, 2, 2), 1, "same", 1, 3, False),
    ((2, 2, 4, 4), (3, 2, 1, 1), 1, "valid", 1, 1, True),
    ((2, 5, 5), (3, 2, 3, 3), 1, 1, 1, 1, True),
    ((2, 3, 9, 8), (4, 3, 3, 2), (2, 3), 0, (1, 2), 1, True),  # unpadded, strided and dilated
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case):
    xs, ws, stride, padding, dilation, groups, bias = case
    shapes = [xs, ws] + ([(ws[0],)] if bias else [])

    def call(m, f, x, w, b=None):
        return f.conv2d(x, w, b, stride, padding, dilation, groups)

    check(call, shapes)


def _conv_reference(x, w, b, stride, pad):
    """Direct-loop float64 convolution (groups=1) for checks without torch."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    return out


def test_conv2d_values_without_torch():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), \
        rng.standard_normal(4)
    out = F.conv2d(jitgrad.tensor(x), jitgrad.tensor(w), jitgrad.tensor(b), stride=2, padding=1)
    np.testing.assert_allclose(out.numpy(), _conv_reference(x, w, b, 2, 1), rtol=1e-12,
                               atol=1e-12)


def test_conv2d_grad_fn_and_double_backward():
    def second(m, f, x, w):
        y = f.conv2d(x, w, stride=1, padding=1, groups=2)
        gx, gw = m.autograd.grad((y * y).sum(), (x, w), create_graph=True)
        return (gx * gx).sum() + (gw * y.sum()).sum()

    check(second, [(1, 2, 4, 4), (2, 1, 3, 3)], dtypes=(np.float64,), fd_tol=1e-5)
    x = jitgrad.ones(1, 1, 4, 4, requires_grad=True)
    assert F.conv2d(x, jitgrad.ones(1, 1, 2, 2)).grad_fn.name() == "ConvolutionBackward0"


CONV_ERRORS = [  # (x shape, weight shape, bias shape, kwargs, exception, message)
    ((2, 3, 5, 5), (4, 2, 3, 3), None, {}, RuntimeError,
     r"weight of size \[4, 2, 3, 3\], expected input\[2, 3, 5, 5\] to have 2 channels"),
    ((2, 3, 5, 5), (4, 1, 3, 3), None, {"groups": 3}, RuntimeError, r"divisible by 3"),
    ((2, 3, 5, 5), (4, 3, 3, 3), (3,), {}, RuntimeError, r"bias of size \[3\]"),
    ((5, 5), (4, 3, 3, 3), None, {}, RuntimeError, r"input of size: \[5, 5\]"),
    ((2, 3, 5, 5), (4, 3, 3, 3), None, {"padding": "foo"}, RuntimeError, "padding string"),
    ((2, 3, 5, 5), (4, 3, 3, 3), None, {"padding": "same", "stride": 2}, RuntimeError,
     "strided"),
    ((2, 3, 5, 5), (4, 3, 7, 7), None, {}, RuntimeError, r"\(5 x 5\). Kernel size: \(7 x 7\)"),
    ((2, 3, 5, 5), (4, 3, 3, 3), None, {"stride": 0}, RuntimeError, "stride"),
    ((2, 3, 5, 5), (4, 3, 3, 3), None, {"padding": -1}, RuntimeError, "negative padding"),
]


@pytest.mark.parametrize("case", CONV_ERRORS)
def test_conv2d_errors(case):
    xs, ws, bs, kwargs, exc, msg = case
    for m, f in _modules():
        b = None if bs is None else m.zeros(bs)
        with pytest.raises(exc, match=msg if m is jitgrad else None):
            f.conv2d(m.zeros(xs), m.zeros(ws), b, **kwargs)
    with pytest.raises(RuntimeError, match="Input type .*Float.* and weight type .*Double"):
        F.conv2d(jitgrad.zeros(1, 1, 3, 3), jitgrad.zeros(1, 1, 2, 2, dtype=jitgrad.float64))


# --- pooling --------------------------------------------------------------------------------------

POOL_CASES = [  # (shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 6, 7), 2, None, 0, 1, False),
    ((1, 2, 7, 7), 3, 2, 1, 1, True),
    ((1, 2, 8, 7), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((2, 5, 6), 3, 2, 0, 1, True),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d(case):
    shape, k, s, p, d, ceil = case
    check(lambda m, f, x: f.max_pool2d(x, k, s, p, d, ceil, return_indices=True), [shape])


def test_max_pool2d_values_indices_and_double_backward():
    x = jitgrad.tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out.detach().numpy(), [[[[5, 7], [13, 15]]]])
    np.testing.assert_array_equal(idx.numpy(), [[[[5, 7], [13, 15]]]])
    assert out.grad_fn.name() == "MaxPool2DWithIndicesBackward0"

    def second(m, f, x):
        y = f.max_pool2d(x, 2, 1)
        (g,) = m.autograd.grad((y * y).sum(), x, create_graph=True)
        return g * x

    check(second, [(1, 1, 4, 5)], dtypes=(np.float64,))
    nan = jitgrad.tensor([[[[1.0, float("nan")], [3.0, 2.0]]]])
    assert np.isnan(F.max_pool2d(nan, 2).item())


@pytest.mark.parametrize("kernel, stride", [(2, 2), (2, 1), (3, 2)])
def test_max_pool2d_ties_and_nans_pick_torchs_index(kernel, stride):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).integers(0, 3, (2, 3, 6, 9)).astype(np.float32)
    x[0, 0, 0, 1] = x[0, 1, 1, 0] = x[0, 1, 1, 1] = x[1, 2, 4, 4] = np.nan
    out, idx = F.max_pool2d(jitgrad.tensor(x), kernel, stride, return_indices=True)
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride,
                                                  return_indices=True)
    np.testing.assert_array_equal(out.numpy(), t_out.numpy())
    np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())


@pytest.mark.parametrize("case", [
    ((2, 3, 6, 7), 2, None, 0, False, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, False, None),
    ((1, 2, 8, 7), (3, 2), (2, 1), (1, 0), False, False, None),
    ((2, 5, 6), 3, 2, 1, False, True, 4),
])
def test_avg_pool2d(case):
    shape, k, s, p, ceil, include, divisor = case
    check(lambda m, f, x: f.avg_pool2d(x, k, s, p, ceil, include, divisor), [shape])


@pytest.mark.parametrize("size", [1, 3, (2, 4), (None, 3), 5])
def test_adaptive_avg_pool2d(size):
    check(lambda m, f, x: f.adaptive_avg_pool2d(x, size), [(2, 2, 5, 7)])


def test_avg_pool_double_backward_and_values():
    x = jitgrad.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_allclose(F.avg_pool2d(x, 2).numpy(), [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1).numpy(), [[[[7.5]]]])

    def second(m, f, x):
        y = f.avg_pool2d(x, 3, 2, 1)
        (g,) = m.autograd.grad((y * y).sum(), x, create_graph=True)
        return g * x

    check(second, [(1, 1, 5, 5)], dtypes=(np.float64,))


@pytest.mark.parametrize("call, msg", [
    (lambda m, f: f.max_pool2d(m.zeros(1, 3, 5, 5), 3, padding=2), "pad should be at most half"),
    (lambda m, f: f.max_pool2d(m.zeros(5, 5), 3), "3D or 4D"),
    (lambda m, f: f.max_pool2d(m.zeros(1, 1, 2, 2), 3), r"\(1x2x2\).*\(1x0x0\)"),
    (lambda m, f: f.avg_pool2d(m.zeros(1, 3, 5, 5), 3, padding=2), "pad should be at most half"),
])
def test_pool_errors(call, msg):
    for m, f in _modules():
        with pytest.raises(RuntimeError, match=msg if m is jitgrad else None):
            call(m, f)


# --- normalization --------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm(training, affine):
    for shape in [(4, 3), (2, 3, 2, 2)]:
        rng = np.random.default_rng(5)
        rm0, rv0 = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
        stats = {}

        def call(m, f, x, w=None, b=None):
            rm, rv = m.tensor(rm0).to(x.dtype), m.tensor(rv0).to(x.dtype)
            out = f.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2)
            key = (m.__name__, str(x.dtype).split(".")[-1])
            stats.setdefault(key, (rm.numpy().copy(), rv.numpy().copy()))  # not the FD calls
            return out

        check(call, [shape] + ([(3,), (3,)] if affine else []))
        if torch is not None:
            for dt, rtol in (("float32", 1e-6), ("float64", 1e-12)):
                for a, b in zip(stats["jitgrad", dt], stats["torch", dt]):
                    np.testing.assert_allclose(a, b, rtol=rtol)


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(affine):
    extra = [(3, 4), (3, 4)] if affine else []
    check(lambda m, f, x, *wb: f.layer_norm(x, (3, 4), *wb), [(2, 3, 4)] + extra)
    check(lambda m, f, x: f.layer_norm(x, [5]), [(3, 5)])
    assert F.layer_norm(jitgrad.ones(2, 3), 3).shape == (2, 3)


def test_norm_errors():
    for m, f in _modules():
        match = (lambda s: s) if m is jitgrad else (lambda s: None)
        with pytest.raises(RuntimeError, match=match(r"normalized_shape=\[4\].*size\[2, 3\]")):
            f.layer_norm(m.zeros(2, 3), (4,))
        with pytest.raises(ValueError, match=match("more than 1 value per channel")):
            f.batch_norm(m.zeros(1, 3), m.zeros(3), m.ones(3), training=True)
        with pytest.raises(RuntimeError, match=match("running_mean should contain 3 elements")):
            f.batch_norm(m.zeros(2, 3), m.zeros(4), m.ones(3), training=True)


# --- embedding and padding ------------------------------------------------------------------------

@pytest.mark.parametrize("padding_idx", [None, 1, -1])
@pytest.mark.parametrize("by_freq", [False, True])
def test_embedding(padding_idx, by_freq):
    idx = [[0, 1, 3], [3, 3, 4]]
    # padding_idx and scale_grad_by_freq make the "gradient" differ from the derivative
    check(lambda m, f, w: f.embedding(_ints(m, idx), w, padding_idx,
                                      scale_grad_by_freq=by_freq), [(5, 3)],
          fd=padding_idx is None and not by_freq)


def test_embedding_max_norm_and_errors():
    w = np.random.default_rng(0).uniform(-2, 2, (5, 3))
    jw, outs = jitgrad.tensor(w), []
    outs.append(F.embedding(_ints(jitgrad, [0, 2, 2]), jw, max_norm=1.0).numpy())
    if torch is not None:
        tw = torch.tensor(w)
        outs.append(TF.embedding(_ints(torch, [0, 2, 2]), tw, max_norm=1.0).numpy())
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-6)
        np.testing.assert_allclose(jw.numpy(), tw.numpy(), rtol=1e-6)
    assert np.linalg.norm(outs[0], axis=1).max() <= 1.0 + 1e-6
    for m, f in _modules():
        match = (lambda s: s) if m is jitgrad else (lambda s: None)
        with pytest.raises(IndexError, match=match("index out of range")):
            f.embedding(_ints(m, [0, 5]), m.zeros(5, 3))
        with pytest.raises(RuntimeError, match=match("Long, Int")):
            f.embedding(m.zeros(2), m.zeros(5, 3))
        with pytest.raises(AssertionError, match=match("Padding_idx")):
            f.embedding(_ints(m, [0]), m.zeros(5, 3), padding_idx=6)


@pytest.mark.parametrize("pad, mode", [
    ((1, 2), "constant"), ((1, 0, 2, 1), "constant"), ((-1, 2, 0, -1), "constant"),
    ((1, 1, 2, 0, 1, 1), "constant"), ((2, 1, 1, 2), "reflect"), ((1, 2), "reflect"),
    ((2, 1, 0, 3), "replicate"), ((1, 2, 2, 1), "circular"),
])
def test_pad(pad, mode):
    check(lambda m, f, x: f.pad(x, pad, mode), [(2, 3, 4)])
    if mode == "constant":
        check(lambda m, f, x: f.pad(x, pad, value=1.5), [(2, 3, 4)], dtypes=(np.float64,))


def test_pad_errors():
    for m, f in _modules():
        match = (lambda s: s) if m is jitgrad else (lambda s: None)
        with pytest.raises(RuntimeError, match=match("divisible by 2")):
            f.pad(m.zeros(2, 3), (1,))
        with pytest.raises(RuntimeError, match=match("padding length 6 and input of dimension 2")):
            f.pad(m.zeros(2, 3), (1,) * 6)
        with pytest.raises(RuntimeError, match=match(r"padding \(3, 3\)")):
            f.pad(m.zeros(1, 2, 3), (3, 3), mode="reflect")


# --- losses ---------------------------------------------------------------------------------------

REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_regression_losses(name, reduction):
    check(lambda m, f, x, t: getattr(f, name)(x, t, reduction=reduction), [(3, 4), (3, 4)])


def _log_probs(m, x):
    return x.log_softmax(1) if x.ndim > 1 else x.log_softmax(0)


NLL_CASES = [  # (input shape, targets, weight?, ignore_index)
    ((4, 5), [0, 3, 4, 1], False, -100),
    ((4, 5), [0, 3, 4, 3], True, 3),
    ((2, 3, 2, 2), [[[0, 1], [2, 2]], [[1, 1], [0, 2]]], True, 1),
    ((5,), 2, False, -100),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", NLL_CASES)
def test_nll_loss(case, reduction):
    shape, target, weighted, ignore = case
    c = shape[0] if len(shape) == 1 else shape[1]
    w = np.linspace(0.5, 2.0, c)

    def call(m, f, x):
        weight = m.tensor(w.astype(x.detach().numpy().dtype)) if weighted else None
        return f.nll_loss(x, _ints(m, target), weight, ignore_index=ignore, reduction=reduction)

    check(call, [shape])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("case", NLL_CASES)
def test_cross_entropy_indices(case, smoothing, reduction):
    shape, target, weighted, ignore = case
    c = shape[0] if len(shape) == 1 else shape[1]
    w = np.linspace(0.5, 2.0, c)

    def call(m, f, x):
        weight = m.tensor(w.astype(x.detach().numpy().dtype)) if weighted else None
        return f.cross_entropy(x, _ints(m, target), weight, ignore_index=ignore,
                               reduction=reduction, label_smoothing=smoothing)

    check(call, [shape])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities(reduction, weighted, smoothing):
    w = np.linspace(0.5, 2.0, 4)

    def call(m, f, x, t):
        weight = m.tensor(w.astype(x.detach().numpy().dtype)) if weighted else None
        return f.cross_entropy(x, t.softmax(1), weight, reduction=reduction,
                               label_smoothing=smoothing)

    check(call, [(3, 4, 2), (3, 4, 2)])


def test_cross_entropy_values_without_torch_and_double_backward():
    x = np.random.default_rng(2).standard_normal((4, 3))
    t = np.array([0, 2, 1, 2])
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    loss = F.cross_entropy(jitgrad.tensor(x), jitgrad.tensor(t))
    np.testing.assert_allclose(loss.item(), -logp[np.arange(4), t].mean(), rtol=1e-12)
    assert F.cross_entropy(jitgrad.tensor(x, requires_grad=True),
                           jitgrad.tensor(t)).grad_fn.name() == "NllLossBackward0"

    def second(m, f, x):
        loss = f.cross_entropy(x, _ints(m, [0, 2, 1, 2]), m.tensor([1.0, 2.0, 0.5],
                               dtype=m.float64), ignore_index=1, label_smoothing=0.1)
        (g,) = m.autograd.grad(loss, x, create_graph=True)
        return g * g

    check(second, [(4, 3)], dtypes=(np.float64,), fd_tol=1e-5)

    def second_nll(m, f, x):
        loss = f.nll_loss(x, _ints(m, [0, 2, 1, 2]), reduction="sum")
        (g,) = m.autograd.grad(loss * loss, x, create_graph=True)
        return g * x

    check(second_nll, [(4, 3)], dtypes=(np.float64,), fd_tol=1e-5)


@pytest.mark.parametrize("shape", [(6, 1031), (3, 67, 2)])
def test_cross_entropy_many_classes(shape):
    # long class rows (vectorized) and strided classes (D > 1) against float64 numpy
    rng = np.random.default_rng(3)
    a = rng.normal(0, 3, shape)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    x = jitgrad.tensor(a, requires_grad=True)
    loss = F.cross_entropy(x, jitgrad.tensor(t))
    loss.backward()
    logp = a - np.log(np.exp(a).sum(1, keepdims=True))
    picked = np.take_along_axis(logp, t[:, None], 1)
    onehot = np.zeros_like(a)
    np.put_along_axis(onehot, t[:, None], 1.0, 1)
    np.testing.assert_allclose(loss.item(), -picked.mean(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), (np.exp(logp) - onehot) / picked.size,
                               rtol=1e-10, atol=1e-15)


def test_cross_entropy_minus_inf_logit():
    # a -inf logit of a wrong class costs nothing (the smoothing term was 0 * inf = nan)
    x = jitgrad.tensor([[-np.inf, 0.0, 1.0], [0.0, 1.0, -np.inf]], requires_grad=True)
    loss = F.cross_entropy(x, jitgrad.tensor([1, 0]))
    loss.backward()
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(loss.item(), -np.log(p[0]), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[0, (p[0] - 1) / 2, p[1] / 2],
                                                [(p[0] - 1) / 2, p[1] / 2, 0]], rtol=1e-6)
    x.grad = None
    smoothed = F.cross_entropy(x, jitgrad.tensor([1, 0]), label_smoothing=0.1)
    smoothed.backward()
    assert smoothed.item() == np.inf  # as in PyTorch: the smoothing term sees the -inf
    np.testing.assert_allclose(x.grad.numpy()[0, 0], -0.1 / 3 / 2, rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy(reduction, weighted):
    w = np.linspace(0.5, 2.0, 4)

    def call(m, f, x, t):
        weight = m.tensor(w).to(x.dtype) if weighted else None
        return f.binary_cross_entropy(x, t, weight, reduction=reduction)

    check(call, [(3, 4), (3, 4)], low=0.05, high=0.95)


def test_binary_cross_entropy_clamps_log():
    x = jitgrad.tensor([0.0, 1.0, 0.5], requires_grad=True)
    t = jitgrad.tensor([1.0, 0.0, 1.0])
    loss = F.binary_cross_entropy(x, t, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [100.0, 100.0, np.log(2)], rtol=1e-6)
    assert loss.grad_fn.name() == "BinaryCrossEntropyBackward0"


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("extra", ["none", "weight", "pos_weight"])
def test_binary_cross_entropy_with_logits(reduction, extra):
    w = np.linspace(0.5, 2.0, 4)

    def call(m, f, x, t):
        kwargs = {extra: m.tensor(w).to(x.dtype)} if extra != "none" else {}
        return f.binary_cross_entropy_with_logits(x * 2 - 3, t / 3, reduction=reduction,
                                                  **kwargs)

    check(call, [(3, 4), (3, 4)], low=0.1, high=3.0)
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        F.binary_cross_entropy(jitgrad.ones(2) / 2, jitgrad.ones(2),
                               weight=jitgrad.ones(2, requires_grad=True))
    big = jitgrad.tensor([200.0, -200.0])
    loss = F.binary_cross_entropy_with_logits(big, jitgrad.tensor([0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [200.0, 200.0])


LOSS_ERRORS = [
    (lambda m, f: f.nll_loss(m.zeros(3, 4), _ints(m, [0, 1])), ValueError,
     r"input batch_size \(3\) to match target batch_size \(2\)"),
    (lambda m, f: f.nll_loss(m.zeros(3, 4), _ints(m, [0, 1, 4])), IndexError,
     "Target 4 is out of bounds"),
    (lambda m, f: f.cross_entropy(m.zeros(3, 4), _ints(m, [0, -1, 1])), IndexError,
     "Target -1 is out of bounds"),
    (lambda m, f: f.nll_loss(m.zeros(3, 4), m.zeros(3)), RuntimeError, "Long"),
    (lambda m, f: f.nll_loss(m.zeros(3, 4, 5), _ints(m, [[0, 1, 3]] * 3)), RuntimeError,
     r"Expected target size \[3, 5\], got \[3, 3\]"),
    (lambda m, f: f.nll_loss(m.zeros(3, 4), _ints(m, [0, 1, 3]), weight=m.ones(3)),
     RuntimeError, r"all 4 classes.*shape: \[3\]"),
    (lambda m, f: f.cross_entropy(m.zeros(3, 4), _ints(m, [0, 1, 3]), reduction="avg"),
     ValueError, "avg is not a valid value for reduction"),
    (lambda m, f: f.binary_cross_entropy(m.zeros(3), m.zeros(3, 1)), ValueError,
     "different to the input size"),
    (lambda m, f: f.binary_cross_entropy(m.ones(3) * 2, m.zeros(3)), RuntimeError,
     "between 0 and 1"),
    (lambda m, f: f.binary_cross_entropy_with_logits(m.zeros(3), m.zeros(3, 1)), ValueError,
     "must be the same as input size"),
]


@pytest.mark.parametrize("call, exc, msg", LOSS_ERRORS)
def test_loss_errors(call, exc, msg):
    for m, f in _modules():
        with pytest.raises(exc, match=msg if m is jitgrad else None):
            call(m, f)


def test_mse_broadcast_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        F.mse_loss(jitgrad.zeros(3, 1), jitgrad.zeros(3))
    assert any("broadcasting" in str(w.message) for w in caught)


def test_avg_pool_keeps_an_infinity_in_its_own_windows():
    x = jitgrad.tensor([[[[float("inf"), 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]]]])
    assert F.avg_pool2d(x, (1, 2)).tolist() == [[[[float("inf"), 2.5], [1.0, 1.0]]]]
