"""Scans along one dim: ``cumsum``. Kernels see the (outer, scanned, inner) view of reduce."""

import numpy as np

from jitgrad import dtypes
from jitgrad.autograd.node import node_class, record
from jitgrad.ops import _storage
from jitgrad.ops._checks import normalize_dim
from jitgrad.ops.reduce import _view_3d, run_kernel
from jitgrad.tensor import Tensor

__all__ = ["cumsum", "cumsum_"]


def _cumsum_backward(node, g):
    dim, reverse = node.saved_values()
    # d/dx_j of sum_r g_r * (x_0 + ... + x_r) = g_j + ... + g_last: the scan from the end
    return (_scan(g, dim, not reverse),)


CumsumBackward0 = node_class("CumsumBackward0", _cumsum_backward)


def _scan(input, dim, reverse):
    data = input._data
    view = _view_3d(data, (dim,) if data.ndim else ())
    out = _storage.empty(data.shape, data.dtype, data)
    zero = np.float64(0) if data.dtype.kind == "f" else np.int64(0)
    run_kernel("cumsum_3d", view, reverse, zero, out.reshape(view.shape))
    return record(Tensor._wrap(out), CumsumBackward0, (input,), (dim, reverse))


def cumsum(input, dim, *, dtype=None):
    """Running sums along ``dim``; bool and integer inputs sum to int64, as in PyTorch."""
    if dtype is not None:
        input = input.to(dtypes.to_dtype(dtype))
    elif input._data.dtype.kind in "biu":
        input = input.to(dtypes.int64)
    return _scan(input, normalize_dim(dim, input._data.ndim), False)


def cumsum_(input, dim, *, dtype=None):
    """In place: ``input`` takes its running sums along ``dim`` (in its own dtype)."""
    return input.copy_(cumsum(input, dim, dtype=dtype))
