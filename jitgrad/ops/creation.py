"""Tensor creation: from data, filled, ranges and random values (numpy allocates)."""

import builtins

import numpy as np

from jitgrad import dtypes
from jitgrad.ops import _storage
from jitgrad.tensor import Tensor

__all__ = ["arange", "as_tensor", "empty", "empty_like", "eye", "from_numpy", "full", "full_like",
           "is_tensor", "linspace", "manual_seed", "numel", "ones", "ones_like", "rand",
           "rand_like", "randint", "randint_like", "randn", "randn_like", "randperm", "seed",
           "tensor", "zeros", "zeros_like"]

_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed jitgrad's random generator (``rand``, ``randn``, ``randint``, dropout, shuffles)."""
    global _rng
    _rng = np.random.default_rng(int(seed))
    return _rng


def seed():
    global _rng
    _rng = np.random.default_rng()


def generator():
    """The current random generator (read at call time so ``manual_seed`` takes effect)."""
    return _rng


def _finish(data, requires_grad, device=None):
    """A tensor around host-built ``data``, copied to ``device`` when that is CUDA."""
    t = Tensor._wrap(_storage.move(data, _storage.resolve(device)))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _sizes(size):
    for s in size:  # the common call, ones(2, 3): a tuple of non-negative ints already
        if type(s) is not int or s < 0:
            break
    else:
        if size:
            return size
    if not size:
        raise TypeError("missing 1 required positional arguments: \"size\"")
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if type(s) is not int and (not isinstance(s, np.integer) or isinstance(s, bool)):
            raise TypeError(f"size must be a tuple of ints, but got {type(s).__name__}")
        if s < 0:
            raise RuntimeError(
                f"Trying to create tensor with negative dimension {s}: {list(size)}")
    return tuple(map(int, size))


def _np_dtype(dtype, default=None):
    d = dtypes.to_dtype(dtype)
    return (d or default or dtypes.get_default_dtype()).np


def _infer_dtype(data):
    """PyTorch's dtype for Python data: bools -> bool, ints -> int64, any float -> float32."""
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return dtypes.get_default_dtype().np
    if arr.dtype.kind in "iu":
        return np.int64
    if arr.dtype.kind == "b":
        return np.bool_
    raise TypeError(f"Could not infer dtype of {type(data).__name__}")


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays or tensors).

    Example::

        >>> import jitgrad
        >>> jitgrad.tensor([[1., -1.], [1., -1.]])
        tensor([[ 1., -1.],
                [ 1., -1.]])
    """
    if isinstance(data, Tensor):
        src = data._data
        if not _storage.on_cpu(src):
            return data.to(dtype=dtype, device=device, copy=True).detach().requires_grad_(
                requires_grad)
    elif isinstance(data, (np.ndarray, np.generic)):  # numpy scalars keep their dtype too
        src = np.asarray(data)
        dtypes.from_numpy_dtype(src.dtype)
    elif data is None:
        raise RuntimeError("Could not infer dtype of NoneType")
    else:
        try:
            src = np.array(data)
        except ValueError as err:
            raise ValueError(f"expected a rectangular nested sequence of numbers: {err}") from None
        if src.dtype == object:
            raise TypeError(f"Could not infer dtype of {type(data).__name__}")
        if src.dtype == np.uint64:  # numpy's type for Python ints in [2**63, 2**64)
            raise ValueError("Overflow when unpacking long long")
        src = src.astype(_infer_dtype(src), copy=False)
    target = dtypes.to_dtype(dtype)
    out = np.array(src, dtype=target.np if target else src.dtype, copy=True, order="C")
    return _finish(out, requires_grad, device)


def as_tensor(data, dtype=None, device=None):
    """A tensor sharing memory with ``data`` when it is already a suitable array or tensor."""
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    if hasattr(data, "__cuda_array_interface__"):  # numba, CuPy or PyTorch CUDA memory: no copy
        from jitgrad.backends.cuda.array import from_cuda_array_interface

        _storage.resolve("cuda")
        t = Tensor._wrap(from_cuda_array_interface(data))
        return t.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray) and (dtype is None or dtypes.to_dtype(dtype).np == data.dtype):
        dtypes.from_numpy_dtype(data.dtype)
        return _finish(data, False, device)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(ndarray):
    """A tensor that shares memory with ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    dtypes.from_numpy_dtype(ndarray.dtype)
    return Tensor._wrap(ndarray)


def _filled(size, fill, dtype, device, requires_grad):
    device = _storage.resolve(device)
    data = _storage.full_on(_sizes(size), fill, _np_dtype(dtype), device)
    if device is None or device.type == "cpu":  # already in place: the common case
        t = Tensor._wrap(data)
        if requires_grad:
            if dtype is None:  # the default dtype is a float: nothing to check
                t._requires_grad = True
            else:
                t.requires_grad_(True)
        return t
    return _finish(data, requires_grad, device)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros of the given size."""
    return _filled(size, 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones of the given size."""
    return _filled(size, 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    """An uninitialised tensor of the given size."""
    return _filled(size, 0, dtype, device, requires_grad)  # zeros: never uninitialised memory


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor of ``size`` filled with ``fill_value`` (dtype inferred from it)."""
    if dtype is None:
        dtype = dtypes.scalar_dtype(fill_value)
    return _filled((size,) if isinstance(size, int) else (tuple(size),), fill_value, dtype,
                   device, requires_grad)


def _like(input, dtype):
    return dtype if dtype is not None else input.dtype


def _like_device(input, device):
    return device if device is not None else input.device


def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    return zeros(input.shape, dtype=_like(input, dtype), device=_like_device(input, device),
                requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    return ones(input.shape, dtype=_like(input, dtype), device=_like_device(input, device),
                requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False):
    return empty(input.shape, dtype=_like(input, dtype), device=_like_device(input, device),
                requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(input.shape, fill_value, dtype=_like(input, dtype),
                device=_like_device(input, device), requires_grad=requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False):
    return rand(input.shape, dtype=_like(input, dtype), device=_like_device(input, device),
                requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False):
    return randn(input.shape, dtype=_like(input, dtype), device=_like_device(input, device),
                requires_grad=requires_grad)


def randint_like(input, low=0, high=None, *, dtype=None, device=None):
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, dtype=_like(input, dtype),
                   device=_like_device(input, device))


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = dtypes.int64 if is_int else dtypes.get_default_dtype()
    n = builtins.max(int(np.ceil((end - start) / step)), 0)
    data = (start + step * np.arange(n, dtype=np.float64)).astype(_np_dtype(dtype))
    return _finish(data, requires_grad, device)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _finish(np.linspace(start, end, steps).astype(_np_dtype(dtype)), requires_grad, device)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    """The identity matrix (``n`` x ``m``)."""
    for name, v in (("n", n), ("m", m)):
        if v is not None and v < 0:
            raise RuntimeError(f"{name} must be greater or equal to 0, got {v}")
    return _finish(np.eye(n, n if m is None else m, dtype=_np_dtype(dtype)), requires_grad, device)


def _random(values, dtype, device, requires_grad):
    return _finish(values.astype(_np_dtype(dtype), copy=False), requires_grad, device)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Uniform samples from [0, 1)."""
    rng = generator or _rng
    return _random(rng.random(_sizes(size)), dtype, device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Standard normal samples."""
    rng = generator or _rng
    return _random(rng.standard_normal(_sizes(size)), dtype, device, requires_grad)


def randint(low=0, high=None, size=None, *, dtype=None, device=None, generator=None):
    """Integers uniformly drawn from [low, high): ``randint([low,] high, size)``."""
    if size is None:
        low, high, size = 0, low, high
    if high is None or size is None:
        raise TypeError("randint() missing required arguments: high and size")
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} "
                           f">= to={high}")
    rng = generator or _rng
    values = rng.integers(low, high, _sizes((size,)))
    return _random(values, dtype or dtypes.int64, device, False)


def randperm(n, *, dtype=None, device=None, generator=None):
    """A random permutation of 0..n-1."""
    rng = generator or _rng
    return _random(rng.permutation(n), dtype or dtypes.int64, device, False)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    return input.numel()
