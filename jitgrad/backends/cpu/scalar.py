"""Scalar functions that generated elementwise kernels call, inlined by numba.

Transcendentals come from ``vmath`` (jitgrad's own vectorizable math); the rest are
selects written so NaN propagates as in PyTorch.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

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


# ---- rounding, and division with PyTorch's (Python's) floor semantics

def _rounding(name, np_fn):
    """numpy's rounding function (llvm.floor & co, which vectorize) for floats; an integer
    stays itself (numba's np.floor would return a float64)."""
    def fn(a):
        raise NotImplementedError("only callable from jitted code")

    @overload(fn, inline="always")
    def _impl(a):
        if isinstance(a, (types.Integer, types.Boolean)):
            return lambda a: a
        return lambda a: np_fn(a)

    fn.__name__ = name
    return fn


floor = _rounding("floor", np.floor)
ceil = _rounding("ceil", np.ceil)
trunc = _rounding("trunc", np.trunc)
rint = _rounding("rint", np.rint)  # half to even, as torch.round


def remainder(a, b):
    raise NotImplementedError("only callable from jitted code")


@overload(remainder, inline="always")
def _remainder(a, b):
    whole = (types.Integer, types.Boolean)
    if isinstance(a, whole) and isinstance(b, whole):
        return lambda a, b: a % b  # numba's integer % floors, as Python's (b == 0 is rejected
        # before any kernel runs)

    # NOTE: PyTorch's float formula, exact through fmod: the result takes b's sign by adding
    # b once, and a zero keeps fmod's sign (Python's % would give b's)
    def impl(a, b):
        m = np.fmod(a, b)
        return m + b if (m != 0) and ((b < 0) != (m < 0)) else m
    return impl


@njit(inline="always")
def floor_divide(a, b):
    # numba's // floors for integers and follows CPython's float floordiv, as PyTorch does
    return a // b
