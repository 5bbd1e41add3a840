"""Matrix products: ``matmul`` with PyTorch's 1-D, 2-D and broadcast-batched rules."""

import math

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.backends import Family
from jitgrad.backends.cpu import blas, threads
from jitgrad.ops import _storage
from jitgrad.ops._checks import broadcast_shapes
from jitgrad.ops._views import strided_view
from jitgrad.ops.elementwise import cast
from jitgrad.tensor import Tensor

__all__ = ["bmm", "cpu_addmm", "cpu_matrices", "cpu_mm_pair", "dot", "matmul", "mm", "mv",
           "outer"]

_TORCH_NAME = {"float32": "float", "float64": "double", "int64": "long int", "int32": "int",
               "bool": "bool"}

_KERNELS = Family("linalg_kernels")
_GRAD = grad_mode._state


def _matmul_backward(node, g):
    from jitgrad.ops.reduce import _grad_sum_to_shape

    a, b = node.saved_values()
    fresh = not _GRAD.enabled  # the products are new buffers only the engine holds
    both = node.next_functions[0][0] is not None and node.next_functions[1][0] is not None
    if fresh and both and _storage.on_cpu(g._data):
        g = Tensor._wrap(_blas_ready(g._data))  # one contiguous copy (of an expand) for both
        arrays = cpu_matrices(a, b, g)
        if arrays is not None:
            ad, bd, gd = arrays
            ga, gb = (Tensor._wrap(x) for x in cpu_mm_pair(gd, bd.T, ad.T, gd))
            ga._fresh = gb._fresh = True
            return ga, gb
    ga = gb = None
    if node.next_functions[0][0] is not None:
        ga = matmul(g, b.transpose(-1, -2))
        ga._fresh = fresh
        ga = _grad_sum_to_shape(ga, a.shape)
    if node.next_functions[1][0] is not None:
        gb = matmul(a.transpose(-1, -2), g)
        gb._fresh = fresh
        gb = _grad_sum_to_shape(gb, b.shape)
    return ga, gb


MmBackward0 = node_class("MmBackward0", _matmul_backward)
BmmBackward0 = node_class("BmmBackward0", _matmul_backward)


def _blas_ready(x):
    """``x`` itself when BLAS reads it in place (C/F-contiguous; a 2-D one in any layout
    ``blas.gemm_ready`` takes), else a contiguous copy."""
    if x.flags.c_contiguous or x.flags.f_contiguous or (x.ndim == 2 and blas.gemm_ready(x)):
        return x
    return cast(x, x.dtype)


def _matmul_nd(a, b):
    """Product of operands with at least 2 dims each (batch dims broadcast).

    CPU operands go to BLAS-backed kernels (big products split by rows or columns over
    threads, strided operands made contiguous first); CUDA kernels read any strides, stride-0
    broadcast batch dims included.
    """
    ad, bd = a._data, b._data
    n, k = ad.shape[-2:]
    k2, m = bd.shape[-2:]
    batch = broadcast_shapes(ad.shape[:-2], bd.shape[:-2])
    if k != k2:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({ad.shape[-2] if ad.ndim > 1 else 1}x{k} "
            f"and {k2}x{m})")
    K = _KERNELS(ad)
    if ad.ndim == 2 and bd.ndim == 2 and ad.dtype.kind == "f":
        if _storage.on_cpu(ad):
            return _mm_cpu(a, b, ad, bd)
        out = _storage.empty((n, m), ad.dtype, ad)
        K.mm(ad, bd, out)
        return record(Tensor._wrap(out), MmBackward0, (a, b), (a, b), check=(a, b))
    a3 = _batched(ad, batch)
    b3 = _batched(bd, batch)
    out = _storage.empty((a3.shape[0], n, m), ad.dtype, ad)
    (K.bmm if ad.dtype.kind == "f" else K.bmm_int)(a3, b3, out)
    return record(Tensor._wrap(out.reshape(batch + (n, m))), BmmBackward0, (a, b), (a, b),
                  check=(a, b))


def _mm_cpu(a, b, ad, bd):
    """The product of float 2-D CPU matrices of matching inner dims, recorded."""
    return record(Tensor._wrap(cpu_addmm(ad, bd)), MmBackward0, (a, b), (a, b), check=(a, b))


_NO_BIAS = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}


def cpu_addmm(ad, bd, bias=None):
    """A new array ``ad @ bd`` (+ ``bias`` on every row) of float 2-D CPU arrays of one dtype
    with matching inner dims (a C-contiguous ``bias`` of ``bd``'s width), one BLAS call per
    slice (blas.py); strided operands BLAS cannot read are copied first."""
    n, k = ad.shape
    m = bd.shape[1]
    out = np.empty((n, m), ad.dtype)
    ad, bd = _blas_ready(ad), _blas_ready(bd)
    if bias is None:
        bias = _NO_BIAS[ad.dtype]
    chunks, by_cols = blas.split(n, k, m)
    if chunks == 1:
        _KERNELS.cpu.addmm(ad, bd, out, bias)
    else:
        _KERNELS.cpu.addmm_p(chunks, by_cols, ad, bd, out, bias)
    return out


# NOTE: the two gradients of a product have the same n*k*m. Run at once, each on half the
# threads, they beat one after the other split over all (2 cores, float32, us): 64x256x128
# (an MLP layer) 53 -> 36, 16x256x120 14 -> 9.3, 256^3 231 -> 202, 512^3 1701 -> 1542 (each
# thread packs only its own product's operands); below ~64K multiply-adds the launch costs more.
_PAIR_WORK = 1 << 16


def cpu_mm_pair(a1, b1, a2, b2):
    """(a1 @ b1, a2 @ b2) as new arrays, for float 2-D CPU arrays of one dtype with matching
    inner dims, as ``cpu_addmm`` computes them: both products at once on the threads."""
    (n1, k1), (n2, k2) = a1.shape, a2.shape
    m1, m2 = b1.shape[1], b2.shape[1]
    half = threads.usable() // 2
    if not half or min(n1 * k1 * m1, n2 * k2 * m2) < _PAIR_WORK:
        return cpu_addmm(a1, b1), cpu_addmm(a2, b2)
    out1, out2 = np.empty((n1, m1), a1.dtype), np.empty((n2, m2), a2.dtype)
    chunks1, by_cols1 = blas.split(n1, k1, m1, half)
    chunks2, by_cols2 = blas.split(n2, k2, m2, half)
    _KERNELS.cpu.mm_pair_p(chunks1, by_cols1, _blas_ready(a1), _blas_ready(b1), out1,
                           chunks2, by_cols2, _blas_ready(a2), _blas_ready(b2), out2)
    return out1, out2


def cpu_matrices(*tensors):
    """The arrays of ``tensors`` when all are 2-D float CPU arrays of one dtype, else None."""
    arrays = [t._data for t in tensors]
    dtype = arrays[0].dtype
    if dtype.kind != "f":
        return None
    for x in arrays:
        if type(x) is not np.ndarray or x.ndim != 2 or x.dtype != dtype:
            return None
    return arrays


def _batched(x, batch):
    """``x`` broadcast to ``batch`` dims as a (B, rows, cols) array.

    On CPU the result is C-contiguous. CUDA kernels take any strides, so there it stays a view
    (stride 0 along broadcast dims) unless several batch dims cannot merge into one.
    """
    target = batch + x.shape[-2:]
    if x.shape != target:
        x = strided_view(
            x, target, (0,) * (len(target) - x.ndim) + tuple(
                0 if s == 1 and t != 1 else st for s, t, st in
                zip(x.shape, target[len(target) - x.ndim:], x.strides)))
    shape3 = (math.prod(batch),) + target[-2:]
    if _storage.on_cpu(x):
        if not x.flags.c_contiguous:
            x = cast(x, x.dtype)
        return x.reshape(shape3)
    if len(batch) == 0:
        return x[None]
    if len(batch) == 1:
        return x
    try:
        return x.reshape(shape3)
    except ValueError:  # batch dims with incompatible strides: one device-side copy
        return cast(x, x.dtype).reshape(shape3)


def matmul(input, other):
    """Matrix product with PyTorch's rules for 1-D (vector) and batched operands."""
    if isinstance(input, Tensor) and isinstance(other, Tensor):  # float CPU matrices: inline
        arrays = cpu_matrices(input, other)
        if arrays is not None and arrays[0].shape[1] == arrays[1].shape[0]:
            return _mm_cpu(input, other, *arrays)
    for t in (input, other):
        if not isinstance(t, Tensor):
            raise TypeError(f"unsupported operand type(s) for @: '{type(input).__name__}' and "
                            f"'{type(other).__name__}'")
    a, b = input, other
    _storage.check_same_device(a._data, b._data)
    if a._data.ndim == 0 or b._data.ndim == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {a._data.ndim}D and "
            f"{b._data.ndim}D")
    if a._data.dtype != b._data.dtype:
        raise RuntimeError(
            f"expected m1 and m2 to have the same dtype, but got: {_TORCH_NAME[a.dtype.name]} != "
            f"{_TORCH_NAME[b.dtype.name]}")
    if a._data.dtype.kind == "b":
        where = "addmm_impl_cpu_" if _storage.on_cpu(a._data) else "addmm_cuda"
        raise NotImplementedError(f'"{where}" not implemented for \'Bool\'')
    if a._data.ndim == 2 and b._data.ndim == 1 and a._data.shape[1] != b._data.shape[0]:
        raise RuntimeError(
            f"size mismatch, got input ({a._data.shape[0]}), mat ({a._data.shape[0]}x"
            f"{a._data.shape[1]}), vec ({b._data.shape[0]})")
    if a._data.ndim == 1 and b._data.ndim == 1 and a._data.shape != b._data.shape:
        raise RuntimeError(
            f"inconsistent tensor size, expected tensor [{a._data.shape[0]}] and src "
            f"[{b._data.shape[0]}] to have the same number of elements, but got "
            f"{a._data.shape[0]} and {b._data.shape[0]} elements respectively")
    squeeze = []
    if a._data.ndim == 1:
        a = a.unsqueeze(0)
        squeeze.append(-2)
    if b._data.ndim == 1:
        b = b.unsqueeze(-1)
        squeeze.append(-1)
    out = _matmul_nd(a, b)
    for d in sorted(squeeze):
        out = out.squeeze(d)
    return out


def mm(input, mat2):
    """Product of two 2-D matrices."""
    _storage.check_same_device(input._data, mat2._data)
    for name, t in (("self", input), ("mat2", mat2)):
        if t._data.ndim != 2:
            raise RuntimeError(f"{name} must be a matrix")
    return matmul(input, mat2)


def bmm(input, mat2):
    """Batched product of two 3-D tensors."""
    _storage.check_same_device(input._data, mat2._data)
    for name, t in (("batch1", input), ("batch2", mat2)):
        if t._data.ndim != 3:
            raise RuntimeError(f"{name} must be a 3D tensor")
    b, k, b2, k2 = input._data.shape[0], input._data.shape[2], *mat2._data.shape[:2]
    if (b, k) != (b2, k2):
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{b}, {k}] but got: [{b2}, {k2}].")
    return matmul(input, mat2)


def dot(input, other):
    """Inner product of two 1-D tensors."""
    _storage.check_same_device(input._data, other._data)
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(
            f"1D tensors expected, but got {input._data.ndim}D and {other._data.ndim}D tensors")
    if input._data.dtype != other._data.dtype:
        raise RuntimeError(f"dot : expected both vectors to have same dtype, but found "
                           f"{_TORCH_NAME[input.dtype.name].capitalize()} and "
                           f"{_TORCH_NAME[other.dtype.name].capitalize()}")
    return matmul(input, other)


def mv(input, vec):
    """Matrix-vector product."""
    return matmul(input, vec)


def outer(input, vec2):
    """Outer product of two 1-D tensors."""
    return input.unsqueeze(1) * vec2.unsqueeze(0)
