"""jitgrad's vectorized math in a flat numba loop against numpy's SIMD ufuncs, 1M elements.

erf has no numpy ufunc: scipy.special.erf stands in. sqrt/rsqrt are hardware sqrt in both.
``Gelu`` times jitgrad.nn.functional.gelu against the same formula in numpy/scipy.
"""

import operator

import numpy as np
import scipy.special
from numba import njit

from jitgrad.backends.cpu import vmath
from jitgrad.backends.cpu.simd import prefer_wide_vectors

from .common import array, tensor

_NUMPY = {
    "exp": np.exp, "log": np.log, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
    "expm1": np.expm1, "log1p": np.log1p, "sigmoid": scipy.special.expit,
    "erf": scipy.special.erf, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
    "pow_scalar": lambda x, y: np.power(x, y), "pow_array": np.power,
    "pow_2": operator.pow, "pow_half": operator.pow, "pow_neg_1": operator.pow,
    "pow_3": operator.pow,
}
_POSITIVE = ("log", "log1p", "sqrt", "rsqrt", "pow_scalar", "pow_array", "pow_2", "pow_half",
             "pow_neg_1", "pow_3")
# tensor ** scalar rows: the generated kernel of ``x ** y`` (mask 'as'), which tests y once and
# runs x*x, sqrt, 1/x, x*x*x (or pow's loop for other y); numpy's ndarray ** has the same fast
# paths for 2, 0.5 and -1 but not 3.
_SCALAR_POW = {"pow_2": 2.0, "pow_half": 0.5, "pow_neg_1": -1.0, "pow_3": 3.0}


@njit(inline="always")
def _rsqrt(x):
    return 1 / np.sqrt(x)


def _loop(fn):
    @njit(cache=False, error_model="numpy")
    def kernel(x, out):
        prefer_wide_vectors()  # as jitgrad's kernels do
        for i in range(x.size):
            out[i] = fn(x[i])

    return kernel


_KERNELS = {name: _loop(getattr(vmath, name))
            for name in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "erf")}
_KERNELS["sqrt"] = _loop(njit(inline="always")(lambda x: np.sqrt(x)))
_KERNELS["rsqrt"] = _loop(_rsqrt)


def _pow_kernel(dtype, mask):
    """The flat generated kernel of ``x ** y`` on one core, as ``tensor ** ...`` runs per slice
    (float32's has the common-case path, see codegen._common_pow_kernels)."""
    from jitgrad.backends.cpu import codegen

    source = codegen.elementwise_source(("x", "y"), "x ** y", ("float32", "float64"))
    return getattr(codegen.load_module("pow", source), codegen.kernel_name(dtype, mask, "c"))


class VectorMath:
    params = (list(_NUMPY), ["float32", "float64"], ["vmath", "numpy"])
    param_names = ["function", "dtype", "implementation"]

    def setup(self, function, dtype, implementation):
        low = 0.01 if function in _POSITIVE else -5.0
        self.x = array((1_000_000,), dtype, 0, low, 5.0)
        self.out = np.empty_like(self.x)
        self.args = (self.x,)
        self.kernel = _KERNELS.get(function)
        if function in _SCALAR_POW:
            self.kernel = _pow_kernel(dtype, "as")
            self.args = (self.x, _SCALAR_POW[function])
        elif function == "pow_scalar":
            self.kernel = _pow_kernel(dtype, "as")
            self.args = (self.x, self.x.dtype.type(2.5))
        elif function == "pow_array":
            self.kernel = _pow_kernel(dtype, "aa")
            self.args = (self.x, array((1_000_000,), dtype, 1, -3.0, 3.0))
        self.ufunc = _NUMPY[function]
        self.implementation = implementation
        self.time_1m()

    def time_1m(self, *_):
        if self.implementation == "vmath":
            self.kernel(*self.args, self.out)
        else:
            self.ufunc(*self.args)


_SQRT1_2, _TANH_C = 0.7071067811865476, 0.7978845608028654


def _gelu_numpy(x, approximate):
    t = x.dtype.type
    if approximate == "tanh":
        return t(0.5) * x * (1 + np.tanh(t(_TANH_C) * (x + t(0.044715) * x * x * x)))
    return t(0.5) * x * (1 + scipy.special.erf(x * t(_SQRT1_2)))


class Gelu:
    params = (["none", "tanh"], ["float32", "float64"], ["jitgrad", "numpy"])
    param_names = ["approximate", "dtype", "implementation"]

    def setup(self, approximate, dtype, implementation):
        import jitgrad
        import jitgrad.nn.functional as F

        self.x = tensor(jitgrad, (1_000_000,), dtype, 0, low=-5.0, high=5.0)
        self.xn = self.x.numpy()
        if implementation == "jitgrad":
            self.fn = lambda: F.gelu(self.x, approximate=approximate)
        else:
            self.fn = lambda: _gelu_numpy(self.xn, approximate)
        self.fn()

    def time_1m(self, *_):
        self.fn()
