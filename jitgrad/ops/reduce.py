"""Reductions: every input is viewed as (outer, reduced, inner) and runs one 3-D kernel."""

import builtins
import math
from collections import namedtuple

import numpy as np

from jitgrad import dtypes
from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import RESULT, node_class, record
from jitgrad.backends import Family
from jitgrad.backends.cpu import codegen, threads
from jitgrad.ops import _storage
from jitgrad.ops._checks import normalize_dim, normalize_dims
from jitgrad.ops.elementwise import cast, contiguous, copy_into
from jitgrad.size import CPU
from jitgrad.tensor import Tensor

_GRAD = grad_mode._state  # read on the backward's hot path

__all__ = ["all", "amax", "amin", "any", "argmax", "argmin", "count_nonzero", "gather",
           "log_softmax", "logsumexp", "max", "mean", "min", "norm", "prod", "softmax", "std",
           "sum", "sum_to_shape", "var"]


def _return_type(name):
    base = namedtuple(name, ["values", "indices"])
    base.__repr__ = lambda self: (f"jitgrad.return_types.{name}(\nvalues={self.values!r},\n"
                                  f"indices={self.indices!r})")
    return base


_MaxResult, _MinResult = _return_type("max"), _return_type("min")

# the reduce kernel module for an array's device: ``KERNELS(data).sum_3d(...)``
KERNELS = Family("reduce_kernels")


def _view_3d(data, dims):
    """``data`` as a C-contiguous (outer, reduced, inner) array; copies only for split dims."""
    shape = data.shape
    if data.ndim == 0:
        return data.reshape(1, 1, 1)
    a, b = dims[0], dims[-1]
    if dims != tuple(range(a, b + 1)):
        keep = [d for d in range(data.ndim) if d not in dims]
        data = contiguous(data.transpose(keep + list(dims)))
        n_red = int(math.prod([shape[d] for d in dims]))
        return data.reshape(-1, n_red, 1) if data.size else data.reshape(
            int(math.prod([shape[d] for d in keep])), n_red, 1)
    data = contiguous(data)
    return data.reshape(int(math.prod(shape[:a])), int(math.prod(shape[a:b + 1])),
                        int(math.prod(shape[b + 1:])))


def _out_shapes(shape, dims):
    keep = tuple(1 if d in dims else s for d, s in enumerate(shape))
    return keep, tuple(s for d, s in enumerate(shape) if d not in dims)



def _expand_grad(g, keep_shape, in_shape):
    if g._data.ndim and g._data.shape != keep_shape:
        g = g.reshape(keep_shape)
    return g.expand(in_shape)


def _sum_backward(node, g):
    keep_shape, in_shape = node.saved_values()
    return (_expand_grad(g, keep_shape, in_shape),)


def _mean_backward(node, g):
    keep_shape, in_shape, n = node.saved_values()
    return (_expand_grad(g / n, keep_shape, in_shape),)


SumBackward0 = node_class("SumBackward0", _sum_backward)
SumBackward1 = node_class("SumBackward1", _sum_backward)
MeanBackward0 = node_class("MeanBackward0", _mean_backward)
MeanBackward1 = node_class("MeanBackward1", _mean_backward)


def _all_dims(dim):
    """True when ``dim`` asks for a full reduction: None or an empty list, as in PyTorch."""
    return dim is None or (not isinstance(dim, int) and len(dim) == 0)


def _with_dtype(input, dtype):
    # a recorded conversion, so the gradient comes back in the input's dtype
    return input if dtype is None else input.to(dtypes.to_dtype(dtype))


# kernels whose (O, R, I) views split their outer rows over threads when big
_ROWS = codegen.SplitKernels(KERNELS, {
    "sum_3d": ("x", "out"), "argextreme_3d": ("x", "values", "indices"),
    "softmax_3d": ("x", "out"), "logsumexp_3d": ("x", "out"),
    "softmax_backward_3d": ("y", "g", "out"), "cumsum_3d": ("x", "out"),
    "sort_3d": ("x", "values", "indices")}, rows=True)


def run_kernel(name, view, *args):
    """``reduce_kernels.<name>(view, *args)`` for ``view``'s device (rows split on the CPU)."""
    return _ROWS(name, view, *args)


def _sum_3d(view, is_prod, scale, out):
    """Float ``sum_3d`` of an (O, R, I) view into out (O, I). On the CPU a whole sum is one loop
    over the contiguous values (slices of them on threads when big); other big ones run on
    threads: one outer row bigger than L2 (~1 MB: below that one core keeps up) by blocks of
    R, anything else by outer rows."""
    if type(view) is not np.ndarray:
        return KERNELS.cuda.sum_3d(view, is_prod, scale, out)
    n_outer, n_red, n_inner = view.shape
    if n_outer == 1 and n_inner == 1:
        chunks = threads.chunks(n_red)
        if chunks > 1:
            return KERNELS.cpu.sum_flat_p(chunks, view.reshape(-1), is_prod, scale, out)
        return KERNELS.cpu.sum_flat(view.reshape(-1), is_prod, scale, out.reshape(-1))
    if view.size < threads.MIN_SPLIT:
        return KERNELS.cpu.sum_3d(view, is_prod, scale, out)  # the common small case
    if n_outer == 1 and view.size >= 4 * threads.MIN_SPLIT:
        chunks = threads.chunks(view.size, n_red // 4)
        if chunks > 1:
            return KERNELS.cpu.sum_reduced_p(chunks, view, is_prod, scale, out)
    return run_kernel("sum_3d", view, is_prod, scale, out)


def _sum_like(input, dim, keepdim, is_prod, mean=False):
    """Sum/product (or mean) kernel launch; returns (result data, keep shape, dims, count)."""
    data = input._data
    if _all_dims(dim):  # the common full reduction: no per-dim bookkeeping
        ndim = data.ndim
        dims = tuple(range(ndim))
        keep_shape, out_shape = (1,) * ndim, ()
        view = contiguous(data).reshape(1, data.size, 1)
    else:
        dims = normalize_dims(dim, data.ndim)
        keep_shape, out_shape = _out_shapes(data.shape, dims)
        view = _view_3d(data, dims)
    n = view.shape[1]
    cpu = type(data) is np.ndarray
    K = KERNELS.cpu if cpu else KERNELS.cuda
    shape = keep_shape if keepdim else out_shape  # allocated as returned: owns its buffer
    if data.dtype.kind == "f":
        out = np.empty(shape, data.dtype) if cpu else _storage.empty(shape, data.dtype, data)
        # NOTE: mean of nothing is nan, as in PyTorch (0 * nan)
        scale = (1.0 / n if n else float("nan")) if mean else 1.0
        _sum_3d(view, is_prod, scale, out.reshape(view.shape[0], view.shape[2]))
    else:
        out = np.empty(shape, np.int64) if cpu else _storage.empty(shape, np.int64, data)
        K.sum_int_3d(view, is_prod, out.reshape(view.shape[0], view.shape[2]))
    return out, keep_shape, dims, n


def _small_full(input, node_cls, mean):
    """The sum or mean of all of a small contiguous float CPU tensor, or None for any other
    case. The common end of a tiny graph (``loss.mean()``): the general path's per-dim
    bookkeeping costs as much again as this."""
    data = input._data
    n = data.size
    if (type(data) is not np.ndarray or data.dtype.kind != "f" or not 0 < n < threads.MIN_SPLIT
            or not data.flags.c_contiguous):
        return None
    out = np.empty((), data.dtype)
    KERNELS.cpu.sum_flat(data.ravel(), False, 1.0 / n if mean else 1.0, out.ravel())
    keep_shape = (1,) * data.ndim
    return record(Tensor._wrap(out), node_cls, (input,),
                  (keep_shape, data.shape, n) if mean else (keep_shape, data.shape))


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum over ``dim`` (all dims when None); bool and integer inputs sum to int64."""
    if dim is None and dtype is None and not keepdim:
        result = _small_full(input, SumBackward0, False)
        if result is not None:
            return result
    input = _with_dtype(input, dtype)
    out, keep_shape, _, _ = _sum_like(input, dim, keepdim, False)
    node_cls = SumBackward0 if _all_dims(dim) else SumBackward1
    return record(Tensor._wrap(out), node_cls, (input,), (keep_shape, input._data.shape))


def mean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean over ``dim`` (all dims when None); floating point inputs only, as in PyTorch."""
    if input._data.dtype.kind != "f" and dtype is None:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {input.dtype.scalar_name}")
    if dim is None and dtype is None and not keepdim:
        result = _small_full(input, MeanBackward0, True)
        if result is not None:
            return result
    input = _with_dtype(input, dtype)
    out, keep_shape, dims, n = _sum_like(input, dim, keepdim, False, mean=True)
    result = Tensor._wrap(out)
    node_cls = MeanBackward0 if _all_dims(dim) else MeanBackward1
    return record(result, node_cls, (input,), (keep_shape, input._data.shape, n))




def _prod_backward(node, g):
    x, keep_shape, dim = node.saved_values()
    # NOTE: under create_graph the choice of formula depends on the values: ``.item()`` reads
    # one bool back from CUDA here, as PyTorch's prod_backward synchronises on its zero check.
    if grad_mode.is_grad_enabled():
        # create_graph: a differentiable formula, exact away from zeros
        if not x.eq(0).any().item():
            return (g.reshape(keep_shape) * prod(x, dim, keepdim=True) / x,)
        return (g.reshape(keep_shape) * _prod_except_graph(x, dim),)
    # NOTE: d/dx_i = product of the others, computed without dividing so zeros are exact.
    data = x._data.reshape(-1) if dim is None else x._data
    d = 0 if dim is None else normalize_dim(dim, data.ndim)
    others = _storage.empty(data.shape, data.dtype, data)
    if data.size:
        KERNELS(data).prod_except_3d(_view_3d(data, (d,) if data.ndim else ()),
                         others.reshape(_view_3d(data, (d,) if data.ndim else ()).shape))
    return (g.reshape(keep_shape) * Tensor._wrap(others.reshape(x._data.shape)),)


def _prod_except_graph(x, dim):
    """The product of the others along ``dim`` (all elements when None) as recorded ops, exact
    with zeros and differentiable again: row i of an n x n copy has x_i replaced by 1. It costs
    n times x's size, so it runs only under create_graph when x holds a zero."""
    from jitgrad.ops.creation import eye, ones
    from jitgrad.ops.pointwise import where

    whole = dim is None or x.dim() == 0
    moved = x.reshape(-1) if whole else x.movedim(dim, -1)
    n = moved.shape[-1]
    square = moved.unsqueeze(-2).expand(*moved.shape[:-1], n, n)
    others = where(eye(n, dtype=dtypes.bool, device=x.device),
                   ones((), dtype=x.dtype, device=x.device), square).prod(-1)
    return others.reshape(x.shape) if whole else others.movedim(-1, dim)


ProdBackward0 = node_class("ProdBackward0", _prod_backward)
ProdBackward1 = node_class("ProdBackward1", _prod_backward)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product over one ``dim`` (all elements when None)."""
    if dim is not None and not isinstance(dim, int):
        raise TypeError("prod(): argument 'dim' must be int")
    input = _with_dtype(input, dtype)
    out, keep_shape, _, _ = _sum_like(input, dim, keepdim, True)
    node_cls = ProdBackward0 if dim is None else ProdBackward1
    return record(Tensor._wrap(out), node_cls, (input,), (input, keep_shape, dim), check=(input,))


def _extreme(input, dims, largest, name, whole=False):
    """Kernel launch for max/min over ``dims``; ``whole`` means no dim was given."""
    data = input._data
    if whole and data.size == 0:
        msg = f"{name}(): Expected reduction dim to be specified for input.numel() == 0."
        if name.startswith("arg"):
            raise IndexError(msg)
        raise RuntimeError(msg + " Specify the reduction dim with the 'dim' argument.")
    for d in dims:
        if data.ndim and data.shape[d] == 0:
            raise IndexError(
                f"{name}(): Expected reduction dim {d} to have non-zero size.")
    keep_shape, out_shape = _out_shapes(data.shape, dims)
    values = _storage.empty(out_shape, data.dtype, data)
    indices = _storage.empty(out_shape, np.int64, data)
    view = _view_3d(data, dims)
    rows = view.shape[0], view.shape[2]  # (not -1: either may be 0)
    run_kernel("argextreme_3d", view, largest, values.reshape(rows), indices.reshape(rows))
    return values, indices, keep_shape


def _amax_backward(node, g):
    from jitgrad.ops.elementwise import SPECS, apply

    x, result, keep_shape, dims = node.saved_values()
    r = Tensor._wrap(result.reshape(keep_shape))
    mask = (x == r)
    # NOTE: ties share the gradient evenly, as PyTorch's amax/amin and full max/min do.
    count = sum(mask, dim=dims, keepdim=True)
    return (apply(SPECS["where"], (mask, g.reshape(keep_shape) / count, 0)),)


AmaxBackward0 = node_class("AmaxBackward0", _amax_backward)
AminBackward0 = node_class("AminBackward0", _amax_backward)
MaxBackward1 = node_class("MaxBackward1", _amax_backward)
MinBackward1 = node_class("MinBackward1", _amax_backward)


def _index_backward(node, g):
    indices, dim, in_shape, keepdim = node.saved_values()
    if not keepdim:
        g = g.unsqueeze(dim)
        indices = indices.unsqueeze(dim)
    return (_scatter(g, dim, indices, in_shape),)


MaxBackward0 = node_class("MaxBackward0", _index_backward)
MinBackward0 = node_class("MinBackward0", _index_backward)


def _amax_like(input, dim, keepdim, largest, node_cls, name):
    whole = _all_dims(dim)
    dims = normalize_dims(None if whole else dim, input._data.ndim)
    values, _, keep_shape = _extreme(input, dims, largest, name, whole)
    out = values.reshape(keep_shape) if keepdim else values
    return record(Tensor._wrap(out), node_cls, (input,),
                  (input.detach(), values, keep_shape, dims), check=(input,))


def amax(input, dim=(), keepdim=False):
    """Maximum over ``dim`` (all dims when empty); NaN propagates."""
    return _amax_like(input, dim, keepdim, True, AmaxBackward0, "amax")


def amin(input, dim=(), keepdim=False):
    """Minimum over ``dim`` (all dims when empty); NaN propagates."""
    return _amax_like(input, dim, keepdim, False, AminBackward0, "amin")


def _max_min(input, dim, keepdim, largest):
    from jitgrad.ops import elementwise

    name = "max" if largest else "min"
    if isinstance(dim, Tensor):  # torch.max(a, b) is maximum
        return elementwise.apply(elementwise.SPECS["maximum" if largest else "minimum"],
                                 (input, dim))
    if dim is None:
        return _amax_like(input, None, False, largest, MaxBackward1 if largest else MinBackward1,
                          name)
    d = normalize_dim(dim, input._data.ndim)
    values, indices, keep_shape = _extreme(input, (d,) if input._data.ndim else (), largest, name)
    if keepdim:
        values, indices = values.reshape(keep_shape), indices.reshape(keep_shape)
    idx = Tensor._wrap(indices)
    node_cls = MaxBackward0 if largest else MinBackward0
    vals = record(Tensor._wrap(values), node_cls, (input,),
                   (idx, d, input._data.shape, keepdim))
    return (_MaxResult if largest else _MinResult)(vals, idx)


def max(input, dim=None, keepdim=False):
    """Largest element, or ``(values, indices)`` along ``dim``, or ``maximum`` with a Tensor."""
    return _max_min(input, dim, keepdim, True)


def min(input, dim=None, keepdim=False):
    """Smallest element, or ``(values, indices)`` along ``dim``, or ``minimum`` with a Tensor."""
    return _max_min(input, dim, keepdim, False)


def _arg(input, dim, keepdim, largest):
    name = "argmax" if largest else "argmin"
    if dim is None:
        _, indices, _ = _extreme(input.reshape(-1), (0,), largest, name, True)
        return Tensor._wrap(indices.reshape((1,) * input._data.ndim) if keepdim else indices)
    d = normalize_dim(dim, input._data.ndim)
    _, indices, keep_shape = _extreme(input, (d,) if input._data.ndim else (), largest, name)
    return Tensor._wrap(indices.reshape(keep_shape) if keepdim else indices)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (of the flattened input when ``dim`` is None)."""
    return _arg(input, dim, keepdim, True)


def argmin(input, dim=None, keepdim=False):
    """Index of the smallest element (of the flattened input when ``dim`` is None)."""
    return _arg(input, dim, keepdim, False)


def all(input, dim=None, keepdim=False):
    """True where every element along ``dim`` is nonzero."""
    b = input if input._data.dtype == np.bool_ else input.ne(0)
    if b._data.size == 0:
        return _empty_logical(b, dim, keepdim, True)
    return amin(b, () if dim is None else dim, keepdim)


def any(input, dim=None, keepdim=False):
    """True where some element along ``dim`` is nonzero."""
    b = input if input._data.dtype == np.bool_ else input.ne(0)
    if b._data.size == 0:
        return _empty_logical(b, dim, keepdim, False)
    return amax(b, () if dim is None else dim, keepdim)


def _empty_logical(b, dim, keepdim, value):
    dims = normalize_dims(dim, b._data.ndim)
    keep_shape, out_shape = _out_shapes(b._data.shape, dims)
    return Tensor._wrap(_storage.full(keep_shape if keepdim else out_shape, value, np.bool_,
                                      b._data))


def count_nonzero(input, dim=None):
    """Number of nonzero elements along ``dim``."""
    return sum(input.ne(0), dim)


def _correction(correction, unbiased):
    if correction is not None:
        return correction
    return 0 if unbiased is False else 1


def _keep(g, keep_shape):
    return g if g._data.shape == keep_shape else g.reshape(keep_shape)


def _own_output(node, data):
    """A node's saved output as a Tensor; under create_graph it is differentiable again."""
    return Tensor._wrap(data, node if grad_mode.is_grad_enabled() else None)


def _var_backward(node, g):
    x, dims, keep_shape, divisor, _ = node.saved_values()
    return (_keep(g, keep_shape) * (2.0 / divisor) * (x - mean(x, dims, keepdim=True)),)


def _std_backward(node, g):
    x, dims, keep_shape, divisor, result = node.saved_values()
    std = _own_output(node, result).reshape(keep_shape)
    return (_keep(g, keep_shape) * (x - mean(x, dims, keepdim=True)) / (std * divisor),)


def _logsumexp_backward(node, g):
    x, keep_shape, result = node.saved_values()
    lse = _own_output(node, result).reshape(keep_shape)
    return (_keep(g, keep_shape) * (x - lse).exp(),)


VarBackward0 = node_class("VarBackward0", _var_backward)
StdBackward0 = node_class("StdBackward0", _std_backward)
LogsumexpBackward0 = node_class("LogsumexpBackward0", _logsumexp_backward)


def _variance(input, dim, unbiased, keepdim, correction, node_cls):
    if isinstance(dim, bool):  # x.var(False): legacy ``unbiased`` in first place
        dim, unbiased = None, dim
    correction = _correction(correction, unbiased)
    if input._data.dtype.kind != "f":
        raise RuntimeError("std and var only support floating point and complex dtypes")
    dims = normalize_dims(None if _all_dims(dim) else dim, input._data.ndim)
    n = int(math.prod([input._data.shape[d] for d in dims])) if input._data.ndim else 1
    divisor = builtins.max(n - correction, 0)
    keep_shape, _ = _out_shapes(input._data.shape, dims)
    with grad_mode.no_grad():
        centered = input - mean(input, dims, keepdim=True)
        out = sum(centered * centered, dims, keepdim) / divisor
        if node_cls is StdBackward0:
            out = out.sqrt()
    return record(out, node_cls, (input,), (input, dims, keep_shape, divisor, out._data),
                  check=(input,))


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's ``correction`` (``unbiased=False`` means 0)."""
    return _variance(input, dim, unbiased, keepdim, correction, VarBackward0)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation over ``dim``: the square root of ``var``."""
    return _variance(input, dim, unbiased, keepdim, correction, StdBackward0)


def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(x)))`` over ``dim``, shifted by the max so it never overflows."""
    x = input if input._data.dtype.kind == "f" else input.float()
    data = x._data
    dims = normalize_dims(dim, data.ndim)
    keep_shape, out_shape = _out_shapes(data.shape, dims)
    out = _storage.empty(out_shape, data.dtype, data)
    view = _view_3d(data, dims)
    run_kernel("logsumexp_3d", view, out.reshape(view.shape[0], view.shape[2]))
    out = Tensor._wrap(out.reshape(keep_shape) if keepdim else out)
    return record(out, LogsumexpBackward0, (x,), (x, keep_shape, out._data), check=(x,))


def _softmax_grad(result, g, dim, take_log):
    """The softmax (log_softmax) gradient from the forward's ``result``, in one kernel."""
    grad = g._data if g._data.dtype == result.dtype else cast(g._data, result.dtype)
    dims = (dim,) if result.ndim else ()
    y = _view_3d(result, dims)
    out = _storage.empty(result.shape, result.dtype, result)
    if result.size:
        run_kernel("softmax_backward_3d", y, _view_3d(grad, dims), take_log,
                    out.reshape(y.shape))
    t = Tensor._wrap(out)
    t._fresh = True  # a new buffer only the engine holds
    return t


def _softmax_backward(node, g):
    result, dim = node.saved_values()
    if not grad_mode.is_grad_enabled():
        return (_softmax_grad(result, g, dim, False),)
    y = Tensor._wrap(result, node)  # create_graph: the formula, differentiable again
    return (y * (g - sum(g * y, dim, keepdim=True)),)


def _log_softmax_backward(node, g):
    result, dim = node.saved_values()
    if not grad_mode.is_grad_enabled():
        return (_softmax_grad(result, g, dim, True),)
    y = Tensor._wrap(result, node)
    return (g - y.exp() * sum(g, dim, keepdim=True),)


SoftmaxBackward0 = node_class("SoftmaxBackward0", _softmax_backward)
LogSoftmaxBackward0 = node_class("LogSoftmaxBackward0", _log_softmax_backward)


def _softmax_like(input, dim, dtype, take_log, node_cls):
    x = input if dtype is None else input.to(dtypes.to_dtype(dtype))
    if x._data.dtype.kind != "f":
        raise NotImplementedError(f'"{"log_" if take_log else ""}softmax_kernel_impl" not '
                                  f"implemented for '{x.dtype.scalar_name}'")
    d = normalize_dim(dim, x._data.ndim)
    data = x._data
    out = _storage.empty(data.shape, data.dtype, data)
    if data.size:
        view = _view_3d(data, (d,) if data.ndim else ())  # once: it copies a strided input
        run_kernel("softmax_3d", view, take_log, out.reshape(view.shape))
    return record(Tensor._wrap(out), node_cls, (x,), (out, d), check=(RESULT,))


def softmax(input, dim, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    return _softmax_like(input, dim, dtype, False, SoftmaxBackward0)


def log_softmax(input, dim, dtype=None):
    """``x - logsumexp(x)`` along ``dim``, computed in one stable pass."""
    return _softmax_like(input, dim, dtype, True, LogSoftmaxBackward0)


def _norm_backward(node, g):
    from jitgrad.ops.elementwise import SPECS, apply

    x, result, p, keep_shape = node.saved_values()
    r = Tensor._wrap(result, node if grad_mode.is_grad_enabled() else None).reshape(keep_shape)
    # NOTE: the zero vector gets the subgradient 0, as in PyTorch, not 0/0.
    denominator = r if p == 2 else r ** (p - 1)
    scale = apply(SPECS["where"], (r.eq(0), 0.0, g.reshape(keep_shape) / denominator))
    return (x * scale if p == 2 else x.sign() * x.abs() ** (p - 1) * scale,)


LinalgVectorNormBackward0 = node_class("LinalgVectorNormBackward0", _norm_backward)


def norm(input, p="fro", dim=None, keepdim=False):
    """Vector p-norm over ``dim`` (2-norm, ``"fro"``, ``inf``, ``-inf`` or any p > 0)."""
    if input._data.dtype.kind != "f":
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {input.dtype.scalar_name}")
    if p == "fro":
        p = 2
    if not isinstance(p, (int, float)):
        raise TypeError(f"norm(): p must be a number or 'fro', got {p!r}")
    x = input.abs()
    if p == float("inf"):
        return amax(x, () if dim is None else dim, keepdim)
    if p == float("-inf"):
        return amin(x, () if dim is None else dim, keepdim)
    if p == 1:
        return sum(x, dim, keepdim)
    if p == 0:
        return sum(x.ne(0).to(input.dtype), dim, keepdim)
    with grad_mode.no_grad():
        out = sum(x * x if p == 2 else x ** p, dim, keepdim) ** (0.5 if p == 2 else 1.0 / p)
    dims = normalize_dims(None if _all_dims(dim) else dim, input._data.ndim)
    keep_shape, _ = _out_shapes(input._data.shape, dims)
    return record(out, LinalgVectorNormBackward0, (input,), (input, out._data, p, keep_shape),
                  check=(input, RESULT))


def sum_to_shape(t, shape):
    """Sum a broadcast gradient back to ``shape`` (leading dims dropped, size-1 dims kept)."""
    return _sum_to_shape(t, shape, False)


def _grad_sum_to_shape(t, shape):
    """``sum_to_shape`` inside a backward formula: a sum's new buffer is marked ``_fresh``.

    Only for results nothing but the engine holds: ``AccumulateGrad`` may then keep the buffer
    (or, through the returned view's ``_base``, the sum itself) as ``.grad`` without a copy.
    """
    return _sum_to_shape(t, shape, not _GRAD.enabled)


def _sum_to_shape(t, shape, fresh):
    d = t._data
    lead = d.ndim - len(shape)
    if (lead > 0 and d.shape[lead:] == shape and type(d) is np.ndarray and d.dtype.kind == "f"
            and d.size and d.flags.c_contiguous and not (_GRAD.enabled and t._requires_grad)):
        # the common case, a bias's gradient: a sum over leading dims, one kernel call and no
        # recorded node (each step of ``sum`` costs a visible share on a layer's backward)
        out = np.empty(shape, d.dtype)
        _sum_3d(d.reshape(1, d.size // out.size, out.size), False, 1.0, out.reshape(1, out.size))
        t = Tensor._wrap(out)
        t._fresh = fresh
        return t
    dims = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and t._data.shape[lead + i] != 1)
    if dims:
        t = sum(t, dims, keepdim=True)
        t._fresh = fresh
    return t.reshape(shape)


def _gather_backward(node, g):
    index, dim, in_shape = node.saved_values()
    return (_scatter(g, dim, index, in_shape),)


GatherBackward0 = node_class("GatherBackward0", _gather_backward)


def _scatter_backward(node, g):
    index, dim = node.saved_values()
    return (gather(g, dim, index),)


ScatterAddBackward0 = node_class("ScatterAddBackward0", _scatter_backward)


def _check_index(input, dim, index):
    if index._data.dtype.kind not in "iu":
        raise RuntimeError("gather(): Expected dtype int32/int64 for index")
    if index._data.ndim != input._data.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    size = input._data.shape[dim] if input._data.ndim else 1
    if index._data.size:
        lo, hi = index_bounds(index._data)[0]
        if lo < 0 or hi >= size:
            # NOTE: an error path: the index is read back (from CUDA) to name its first bad value
            data = _storage.move(index._data, CPU)
            bad = data[(data < 0) | (data >= size)].flat[0]
            raise RuntimeError(
                f"index {bad} is out of bounds for dimension {dim} with size {size}")


def index_bounds(*indices):
    """``[(min, max)]`` of non-empty integer arrays (all on one device), as Python ints.

    On CUDA the extremes come from the reduce kernel and only those 2 scalars per array come
    back, in one copy: validity depends on them (PyTorch CUDA synchronises on index checks too).
    """
    first = indices[0]
    if type(first) is np.ndarray:
        return [(int(a.min()), int(a.max())) for a in indices]
    K = KERNELS(first)
    found = _storage.empty((2 * len(indices),), np.int64, first)
    at = _storage.empty((2 * len(indices),), np.int64, first)
    for j, a in enumerate(indices):
        view = contiguous(a).reshape(1, -1, 1)
        for k in (2 * j, 2 * j + 1):
            K.argextreme_3d(view, k % 2 == 1, found[k:k + 1].reshape(1, 1),
                            at[k:k + 1].reshape(1, 1))
    host = _storage.move(found, CPU).tolist()  # NOTE: the one read: 2 scalars per index
    return [(host[2 * j], host[2 * j + 1]) for j in range(len(indices))]


def _split_3d(shape, dim):
    return (math.prod(shape[:dim]), shape[dim] if shape else 1, math.prod(shape[dim + 1:]))


def gather(input, dim, index):
    """``out[..., k, ...] = input[..., index[..., k, ...], ...]`` along ``dim``."""
    d = normalize_dim(dim, input._data.ndim)
    if type(input._data) is not type(index._data):
        _storage.check_same_device(input._data, index._data)
    _check_index(input, d, index)
    for i, (a, b) in enumerate(zip(index._data.shape, input._data.shape)):
        if i != d and a > b:
            raise RuntimeError(
                f"Size does not match at dimension {i} expected index {list(index.shape)} to be "
                f"no larger than self {list(input.shape)} apart from dimension {d}")
    idx = index._data  # int64 and contiguous: one kernel signature for indices
    if idx.dtype != np.int64 or not idx.flags.c_contiguous:
        idx = cast(idx, np.int64)
    # gather reads input only where index reaches in the other dims
    x = contiguous(input._data[_index_region(idx.shape, d)])
    out = _storage.empty(idx.shape, x.dtype, x)
    KERNELS(x).gather_3d(x.reshape(_split_3d(x.shape, d)), idx.reshape(_split_3d(idx.shape, d)),
                out.reshape(_split_3d(idx.shape, d)))
    return record(Tensor._wrap(out), GatherBackward0, (input,),
                   (Tensor._wrap(idx), d, input._data.shape))


def _index_region(index_shape, dim):
    return tuple(slice(None) if i == dim else slice(0, n) for i, n in enumerate(index_shape))


def _scatter(src, dim, index, shape):
    """Zeros of ``shape`` with ``src`` added at ``index`` along ``dim`` (differentiable)."""
    out = (np.zeros(shape, src._data.dtype) if type(src._data) is np.ndarray
           else _storage.zeros(shape, src._data.dtype, src._data))
    region = out[_index_region(src._data.shape, dim)]
    target = region if region.flags.c_contiguous else _storage.zeros(region.shape, out.dtype, out)
    if src._data.size:
        s = contiguous(src._data)
        KERNELS(s).scatter_add_3d(s.reshape(_split_3d(s.shape, dim)),
                         contiguous(index._data).reshape(_split_3d(s.shape, dim)),
                         target.reshape(_split_3d(target.shape, dim)))
        if target is not region:
            copy_into(region, target)
    return record(Tensor._wrap(out), ScatterAddBackward0, (src,), (index, dim))
