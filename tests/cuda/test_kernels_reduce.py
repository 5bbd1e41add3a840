"""CUDA reduce_kernels and index_kernels against the CPU kernels on tiny random inputs.

Each case runs the CPU kernel on numpy arrays and the CUDA one on device copies (contiguous or
strided views of the same values) and compares the outputs on the host.
"""

import numpy as np
import pytest

from jitgrad.backends.cpu import index_kernels as CI
from jitgrad.backends.cpu import reduce_kernels as CR
from jitgrad.backends.cuda import array
from jitgrad.backends.cuda import index_kernels as GI
from jitgrad.backends.cuda import reduce_kernels as GR

RNG = np.random.default_rng(0)
FLOATS = [np.float32, np.float64]
INTS = [np.int32, np.int64]


def _values(shape, dtype, nan=False):
    if np.dtype(dtype) == np.bool_:
        return RNG.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-3, 4, shape).astype(dtype)
    x = RNG.standard_normal(shape).astype(dtype)
    if nan and x.size:
        x.reshape(-1)[RNG.integers(0, x.size, 2)] = np.nan
    return x


def _pair(shape, dtype, strided=False, nan=False):
    """(numpy array, DeviceArray) holding equal values; a transposed view when ``strided``."""
    if not strided:
        x = _values(shape, dtype, nan)
        return x, array.to_device(x)
    base = _values(shape[::-1], dtype, nan)
    return base.transpose(2, 1, 0), array.to_device(base).transpose(2, 1, 0)


def _outs(shape, dtype, fill=None):
    host = np.zeros(shape, dtype) if fill is None else fill.copy()
    return host, array.to_device(host)


def _check(expected, dev):
    got = array.to_host(dev)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.kind == "f":
        rtol = 2e-6 if expected.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("is_prod", [False, True])
@pytest.mark.parametrize("strided", [False, True])
def test_sum_3d(dtype, is_prod, strided):
    x, dx = _pair((2, 9, 3), dtype, strided)
    out, dout = _outs((2, 3), dtype)
    CR.sum_3d(x, is_prod, 0.5, out)
    GR.sum_3d(dx, is_prod, 0.5, dout)
    _check(out, dout)


@pytest.mark.parametrize("is_prod", [False, True])
def test_sum_3d_nan_and_empty_axis(is_prod):
    x, dx = _pair((1, 6, 2), np.float32, nan=True)
    out, dout = _outs((1, 2), np.float32)
    CR.sum_3d(x, is_prod, 1.0, out)
    GR.sum_3d(dx, is_prod, 1.0, dout)
    _check(out, dout)
    for scale in (1.0, float("nan")):  # sum / mean of nothing
        x, dx = _pair((2, 0, 3), np.float64)
        out, dout = _outs((2, 3), np.float64)
        CR.sum_3d(x, is_prod, scale, out)
        GR.sum_3d(dx, is_prod, scale, dout)
        _check(out, dout)


@pytest.mark.parametrize("dtype", [*INTS, np.bool_])
@pytest.mark.parametrize("is_prod", [False, True])
def test_sum_int_3d(dtype, is_prod):
    x, dx = _pair((3, 7, 2), dtype, strided=dtype == np.int32)
    out, dout = _outs((3, 2), np.int64)
    CR.sum_int_3d(x, is_prod, out)
    GR.sum_int_3d(dx, is_prod, dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", [*FLOATS, *INTS, np.bool_])
@pytest.mark.parametrize("largest", [False, True])
def test_argextreme_3d(dtype, largest):
    # small integers give ties; a float column gets a NaN first, another two NaNs later
    x, dx = _pair((2, 11, 3), dtype, strided=dtype == np.float64)
    if np.dtype(dtype).kind == "f":
        x[0, 0, 0] = x[0, 5, 0] = np.nan
        x[1, 3, 1] = x[1, 9, 1] = np.nan
        dx = array.to_device(x)
    values, dvalues = _outs((2, 3), dtype)
    indices, dindices = _outs((2, 3), np.int64)
    CR.argextreme_3d(x, largest, values, indices)
    GR.argextreme_3d(dx, largest, dvalues, dindices)
    _check(values, dvalues)
    _check(indices, dindices)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("take_log", [False, True])
@pytest.mark.filterwarnings("ignore:invalid value")  # -inf - -inf in the simulator's numpy
def test_softmax_3d(dtype, take_log):
    x, dx = _pair((2, 9, 3), dtype, strided=True)
    x = np.array(x)
    x[0, 4, 0] = np.nan
    x[1, :, 2] = -np.inf
    x[1, 2, 1] = np.inf
    dx = array.to_device(x)
    out, dout = _outs(x.shape, dtype)
    CR.softmax_3d(x, take_log, out)
    GR.softmax_3d(dx, take_log, dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(2, 9, 3), (5, 11, 1), (2, 0, 3)])
@pytest.mark.filterwarnings("ignore:invalid value")  # nan - nan in the simulator's numpy
def test_logsumexp_3d(dtype, shape):
    x = _values(shape, dtype)
    if shape[1]:
        x[0, 4, 0] = np.nan
        x[1, :, shape[2] - 1] = -np.inf
        x[1, 2, 0] = np.inf
    out, dout = _outs((shape[0], shape[2]), dtype)
    CR.logsumexp_3d(x, out)
    GR.logsumexp_3d(array.to_device(x), dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("take_log", [False, True])
@pytest.mark.parametrize("shape", [(2, 9, 3), (3, 11, 1)])
def test_softmax_backward_3d(dtype, take_log, shape):
    x = _values(shape, dtype)
    y = np.zeros_like(x)
    CR.softmax_3d(x, take_log, y)
    g, dg = _pair(shape, dtype)
    dy = array.to_device(y)
    out, dout = _outs(shape, dtype)
    CR.softmax_backward_3d(y, g, take_log, out)
    GR.softmax_backward_3d(dy, dg, take_log, dout)
    _check(out, dout)
    # and the CPU kernel against the formula in float64
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    want = (g64 - np.exp(y64) * g64.sum(1, keepdims=True) if take_log else
            y64 * (g64 - (g64 * y64).sum(1, keepdims=True)))
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [*FLOATS, np.int64])
@pytest.mark.parametrize("shape", [(2, 10, 2), (1, 13, 1), (3, 1, 2)])
def test_prod_except_3d(dtype, shape):
    x, dx = _pair(shape, dtype, strided=shape[0] == 2)
    x = np.array(x)
    if shape[1] > 1:
        x[0, 3, 0] = 0  # one zero: only its own slot is non-zero
        if shape[2] > 1:
            x[0, 1, 1] = x[0, 7, 1] = 0  # two zeros: all slots are zero
    dx = array.to_device(x)
    out, dout = _outs(shape, dtype)
    CR.prod_except_3d(x, out)
    GR.prod_except_3d(dx, dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_gather_3d(dtype):
    x, dx = _pair((2, 5, 3), dtype, strided=True)
    index = RNG.integers(0, 5, (2, 4, 3))
    out, dout = _outs(index.shape, dtype)
    CR.gather_3d(x, index, out)
    GR.gather_3d(dx, array.to_device(index), dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", [*FLOATS, *INTS])
def test_scatter_add_3d(dtype):
    src, dsrc = _pair((2, 6, 2), dtype)
    index = RNG.integers(0, 3, src.shape)  # six sources per three slots: duplicates
    fill = _values((2, 3, 2), dtype)
    out, dout = _outs(fill.shape, dtype, fill)
    CR.scatter_add_3d(src, index, out)
    GR.scatter_add_3d(dsrc, array.to_device(index), dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.bool_])
def test_take_flat(dtype):
    base = _values(20, dtype)
    positions = RNG.integers(0, 10, 7)
    out, dout = _outs(7, dtype)
    CI.take_flat(base[::2], positions, out)  # a strided 1-D source
    GI.take_flat(array.to_device(base)[::2], array.to_device(positions), dout)
    _check(out, dout)


@pytest.mark.parametrize("dtype", [*FLOATS, *INTS])
def test_put_flat_accumulate_duplicates(dtype):
    fill = _values(6, dtype)
    positions = np.array([0, 3, 3, 5, 0, 3, 1])
    values = _values(7, dtype)
    x, dx = _outs(6, dtype, fill)
    CI.put_flat(x, positions, values, True)
    GI.put_flat(dx, array.to_device(positions), array.to_device(values), True)
    _check(x, dx)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_put_flat_assign(dtype):
    fill = _values(12, dtype)
    positions = np.array([4, 0, 5, 2])
    values = _values(4, dtype)
    x, dx = _outs(12, dtype, fill)
    CI.put_flat(x[::2], positions, values, False)  # a strided 1-D target
    got = array.to_device(fill)
    GI.put_flat(got[::2], array.to_device(positions), array.to_device(values), False)
    _check(x, got)


def test_put_flat_assign_duplicates_one_writer_wins():
    positions = np.array([1, 1, 1, 4])
    values = np.array([10.0, 20.0, 30.0, 5.0])
    dx = array.to_device(np.zeros(5))
    GI.put_flat(dx, array.to_device(positions), array.to_device(values), False)
    got = array.to_host(dx)
    assert got[1] in (10.0, 20.0, 30.0)
    np.testing.assert_array_equal(got[[0, 2, 3, 4]], [0.0, 0.0, 0.0, 5.0])
