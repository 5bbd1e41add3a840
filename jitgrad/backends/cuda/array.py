"""``DeviceArray``: a CUDA buffer with numpy's view semantics, the storage of CUDA tensors.

The op layer treats storage as numpy-like (shape, strides, flags, basic indexing, transpose,
reshape into views). A DeviceArray keeps a *shape twin*: a numpy array with the same shape,
strides and dtype over a one-element anchor, which numpy's own view machinery reshapes and
slices. The twin is never read (its memory is not the tensor's), so views cost what numpy's
cost, and byte offsets come from pointer differences. Kernels get ``.dev``, a numba device
array over the same bytes, built once per DeviceArray.

Anything that would read the data on the host (``np.asarray``) raises instead of copying
behind the user's back; ``to_host`` is the one explicit way back.
"""

import numpy as np

from jitgrad.backends.cuda import runtime

__all__ = ["DeviceArray", "empty", "from_cuda_array_interface", "is_device_array", "to_device",
           "to_host"]

_ANCHORS = {}


def _anchor(dtype):
    a = _ANCHORS.get(dtype)
    if a is None:
        a = _ANCHORS[dtype] = np.zeros(1, dtype)
    return a


def _twin(shape, strides, dtype):
    return np.lib.stride_tricks.as_strided(_anchor(dtype), shape, strides)


def _address(a):
    return a.__array_interface__["data"][0]


def _span(shape, strides, itemsize):
    """Bytes from the first element to one past the last (0 for an empty array)."""
    if 0 in shape:
        return 0
    return itemsize + sum((n - 1) * s for n, s in zip(shape, strides))


class DeviceArray:
    """A strided view of a CUDA allocation (see the module docstring)."""

    __slots__ = ("_twin", "_memory", "_offset", "_dev", "_flat", "_owner", "__weakref__")

    def __init__(self, twin, memory, offset, owner=None):
        self._twin = twin  # shape/strides/dtype only: never read
        self._memory = memory  # flat uint8 numba device array holding the whole allocation
        self._offset = offset  # bytes from the allocation's start to element [0, ..., 0]
        self._dev = None
        self._flat = None
        self._owner = owner  # the DeviceArray this one views (numpy's .base)

    # --- numpy's metadata ---------------------------------------------------------------
    @property
    def shape(self):
        return self._twin.shape

    @shape.setter
    def shape(self, shape):
        """Reshape in place without a copy; AttributeError where numpy would need one."""
        twin = self._twin.view()
        twin.shape = shape
        self._twin = twin
        self._dev = self._flat = None

    @property
    def strides(self):
        return self._twin.strides

    @property
    def dtype(self):
        return self._twin.dtype

    @property
    def ndim(self):
        return self._twin.ndim

    @property
    def size(self):
        return self._twin.size

    @property
    def itemsize(self):
        return self._twin.itemsize

    @property
    def nbytes(self):
        return self._twin.nbytes

    @property
    def flags(self):
        return self._twin.flags

    @property
    def base(self):
        return self._owner

    def __len__(self):
        return len(self._twin)

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, offset={self._offset})"

    # --- views --------------------------------------------------------------------------
    def _view_of(self, twin):
        offset = self._offset + _address(twin) - _address(self._twin)
        return DeviceArray(twin, self._memory, offset, self if self._owner is None else self._owner)

    def __getitem__(self, index):
        """Basic indexing (ints, slices, None, Ellipsis) gives a view, as in numpy."""
        if not isinstance(index, tuple):
            index = (index,)
        for i in index:
            if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))) \
                    or isinstance(i, bool):
                raise TypeError(f"DeviceArray supports basic indexing only, got {type(i).__name__}")
        # a leading axis keeps the result an array even when every index is an integer
        t = self._twin[None][(slice(None), *index)]
        return self._view_of(np.lib.stride_tricks.as_strided(t, t.shape[1:], t.strides[1:]))

    def __setitem__(self, index, value):
        raise TypeError("DeviceArray is written by kernels only")

    def transpose(self, *axes):
        return self._view_of(self._twin.transpose(*axes))

    @property
    def T(self):
        return self._view_of(self._twin.T)

    def swapaxes(self, a, b):
        return self._view_of(self._twin.swapaxes(a, b))

    def reshape(self, *shape):
        """A view with a new shape; raises ValueError where numpy would have to copy."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        twin = self._twin.view()
        try:
            twin.shape = shape  # numpy refuses (AttributeError) instead of copying
        except AttributeError:
            raise ValueError(f"cannot reshape a non-contiguous CUDA array of shape {self.shape} "
                             f"to {shape} without a copy") from None
        return self._view_of(twin)

    def ravel(self):
        """The 1-D view of a contiguous array, kept: flat kernels launch on it again and again."""
        flat = self._flat
        if flat is None:
            flat = self._flat = self.reshape(-1)
        return flat

    def as_strided(self, shape, strides):
        """A view of this array's memory with the given shape and byte strides."""
        return self._view_of(np.lib.stride_tricks.as_strided(self._twin, shape, strides))

    def broadcast_to(self, shape):
        return self._view_of(np.broadcast_to(self._twin, shape))

    def view(self, dtype=None):
        if dtype is None or np.dtype(dtype) == self.dtype:
            return self._view_of(self._twin.view())
        raise TypeError("DeviceArray.view cannot reinterpret dtypes")

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a CUDA tensor's data cannot be used as a numpy array; copy it to the "
                        "host first with .cpu()")

    # --- kernels' view ------------------------------------------------------------------
    @property
    def dev(self):
        """A numba device array over this view's bytes (what kernels are launched with)."""
        d = self._dev
        if d is None:
            d = self._dev = _numba_view(self._memory, self._offset, self._twin)
        return d

    @property
    def __cuda_array_interface__(self):
        if runtime.simulator():
            raise AttributeError("the CUDA simulator has no device pointers")
        data = self._memory.__cuda_array_interface__["data"][0] + self._offset
        return {"shape": self.shape, "strides": None if self.flags.c_contiguous else self.strides,
                "data": (data, False), "typestr": self.dtype.str, "version": 3}


def _numba_view(memory, offset, twin):
    cuda = runtime.cuda()
    span = _span(twin.shape, twin.strides, twin.itemsize)
    if runtime.simulator():
        host = memory._ary if span else np.zeros(max(1, offset + 1), np.uint8)
        return cuda.simulator.cudadrv.devicearray.FakeCUDAArray(
            np.ndarray(twin.shape, twin.dtype, host, offset if span else 0, twin.strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    gpu_data = memory.gpu_data.view(offset, offset + span) if span else None
    return DeviceNDArray(twin.shape, twin.strides, twin.dtype, gpu_data=gpu_data)


def _contiguous_strides(shape, itemsize):
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def empty(shape, dtype):
    """An uninitialised C-contiguous DeviceArray."""
    if not runtime.available():
        raise RuntimeError(runtime.unavailable_reason())
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    memory = runtime.cuda().device_array(max(nbytes, 1), np.uint8)
    return DeviceArray(_twin(shape, _contiguous_strides(shape, dtype.itemsize), dtype), memory, 0)


def is_device_array(obj):
    return type(obj) is DeviceArray


def to_device(host):
    """Copy a numpy array to a new C-contiguous DeviceArray (counted as a transfer)."""
    host = np.asarray(host, order="C")  # unlike ascontiguousarray, keeps 0-d arrays 0-d
    out = empty(host.shape, host.dtype)
    if host.size:
        runtime.transfers.to_device += 1
        out._memory[:host.nbytes].copy_to_device(host.reshape(-1).view(np.uint8))
    return out


def to_host(array):
    """Copy a DeviceArray (any strides) into a new numpy array (counted as a transfer)."""
    if array.size == 0:
        return np.empty(array.shape, array.dtype)
    runtime.transfers.to_host += 1
    span = _span(array.shape, array.strides, array.itemsize)
    first = array._offset
    raw = array._memory[first:first + span].copy_to_host()
    # strides are multiples of the item size, so the span holds whole items
    view = np.lib.stride_tricks.as_strided(raw.view(array.dtype), array.shape, array.strides)
    return np.array(view)  # a compact copy, so the raw span can be freed


def from_cuda_array_interface(obj):
    """A DeviceArray viewing another library's CUDA memory, without a copy."""
    cuda = runtime.cuda()
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    dev = cuda.as_cuda_array(obj)  # keeps ``obj`` alive as the memory's owner
    if dev.size and not dev.is_c_contiguous():
        raise ValueError("only C-contiguous CUDA arrays can be wrapped without a copy")
    memory = DeviceNDArray((max(dev.nbytes, 1),), (1,), np.uint8, gpu_data=dev.gpu_data)
    out = DeviceArray(_twin(dev.shape, dev.strides, dev.dtype), memory, 0)
    out._dev = dev
    return out
