"""Scalar functions that generated CUDA kernels call: the names of ``cpu/scalar.py``.

On the device the math comes from CUDA's own library (``math.*`` lowers to libdevice), as
DESIGN.md says; selects are written so NaN propagates as on the CPU. Domain edges (log(0),
sqrt(-1), exp overflow) are spelled out: the GPU gives these values anyway, but the simulator
runs Python's ``math``, which raises there instead.
"""

import math

from numba import cuda

_device = cuda.jit(device=True, inline="always")


@_device
def where(c, a, b):
    return a if c else b


@_device
def maximum(a, b):
    return a if (a > b or a != a) else b


@_device
def minimum(a, b):
    return a if (a < b or a != a) else b


@_device
def sqrt(a):
    return math.sqrt(a) if a >= 0 else math.nan


@_device
def logical_not(a):
    return not a


@_device
def isnan(a):
    return a != a


@_device
def isinf(a):
    return math.isinf(a)


@_device
def exp(a):
    return math.exp(a) if a < 709 else (math.inf if a == a else a)


@_device
def log(a):
    if a > 0:
        return math.log(a)
    return -math.inf if a == 0 else math.nan


@_device
def tanh(a):
    return math.tanh(a)


@_device
def sigmoid(a):
    # NOTE: exp(-a) overflows to inf for very negative a, giving the correct limit 0
    return 1 / (1 + exp(-a))


@_device
def sin(a):
    return math.sin(a)


@_device
def cos(a):
    return math.cos(a)


@_device
def erf(a):
    return math.erf(a)


@_device
def expm1(a):
    return math.expm1(a) if a < 709 else (math.inf if a == a else a)


@_device
def log1p(a):
    if a > -1:
        return math.log1p(a)
    return -math.inf if a == -1 else math.nan


@_device
def floor(a):
    return math.floor(a)


@_device
def ceil(a):
    return math.ceil(a)


@_device
def trunc(a):
    return math.trunc(a)


@_device
def rint(a):
    # half to even: adding 1.5 * 2**52 rounds in the FPU's nearest-even mode (exact for
    # float32 too, computed in float64); larger values are integers already
    r = (a + 6755399441055744.0) - 6755399441055744.0
    return math.copysign(r, a) if abs(a) < 2251799813685248.0 else a


@_device
def remainder(a, b):
    # numba's % on the device, and numpy's on the simulator: b's sign (a zero result gets b's
    # sign too, where the CPU keeps fmod's)
    return a % b


@_device
def floor_divide(a, b):
    return a // b
