"""Accuracy, special values and vectorization of jitgrad.backends.cpu.vmath.

float32 results are compared with float64 numpy/scipy, float64 results with mpmath, in ulps of the
result's dtype, over log-spaced magnitudes of both signs including denormals and overflow edges.
"""

import hashlib
import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
import scipy.special
from numba import njit

from jitgrad.backends.cpu import vmath
from jitgrad.backends.cpu.vmath import cos, erf, exp, expm1, log, log1p, sigmoid, sin, tanh

NAMES = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "erf"]


def _make_apply(tag):
    # One kernel for every function keeps compilation (cached on disk) to two signatures. numba's
    # cache only watches this file, so the kernel closes over a hash of vmath.py: closure values
    # are part of the cache key, and an edit there recompiles instead of testing stale code.
    @njit(cache=True, error_model="numpy")
    def apply(code, x, out):
        if tag == "":
            return
        n = x.size
        if code == 0:
            for i in range(n):
                out[i] = exp(x[i])
        elif code == 1:
            for i in range(n):
                out[i] = expm1(x[i])
        elif code == 2:
            for i in range(n):
                out[i] = log(x[i])
        elif code == 3:
            for i in range(n):
                out[i] = log1p(x[i])
        elif code == 4:
            for i in range(n):
                out[i] = tanh(x[i])
        elif code == 5:
            for i in range(n):
                out[i] = sigmoid(x[i])
        elif code == 6:
            for i in range(n):
                out[i] = sin(x[i])
        elif code == 7:
            for i in range(n):
                out[i] = cos(x[i])
        else:
            for i in range(n):
                out[i] = erf(x[i])

    return apply


_apply = _make_apply(hashlib.sha256(Path(vmath.__file__).read_bytes()).hexdigest())


def run(name, x):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _apply(NAMES.index(name), x, out)
    return out


REF64 = {  # float64 references for float32 results
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sigmoid": scipy.special.expit, "sin": np.sin, "cos": np.cos, "erf": scipy.special.erf,
}
REFMP = {  # mpmath references for float64 results
    "exp": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p,
    "tanh": mpmath.tanh, "sigmoid": lambda v: 1 / (1 + mpmath.exp(-v)), "sin": mpmath.sin,
    "cos": mpmath.cos, "erf": mpmath.erf,
}
# log2 of the magnitude range swept (the relevant range of each function, both ends included)
RANGE = {
    "exp": (-40, 9.5), "expm1": (-40, 9.5), "log": (-1074, 1024), "log1p": (-1074, 1024),
    "tanh": (-1074, 5), "sigmoid": (-40, 10), "sin": (-1074, 14.6), "cos": (-40, 14.6),
    "erf": (-1074, 3),
}
SIGNED = {"log": False, "log1p": False}
# Max ulp allowed; the measured maxima (exhaustive for float32) sit below these.
MAX_ULP = {np.float32: 2.0, np.float64: 2.0}


def ulp_error(y, ref, dtype):
    """|y - ref| in ulps of dtype at ref (denormal ulp below the normal range); ref finite."""
    fi = np.finfo(dtype)
    mag = np.maximum(np.abs(ref), ref.dtype.type(fi.smallest_normal))
    ulp = np.exp2(np.floor(np.log2(mag)) - fi.nmant)
    err = np.abs(y.astype(ref.dtype) - ref) / ulp
    return np.where(y.astype(ref.dtype) == ref, 0, err).astype(np.float64)


def sweep(name, dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    lo, hi = RANGE[name]
    fi = np.finfo(dtype)
    lo = max(lo, np.log2(float(fi.smallest_subnormal)))
    hi = min(hi, np.log2(float(fi.max)))
    x = np.exp2(rng.uniform(lo, hi, n))
    if SIGNED.get(name, True):
        x *= np.where(rng.random(n) < 0.5, -1.0, 1.0)
    x = x.astype(dtype)
    if name == "log1p":  # cover (-1, 0) too
        x[: n // 4] = -rng.random(n // 4).astype(dtype)
    return x


EDGES32 = {
    "exp": [88.72283, 88.722839, 88.72284, -87.33654, -87.33655, -103.27893, -103.97207,
            -103.972084, -104.0],
    "expm1": [88.72283, 88.722839, 0.34657359, 0.69314718, -0.34657359, 1e-8, -1e-8, -17.0],
    "sigmoid": [-88.72283, -87.33655, -100.0, -103.27893, 16.6, 17.0],
    "log": [1e-45, 1e-40, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, 0.70710677, 1.4142135],
    "log1p": [-0.99999994, -0.5, 3.4028235e38, 1e-45, 0.41421354],
    "tanh": [0.49619368, 0.625, 9.01, 9.1, 1e-45, 1e-20],
    "sin": [3.1415927, 25735.9, 12867.96, 1e-45, 1e-20, 1.5707964],
    "cos": [1.5707964, 4.712389, 25735.0, 1e-45, 1e-20],
    "erf": [0.921875, 0.92187494, 3.92, 4.0, 1e-45, 1e-30],
}
EDGES64 = {
    "exp": [709.782712893384, 709.7827128933841, -708.3964185322641, -708.3964185322642,
            -745.1332191019411, -745.1332191019412, -746.0],
    "expm1": [709.782712893384, 0.34657359027997264, 0.6931471805599453, -0.34657359, 1e-300,
              -37.0],
    "sigmoid": [-709.78, -708.4, -744.0, -745.0, 36.7, 37.0],
    "log": [5e-324, 1e-310, 2.2250738585072014e-308, 1.7976931348623157e308,
            0.7071067811865476, 1.414213562373095],
    "log1p": [-0.9999999999999999, -0.5, 1.7976931348623157e308, 5e-324, 0.41421356237309515],
    "tanh": [0.97, 0.9699999999999999, 19.06, 19.1, 5e-324, 1e-200],
    "sin": [np.pi, 2.1e8, 1e6 * np.pi, 5e-324, 1e-200, np.pi / 2],
    "cos": [np.pi / 2, 3 * np.pi / 2, 1e6 * np.pi + np.pi / 2, 2e8, 5e-324],
    "erf": [0.921875, 0.9218749999999999, 5.92, 5.95, 5e-324, 1e-300],
}


@pytest.mark.parametrize("name", NAMES)
def test_float32_accuracy(name):
    x = sweep(name, np.float32, 200_000)
    edges = np.array(EDGES32[name], dtype=np.float32)
    x = np.concatenate([x, edges, -edges if SIGNED.get(name, True) else edges])
    y = run(name, x)
    assert y.dtype == np.float32
    with np.errstate(all="ignore"):
        ref = REF64[name](x.astype(np.float64))
        fin = np.abs(ref) <= float(np.finfo(np.float32).max)
        # where the float64 reference overflows float32, the float32 result must be +-inf
        np.testing.assert_array_equal(y[~fin], ref[~fin].astype(np.float32))
    err = ulp_error(y[fin], ref[fin], np.float32)
    i = int(np.argmax(err))
    assert err[i] <= MAX_ULP[np.float32], (name, x[fin][i], y[fin][i], ref[fin][i])


@pytest.mark.parametrize("name", NAMES)
def test_float64_accuracy(name):
    x = np.concatenate([sweep(name, np.float64, 1500, seed=1), EDGES64[name]])
    if SIGNED.get(name, True):
        x = np.concatenate([x, -np.array(EDGES64[name])])
    y = run(name, x)
    assert y.dtype == np.float64
    f = REFMP[name]
    with mpmath.workprec(96):
        ref = [f(mpmath.mpf(float(v))) for v in x]
    big = [abs(r) > mpmath.mpf(np.finfo(np.float64).max) for r in ref]
    ref = np.array([np.longdouble(mpmath.nstr(r, 25)) if not b else np.longdouble(0)
                    for r, b in zip(ref, big)])
    big = np.array(big)
    assert np.all(np.isposinf(y[big]))
    err = ulp_error(y[~big], ref[~big], np.float64)
    i = int(np.argmax(err))
    assert err[i] <= MAX_ULP[np.float64], (name, x[~big][i], y[~big][i], ref[~big][i])


INF, NAN = np.inf, np.nan
SPECIAL = {  # (input, expected); -0.0 checks the sign of zero too
    "exp": [(INF, INF), (-INF, 0.0), (0.0, 1.0), (-0.0, 1.0), (1000.0, INF), (-1000.0, 0.0)],
    "expm1": [(INF, INF), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (1000.0, INF),
              (-1000.0, -1.0)],
    "log": [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (1.0, 0.0)],
    "log1p": [(-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF), (0.0, 0.0), (-0.0, -0.0)],
    "tanh": [(INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (50.0, 1.0), (-50.0, -1.0)],
    "sigmoid": [(INF, 1.0), (-INF, 0.0), (0.0, 0.5), (-0.0, 0.5), (1000.0, 1.0),
                (-1000.0, 0.0)],
    # beyond 2**22*pi/2 (float32) / 2**51*pi/2 (float64) sin and cos give nan by design
    "sin": [(INF, NAN), (-INF, NAN), (0.0, 0.0), (-0.0, -0.0), (1e30, NAN), (-1e30, NAN)],
    "cos": [(INF, NAN), (-INF, NAN), (0.0, 1.0), (-0.0, 1.0), (1e30, NAN), (-1e30, NAN)],
    "erf": [(INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (10.0, 1.0), (-10.0, -1.0)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_special_values(name, dtype):
    cases = SPECIAL[name] + [(NAN, NAN)]
    x = np.array([c[0] for c in cases], dtype=dtype)
    want = np.array([c[1] for c in cases], dtype=dtype)
    got = run(name, x)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here
    num = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_denormals(dtype):
    fi = np.finfo(dtype)
    tiny = np.array([fi.smallest_subnormal, fi.smallest_subnormal * 3, fi.smallest_normal / 2],
                    dtype=dtype)
    x = np.concatenate([tiny, -tiny])
    for name in ("tanh", "sin", "erf", "expm1", "log1p"):
        y = run(name, x)
        slope = 2 / np.sqrt(np.pi) if name == "erf" else 1.0
        want = x.astype(np.longdouble) * np.longdouble(slope)
        assert np.all(ulp_error(y, want, dtype) <= 1.0), name
        assert np.all(np.signbit(y) == np.signbit(x)), name
    # exp and sigmoid give correctly rounded denormals on the way to 0
    big = np.log(float(fi.smallest_normal)) - np.array([0.5, 5.0, 10.0])
    x = big.astype(dtype)
    np.testing.assert_array_equal(run("exp", x), np.exp(x.astype(np.float64)).astype(dtype))
    y = run("sigmoid", x)
    e = np.exp(x.astype(np.longdouble))
    assert np.all(ulp_error(y, e / (1 + e), dtype) <= 2)
    assert np.all(y > 0)


def test_monotone_near_overflow_and_underflow():
    for dtype, lo, hi in ((np.float32, -104.0, 89.0), (np.float64, -746.0, 710.0)):
        x = np.concatenate([np.linspace(lo, lo + 2, 20001), np.linspace(hi - 2, hi, 20001)])
        y = run("exp", x.astype(dtype))
        assert np.all(y[1:20001] >= y[:20000]) and np.all(y[20002:] >= y[20001:-1])
        assert y[0] == 0 and np.isposinf(y[-1])


def test_sin_cos_large_arguments():
    # Reduced exactly up to 2**14*pi/2 (float32) and 2**27*pi/2 (float64): ulp accuracy there,
    # absolute accuracy beyond, nan past the point where round(2x/pi) is inexact.
    x32 = np.linspace(1e4, 25_735, 100_001).astype(np.float32)
    x64 = np.concatenate([np.linspace(1e4, 1e6, 2001), np.geomspace(1e6, 2.1e8, 2001)])
    far32 = np.geomspace(25_736, 6.5e6, 10_001).astype(np.float32)
    far64 = np.geomspace(2.1e8, 1e14, 1001)
    for name, ref in (("sin", np.sin), ("cos", np.cos)):
        assert ulp_error(run(name, x32), ref(x32.astype(np.float64)), np.float32).max() <= 2.0
        assert np.abs(run(name, far32) - ref(far32.astype(np.float64))).max() < 2e-6
        with mpmath.workprec(200):
            r = np.array([np.longdouble(mpmath.nstr(getattr(mpmath, name)(mpmath.mpf(v)), 25))
                          for v in np.concatenate([x64, far64])])
        assert ulp_error(run(name, x64), r[: x64.size], np.float64).max() <= 2.0
        assert np.abs(run(name, far64) - r[x64.size:].astype(np.float64)).max() < 1e-14
        assert np.isnan(run(name, np.array([6.6e6, -1e30], np.float32))).all()
        assert np.isnan(run(name, np.array([3.6e15, -1e300]))).all()


def test_dtypes_and_python_calls():
    @njit
    def on_int(i):
        return exp(i), log1p(True)

    a, b = on_int(1)
    assert isinstance(a, float) and abs(a - np.e) < 1e-15 and abs(b - np.log(2)) < 1e-15
    assert isinstance(tanh(np.float32(0.5)), np.float32)
    assert isinstance(tanh(1), np.float64)
    assert tanh(0.5) == run("tanh", np.array([0.5]))[0]
    assert sin(np.float32(1.0)) == run("sin", np.array([1.0], np.float32))[0]


def test_loops_vectorize():
    # A fresh (uncached) compile so the optimized IR can be inspected.
    @njit(error_model="numpy")
    def k(x, out):
        for i in range(x.size):
            v = x[i]
            out[i] = (exp(v) + expm1(v) + log(v) + log1p(v) + tanh(v) + sigmoid(v) + sin(v)
                      + cos(v) + erf(v))

    for dtype, ty in ((np.float32, "float"), (np.float64, "double")):
        x = np.ones(8, dtype)
        k(x, x)
        ir = k.inspect_llvm(k.signatures[-1])
        assert re.search(rf"<\d+ x {ty}>", ir), dtype
        # no libm calls (they would block vectorization)
        assert not re.search(r"call [^\n]*@(llvm\.(exp|log|sin|cos)|exp|log|tanh|erf)", ir)
