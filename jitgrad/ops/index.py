"""``__getitem__``/``__setitem__``: basic indices give views; advanced ones gather by position.

numpy turns any index into flat positions (``arange(n).reshape(shape)[index]``), so PyTorch's
indexing semantics come from one well-tested place and the kernels only move data.
"""

import math

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.backends import Family
from jitgrad.backends.cuda.array import DeviceArray  # a plain class: imports no numba.cuda
from jitgrad.ops import _storage
from jitgrad.ops.elementwise import SPECS, apply, cast, contiguous, copy_into, fill, scalar_value
from jitgrad.ops.reduce import index_bounds
from jitgrad.ops.shape import SelectBackward0, SliceBackward0, _view_of
from jitgrad.size import CPU
from jitgrad.tensor import Tensor

__all__ = ["flip", "getitem", "index_select", "masked_fill", "setitem", "take"]

# the index kernel module for an array's device: ``KERNELS(data).take_flat(...)``
KERNELS = Family("index_kernels")


def _convert(item):
    if isinstance(item, Tensor):
        data = item._data
        if data.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if data.ndim == 0 and data.dtype.kind != "b":
            # NOTE: a 0-d CUDA index is read back: it selects like an int, and whether it is in
            # range depends on its value (PyTorch reads it too)
            return int(data if type(data) is np.ndarray else _storage.move(data, CPU))
        return data  # a numpy array, or a DeviceArray (CUDA index tensors stay on the device)
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
    if isinstance(item, bool) or _on_device(item):
        return item
    raise IndexError(
        "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
        f"valid indices (got {type(item).__name__})")


def _normalize(index):
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(_convert(i) for i in items)
    advanced = any(isinstance(i, _ADVANCED) for i in items)
    return items, advanced


_ADVANCED = (np.ndarray, bool, DeviceArray)


def _on_device(item):
    """Whether an index item is a CUDA array (a DeviceArray from a CUDA index tensor)."""
    return type(item) is DeviceArray


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


def _dummy(shape):
    """A numpy array of ``shape`` over one element: numpy's indexing rules without data."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, (0,) * len(shape))


def _positions_on(data, items, checked=False):
    """Flat positions (C order) in ``data`` of ``data[items]``, on ``data``'s device.

    ``checked``: the device index arrays are known to be in range (index_select checked them).
    """
    if type(data) is np.ndarray:
        for i in items:
            if _on_device(i):
                _storage.check_same_device(data, i)
        return _positions(data.shape, items)
    return _device_positions(data.shape, items, checked)


def _upload(host):
    """A host array (or numpy scalar) copied to CUDA."""
    return _storage.move(np.asarray(host), _storage.CUDA0)


def _host_items(items):
    # NOTE: reads CUDA index arrays back; callers do so only where values decide shapes/errors
    return tuple(_storage.move(i, CPU) if _on_device(i) else i for i in items)


def _device_positions(shape, items, checked):
    """``_positions`` for CUDA data: integer index arrays stay on the device.

    numpy's layout rules are applied to shapes only: the positions of the result with every
    index array replaced by its broadcast flat index ``j`` give, on the host, the basic part of
    each position and ``j``; the device adds ``sum_k stride_k * index_k.flat[j]``.
    """
    # NOTE: a CUDA bool mask is read back: the result's shape depends on its values (PyTorch
    # CUDA synchronises there too)
    items = tuple(_storage.move(i, CPU) if _on_device(i) and i.dtype.kind == "b" else i
                  for i in items)
    if not any(_on_device(i) for i in items):
        # shapes and host indices only: positions from the host, copied to the device
        return _upload(_positions(shape, items))
    if any(isinstance(i, bool) or (isinstance(i, np.ndarray) and i.dtype.kind == "b"
                                   and i.ndim == 0) for i in items):
        # NOTE: a bool scalar beside CUDA index arrays (numpy broadcasts it with them): rare,
        # done on the host by reading the index arrays back
        return _upload(_positions(shape, _host_items(items)))
    probe = tuple(np.broadcast_to(np.intp(0), i.shape) if _on_device(i) else i for i in items)
    try:
        out_shape = _dummy(shape)[probe].shape  # numpy's own shape errors, without values
        ok = True
    except IndexError:
        ok = False
    # bool masks on the host become their integer index arrays, as numpy reads them
    expanded = []
    for i in items:
        if isinstance(i, np.ndarray) and i.dtype.kind == "b":
            expanded.extend(np.nonzero(i))
        else:
            expanded.append(i)
    items = tuple(expanded)
    n_used = sum(1 for i in items if i is not None and i is not Ellipsis)
    dims, d = [], 0
    for i in items:
        if i is Ellipsis:
            d += len(shape) - n_used
        if i is None or i is Ellipsis:
            dims.append(None)
        else:
            dims.append(d)
            d += 1
    arrays = [k for k, i in enumerate(items) if hasattr(i, "shape")]
    on_device = [k for k in arrays if _on_device(items[k]) and items[k].size]
    if ok and not checked and on_device:
        bounds = index_bounds(*[items[k] for k in on_device])
        ok = all(-shape[dims[k]] <= lo and hi < shape[dims[k]]
                 for k, (lo, hi) in zip(on_device, bounds))
    if not ok:
        # NOTE: an error path: the indices are read back so numpy names the bad one as on CPU
        _positions(shape, _host_items(items))
        raise IndexError("index out of range")  # not reached: numpy raised above
    if not math.prod(out_shape):
        return _storage.empty(out_shape, np.int64, _storage.CUDA0)
    b_shape = np.broadcast_shapes(*[items[k].shape for k in arrays])
    n_b = int(math.prod(b_shape))
    j_index = np.arange(n_b, dtype=np.int64).reshape(b_shape)
    fake_shape = list(shape)
    adv_dims = {dims[k] for k in arrays}
    for dim in adv_dims:
        fake_shape[dim] = n_b
    fake_items = tuple(j_index if k in arrays else i for k, i in enumerate(items))
    c_strides = [int(math.prod(shape[dim + 1:])) for dim in range(len(shape))]
    ramp = np.arange(max(int(math.prod(shape)), 1), dtype=np.int64)
    basic = np.lib.stride_tricks.as_strided(
        ramp, fake_shape, [0 if dim in adv_dims else 8 * c_strides[dim]
                           for dim in range(len(shape))])[fake_items]
    first = min(adv_dims)
    flat_j = np.lib.stride_tricks.as_strided(
        np.arange(n_b, dtype=np.int64), fake_shape,
        [8 if dim == first else 0 for dim in range(len(shape))])[fake_items]
    with grad_mode.no_grad():
        offset = None
        for k in arrays:
            i = items[k]
            size = shape[dims[k]]
            t = Tensor._wrap(cast(i if _on_device(i) else _upload(i),
                                  np.int64))
            t = apply(SPECS["where"], (t.lt(0), t + size, t)) * c_strides[dims[k]]
            offset = t if offset is None else offset + t
        flat = contiguous(offset._data.broadcast_to(b_shape)).reshape(-1)
        picked = _storage.empty(flat_j.shape, np.int64, flat)
        KERNELS(flat).take_flat(flat, _upload(flat_j).reshape(-1),
                                picked.reshape(-1))
        return (Tensor._wrap(_upload(basic)) + Tensor._wrap(picked))._data


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
    if type(src) is np.ndarray:
        out, K = np.empty(positions.shape, src.dtype), KERNELS.cpu
    else:
        out, K = _storage.empty(positions.shape, src.dtype, src), KERNELS.cuda
    K.take_flat(src.reshape(-1), positions.reshape(-1), out.reshape(-1))
    return record(Tensor._wrap(out), IndexBackward0, (x,), (positions, x._data.shape))


def _put(g, positions, shape):
    """Zeros of ``shape`` with ``g`` added at flat ``positions``, differentiable."""
    out = (np.zeros(shape, g._data.dtype) if type(g._data) is np.ndarray
           else _storage.zeros(shape, g._data.dtype, g._data))
    src = contiguous(g._data)
    KERNELS(out).put_flat(out.reshape(-1), positions.reshape(-1), src.reshape(-1), True)
    return record(Tensor._wrap(out), IndexPutBackward0, (g,), (positions, shape))


def getitem(input, index):
    """``input[index]``: a view for ints/slices/None/..., a gathered copy for tensors and masks."""
    items, advanced = _normalize(index)
    data = input._data
    if advanced:
        return _take(input, _positions_on(data, items))
    basic = items if Ellipsis in items else items + (Ellipsis,)  # keeps 0-d results arrays
    if type(data) is np.ndarray:
        try:
            view = data[basic]
        except IndexError as err:
            raise _torch_error(err, data.shape, items) from None
    else:
        view = _basic_view(data, basic, items)
    node_cls = SelectBackward0 if any(isinstance(i, int) for i in items) else SliceBackward0
    return _view_of(input, view, node_cls, (basic, data.shape))


def _basic_view(data, basic, items):
    """``data[basic]`` (ints, slices, None, ...), with PyTorch's words for index errors."""
    try:
        if type(data) is not np.ndarray:
            _dummy(data.shape)[basic]  # numpy's errors, as on the CPU
        return data[basic]
    except IndexError as err:
        raise _torch_error(err, data.shape, items) from None


def setitem(input, index, value):
    """``input[index] = value`` in place; recorded as CopySlices when gradients flow."""
    from jitgrad.ops import inplace

    if not isinstance(value, Tensor):
        value = scalar_value(value)
    items, advanced = _normalize(index)
    data = input._data
    if isinstance(value, Tensor) and type(value._data) is not type(data):
        if value._data.ndim == 0 and type(value._data) is np.ndarray:
            value = value.to(_storage.device_of(data))  # a CPU scalar tensor, as PyTorch allows
            if value._data.ndim:  # NOTE: array.to_device makes 0-d arrays 1-d; undo it
                value = value.reshape(())
        else:
            _storage.check_same_device(data, value._data)
    if grad_mode.is_grad_enabled() and (
            input._requires_grad or (isinstance(value, Tensor) and value._requires_grad)):
        inplace.check(input)
        edges = (input._grad_edge(), value._grad_edge() if isinstance(value, Tensor) else (None, 0))
        written = cast(data, data.dtype)
        positions = _positions_on(data, items)
        _write(written, items, advanced, value, positions)
        vshape = value._data.shape if isinstance(value, Tensor) else ()
        node = inplace.CopySlices(edges, (positions, vshape))
        inplace.commit(input, Tensor._wrap(written, node))
        return
    _write(data, items, advanced, value)
    input._version[0] += 1


def _write(data, items, advanced, value, positions=None):
    """Store ``value`` (a Tensor or number, on ``data``'s device) at ``data[items]``."""
    if advanced:
        if positions is None:
            positions = _positions_on(data, items)
        if isinstance(value, Tensor):
            vals = value._data
        elif type(data) is np.ndarray:
            vals = np.asarray(value, data.dtype)
        else:
            vals = _storage.full((), value, data.dtype, data)
        try:
            vals = (np.broadcast_to(vals, positions.shape) if type(vals) is np.ndarray
                    else vals.broadcast_to(positions.shape))
        except ValueError:
            raise RuntimeError(
                f"shape mismatch: value tensor of shape {list(vals.shape)} cannot be "
                f"broadcast to indexing result of shape {list(positions.shape)}") from None
        flat_vals = cast(vals, data.dtype)
        target = contiguous(data)
        KERNELS(target).put_flat(target.reshape(-1), positions.reshape(-1), flat_vals.reshape(-1),
                                 False)
        if target is not data:
            copy_into(data, target)
        return
    basic = items if Ellipsis in items else items + (Ellipsis,)
    view = _basic_view(data, basic, items)
    if not isinstance(value, Tensor):
        fill(view, value)
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


def index_select(input, dim, index):
    """Rows of ``input`` along ``dim`` picked by the 1-D integer ``index``."""
    from jitgrad.ops._checks import normalize_dim

    d = normalize_dim(dim, input._data.ndim)
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index._data.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if type(index._data) is not type(input._data):
        _storage.check_same_device(input._data, index._data)
    size = input._data.shape[d] if input._data.ndim else 1
    if index._data.size:
        lo, hi = index_bounds(index._data)[0]  # on CUDA: a device reduction, 2 scalars read
        if hi >= size:
            raise IndexError("index out of range in self")
        if lo < 0:
            raise RuntimeError(f"INDICES element is out of DATA bounds, id={lo} axis_dim={size}")
    items, _ = _normalize((slice(None),) * d + (index._data.reshape(-1),))
    return _take(input, _positions_on(input._data, items, checked=True))


def _flip_backward(node, g):
    (dims,) = node.saved_values()
    return (flip(g, dims),)


FlipBackward0 = node_class("FlipBackward0", _flip_backward)


def flip(input, dims):
    """A copy of ``input`` with the order of its elements reversed along ``dims``."""
    from jitgrad.ops._checks import normalize_dims

    data = input._data
    dims = normalize_dims(dims, data.ndim)
    reverse = tuple(slice(None, None, -1) if d in dims else slice(None) for d in range(data.ndim))
    positions = np.array(np.arange(data.size, dtype=np.int64).reshape(data.shape)[reverse],
                         order="C")
    if type(data) is not np.ndarray:
        positions = _upload(positions)
    with grad_mode.no_grad():
        out = _take(input, positions)
    return record(out, FlipBackward0, (input,), (dims,))


def take(input, index):
    """Elements of the flattened input at ``index``."""
    return getitem(input.reshape(-1), index)


def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True, else ``input``."""
    return apply(SPECS["where"], (mask, value, input))

