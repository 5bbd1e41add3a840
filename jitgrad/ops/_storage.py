"""Where a tensor's data lives, and allocation beside it.

CPU data is a numpy array; CUDA data is a ``backends.cuda.array.DeviceArray``. Ops allocate
results with ``empty(shape, dtype, like)`` so they land on the device of ``like``.
"""

import numpy as np

from jitgrad.backends.cpu import malloc  # noqa: F401  (keeps freed big arrays' pages)
from jitgrad.size import CPU
from jitgrad.size import device as _device

__all__ = ["CUDA0", "check_same_device", "device_of", "empty", "full", "full_on", "move", "on_cpu",
           "resolve", "zeros"]

CUDA0 = _device("cuda", 0)


def on_cpu(data):
    return type(data) is np.ndarray


def device_of(data):
    return CPU if type(data) is np.ndarray else CUDA0


def _cuda_arrays():
    from jitgrad.backends.cuda import array

    return array


def resolve(device):
    """The ``device`` a ``device=`` argument names (None stays None); checks CUDA is usable."""
    if device is None:
        return None
    d = _device(device)
    if d.type == "cpu":
        return CPU
    from jitgrad.backends.cuda import runtime

    if not runtime.available():
        raise RuntimeError(runtime.unavailable_reason())
    if d.index not in (None, 0):
        raise RuntimeError(f"Invalid device {d}: jitgrad uses one CUDA device (cuda:0)")
    return CUDA0


def empty(shape, dtype, like):
    """An uninitialised C-contiguous array on the device of ``like`` (an array or a device)."""
    if type(like) is np.ndarray or like is CPU:
        return np.empty(shape, dtype)
    return _cuda_arrays().empty(shape, dtype)


def full(shape, value, dtype, like):
    return full_on(shape, value, dtype, device_of(like))


def full_on(shape, value, dtype, device):
    """An array of ``value`` on ``device`` (CUDA arrays are filled by a kernel there)."""
    if device is None or device.type == "cpu":
        out = np.empty(shape, dtype)
        out.fill(value)  # NOTE: np.full costs 0.5 us more, a third of a small op's budget
        return out
    from jitgrad.ops.elementwise import fill

    out = _cuda_arrays().empty(shape, dtype)
    fill(out, value)
    return out


def zeros(shape, dtype, like):
    return full(shape, 0, dtype, like)


def move(data, device):
    """``data`` on ``device`` (a resolved device): itself if already there, else a copy."""
    if device is None or device_of(data) == device:
        return data
    if device.type == "cpu":
        return _cuda_arrays().to_host(data)
    return _cuda_arrays().to_device(data)


def check_same_device(*arrays):
    """RuntimeError naming both devices when arrays live on different devices."""
    on_cpu_first = type(arrays[0]) is np.ndarray
    if any((type(a) is np.ndarray) != on_cpu_first for a in arrays[1:]):
        # only two devices exist, and PyTorch's message names the GPU first
        raise RuntimeError("Expected all tensors to be on the same device, but found at "
                           f"least two devices, {CUDA0} and {CPU}!")
