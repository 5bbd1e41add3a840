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

from jitgrad.backends.cpu import codegen, vmath
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


def _make_pow(tag):
    @njit(cache=True, error_model="numpy")
    def apply_pow(x, y, out):
        if tag == "":
            return
        for i in range(x.size):
            out[i] = vmath.pow(x[i], y[i])

    return apply_pow


_TAG = hashlib.sha256(Path(vmath.__file__).read_bytes()).hexdigest()
_apply = _make_apply(_TAG)
_apply_pow = _make_pow(_TAG)


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
    "log1p": [-0.99999994, -0.5, 3.4028235e38, 1e-45, 0.41421354, -0.25, -0.25000003, 0.49999997,
              0.5, 1.9999999, 2.0, 2.5e38, 1.7e38],
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
    "log1p": [-0.9999999999999999, -0.5, 1.7976931348623157e308, 5e-324, 0.41421356237309515,
              -0.25, -0.25000000000000006, 0.49999999999999994, 0.5, 1.9999999999999998, 2.0,
              1.3e308],
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
                      + cos(v) + erf(v) + vmath.pow(v, out[i]))

    for dtype, ty in ((np.float32, "float"), (np.float64, "double")):
        x = np.ones(8, dtype)
        k(x, x)
        ir = k.inspect_llvm(k.signatures[-1])
        assert re.search(rf"<\d+ x {ty}>", ir), dtype
        # no libm calls (they would block vectorization)
        assert not re.search(r"call [^\n]*@(llvm\.(exp|log|sin|cos|pow)|exp|log|tanh|erf|pow)", ir)
        assert not re.search(r"call [^\n]*@_ZN\w*5vmath", ir)  # every vmath function inlined


def test_log1p_float32_dense():
    # Every 61st float32 in (-1, inf): 35M values, the whole range of the reduction's k.
    bits = np.concatenate([np.arange(0, 0x7F800000, 61, dtype=np.uint32),
                           np.arange(0x80000000, 0xBF800000, 61, dtype=np.uint32)])
    x = bits.view(np.float32)
    y = run("log1p", x)
    err = ulp_error(y, np.log1p(x.astype(np.float64)), np.float32)
    i = int(np.argmax(err))
    assert err[i] <= 1.5, (x[i], y[i])


# ---------------------------------------------------------------- pow

def run_pow(x, y):
    x, y = np.broadcast_arrays(*np.atleast_1d(x, y))
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    out = np.empty_like(x)
    _apply_pow(x, y, out)
    return out


def pow_sample(dtype, n, rng):
    """Bases over the whole finite range (both signs, denormals), exponents from tiny to large
    scaled so most results are finite, a quarter of them integers, and bases near 1."""
    width = np.dtype(dtype).itemsize * 8
    x = rng.integers(0, 2**width, n, dtype=np.uint64).astype(f"u{width // 8}").view(dtype)
    x = np.where(np.isfinite(x), x, dtype(1.5))
    x[: n // 8] = (1 + rng.normal(0, 1e-3, n // 8)).astype(dtype)
    with np.errstate(divide="ignore"):
        lx = np.abs(np.log(np.abs(x.astype(np.float64))))
    span = np.minimum(800 / np.maximum(lx, 1e-300), 1e6 * rng.random(n) ** 4)
    y = (rng.uniform(-1, 1, n) * span).astype(dtype)
    y[n // 8: n // 4] = np.round(y[n // 8: n // 4])
    return x, y


def test_pow_float32_accuracy():
    # against float64 pow rounded nowhere: max measured 0.62 ulp here, 0.65 for bases near 1
    # with |y*log2(x)| near 120 (fit errors of pow's shortened polynomials)
    x, y = pow_sample(np.float32, 1_000_000, np.random.default_rng(2))
    got = run_pow(x, y)
    with np.errstate(all="ignore"):
        ref = np.power(x.astype(np.float64), y.astype(np.float64))
    fin = np.isfinite(ref) & (np.abs(ref) <= float(np.finfo(np.float32).max))
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got[~fin], ref[~fin].astype(np.float32))
    err = ulp_error(got[fin], ref[fin], np.float32)
    i = int(np.argmax(err))
    assert err[i] <= 0.7, (x[fin][i], y[fin][i], got[fin][i], ref[fin][i])


def test_pow_float64_accuracy():
    # against long double powl (64-bit mantissa) densely, and mpmath on a sample: max 1.17 ulp
    rng = np.random.default_rng(3)
    x, y = pow_sample(np.float64, 400_000, rng)
    got = run_pow(x, y)
    with np.errstate(all="ignore"):
        ref = np.power(x.astype(np.longdouble), y.astype(np.longdouble))
    fin = np.isfinite(ref) & (np.abs(ref) <= np.longdouble(np.finfo(np.float64).max))
    assert np.all(np.isinf(got[~fin]) | np.isnan(got[~fin]) | (got[~fin] == 0))
    err = ulp_error(got[fin], ref[fin], np.float64)
    i = int(np.argmax(err))
    assert err[i] <= 1.5, (x[fin][i], y[fin][i], got[fin][i], ref[fin][i])
    xs, ys = x[fin][:300], y[fin][:300]
    with mpmath.workprec(128):
        r = np.array([np.longdouble(mpmath.nstr(mpmath.power(mpmath.mpf(a), mpmath.mpf(b)), 25))
                      for a, b in zip(xs.tolist(), ys.tolist())])
    assert ulp_error(run_pow(xs, ys), r, np.float64).max() <= 1.5


def test_pow_denormal_and_overflow_results():
    for dtype in (np.float32, np.float64):
        fi = np.finfo(dtype)
        lo, hi = np.log2(float(fi.smallest_subnormal)), np.log2(float(fi.max))
        t = np.concatenate([np.linspace(lo - 2, np.log2(float(fi.smallest_normal)), 4001),
                            np.linspace(hi - 1, hi + 1, 4001)])
        x = np.full(t.shape, 2.0, dtype) if dtype == np.float32 else np.full(t.shape, 3.0)
        y = (t / np.log2(float(x[0]))).astype(dtype)
        got = run_pow(x, y)
        ref = np.power(x.astype(np.longdouble), y.astype(np.longdouble))
        with np.errstate(over="ignore"):
            big = ref > np.longdouble(fi.max)
        assert np.all(np.isposinf(got[big]))
        assert ulp_error(got[~big], ref[~big], dtype).max() <= 1.0
        assert np.all(np.diff(got[:4001]) >= 0)  # monotone into the denormals


# (x, y, x**y) as C99 Annex F / PyTorch give it
POW_SPECIAL = [
    (NAN, 0.0, 1.0), (NAN, -0.0, 1.0), (INF, 0.0, 1.0), (-2.0, 0.0, 1.0),  # x**0 = 1, even nan
    (1.0, NAN, 1.0), (1.0, INF, 1.0), (1.0, -INF, 1.0), (1.0, 2.5, 1.0),  # 1**y = 1
    (-1.0, INF, 1.0), (-1.0, -INF, 1.0),
    (NAN, 1.0, NAN), (2.0, NAN, NAN), (-1.0, NAN, NAN), (NAN, NAN, NAN),
    (0.0, -1.0, INF), (-0.0, -1.0, -INF), (-0.0, -3.0, -INF), (-0.0, -2.0, INF), (0.0, -0.5, INF),
    (-0.0, -INF, INF), (0.0, 3.0, 0.0), (-0.0, 3.0, -0.0), (-0.0, 2.0, 0.0), (-0.0, 0.5, 0.0),
    (-0.0, INF, 0.0),
    (0.5, INF, 0.0), (0.5, -INF, INF), (2.0, INF, INF), (2.0, -INF, 0.0),
    (-0.5, INF, 0.0), (-0.5, -INF, INF), (-2.0, INF, INF), (-2.0, -INF, 0.0),
    (INF, -1.0, 0.0), (INF, 0.5, INF), (-INF, -3.0, -0.0), (-INF, -2.0, 0.0), (-INF, -0.5, 0.0),
    (-INF, 3.0, -INF), (-INF, 2.0, INF), (-INF, 0.5, INF),
    (-2.0, 3.0, -8.0), (-2.0, 2.0, 4.0), (-2.0, -1.0, -0.5), (-2.0, 0.5, NAN), (-8.0, 1 / 3, NAN),
    (-3.0, 2.0**30 + 1, -INF), (-0.999, 2.0**40 + 1, -0.0), (-1.0, 2.0**70, 1.0),
    (2.0, 1e10, INF), (2.0, -1e10, 0.0), (0.5, 1e10, 0.0), (3.0, 2.0, 9.0), (2.0, -2.0, 0.25),
    (4.0, 0.5, 2.0), (10.0, 3.0, 1000.0), (2.0, 10.0, 1024.0), (7.0, 1.0, 7.0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pow_special_values(dtype):
    x, y, want = (np.array(c, dtype=dtype) for c in zip(*POW_SPECIAL))
    if dtype == np.float32:  # odd exponents beyond float32's integers are not representable
        keep = np.abs(y) < 2.0**24
        x, y, want = x[keep], y[keep], want[keep]
    got = run_pow(x, y)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here
    num = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]))
    # and odd/even exponents past float32's integers
    big = np.array([2.0**23 + 1, 2.0**24, 2.0**24 + 2, 3e38], dtype)
    np.testing.assert_array_equal(np.signbit(run_pow(np.full(4, -1.0, dtype), big)),
                                  [True, False, False, False] if dtype == np.float32 else
                                  [True, False, False, False])


def test_pow_python_calls():
    assert vmath.pow(2.0, 10.0) == 1024.0 and isinstance(vmath.pow(2.0, 3), np.float64)
    r = vmath.pow(np.float32(2), np.float32(0.5))
    assert isinstance(r, np.float32) and r == np.float32(np.sqrt(2.0))

    @njit
    def mixed(a, b):
        return vmath.pow(a, b)

    assert mixed(2, 3) == 8.0 and mixed(np.float32(2.0), 3.0) == 8.0


def test_codegen_pow_uses_vmath_for_floats_only():
    src = codegen.elementwise_source(("x", "y"), "g * x ** (y - 1)", ("float32", "int64"))
    lines = [ln.strip() for ln in src.splitlines() if ln.strip().startswith("out[")]
    assert "out[i] = g * pow(x, y - np.float32(1))" in lines
    assert "out[i] = g * x ** (y - np.int64(1))" in lines
    assert "from jitgrad.backends.cpu.vmath import pow" in src


@njit(cache=True)
def _uncommon(x, y):
    out = np.empty(x.size, np.int64)
    for i in range(x.size):
        out[i] = vmath.pow_uncommon(x[i], y[i])
    return out


def test_pow_uncommon_flags_every_special_case_of_float32_pow():
    common = [(2.0, 3.0), (0.5, -2.5), (1e-45, 1.0), (3e38, 1.0), (1.5, 0.0), (1.0, 7.0)]
    special = [(0.0, 2.0), (-0.0, 2.0), (-2.0, 2.0), (INF, 1.0), (NAN, 0.0), (2.0, NAN),
               (2.0, INF), (0.5, -INF), (2.0, 131.0), (2.0, -161.0), (1e-45, -1.0), (1.0, INF)]
    for cases, flag in ((common, 0), (special, 1)):
        x, y = (np.array(v, np.float32) for v in zip(*cases))
        assert _uncommon(x, y).tolist() == [flag] * len(cases)
    # float64 has no common path: never flagged
    assert _uncommon(np.array([-2.0, NAN]), np.array([0.5, 1.0])).tolist() == [0, 0]


def _blocks_with_specials(rng):
    """float32 (x, y) of 12 blocks of the common-path loop: half all common, half with one
    special argument each (a zero, negative or non-finite base, non-finite y, overflow)."""
    block = codegen._POW_BLOCK
    x = rng.uniform(0.2, 4.0, 12 * block).astype(np.float32)
    y = rng.uniform(-6.0, 6.0, 12 * block).astype(np.float32)
    for b, (xv, yv) in enumerate([(0.0, 2.0), (-2.0, 3.0), (INF, 1.0), (1.5, NAN), (3.0, 200.0),
                                  (NAN, 0.0)]):
        at = (2 * b + 1) * block + 7 * b
        x[at], y[at] = xv, yv
    return x, y


def test_generated_float32_pow_kernels_take_the_common_path_with_pows_bits():
    import jitgrad

    x, y = _blocks_with_specials(np.random.default_rng(5))
    module = codegen.load_module("pow_common_test", codegen.elementwise_source(
        ("x", "y"), "x ** y", ("float32", "float64")))
    assert hasattr(module, "k_float32_aa_c_common")
    assert hasattr(module, "k_float32_as_c_pow_common")
    assert not hasattr(module, "k_float64_aa_c_common")
    want = run_pow(x, y)
    got = (jitgrad.tensor(x) ** jitgrad.tensor(y)).numpy()  # mask 'aa', split over threads
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    for scalar in (2.5, -1.7, 300.0):  # 'as' (pow's loop) and 'sa'
        s = np.float32(scalar)
        for got, want in (((jitgrad.tensor(x) ** scalar).numpy(), run_pow(x, s)),
                          ((scalar ** jitgrad.tensor(y)).numpy(), run_pow(s, y))):
            np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_in_place_float32_pow_does_not_rerun_blocks_on_its_own_output():
    import jitgrad

    x, y = _blocks_with_specials(np.random.default_rng(6))
    t = jitgrad.tensor(x)
    t.pow_(jitgrad.tensor(y))  # the output is the base: a rerun would read overwritten values
    np.testing.assert_array_equal(t.numpy().view(np.int32), run_pow(x, y).view(np.int32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pow_gradients_match_torch(dtype):
    torch = pytest.importorskip("torch")
    import jitgrad

    rng = np.random.default_rng(4)
    xv = rng.uniform(0.2, 3.0, 64).astype(dtype)
    # -0.0 too: tensor ** 0.5 (and the gradient's x ** -0.5) are sqrt and 1/sqrt as in torch
    xv[:9] = [-2.0, -1.5, 0.0, 0.25, 1.0, 2.0, -3.0, 0.5, -0.0]
    yv = rng.uniform(-2.0, 2.0, 64).astype(dtype)
    yv[:8] = [3.0, 2.0, 2.0, 3.0, 0.7, -1.0, -2.0, 0.5]
    tol = dict(rtol=4e-6 if dtype == "float32" else 1e-13, atol=0, equal_nan=True)
    # tensor ** scalar: each POW_BY_SCALAR exponent (0 but in the forward: d/dx x**0 is 0
    # in torch, 0 * x**-1 = nan at x = 0 in the formula) and pow's loop
    for e in (2.0, 3.0, 0.5, -1.0, 2.7, 1.5, -0.5, -2.0, 1.0, 4.0, -1.5):
        a, ta = jitgrad.tensor(xv, requires_grad=True), torch.tensor(xv, requires_grad=True)
        ra, rt = a ** e, ta ** e
        ra.sum().backward()
        rt.sum().backward()
        np.testing.assert_allclose(ra.detach().numpy(), rt.detach().numpy(), **tol)
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), **tol)
    a = jitgrad.tensor(xv)
    np.testing.assert_array_equal((a ** 0.0).numpy(), (torch.tensor(xv) ** 0.0).numpy())
    pos = np.abs(xv[9:])  # tensor ** tensor and scalar ** tensor, where both are real
    a, b = jitgrad.tensor(pos, requires_grad=True), jitgrad.tensor(yv[9:], requires_grad=True)
    ta, tb = torch.tensor(pos, requires_grad=True), torch.tensor(yv[9:], requires_grad=True)
    ((a ** b).sum() + (1.7 ** b).sum()).backward()
    ((ta ** tb).sum() + (1.7 ** tb).sum()).backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), **tol)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), **tol)


# ---------------------------------------------------------------- tensor ** scalar kernels

SCALAR_EXPONENTS = list(vmath.POW_BY_SCALAR)


def _scalar_pow_module():
    source = codegen.elementwise_source(("x", "y"), "x ** y", ("float32", "float64"))
    return codegen.load_module("test_scalar_pow", source)


def scalar_pow(x, y, layout="c"):
    """x ** y through the generated tensor ** scalar kernel (mask 'as')."""
    kernel = getattr(_scalar_pow_module(), codegen.kernel_name(x.dtype.name, "as", layout))
    if layout == "nd":
        x4 = x.reshape(1, 1, 1, -1)[..., ::-1]  # strided
        out = np.empty_like(x4)
        kernel(x4, y, out)
        return out[..., ::-1].reshape(-1)
    out = np.empty_like(x)
    kernel(np.ascontiguousarray(x), y, out)
    return out


def test_codegen_scalar_pow_dispatch():
    src = codegen.elementwise_source(("g", "x", "y"), "g * y * x ** (y - 1)", ("float32", "int64"))
    body = src[src.index("def k_float32_aas_c("):src.index("def k_float32_aas_nd_pow(")]
    assert "    pow_y = y - np.float32(1)" in body  # the exponent, once
    assert "    if pow_y == np.float32(2.0):" in body and "    else:" in body
    assert "out[i] = g * y * pow_2(x)" in body and "out[i] = g * y * pow_neg_half(x)" in body
    assert "        k_float32_aas_c_pow(g_, x_, y_, out)" in body
    assert "out[i] = g * y * pow(x, pow_y)" in src  # pow's loop, in k_float32_aas_c_pow
    # an array exponent, an integer dtype and a scalar base keep one loop
    assert "def k_float32_aaa_c_pow(" not in src and "def k_int64_aas_c_pow(" not in src
    assert "def k_float32_ass_c_pow(" not in src  # the base reads no array
    from jitgrad.backends.cuda import codegen as cuda_codegen
    assert "pow_y" not in cuda_codegen.elementwise_source(("x", "y"), "x ** y", ("float32",))


def _scalar_pow_inputs(dtype, n=200_000, seed=5):
    """Special values, denormals, and log-spaced magnitudes of both signs over the finite range."""
    fi = np.finfo(dtype)
    rng = np.random.default_rng(seed)
    x = np.exp2(rng.uniform(np.log2(float(fi.smallest_subnormal)), np.log2(float(fi.max)), n))
    x *= np.where(rng.random(n) < 0.5, -1.0, 1.0)
    special = [0.0, -0.0, INF, -INF, NAN, 1.0, -1.0, 2.0, -2.0, 0.5, float(fi.smallest_subnormal),
               -float(fi.smallest_subnormal), float(fi.smallest_normal), float(fi.max),
               -float(fi.max), float(fi.smallest_normal) / 3]
    return np.concatenate([np.array(special), x]).astype(dtype)


# max ulp of each tensor ** scalar formula (measured: x*x*x 1.29, 1/sqrt 1.49, (1/x)**2 near the
# over/underflow edges of x*x 1.9, the rest correctly rounded)
SCALAR_POW_ULP = {2.0: 0.5, 0.5: 0.5, -1.0: 0.5, 3.0: 1.5, 1.0: 0.0, 0.0: 0.0, -0.5: 1.5,
                  -2.0: 2.0, 2.5: 0.6, -1.5: 0.6}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("y", list(SCALAR_POW_ULP))
def test_scalar_pow_accuracy(dtype, y):
    x = _scalar_pow_inputs(dtype)
    got = scalar_pow(x, y)
    np.testing.assert_array_equal(got, scalar_pow(x, y, "nd"))  # both layouts, same bits
    wide = np.float64 if dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        # torch's choice for 0.5 and -0.5 (sqrt): -0.0 keeps its sign, -inf gives nan
        ref = np.sqrt(x.astype(wide)) if y == 0.5 else np.power(x.astype(wide), wide(y))
        ref = 1 / np.sqrt(x.astype(wide)) if y == -0.5 else ref
        big = np.abs(ref) > wide(np.finfo(dtype).max)
        fin = np.isfinite(ref) & ~big
        np.testing.assert_array_equal(got[~fin], ref[~fin].astype(dtype))
    np.testing.assert_array_equal(np.signbit(got[~np.isnan(ref)]),
                                  np.signbit(ref[~np.isnan(ref)]))
    err = ulp_error(got[fin], ref[fin], dtype)
    i = int(np.argmax(err))
    tol = SCALAR_POW_ULP[y] if dtype == np.float32 else max(SCALAR_POW_ULP[y], 1.5)
    assert err[i] <= tol, (y, x[fin][i], got[fin][i], ref[fin][i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scalar_pow_matches_torch(dtype):
    # special values and denormals included. torch's pow(Tensor, Scalar) computes these exponents
    # with the same formulas, so the results are the same bits, but for 0.5: torch's CPU sqrt
    # (Sleef, AVX-512 build) is off by up to 0.75 / 1.0 ulp where ours is the hardware's,
    # correctly rounded; and for pow's exponents, where each side has its own rounding.
    torch = pytest.importorskip("torch")
    x = _scalar_pow_inputs(dtype, 20_000)
    for y in SCALAR_EXPONENTS + [2.5, -1.5]:
        got = scalar_pow(x, y)
        want = torch.from_numpy(x).pow(y).numpy()
        keep = np.ones(x.shape, bool)
        if y == -2.0:  # torch's 1/(x*x) is 0 or a few bits where x*x over/underflows
            lo, hi = (2.0**-63, 2.0**63) if dtype == np.float32 else (2.0**-511, 2.0**511)
            keep = (np.abs(x) > lo) & (np.abs(x) < hi) | ~np.isfinite(x)
        elif y in (0.5, 2.5, -1.5):
            fin = np.isfinite(want) & (want != 0)
            assert ulp_error(got[fin], want[fin].astype(np.float64), dtype).max() <= 1.5, y
            keep = ~fin
        np.testing.assert_array_equal(got[keep], want[keep], err_msg=str(y))
        num = keep & ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]), str(y))
