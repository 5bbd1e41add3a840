"""``__getitem__``/``__setitem__``: basic indices give views; advanced ones gather by position.

numpy turns any index into flat positions (``arange(n).reshape(shape)[index]``), so PyTorch's
indexing semantics come from one well-tested place and the kernels only move data.
"""

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class
from jitgrad.backends.cpu import index_kernels as K
from jitgrad.ops.elementwise import SPECS, apply, cast, copy_into, scalar_value
from jitgrad.ops.shape import SelectBackward0, SliceBackward0, _record, _view_of, embed
from jitgrad.tensor import Tensor

__all__ = ["getitem", "setitem", "index_select", "masked_fill", "take"]


def _convert(item):
    if isinstance(item, Tensor):
        if item._data.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return int(item._data) if item._data.ndim == 0 and item._data.dtype.kind != "b" \
            else item._data
    if isinstance(item, (list, tuple)) or isinstance(item, np.ndarray):
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


def _torch_error(err, shape):
    msg = str(err).replace("axis", "dimension")
    if msg.startswith("too many indices"):
        msg = f"too many indices for tensor of dimension {len(shape)}"
    return IndexError(msg)


def _positions(shape, items):
    try:
        return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[items]
    except IndexError as err:
        raise _torch_error(err, shape) from None


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
    src = x._data if x._data.flags.c_contiguous else cast(x._data, x._data.dtype)
    out = np.empty(positions.shape, src.dtype)
    K.take_flat(src.reshape(-1), positions.reshape(-1), out.reshape(-1))
    return _record(Tensor._wrap(out), IndexBackward0, (x,), (positions, x._data.shape))


def _put(g, positions, shape):
    """Zeros of ``shape`` with ``g`` added at flat ``positions``, differentiable."""
    out = np.zeros(shape, g._data.dtype)
    src = g._data if g._data.flags.c_contiguous else cast(g._data, g._data.dtype)
    K.put_flat(out.reshape(-1), positions.reshape(-1), src.reshape(-1), True)
    return _record(Tensor._wrap(out), IndexPutBackward0, (g,), (positions, shape))


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
        raise _torch_error(err, data.shape) from None
    node_cls = SelectBackward0 if any(isinstance(i, int) for i in items) else SliceBackward0
    return _view_of(input, view, node_cls, (basic, data.shape))


def _copy_slices_backward(node, g):
    mask, index, value_shape = node.saved_values()
    from jitgrad.ops.reduce import sum_to_shape

    grads = [g * Tensor._wrap(mask)]
    if node.next_functions[1][0] is not None:
        grads.append(sum_to_shape(g[index], value_shape))
    return grads


CopySlices = node_class("CopySlices", _copy_slices_backward)


def setitem(input, index, value):
    """``input[index] = value`` in place; recorded as CopySlices when gradients flow."""
    if not isinstance(value, Tensor):
        value = scalar_value(value)
    items, advanced = _normalize(index)
    data = input._data
    records = grad_mode.is_grad_enabled() and (
        input._requires_grad or (isinstance(value, Tensor) and value._requires_grad))
    if records:
        from jitgrad.ops.elementwise import _check_inplace_on_leaf

        _check_inplace_on_leaf(input)
        edges = (input._grad_edge(), value._grad_edge() if isinstance(value, Tensor) else (None, 0))
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
        target = data if data.flags.c_contiguous else cast(data, data.dtype)
        K.put_flat(target.reshape(-1), positions.reshape(-1), flat_vals.reshape(-1), False)
        if target is not data:
            copy_into(data, target)
        region = (positions,)
    else:
        basic = items if Ellipsis in items else items + (Ellipsis,)
        try:
            view = data[basic]
        except IndexError as err:
            raise _torch_error(err, data.shape) from None
        if isinstance(value, Tensor):
            vshape = value._data.shape
            try:
                np.broadcast_shapes(vshape, view.shape)
            except ValueError:
                raise RuntimeError(
                    f"expand: the shape of the value {list(vshape)} cannot be broadcast to the "
                    f"indexing result {list(view.shape)}") from None
            copy_into(view, value._data)
        else:
            apply_fill(view, value)
        region = basic
    input._version[0] += 1
    if records:
        mask = np.ones(data.shape, data.dtype)
        if advanced:
            K.put_flat(mask.reshape(-1), region[0].reshape(-1), np.zeros(region[0].size, mask.dtype),
                       False)
        else:
            apply_fill(mask[region], 0)
        vshape = value._data.shape if isinstance(value, Tensor) else ()
        index_for_grad = items if advanced else region
        input.grad_fn = CopySlices(edges, (mask, index_for_grad, vshape))
        input._requires_grad = True


def apply_fill(array, value):
    """Fill the array (any strides) with a Python scalar through the copy kernel."""
    from jitgrad.ops.elementwise import _launch, _kernel_dtype

    _launch(SPECS["copy"], _kernel_dtype(array), [value], "s", array)


def index_select(input, dim, index):
    """Rows of ``input`` along ``dim`` picked by the 1-D integer ``index``."""
    from jitgrad.ops._checks import normalize_dim

    d = normalize_dim(dim, input._data.ndim)
    if index._data.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    return getitem(input, (slice(None),) * d + (index,))


def take(input, index):
    """Elements of the flattened input at ``index``."""
    return getitem(input.reshape(-1), index)


def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True, else ``input``."""
    return apply(SPECS["where"], (mask, value, input))

