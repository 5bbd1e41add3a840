"""jitgrad's vectorized math in a flat numba loop against numpy's SIMD ufuncs, 1M elements."""

import numpy as np
from numba import njit

from jitgrad.backends.cpu import vmath

from .common import array

_NUMPY = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
    "expm1": np.expm1, "log1p": np.log1p, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}


def _loop(fn):
    @njit(cache=False)
    def kernel(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    return kernel


_KERNELS = {name: _loop(getattr(vmath, name)) for name in _NUMPY}


class VectorMath:
    params = (list(_NUMPY), ["float32", "float64"], ["vmath", "numpy"])
    param_names = ["function", "dtype", "implementation"]

    def setup(self, function, dtype, implementation):
        low = 0.01 if function in ("log", "log1p") else -5.0
        self.x = array((1_000_000,), dtype, 0, low, 5.0)
        self.out = np.empty_like(self.x)
        self.kernel = _KERNELS[function]
        self.ufunc = _NUMPY[function]
        self.implementation = implementation
        self.time_1m()

    def time_1m(self, *_):
        if self.implementation == "vmath":
            self.kernel(self.x, self.out)
        else:
            self.ufunc(self.x)
