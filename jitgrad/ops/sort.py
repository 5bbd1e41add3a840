"""Sorting along one dim: ``sort``, ``argsort``, ``topk``. Gradients scatter back to the
positions the values came from, as ``gather``'s do."""

import numpy as np

from jitgrad.autograd.node import node_class, record
from jitgrad.ops import _storage
from jitgrad.ops._checks import normalize_dim
from jitgrad.ops.elementwise import contiguous
from jitgrad.ops.reduce import _gather_backward, _return_type, _view_3d, run_kernel
from jitgrad.tensor import Tensor

__all__ = ["argsort", "sort", "topk"]

SortBackward0 = node_class("SortBackward0", _gather_backward)
TopkBackward0 = node_class("TopkBackward0", _gather_backward)
_SortResult, _TopkResult = _return_type("sort"), _return_type("topk")


def _sorted(input, dim, descending):
    """(values, int64 indices) arrays of ``input`` sorted along ``dim`` (normalized)."""
    data = input._data
    view = _view_3d(data, (dim,) if data.ndim else ())
    values = _storage.empty(data.shape, data.dtype, data)
    indices = _storage.empty(data.shape, np.int64, data)
    run_kernel("sort_3d", view, descending, values.reshape(view.shape),
               indices.reshape(view.shape))
    return values, indices


def sort(input, dim=-1, descending=False, stable=False):
    """(values, indices) along ``dim``; always stable (equal values keep their order), NaN
    sorting as the largest value."""
    d = normalize_dim(dim, input._data.ndim)
    if input._data.ndim == 0:  # one element: sorted as a 1-element vector
        values, index = sort(input.reshape(1), 0, descending)
        return _SortResult(values.reshape(()), index.reshape(()))
    values, indices = _sorted(input, d, descending)
    index = Tensor._wrap(indices)
    out = record(Tensor._wrap(values), SortBackward0, (input,), (index, d, input._data.shape))
    return _SortResult(out, index)


def argsort(input, dim=-1, descending=False, stable=False):
    """The indices that sort ``input`` along ``dim`` (see ``sort``)."""
    d = normalize_dim(dim, input._data.ndim)
    return Tensor._wrap(_sorted(input, d, descending)[1])


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, in order."""
    d = normalize_dim(dim, input._data.ndim)
    size = input._data.shape[d] if input._data.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError("selected index k out of range")
    if input._data.ndim == 0:
        values, index = topk(input.reshape(1), k, 0, largest)
        return _TopkResult(*((values.reshape(()), index.reshape(())) if k else (values, index)))
    values, indices = _sorted(input, d, largest)
    first = tuple(slice(0, k) if i == d else slice(None) for i in range(values.ndim))
    values, indices = contiguous(values[first]), contiguous(indices[first])
    index = Tensor._wrap(indices)
    out = record(Tensor._wrap(values), TopkBackward0, (input,), (index, d, input._data.shape))
    return _TopkResult(out, index)
