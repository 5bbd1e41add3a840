"""``jitgrad.cuda``: what code written for ``torch.cuda`` asks before choosing a device.

A device is available where numba.cuda finds an NVIDIA GPU, or under numba's simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before jitgrad is imported), which runs kernels on the CPU
for testing.
"""

from jitgrad.backends.cuda import runtime

__all__ = ["current_device", "device_count", "get_device_name", "is_available", "synchronize"]


def is_available():
    """Whether CUDA tensors can be made."""
    return runtime.available()


def device_count():
    """The number of CUDA devices jitgrad can use (it uses one: ``cuda:0``)."""
    return 1 if runtime.available() else 0


def current_device():
    _require()
    return 0


def get_device_name(device=None):
    _require()
    if runtime.simulator():
        return "numba CUDA simulator"
    name = runtime.cuda().get_current_device().name
    return name.decode() if isinstance(name, bytes) else name


def synchronize(device=None):
    """Wait until every kernel launched so far has finished."""
    _require()
    runtime.cuda().synchronize()


def _require():
    if not runtime.available():
        raise RuntimeError(runtime.unavailable_reason())
