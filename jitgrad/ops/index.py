"""``__getitem__``/``__setitem__``: basic indices give views; advanced ones gather by position.

numpy turns any index into flat positions (``arange(n).reshape(shape)[index]``), so PyTorch's
indexing semantics come from one well-tested place and the kernels only move data.
"""

import math

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.backends.cpu import index_kernels as K
from jitgrad.ops.elementwise import SPECS, apply, cast, contiguous, copy_into, scalar_value
from jitgrad.ops.shape import SelectBackward0, SliceBackward0, _view_of
from jitgrad.tensor import Tensor

__all__ = ["getitem", "index_select", "masked_fill", "setitem", "take"]


def _convert(item):
    if isinstance(item, Tensor):
        if item._data.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return int(item._data) if item._data.ndim == 0 and item._data.dtype.kind != "b" \
            else item._data
    if isinstance(item, (list, tuple, np.ndarray)):
        arr = np.asarray([_convert(i) if isinstance(i, Tensor) else i for i in item]
                         if isinstance(item, (list, tuple)) else item)
        if arr.dtype.kind not in "biu" and arr.size:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return arr.astype(np.int64) if arr.dtype.kind != "b" else arr
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        return int(item)
    if item is None or item is Ellipsis or isinstance(item, slice):
        if isinstance(item, slice) and item.step is not None and item.step <= 0:
            raise ValueError("step must be greater than zero")
        return item
    if isinstance(item, bool):
        return item
    raise IndexError(
        "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
        f"valid indices (got {type(item).__name__})")


def _normalize(index):
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(_convert(i) for i in items)
    advanced = any(isinstance(i, (np.ndarray, bool)) for i in items)
    return items, advanced


def _torch_error(err, shape, items=()):
    """numpy's IndexError reworded as PyTorch words it."""
    msg = str(err).replace("axis", "dimension")
    if msg.startswith("too many indices"):
        scalar_int = len(items) == 1 and type(items[0]) is int
        msg = (f"too many indices for tensor of dimension {len(shape)}" if shape or not scalar_int
               else "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
               "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number")
    elif msg.startswith("boolean index did not match"):
        msg = _mask_mismatch(shape, items) or msg
    return IndexError(msg)


def _mask_mismatch(shape, items):
    """PyTorch's message for the first bool mask whose shape differs from the dims it covers."""
    def width(i):
        if isinstance(i, np.ndarray) and i.dtype == np.bool_:
            return i.ndim
        return 0 if i is None or i is Ellipsis or isinstance(i, bool) else 1

    dim = 0
    for item in items:
        if item is Ellipsis:
            dim += len(shape) - sum(width(i) for i in items)
        elif isinstance(item, np.ndarray) and item.dtype == np.bool_:
            for k, size in enumerate(item.shape):
                if dim + k >= len(shape) or shape[dim + k] != size:
                    return (f"The shape of the mask {list(item.shape)} at index {k} does not "
                            f"match the shape of the indexed tensor {list(shape)} at index "
                            f"{dim + k}")
        dim += width(item)
    return None


def _positions(shape, items):
    try:
        return np.arange(int(math.prod(shape)), dtype=np.int64).reshape(shape)[items]
    except IndexError as err:
        raise _torch_error(err, shape, items) from None


def _take_backward(node, g):
    positions, shape = node.saved_values()
    return (_put(g, positions, shape),)


def _put_backward(node, g):
    positions, _ = node.saved_values()
    return (_take(g, positions),)


IndexBackward0 = node_class("IndexBackward0", _take_backward)
IndexPutBackward0 = node_class("IndexPutBackward0", _put_backward)


def _take(x, positions):
    """Elements of ``x`` at flat ``positions`` (an array of any shape), differentiable."""
    src = contiguous(x._data)
    out = np.empty(positions.shape, src.dtype)
    K.take_flat(src.reshape(-1), positions.reshape(-1), out.reshape(-1))
    return record(Tensor._wrap(out), IndexBackward0, (x,), (positions, x._data.shape))


def _put(g, positions, shape):
    """Zeros of ``shape`` with ``g`` added at flat ``positions``, differentiable."""
    out = np.zeros(shape, g._data.dtype)
    src = contiguous(g._data)
    K.put_flat(out.reshape(-1), positions.reshape(-1), src.reshape(-1), True)
    return record(Tensor._wrap(out), IndexPutBackward0, (g,), (positions, shape))


def getitem(input, index):
    """``input[index]``: a view for ints/slices/None/..., a gathered copy for tensors and masks."""
    items, advanced = _normalize(index)
    data = input._data
    if advanced:
        return _take(input, _positions(data.shape, items))
    basic = items if Ellipsis in items else items + (Ellipsis,)  # keeps 0-d results arrays
    try:
        view = data[basic]
    except IndexError as err:
        raise _torch_error(err, data.shape, items) from None
    node_cls = SelectBackward0 if any(isinstance(i, int) for i in items) else SliceBackward0
    return _view_of(input, view, node_cls, (basic, data.shape))


def setitem(input, index, value):
    """``input[index] = value`` in place; recorded as CopySlices when gradients flow."""
    from jitgrad.ops import inplace

    if not isinstance(value, Tensor):
        value = scalar_value(value)
    items, advanced = _normalize(index)
    data = input._data
    if grad_mode.is_grad_enabled() and (
            input._requires_grad or (isinstance(value, Tensor) and value._requires_grad)):
        inplace.check(input)
        edges = (input._grad_edge(), value._grad_edge() if isinstance(value, Tensor) else (None, 0))
        written = cast(data, data.dtype)
        _write(written, items, advanced, value)
        vshape = value._data.shape if isinstance(value, Tensor) else ()
        node = inplace.CopySlices(edges, (_positions(data.shape, items), vshape))
        inplace.commit(input, Tensor._wrap(written, node))
        return
    _write(data, items, advanced, value)
    input._version[0] += 1


def _write(data, items, advanced, value):
    """Store ``value`` (a Tensor or number) at ``data[items]``."""
    if advanced:
        positions = _positions(data.shape, items)
        vals = value._data if isinstance(value, Tensor) else np.asarray(value, data.dtype)
        try:
            vals = np.broadcast_to(vals, positions.shape)
        except ValueError:
            raise RuntimeError(
                f"shape mismatch: value tensor of shape {list(np.shape(vals))} cannot be "
                f"broadcast to indexing result of shape {list(positions.shape)}") from None
        flat_vals = cast(vals, data.dtype)
        target = contiguous(data)
        K.put_flat(target.reshape(-1), positions.reshape(-1), flat_vals.reshape(-1), False)
        if target is not data:
            copy_into(data, target)
        return
    basic = items if Ellipsis in items else items + (Ellipsis,)
    try:
        view = data[basic]
    except IndexError as err:
        raise _torch_error(err, data.shape, items) from None
    if not isinstance(value, Tensor):
        apply_fill(view, value)
        return
    vshape = value._data.shape
    try:
        if np.broadcast_shapes(vshape, view.shape) != view.shape:
            raise ValueError
    except ValueError:
        raise RuntimeError(
            f"expand: the shape of the value {list(vshape)} cannot be broadcast to the "
            f"indexing result {list(view.shape)}") from None
    copy_into(view, value._data)


def apply_fill(array, value):
    """Fill the array (any strides) with a Python scalar through the copy kernel."""
    from jitgrad.ops.elementwise import _kernel_dtype, _launch

    _launch(SPECS["copy"], _kernel_dtype(array), [value], "s", array)


def index_select(input, dim, index):
    """Rows of ``input`` along ``dim`` picked by the 1-D integer ``index``."""
    from jitgrad.ops._checks import normalize_dim

    d = normalize_dim(dim, input._data.ndim)
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index._data.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    size = input._data.shape[d] if input._data.ndim else 1
    if index._data.size and index._data.max() >= size:
        raise IndexError("index out of range in self")
    if index._data.size and index._data.min() < 0:
        raise RuntimeError(f"INDICES element is out of DATA bounds, id={index._data.min()} "
                           f"axis_dim={size}")
    return getitem(input, (slice(None),) * d + (index._data.reshape(-1),))


def take(input, index):
    """Elements of the flattened input at ``index``."""
    return getitem(input.reshape(-1), index)


def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True, else ``input``."""
    return apply(SPECS["where"], (mask, value, input))

