"""Scalar functions that generated elementwise kernels call, inlined by numba.

Transcendentals come from ``vmath`` (jitgrad's own vectorizable math); the rest are
selects written so NaN propagates as in PyTorch.
"""

import math

import numpy as np
from numba import njit

from jitgrad.backends.cpu.vmath import cos, erf, exp, expm1, log, log1p, sigmoid, sin, tanh  # noqa: F401


@njit(inline="always")
def where(c, a, b):
    return a if c else b


@njit(inline="always")
def maximum(a, b):
    # NOTE: NaN in either operand wins, as torch.maximum does.
    return a if (a > b or a != a) else b


@njit(inline="always")
def minimum(a, b):
    return a if (a < b or a != a) else b


@njit(inline="always")
def sqrt(a):
    return np.sqrt(a)


@njit(inline="always")
def logical_not(a):
    return not a


@njit(inline="always")
def isnan(a):
    return a != a


@njit(inline="always")
def isinf(a):
    return math.isinf(a)
