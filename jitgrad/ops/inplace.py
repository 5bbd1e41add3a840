"""In-place ops under autograd: the checks, and how a target takes over a result's history.

An in-place op that records is computed out of place (``result``); ``commit`` then writes the
values into the target and moves the history, as PyTorch rebases an in-place op's output. When
the target is a view, its base gets a ``CopySlices`` node and the view is re-derived from it.
"""

import numpy as np

from jitgrad.autograd.node import node_class
from jitgrad.backends import Family
from jitgrad.ops import _storage
from jitgrad.ops._views import strided_view
from jitgrad.tensor import Tensor

__all__ = ["check", "commit", "CopySlices"]

KERNELS = Family("index_kernels")


def check(target):
    """PyTorch's errors for writing in place into a leaf that requires grad (or a view of one)."""
    if target.grad_fn is None and target._requires_grad and target._base is None:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation.")
    base = target._base
    if base is not None and base.grad_fn is None and base._requires_grad:
        raise RuntimeError(
            "a view of a leaf Variable that requires grad is being used in an in-place operation.")


def _mask_except(positions, shape, dtype, like):
    """Ones of ``shape`` with zeros at the flat ``positions`` (the overwritten elements).

    The mask is allocated on the device of the array ``like``.
    """
    mask = _storage.full(shape, 1, dtype, like)
    if type(positions) is np.ndarray:
        positions = np.ascontiguousarray(positions)
    else:
        from jitgrad.ops.elementwise import contiguous

        positions = contiguous(positions)
    KERNELS(mask).put_flat(mask.reshape(-1), positions.reshape(-1),
                           _storage.zeros((positions.size,), dtype, mask), False)
    return Tensor._wrap(mask)


def _copy_slices_backward(node, g):
    from jitgrad.ops.index import _take
    from jitgrad.ops.reduce import sum_to_shape

    positions, value_shape = node.saved_values()
    grads = [g * _mask_except(positions, g._data.shape, g._data.dtype, g._data)
             if node.next_functions[0][0] is not None else None]
    if node.next_functions[1][0] is not None:
        grads.append(sum_to_shape(_take(g, positions), value_shape))
    return grads


CopySlices = node_class("CopySlices", _copy_slices_backward)


def _as_strided_backward(node, g):
    from jitgrad.ops.index import _put

    positions, base_shape = node.saved_values()
    return (_put(g, positions, base_shape),)


AsStridedBackward0 = node_class("AsStridedBackward0", _as_strided_backward)


def view_positions(base, view):
    """Flat positions in ``base`` (a C-contiguous array) of each element of its ``view``."""
    if not base.flags.c_contiguous:
        raise RuntimeError("in-place writes through a view of a non-contiguous tensor that "
                           "requires grad are not supported; call .contiguous() first")
    item = base.itemsize
    if type(base) is np.ndarray:
        offset = (view.__array_interface__["data"][0]
                  - base.__array_interface__["data"][0]) // item
    else:  # CUDA views of one allocation: byte offsets into it
        offset = (view._offset - base._offset) // item
    flat = np.arange(base.size, dtype=np.int64)
    positions = strided_view(
        flat[offset:], view.shape, tuple(s // item * flat.itemsize for s in view.strides))
    # computed from shapes and strides only; CUDA positions are copied to the device
    if type(base) is np.ndarray:
        return positions
    return _storage.move(positions, _storage.CUDA0).reshape(positions.shape)


def commit(target, result):
    """Write ``result`` into ``target`` and give ``target`` the result's history."""
    from jitgrad.ops.elementwise import copy_into

    base = target._base
    if base is not None and result.grad_fn is not None:
        positions = view_positions(base._data, target._data)
        base_edge = base._grad_edge()
    copy_into(target._data, result._data)
    target._version[0] += 1
    if result.grad_fn is None:
        return target
    if base is None:
        target.grad_fn = result.grad_fn
        target._output_nr = result._output_nr
    else:
        base.grad_fn = CopySlices((base_edge, result._grad_edge()), (positions, target._data.shape))
        base._requires_grad = True
        target.grad_fn = AsStridedBackward0((base._grad_edge(),), (positions, base._data.shape))
    target._requires_grad = True
    _rederive_views(target if base is None else base, target)
    return target


def _rederive_views(root, target):
    """Give every other live view of ``root`` the root's new history, as an AsStrided of it.

    PyTorch regenerates a view's grad_fn when its base was written in place; without this a
    sibling view would backpropagate through the root's history from before the write.
    """
    refs = root._views
    if not refs:
        return
    edge = root._grad_edge()
    for ref in refs:
        view = ref()
        if view is None or view is target or view._data.dtype != root._data.dtype:
            continue
        positions = view_positions(root._data, view._data)
        view.grad_fn = AsStridedBackward0((edge,), (positions, root._data.shape))
        view._output_nr = 0
        view._requires_grad = True
