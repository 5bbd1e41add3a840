"""Shape ops. Views share the input's numpy buffer (and version counter); copies use kernels."""

import math
import weakref

import numpy as np

from jitgrad import dtypes
from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.ops import _storage
from jitgrad.ops._checks import normalize_dim, normalize_dims, shape_str
from jitgrad.ops._views import strided_view
from jitgrad.ops.elementwise import cast, copy_into
from jitgrad.tensor import Tensor

__all__ = ["cat", "chunk", "clone", "concat", "concatenate", "contiguous", "embed", "expand",
           "expand_as", "flatten", "movedim", "narrow", "permute", "repeat", "reshape",
           "reshape_as", "split", "squeeze", "stack", "swapaxes", "t", "to", "transpose", "type_as",
           "unbind", "unsqueeze", "view", "view_as"]



def _view_of(input, data, node_cls, saved):
    """A tensor sharing ``input``'s storage and version counter, recording ``node_cls``.

    The root tensor keeps a weak reference to it (made with grad mode on), so that an in-place
    write through the root or another view can re-derive its history (``inplace.commit``).
    """
    out = Tensor._wrap(data)
    out._version = input._version
    base = out._base = input if input._base is None else input._base
    if grad_mode.is_grad_enabled():
        refs = base._views
        if refs is None:
            base._views = [weakref.ref(out)]
        else:
            refs.append(weakref.ref(out))
            if len(refs) % 32 == 0:  # drop dead views now and then, so the list stays short
                refs[:] = [r for r in refs if r() is not None]
    return record(out, node_cls, (input,), saved)


def _to_shape_backward(node, g):
    return (g.reshape(node.saved_values()),)


ViewBackward0 = node_class("ViewBackward0", _to_shape_backward)
UnsafeViewBackward0 = node_class("UnsafeViewBackward0", _to_shape_backward)
SqueezeBackward0 = node_class("SqueezeBackward0", _to_shape_backward)
SqueezeBackward1 = node_class("SqueezeBackward1", _to_shape_backward)
UnsqueezeBackward0 = node_class("UnsqueezeBackward0", _to_shape_backward)


def _infer_shape(shape, numel):
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    for s in shape:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"shape must be a tuple of ints, but got {type(s).__name__}")
    shape = tuple(int(s) for s in shape)
    unknown = [i for i, s in enumerate(shape) if s == -1]
    known = int(math.prod([s for s in shape if s != -1]))
    if len(unknown) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if unknown and not known and not numel:
        raise RuntimeError(
            f"cannot reshape tensor of 0 elements into shape {shape_str(shape)} because the "
            "unspecified dimension size -1 can be any value and is ambiguous")
    if unknown and known and numel % known == 0:
        shape = shape[:unknown[0]] + (numel // known,) + shape[unknown[0] + 1:]
    if any(s < 0 for s in shape) or int(math.prod(shape)) != numel:
        raise RuntimeError(f"shape '{shape_str(shape)}' is invalid for input of size {numel}")
    return shape


def _try_view(data, shape):
    v = data.view()
    try:
        v.shape = shape
    except AttributeError:
        return None
    return v


def reshape(input, *shape):
    """The same data with a new shape: a view when the strides allow, else a copy."""
    data = input._data
    shape = _infer_shape(shape, data.size)
    if shape == data.shape:
        return _view_of(input, data.view(), ViewBackward0, data.shape)
    v = _try_view(data, shape)
    if v is not None:
        return _view_of(input, v, ViewBackward0, data.shape)
    out = cast(data, data.dtype).reshape(shape)
    return record(Tensor._wrap(out), UnsafeViewBackward0, (input,), data.shape)


def view(input, *shape):
    """A view with a new shape; RuntimeError when the strides do not allow one."""
    if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
        return _view_dtype(input, shape[0])
    data = input._data
    shape = _infer_shape(shape, data.size)
    v = _try_view(data, shape)
    if v is None:
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return _view_of(input, v, ViewBackward0, data.shape)


def _view_dtype(input, dtype):
    """The same bytes read as ``dtype`` (same element size only)."""
    if dtype.itemsize != input._data.itemsize:
        raise RuntimeError(
            f"view(dtype) between element sizes {input._data.itemsize} and {dtype.itemsize} is "
            "not supported")
    if dtype.np == input._data.dtype:
        return _view_of(input, input._data.view(), ViewBackward0, input._data.shape)
    out = Tensor._wrap(input._data.view(dtype.np))
    out._version = input._version
    out._base = input if input._base is None else input._base
    return out


def view_as(input, other):
    return view(input, other.shape)


def reshape_as(input, other):
    return reshape(input, other.shape)


def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    shape = input._data.shape
    if not shape:
        return reshape(input, 1)
    a, b = normalize_dim(start_dim, len(shape)), normalize_dim(end_dim, len(shape))
    if a > b:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return reshape(input, *shape[:a], int(math.prod(shape[a:b + 1])), *shape[b + 1:])


def _transpose_backward(node, g):
    d0, d1 = node.saved_values()
    return (transpose(g, d0, d1),)


TransposeBackward0 = node_class("TransposeBackward0", _transpose_backward)
TBackward0 = node_class("TBackward0", _transpose_backward)


def transpose(input, dim0, dim1):
    """Swap two dims (a view)."""
    n = input._data.ndim
    d0, d1 = normalize_dim(dim0, n), normalize_dim(dim1, n)
    return _view_of(input, input._data.swapaxes(d0, d1) if n else input._data.view(),
                    TransposeBackward0, (d0, d1))


swapaxes = transpose


def t(input):
    """Transpose of a tensor with at most 2 dims."""
    if input._data.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is "
                           f"{input._data.ndim}D")
    swap = (0, 1) if input._data.ndim == 2 else (0, 0)
    return _view_of(input, input._data.T, TBackward0, swap)


def _permute_backward(node, g):
    return (permute(g, *np.argsort(node.saved_values()).tolist()),)


PermuteBackward0 = node_class("PermuteBackward0", _permute_backward)


def permute(input, *dims):
    """Reorder dims (a view)."""
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    n = input._data.ndim
    if len(dims) != n:
        raise RuntimeError(
            f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
            f"length of the desired ordering of dimensions i.e. input.dim() = {n} is not equal to "
            f"len(dims) = {len(dims)}")
    norm = tuple(normalize_dim(d, n) for d in dims)
    if len(set(norm)) != n:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return _view_of(input, input._data.transpose(norm), PermuteBackward0, norm)


def movedim(input, source, destination):
    n = input._data.ndim
    src, dst = normalize_dim(source, n), normalize_dim(destination, n)
    order = [d for d in range(n) if d != src]
    order.insert(dst, src)
    return permute(input, *order)


def squeeze(input, dim=None):
    """Drop size-1 dims (all of them, or those in ``dim``)."""
    shape = input._data.shape
    dims = normalize_dims(dim, len(shape))
    new = tuple(s for i, s in enumerate(shape) if not (i in dims and s == 1))
    node_cls = SqueezeBackward0 if dim is None else SqueezeBackward1
    return _view_of(input, input._data.reshape(new), node_cls, shape)


def unsqueeze(input, dim):
    """Insert a size-1 dim at ``dim``."""
    shape = input._data.shape
    d = normalize_dim(dim, len(shape) + 1)
    return _view_of(input, input._data.reshape(shape[:d] + (1,) + shape[d:]),
                    UnsqueezeBackward0, shape)


def _expand_backward(node, g):
    from jitgrad.ops.reduce import sum_to_shape

    return (sum_to_shape(g, node.saved_values()),)


ExpandBackward0 = node_class("ExpandBackward0", _expand_backward)


def _repeat_backward(node, g):
    padded, sizes, in_shape = node.saved_values()
    # g is (r0, s0, r1, s1, ...) flattened pairwise: sum over each repeat axis
    pairs = tuple(n for r, s in zip(sizes, padded) for n in (r, s))
    return (g.reshape(pairs).sum(tuple(range(0, len(pairs), 2))).reshape(in_shape),)


RepeatBackward0 = node_class("RepeatBackward0", _repeat_backward)


def repeat(input, *sizes):
    """A copy of ``input`` tiled ``sizes[i]`` times along dim i (new leading dims for extra
    sizes), as ``numpy.tile``."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    shape = input._data.shape
    if len(sizes) < len(shape):
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    if any(r < 0 for r in sizes):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(sizes)}")
    padded = (1,) * (len(sizes) - len(shape)) + shape
    with grad_mode.no_grad():
        ones = input.reshape(tuple(n for s in padded for n in (1, s)))
        tiled = ones.expand(tuple(n for r, s in zip(sizes, padded) for n in (r, s))).contiguous()
    out = Tensor._wrap(tiled._data.reshape(tuple(r * s for r, s in zip(sizes, padded))))
    return record(out, RepeatBackward0, (input,), (padded, tuple(sizes), shape))


def expand(input, *sizes):
    """A broadcast view with stride 0 in the expanded dims; -1 keeps a size."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    data = input._data
    if len(sizes) < data.ndim:
        raise RuntimeError(
            f"expand(jitgrad.FloatTensor{{{shape_str(data.shape)}}}, size={shape_str(sizes)}): "
            f"the number of sizes provided ({len(sizes)}) must be greater or equal to the number "
            "of dimensions in the tensor")
    lead = len(sizes) - data.ndim
    shape, strides = [], []
    for i, size in enumerate(sizes):
        j = i - lead
        have = data.shape[j] if j >= 0 else 1
        if size == -1:
            if j < 0:
                raise RuntimeError(
                    f"The expanded size of the tensor (-1) isn't allowed in a leading, "
                    f"non-existing dimension {i}")
            size = have
        if have != size and have != 1:
            raise RuntimeError(
                f"The expanded size of the tensor ({size}) must match the existing size ({have}) "
                f"at non-singleton dimension {i}.  Target sizes: {shape_str(sizes)}.  Tensor "
                f"sizes: {shape_str(data.shape)}")
        shape.append(size)
        strides.append(data.strides[j] if j >= 0 and have == size else 0)
    if tuple(shape) == data.shape:
        return _view_of(input, data.view(), ExpandBackward0, data.shape)
    v = strided_view(data, tuple(shape), tuple(strides))
    return _view_of(input, v, ExpandBackward0, data.shape)


def expand_as(input, other):
    return expand(input, other.shape)


def _identity_backward(node, g):
    return (g,)


CloneBackward0 = node_class("CloneBackward0", _identity_backward)


def clone(input):
    """A copy with its own storage (C-contiguous), differentiable."""
    return record(Tensor._wrap(cast(input._data, input._data.dtype)), CloneBackward0, (input,), ())


def contiguous(input):
    """``input`` itself when C-contiguous, else a contiguous copy."""
    return input if input._data.flags.c_contiguous else clone(input)


def _to_copy_backward(node, g):
    dtype, device = node.saved_values()
    return (g.to(dtype=dtype, device=device),)


ToCopyBackward0 = node_class("ToCopyBackward0", _to_copy_backward)


def to(input, *args, dtype=None, device=None, copy=False, non_blocking=False):
    """Convert dtype (and check device): ``to(jitgrad.float64)``, ``to("cpu")``, ``to(other)``."""
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, (dtypes.dtype, type, np.dtype)) and not isinstance(a, str):
            dtype = a
        else:
            device = a
    device = _storage.resolve(device)
    target = dtypes.to_dtype(dtype)
    moves = device is not None and device != _storage.device_of(input._data)
    if not moves and (target is None or (target.np == input._data.dtype and not copy)):
        return input
    data = input._data
    if moves and target is not None and device.type == "cpu":
        data = cast(data, target.np)  # convert where the data is, then copy fewer bytes
    data = _storage.move(data, device)
    if target is not None and data.dtype != target.np:
        data = cast(data, target.np)
    elif not moves:
        data = cast(data, data.dtype)
    out = Tensor._wrap(data)
    if out._data.dtype.kind == "f" and input._data.dtype.kind == "f":
        record(out, ToCopyBackward0, (input,), (input.dtype, input.device))
    return out


def type_as(input, other):
    return to(input, other.dtype)


def _embed_backward(node, g):
    index, _ = node.saved_values()
    return (g[index],)


EmbedBackward0 = node_class("EmbedBackward0", _embed_backward)


def embed(grad, shape, index):
    """Zeros of ``shape`` with ``grad`` written at the basic index ``index`` (differentiable)."""
    out = _storage.zeros(shape, grad._data.dtype, grad._data)
    copy_into(out[index], grad._data)
    return record(Tensor._wrap(out), EmbedBackward0, (grad,), (index, shape))


def _narrow_backward(node, g):
    index, shape = node.saved_values()
    return (embed(g, shape, index),)


SliceBackward0 = node_class("SliceBackward0", _narrow_backward)
SplitBackward0 = node_class("SplitBackward0", _narrow_backward)
SelectBackward0 = node_class("SelectBackward0", _narrow_backward)
UnbindBackward0 = node_class("UnbindBackward0", _narrow_backward)


def narrow(input, dim, start, length, node_cls=SliceBackward0):
    """The view ``input[..., start:start+length, ...]`` along ``dim``."""
    n = input._data.ndim
    d = normalize_dim(dim, n)
    size = input._data.shape[d]
    if not -size <= start <= size:
        raise IndexError(
            f"start out of range (expected to be in range of [{-size}, {size}], but got {start})")
    if start < 0:
        start += size
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if start + length > size:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    index = (slice(None),) * d + (slice(start, start + length),)
    return _view_of(input, input._data[index], node_cls, (index, input._data.shape))


def split(tensor, split_size_or_sections, dim=0):
    """Views of consecutive pieces along ``dim`` (each of a size, or of the listed sizes)."""
    d = normalize_dim(dim, tensor._data.ndim)
    size = tensor._data.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = list(split_size_or_sections)
        if sum(sizes) != size:
            raise RuntimeError(
                f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                f"size at dimension {d}), but got split_sizes={sizes}")
    else:
        step = split_size_or_sections
        if step < 0 or (step == 0 and size):
            raise RuntimeError("split_size can only be 0 if dimension size is 0, but got dimension "
                               f"size of {size}")
        sizes = [min(step, size - s) for s in range(0, size, step)] or [0]
    out, start = [], 0
    for s in sizes:
        out.append(narrow(tensor, d, start, s, SplitBackward0))
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of equal size (the last may be smaller)."""
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: " + str(chunks))
    size = input._data.shape[normalize_dim(dim, input._data.ndim)]
    return split(input, max(-(-size // chunks), 1), dim)


def unbind(input, dim=0):
    """The slices along ``dim``, each with that dim removed."""
    d = normalize_dim(dim, input._data.ndim)
    # the trailing Ellipsis keeps 0-d results views, not numpy scalars
    return tuple(_view_of(input, input._data[(slice(None),) * d + (i, ...)], UnbindBackward0,
                          ((slice(None),) * d + (i,), input._data.shape))
                 for i in range(input._data.shape[d]))


def _cat_backward(node, g):
    d, sizes, shapes, dtypes_ = node.saved_values()
    out, start = [], 0
    for s, shape, dtype in zip(sizes, shapes, dtypes_):
        gi = narrow(g, d, start, s)
        out.append((gi if gi._data.shape == shape else gi.reshape(shape)).to(dtype))
        start += s
    return out


CatBackward0 = node_class("CatBackward0", _cat_backward)


def _skipped_in_cat(t_):
    # legacy PyTorch rule: a 1-D empty tensor joins anything
    return t_._data.ndim == 1 and t_._data.size == 0


def cat(tensors, dim=0):
    """Join tensors along an existing ``dim``; dtypes promote as in PyTorch."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for i, t_ in enumerate(tensors):
        if not isinstance(t_, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got "
                            f"{type(t_).__name__}")
    real = [not _skipped_in_cat(t_) for t_ in tensors]
    ref = tensors[real.index(True)] if any(real) else tensors[0]
    n = ref._data.ndim
    if n == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = normalize_dim(dim, n)
    out_dtype = ref.dtype
    for i, t_ in enumerate(tensors):
        out_dtype = dtypes.promote(out_dtype, t_.dtype)
        if not real[i]:
            continue
        if t_._data.ndim != n:
            raise RuntimeError(
                f"Tensors must have same number of dimensions: got {n} and {t_._data.ndim}")
        for k in range(n):
            if k != d and t_._data.shape[k] != ref._data.shape[k]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {d}. Expected size "
                    f"{ref._data.shape[k]} but got size {t_._data.shape[k]} for tensor number "
                    f"{i} in the list.")
    sizes = [t_._data.shape[d] if r else 0 for t_, r in zip(tensors, real)]
    shape = list(ref._data.shape)
    shape[d] = sum(sizes)
    _storage.check_same_device(*[t_._data for t_ in tensors])
    out = _storage.empty(shape, out_dtype.np, ref._data)
    start = 0
    for t_, s in zip(tensors, sizes):
        if s:
            copy_into(out[(slice(None),) * d + (slice(start, start + s),)], t_._data)
        start += s
    result = Tensor._wrap(out)
    if grad_mode.is_grad_enabled() and any(t_._requires_grad for t_ in tensors):
        saved = (d, sizes, [t_._data.shape for t_ in tensors], [t_.dtype for t_ in tensors])
        result.grad_fn = CatBackward0(tuple(t_._grad_edge() for t_ in tensors), saved)
        result._requires_grad = True
    return result


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join same-shape tensors along a new ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, t_ in enumerate(tensors):
        if t_._data.shape != tensors[0]._data.shape:
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got "
                f"{shape_str(tensors[0]._data.shape)} at entry 0 and {shape_str(t_._data.shape)} "
                f"at entry {i}")
    d = normalize_dim(dim, tensors[0]._data.ndim + 1)
    with grad_mode.no_grad():
        out = cat([unsqueeze(t_, d) for t_ in tensors], d)
    if grad_mode.is_grad_enabled() and any(t_._requires_grad for t_ in tensors):
        out.grad_fn = StackBackward0(tuple(t_._grad_edge() for t_ in tensors),
                                     (d, [t_.dtype for t_ in tensors]))
        out._requires_grad = True
    return out


def _stack_backward(node, g):
    d, dtypes_ = node.saved_values()
    return [piece.to(dtype) for piece, dtype in zip(unbind(g, d), dtypes_)]


StackBackward0 = node_class("StackBackward0", _stack_backward)


