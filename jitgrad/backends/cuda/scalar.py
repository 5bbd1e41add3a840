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


# NOTE: rounding is arithmetic in float64 (float() widens on the device and in the simulator
# alike): the simulator runs Python's math.floor/trunc, which return ints, raise on NaN and inf,
# and are missing for numpy's float32, and NumPy 2 keeps float32 + a Python float in float32.
_WHOLE = 4503599627370496.0  # 2**52: from here on every float is an integer


@_device
def _rint_magnitude(b):
    # b in [0, 2**52): the sum lies where floats are one apart, so it rounds half to even
    return (b + _WHOLE) - _WHOLE


@_device
def rint(a):
    b = abs(float(a))
    return math.copysign(_rint_magnitude(b), a) if b < _WHOLE else a


@_device
def trunc(a):
    b = abs(float(a))
    r = _rint_magnitude(b)
    return math.copysign(r - 1.0 if r > b else r, a) if b < _WHOLE else a


@_device
def floor(a):
    r = trunc(a)
    return r - 1.0 if r > a else r


@_device
def ceil(a):
    r = trunc(a)
    return r + 1.0 if r < a else r


@_device
def remainder(a, b):
    # numba's % on the device, and numpy's on the simulator: b's sign (a zero result gets b's
    # sign too, where the CPU keeps fmod's)
    return a % b


@_device
def floor_divide(a, b):
    return a // b
