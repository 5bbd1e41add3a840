"""Scalar functions that generated CUDA kernels call: the names of ``cpu/scalar.py``.

On the device the math comes from CUDA's own library (``math.*`` lowers to libdevice), as
DESIGN.md says; selects are written so NaN propagates as on the CPU.
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
    return math.sqrt(a)


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
    return math.exp(a)


@_device
def log(a):
    return math.log(a)


@_device
def tanh(a):
    return math.tanh(a)


@_device
def sigmoid(a):
    # NOTE: exp(-a) overflows to inf for very negative a, giving the correct limit 0
    return 1 / (1 + math.exp(-a))


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
    return math.expm1(a)


@_device
def log1p(a):
    return math.log1p(a)
