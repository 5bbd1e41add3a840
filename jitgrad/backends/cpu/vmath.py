"""jitgrad's transcendental functions as plain arithmetic, so numba loops that call them vectorize.

numba lowers ``math.exp``, ``np.tanh`` and friends to scalar libm calls that LLVM cannot vectorize
(llvmlite has no SVML), so an elementwise kernel built on them runs 5-50x slower than numpy's SIMD
ufuncs; the functions here are range reductions, minimax polynomials evaluated with
``llvm.fmuladd``, exponent bit tricks and selects instead of branches, so a loop such as
``out[i] = tanh(x[i])`` inlines them and compiles to AVX/AVX-512 code about as fast as numpy.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "sin", "cos", "erf", "pow",
           "pow_common", "pow_uncommon", "POW_BY_SCALAR"]

# Use: ``from jitgrad.backends.cpu.vmath import tanh`` and call ``tanh(v)`` inside @njit code on
# a float32 (computed in float32), float64, or integer/bool (computed as float64) scalar. Calls
# from Python on scalars also work (tests, debugging). Max error, float32 exhaustive / float64
# sampled against mpmath: exp 1.02/0.85 ulp, expm1 1.46/1.05, log 1.26/0.77, log1p 1.25/0.96,
# tanh 1.91/1.9, sigmoid 1.43/1.08, erf 1.21/0.93, pow 0.65/1.17 (sampled over both arguments),
# sin and cos 1.57/1.4 for |x| <= 2**14*pi/2
# ~ 25_700 (float32) and 2**27*pi/2 ~ 2.1e8 (float64). Beyond that the reduction is inexact:
# absolute error stays < 2e-6 (float32, up to 6.5e6) and < 1e-14 (float64, up to 3.5e15), and
# sin/cos return nan past 2**22*pi/2 and 2**51*pi/2. Results may differ by an ulp between CPUs
# with and without FMA. Callers compiled with fastmath=True (or nnan/ninf) lose the inf/nan
# handling. numba's on-disk cache of a kernel that calls these does not notice edits to this
# file: generated kernels are keyed on its hash (codegen._SCALAR_HASH); other cached callers must
# key on it too (see tests/backends/test_vmath.py).

# NOTE: error_model="numpy" keeps float division free of the ZeroDivisionError branch that would
# stop vectorization; fastmath stays off so NaN/inf behave as IEEE says.
_JIT = dict(cache=True, nogil=True, error_model="numpy")


# ---------------------------------------------------------------- LLVM-level helpers

def _int_layout(ft):
    """(int type, mantissa bits, exponent bias, bits of the 1.5*2**mant rounding constant)."""
    if ft.bitwidth == 32:
        return ir.IntType(32), 23, 127, 0x4B400000
    return ir.IntType(64), 52, 1023, 0x4338000000000000


@intrinsic
def _mad(typingctx, a, b, c):
    """a*b + c as llvm.fmuladd: one FMA on CPUs that have it, a multiply and an add otherwise."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(sig.return_type)
        fnty = ir.FunctionType(lt, [lt, lt, lt])
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [lt], fnty)
        return builder.call(fn, args)

    return a(a, a, a), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a*b + c rounded once (llvm.fma): the exact products of pow's double-double arithmetic.

    One instruction where the CPU has FMA (x86-64 since 2013, all arm64); elsewhere LLVM calls
    libm's fma, correct but slow.
    """
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(sig.return_type)
        fnty = ir.FunctionType(lt, [lt, lt, lt])
        fn = builder.module.declare_intrinsic("llvm.fma", [lt], fnty)
        return builder.call(fn, args)

    return a(a, a, a), codegen


@intrinsic
def _pow2i(typingctx, k):
    """2**k for an integer-valued float k whose power of two is a normal number.

    k + 1.5*2**mant holds k in its low mantissa bits, so shifting those bits into the exponent
    field needs no float->int conversion (fptosi of NaN would be poison).
    """
    if not isinstance(k, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ft = context.get_value_type(sig.return_type)
        it, mb, bias, magic = _int_layout(sig.return_type)
        t = builder.fadd(args[0], builder.bitcast(ir.Constant(it, magic), ft))
        n = builder.shl(builder.bitcast(t, it), ir.Constant(it, mb))
        n = builder.add(n, ir.Constant(it, bias << mb))
        return builder.bitcast(n, ft)

    return k(k), codegen


@intrinsic
def _frexp2(typingctx, x):
    """(m, e) with x == m * 2**e and m in [sqrt(1/2), sqrt(2)), for positive normal x."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ft = context.get_value_type(x)
        it, mb, _, _ = _int_layout(x)
        sqrt_half = 0x3F3504F3 if x.bitwidth == 32 else 0x3FE6A09E667F3BCD
        ix = builder.bitcast(args[0], it)
        e = builder.ashr(builder.sub(ix, ir.Constant(it, sqrt_half)), ir.Constant(it, mb))
        m = builder.bitcast(builder.sub(ix, builder.shl(e, ir.Constant(it, mb))), ft)
        return context.make_tuple(builder, sig.return_type, [m, builder.sitofp(e, ft)])

    return types.UniTuple(x, 2)(x), codegen


@intrinsic
def _log1p_split(typingctx, x):
    """(f, k) with 1 + x == (1 + f) * 2**k, f in [-1/4, 1/2), for x > -1 (f is exact but for k
    past the mantissa width, where the lost 2**-k no longer matters).

    k comes from the exponent of u = 1 + x (rounded), offset so that u*2**-k lies in [3/4, 3/2);
    then f = x*2**-k + (2**-k - 1), where x*2**-k is an exponent subtraction and the sum is exact
    for this range (the split ARM's optimized-routines use for log1pf).
    """
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ft = context.get_value_type(x)
        it, mb, bias, _ = _int_layout(x)
        three_quarters = (bias - 1) << mb | 1 << (mb - 1)
        u = builder.fadd(args[0], ir.Constant(ft, 1.0))
        ki = builder.sub(builder.bitcast(u, it), ir.Constant(it, three_quarters))
        ki = builder.and_(ki, ir.Constant(it, -(1 << mb)))
        xs = builder.bitcast(builder.sub(builder.bitcast(args[0], it), ki), ft)
        # NOTE: 4*2**-k stays normal for k = 128 / 1024 (x near the largest finite float).
        s4 = builder.bitcast(builder.sub(ir.Constant(it, (bias + 2) << mb), ki), ft)
        fnty = ir.FunctionType(ft, [ft, ft, ft])
        fma = builder.module.declare_intrinsic("llvm.fmuladd", [ft], fnty)
        c = builder.call(fma, [ir.Constant(ft, 0.25), s4, ir.Constant(ft, -1.0)])
        f = builder.fadd(xs, c)
        k = builder.sitofp(builder.ashr(ki, ir.Constant(it, mb)), ft)
        return context.make_tuple(builder, sig.return_type, [f, k])

    return types.UniTuple(x, 2)(x), codegen


@intrinsic
def _is_odd(typingctx, t):
    """Whether the integer n in t == n + 1.5*2**mant is odd."""
    if not isinstance(t, types.Float):
        return None

    def codegen(context, builder, sig, args):
        it, _, _, _ = _int_layout(t)
        low = builder.and_(builder.bitcast(args[0], it), ir.Constant(it, 1))
        return builder.icmp_unsigned("!=", low, ir.Constant(it, 0))

    return types.boolean(t), codegen


@intrinsic
def _flipsign_bit1(typingctx, y, t):
    """-y if bit 1 of the integer n in t == n + 1.5*2**mant is set, else y."""
    if not (isinstance(y, types.Float) and y == t):
        return None

    def codegen(context, builder, sig, args):
        ft = context.get_value_type(y)
        it, _, _, _ = _int_layout(y)
        s = builder.shl(builder.bitcast(args[1], it), ir.Constant(it, it.width - 2))
        s = builder.and_(s, ir.Constant(it, 1 << (it.width - 1)))
        return builder.bitcast(builder.xor(builder.bitcast(args[0], it), s), ft)

    return y(y, t), codegen


@intrinsic
def _copysign(typingctx, mag, sgn):
    if not (isinstance(mag, types.Float) and mag == sgn):
        return None

    def codegen(context, builder, sig, args):
        ft = context.get_value_type(mag)
        it, _, _, _ = _int_layout(mag)
        sign = 1 << (it.width - 1)
        a = builder.and_(builder.bitcast(args[0], it), ir.Constant(it, sign - 1))
        b = builder.and_(builder.bitcast(args[1], it), ir.Constant(it, sign))
        return builder.bitcast(builder.or_(a, b), ft)

    return mag(mag, sgn), codegen


@intrinsic
def _rint(typingctx, x):
    """x rounded to the nearest integer (llvm.rint: one vrndscale/roundps, vectorizes)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(sig.return_type)
        fn = builder.module.declare_intrinsic("llvm.rint", [lt], ir.FunctionType(lt, [lt]))
        return builder.call(fn, args)

    return x(x), codegen


def _horner(x, c):
    """c[0] + x*(c[1] + x*(... c[n-1])), unrolled at typing time for a tuple c."""
    raise NotImplementedError("only callable from jitted code")


@overload(_horner)
def _ol_horner(x, c):
    if not isinstance(c, types.UniTuple):
        return None
    n = c.count
    lines = ["def impl(x, c):", f"    p = c[{n - 1}]"]
    lines += [f"    p = _mad(x, p, c[{i}])" for i in range(n - 2, -1, -1)]
    lines.append("    return p")
    ns = {"_mad": _mad}
    exec("\n".join(lines), ns)
    return ns["impl"]


def _estrin(x, c):
    """The polynomial of _horner by Estrin's scheme: pairs c[i] + x*c[i+1], then pairs of those
    with x**2, x**4, ...; more operations than Horner but a dependency chain of about log2(n)
    instead of n, which is what limits pow's long polynomials in a vectorized loop."""
    raise NotImplementedError("only callable from jitted code")


@overload(_estrin)
def _ol_estrin(x, c):
    if not isinstance(c, types.UniTuple):
        return None
    terms = [f"c[{i}]" for i in range(c.count)]
    lines, xp, lvl = ["def impl(x, c):"], "x", 0
    while len(terms) > 1:
        new = []
        for i in range(0, len(terms) - 1, 2):
            lines.append(f"    q{lvl}_{i // 2} = _mad({xp}, {terms[i + 1]}, {terms[i]})")
            new.append(f"q{lvl}_{i // 2}")
        terms = new + terms[len(terms) - len(terms) % 2:]
        if len(terms) > 1:
            lines.append(f"    x{lvl + 1} = {xp} * {xp}")
            xp = f"x{lvl + 1}"
        lvl += 1
    lines.append(f"    return {terms[0]}")
    ns = {"_mad": _mad}
    exec("\n".join(lines), ns)
    return ns["impl"]


# ---------------------------------------------------------------- constants

def _f32(*v):
    return tuple(np.float32(x) for x in v) if len(v) > 1 else np.float32(v[0])


def _f64(*v):
    return tuple(np.float64(x) for x in v) if len(v) > 1 else np.float64(v[0])


# NOTE: polynomial coefficients are weighted-minimax (Remez, mpmath) fits rounded to the target
# precision; the comment by each gives the fit's own error, well below the rounding error.
_S = {}
for _name, _mk in (("32", _f32), ("64", _f64)):
    _S[_name] = dict(
        zero=_mk(0.0), half=_mk(0.5), one=_mk(1.0), two=_mk(2.0), inf=_mk(np.inf),
        ninf=_mk(-np.inf), nan=_mk(np.nan),
    )
_Z32, _H32, _O32, _T32, _INF32, _NINF32, _NAN32 = _S["32"].values()
_Z64, _H64, _O64, _T64, _INF64, _NINF64, _NAN64 = _S["64"].values()
del _S, _name, _mk

# NOTE: adding 1.5*2**mant rounds to the nearest integer with no float->int conversion.
_MAGIC32 = _f32(12582912.0)
_MAGIC64 = _f64(6755399441055744.0)
_LOG2E32 = _f32(1.4426950408889634)
_LOG2E64 = _f64(1.4426950408889634)
# NOTE: Cody-Waite split of ln2: the high part has trailing zero bits so k*hi is exact.
_LN2HI32 = _f32(0.693359375)
_LN2LO32 = _f32(-0.00021219444005469057)
_LN2HI64 = _f64(0.6931471803691238)
_LN2LO64 = _f64(1.9082149292723212e-10)
_NLN2LO64 = -_LN2LO64
_LN2_32 = _f32(0.6931471805599453)
_LN2_64 = _f64(0.6931471805599453)

# exp(r) = 1 + r + r^2 * P(r), |r| <= ln2/2; fit error 0.05 ulp (f32), 0.03 ulp (f64)
_EXP32 = _f32(0.4999999403953552, 0.1666651964187622, 0.04166838526725769, 0.00836879387497902,
              0.0013815154088661075)
_EXP64 = _f64(0.5000000000000011, 0.1666666666666641, 0.04166666666652892, 0.008333333333494383,
              0.001388888894399994, 0.0001984126950802346, 2.480149267710569e-05,
              2.755758392885655e-06, 2.7630411004181456e-07, 2.5001202646691674e-08)
# NOTE: the clamps lie beyond the overflow/underflow thresholds (exp -> inf / 0), so the normal
# path produces inf, correctly rounded denormals and 0 with no special-case select.
_EXP_HI32, _EXP_LO32 = _f32(89.0), _f32(-104.0)
_EXP_HI64, _EXP_LO64 = _f64(710.0), _f64(-746.0)
_MIN_EXP32, _MIN_EXP64 = _f32(-126.0), _f64(-1022.0)

# expm1(r) = r + r^2/2 + r^3 * P(r), r in [-ln2/2, ln2]; fit error 0.10 / 0.007 ulp
_EXPM1_32 = _f32(0.1666669100522995, 0.041667237877845764, 0.008327965624630451,
                 0.0013867149828001857, 0.00022851000539958477)
_EXPM1_64 = _f64(0.16666666666666677, 0.04166666666666613, 0.008333333333325562,
                 0.0013888888889207244, 0.0001984126985682876, 2.4801586618893034e-05,
                 2.7557310404860877e-06, 2.755792647794723e-07, 2.50493631629012e-08,
                 2.0700422976997066e-09, 1.8827078831332028e-10)
_EXPM1_HI32, _EXPM1_LO32 = _f32(89.0), _f32(-30.0)
_EXPM1_HI64, _EXPM1_LO64 = _f64(710.0), _f64(-40.0)

# log1p(f) = f - f^2/2 + f^3 * P(f), f in [sqrt(1/2)-1, sqrt(2)-1]; fit error 0.10 ulp
_LOG32 = _f32(0.3333333134651184, -0.250008225440979, 0.20001228153705597, -0.1662333607673645,
              0.1420171856880188, -0.1316036432981491, 0.12761962413787842, -0.07634487003087997)
# fdlibm form: log1p(f) = f - s*(f - R), s = f/(2+f), R = z*P(z), z = s^2; fit error 0.011 ulp
_LOG64 = _f64(0.6666666666666734, 0.39999999999414326, 0.28571428742474536, 0.22222198563507586,
              0.18183564865998464, 0.15314035843680962, 0.1479610542432183)
# log1p(f) = f - f^2/2 + f^3 * P(f), f in [-1/4, 1/2] (the range of _log1p_split); weighted
# minimax (LP on a dense grid) for relative error, fit error 0.11 ulp
_LOG1P32 = _f32(0.3333348333835602, -0.2500022351741791, 0.1998923420906067, -0.16640055179595947,
                0.1448909491300583, -0.1325121819972992, 0.10596005618572235, -0.045589447021484375)
# the fdlibm form of _LOG64 refitted (Chebyshev) for s = f/(2+f) in [-1/7, 1/5]; fit error 0.02 ulp
_LOG1P64 = _f64(0.6666666666666666, 0.4000000000000794, 0.28571428567275936, 0.2222222304835159,
                0.18181737626302938, 0.15388867805613718, 0.13209708242059462,
                0.13609030262858499)
_MIN_NORMAL32, _MIN_NORMAL64 = _f32(1.1754943508222875e-38), _f64(2.2250738585072014e-308)
_TWO23_32, _N23_32 = _f32(8388608.0), _f32(-23.0)
_TWO54_64, _N54_64 = _f64(18014398509481984.0), _f64(-54.0)

# NOTE: tanh rounds to +-1 beyond these, and clamping keeps exp/expm1 finite.
_TANH_CLAMP32, _TANH_CLAMP64 = _f32(9.1), _f64(19.1)
_NTWO32, _NTWO64 = _f32(-2.0), _f64(-2.0)
_TANH_T64 = _f64(0.97)

# sin(r) = r + r^3 * P(r^2) and cos(r) = 1 - r^2/2 + r^4 * Q(r^2), |r| <= pi/4;
# fit errors 0.06 / 0.03 ulp (sin), 0.002 / 0.0005 ulp (cos)
_SIN32 = _f32(-0.16666655242443085, 0.00833216030150652, -0.00019515218446031213)
_SIN64 = _f64(-0.1666666666666663, 0.008333333333322108, -0.0001984126982958021,
              2.7557313618028664e-06, -2.5050747219545073e-08, 1.589619769552321e-10)
_COS32 = _f32(0.04166664555668831, -0.0013887315290048718, 2.4433082217001356e-05)
_COS64 = _f64(0.041666666666666595, -0.001388888888887304, 2.4801587288841414e-05,
              -2.7557314176243933e-07, 2.0875700416567227e-09, -1.1358513973945108e-11)
_2OVERPI32 = _f32(0.6366197723675814)
_2OVERPI64 = _f64(0.6366197723675814)
# NOTE: Cody-Waite split of pi (used halved, for pi/2). float32: parts of 10/10/10/10/24 bits,
# k*part is exact for k < 2**14, so |x| <= 2**14*pi/2 ~ 25_700 is reduced accurately; float64:
# 26/26/26/26/53 bits, |x| <= 2**27*pi/2 ~ 2.1e8.
_PI32 = _f32(3.140625, 0.0009679794311523438, -3.259629011154175e-07, 1.2164491636212915e-10,
             -1.0290622927356871e-13)
_PI64 = _f64(3.1415926814079285, -2.781813535079891e-08, 1.2246467864107189e-16,
             1.2736634356969598e-24, -2.9947698097183397e-33)
_THREE32, _THREE64 = _f32(3.0), _f64(3.0)
_HPI32 = tuple(np.float32(p / 2) for p in _PI32)
_HPI64 = tuple(np.float64(p / 2) for p in _PI64)
del _PI32, _PI64
# NOTE: beyond 2**22*pi/2 (float32) and 2**51*pi/2 (float64) round(2x/pi) is no longer exact, so
# sin and cos return nan there rather than an unbounded result.
_TRIG_MAX32, _TRIG_MAX64 = _f32(6588397.0), _f64(3537118876014220.0)
# sin(x) == x to within rounding below these, which also keeps the sign of -0.0.
_SIN_TINY32, _SIN_TINY64 = _f32(2.0**-12), _f64(2.0**-27)

# erf(x) = x + x * P(x^2) for |x| < 0.921875; fit error 0.26 / 0.01 ulp
# NOTE: x + x*P rather than x*(2/sqrt(pi) + ...): 2/sqrt(pi) rounded to float32 is 0.9 ulp off.
_ERF32 = _f32(0.12837915122509003, -0.37612494826316833, 0.112818144261837, -0.026766560971736908,
              0.00499309878796339, -0.0005990432691760361)
_ERF64 = _f64(0.1283791670955126, -0.3761263890318371, 0.11283791670952854, -0.026866170644637342,
              0.00522397761987769, -0.0008548326652603472, 0.00012055317269508913,
              -1.4925210606320044e-05, 1.6453863968368607e-06, -1.6262804390641913e-07,
              1.39789443932963e-08, -8.328642572777909e-10)
# NOTE: erfc(a) = exp(-a^2) * R(t), t = 1/(1+a), fitted for absolute error in erfc; erf = 1 -
# erfc loses nothing since erfc <= 0.2 there. The variable t makes R nearly polynomial
# (6 terms for float32 instead of 9 in a). Fit error 0.03 / 0.09 ulp of erf.
_ERFC32 = _f32(0.0011216687271371484, 0.5522587895393372, 0.5973841547966003, 0.36138105392456055,
               -0.9122430086135864, 0.4105290174484253)
_ERFC64 = _f64(-1.0075867657507998e-05, 0.5645832311082367, 0.557101338583131,
               0.35987386800588395, -0.8606822430334263, 2.3590417407312465, -11.905586977256078,
               34.120451446880416, -59.99932886150616, 70.3881792692926, -56.172384207346724,
               29.556460907946743, -9.29043926138516, 1.3225276042250924)
_ERF_T32, _ERF_T64 = _f32(0.921875), _f64(0.921875)
# NOTE: erf rounds to +-1 beyond these.
_ERF_CLAMP32, _ERF_CLAMP64 = _f32(4.0), _f64(5.95)

# pow, float32 (computed in float64): log2(1 + f) = f * P(f) for f in [sqrt(1/2)-1, sqrt(2)-1]
# and 2**r = Q(r) for |r| <= 1/2 (weighted least-squares fits, relative errors 2**-33.2 and
# 2**-29; the first, times ln2*|y*log2|x|| <= 104, stays under 2**-26.5 of the result, so the
# total is under 0.5 + 0.21 ulp of float32; measured 0.65). Estrin-evaluated (see _estrin).
_POW_LOG2_32 = _f64(1.4426950409393575, -0.7213475252130794, 0.4808983207234355,
                    -0.3606728005656531, 0.28854064404713015,
                    -0.2405041735964449, 0.2060962419238883,
                    -0.1790469508239179, 0.15900167434770845,
                    -0.15698242326965064, 0.1548567460452734,
                    -0.08634482725369085)
_POW_EXP2_32 = _f64(1.0000000005541883, 0.6931472057371975, 0.24022646890479565,
                    0.055503287770778065, 0.009618488973839818,
                    0.001339993118301396, 0.00015345807504586607)
_POW_CLAMP32 = (_f64(-160.0), _f64(130.0))
# pow, float64: log1p(f) = 2s + 2s^3/3 + s^5 * P(s^2), s = f/(2+f), s^2 <= 0.0295 (Chebyshev fit
# of P, error 2**-57 relative); the first two terms are carried as double-doubles.
_POW_LOG64 = _f64(0.4, 0.2857142857142937, 0.22222222221652765, 0.18181818336099848,
                  0.1538459488700718, 0.1333480879881234, 0.11706126464563398,
                  0.11724327060846747)
_TWO_THIRDS_HI, _TWO_THIRDS_LO = _f64(2 / 3), _f64(3.700743415417188e-17)
_POW_BIG64 = _f64(1000.0)
# float32 and float64 constants of _pow_sign: 0, inf, nan, 1/2
_POW_C32 = _f32(0.0, np.inf, np.nan, 0.5)
_POW_C64 = _f64(0.0, np.inf, np.nan, 0.5)


# ---------------------------------------------------------------- exp, expm1

@njit(**_JIT)
def _expc32(x):
    """exp for -87 <= x <= 88 (normal results); the core of erf."""
    k = _mad(x, _LOG2E32, _MAGIC32) - _MAGIC32
    r = _mad(k, -_LN2LO32, _mad(k, -_LN2HI32, x))
    p = _O32 + _mad(r * r, _horner(r, _EXP32), r)
    return p * _pow2i(k)


@njit(**_JIT)
def _expc64(x):
    """exp for -708 <= x <= 709 (normal results)."""
    k = _mad(x, _LOG2E64, _MAGIC64) - _MAGIC64
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, x))
    p = _O64 + _mad(r * r, _horner(r, _EXP64), r)
    return p * _pow2i(k)


@njit(**_JIT)
def _exp32(x):
    xc = _EXP_HI32 if x > _EXP_HI32 else x
    xc = _EXP_LO32 if xc < _EXP_LO32 else xc
    k = _mad(xc, _LOG2E32, _MAGIC32) - _MAGIC32
    r = _mad(k, -_LN2LO32, _mad(k, -_LN2HI32, xc))
    p = _O32 + _mad(r * r, _horner(r, _EXP32), r)
    # NOTE: 2**k in two halves covers k in [-150, 128]; p*2**k1 is exact and the second product
    # rounds once, so denormal results are correctly rounded from p.
    k1 = _mad(k, _H32, _MAGIC32) - _MAGIC32
    return p * _pow2i(k1) * _pow2i(k - k1)


@njit(**_JIT)
def _exp64(x):
    xc = _EXP_HI64 if x > _EXP_HI64 else x
    xc = _EXP_LO64 if xc < _EXP_LO64 else xc
    k = _mad(xc, _LOG2E64, _MAGIC64) - _MAGIC64
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, xc))
    p = _O64 + _mad(r * r, _horner(r, _EXP64), r)
    k1 = _mad(k, _H64, _MAGIC64) - _MAGIC64
    return p * _pow2i(k1) * _pow2i(k - k1)


@njit(**_JIT)
def _expm1_32(x):
    xc = _EXPM1_HI32 if x > _EXPM1_HI32 else x
    xc = _EXPM1_LO32 if xc < _EXPM1_LO32 else xc
    k = _mad(xc, _LOG2E32, _MAGIC32) - _MAGIC32
    # NOTE: k = 1 with r < 0 would cancel in 2*(1+p) - 1; keeping k = 0 up to ln2 (the fit
    # covers r in [-ln2/2, ln2]) avoids it. Other k lose nothing.
    kneg = k if k < _Z32 else _Z32
    k = k if xc >= _LN2_32 else kneg
    r = _mad(k, -_LN2LO32, _mad(k, -_LN2HI32, xc))
    p = _mad(r * r, _mad(r, _horner(r, _EXPM1_32), _H32), r)
    # NOTE: expm1 = 2**k*p + (2**k - 1), built from s = 2**(k-1) so k = 128 does not overflow
    # s; s - 1/2 is exact and s*p + (s - 1/2) rounds once, fused or not.
    s = _pow2i(k - _O32)
    y = _T32 * _mad(s, p, s - _H32)
    return x if x == _Z32 else y


@njit(**_JIT)
def _expm1_64(x):
    xc = _EXPM1_HI64 if x > _EXPM1_HI64 else x
    xc = _EXPM1_LO64 if xc < _EXPM1_LO64 else xc
    k = _mad(xc, _LOG2E64, _MAGIC64) - _MAGIC64
    kneg = k if k < _Z64 else _Z64
    k = k if xc >= _LN2_64 else kneg
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, xc))
    p = _mad(r * r, _mad(r, _horner(r, _EXPM1_64), _H64), r)
    s = _pow2i(k - _O64)
    y = _T64 * _mad(s, p, s - _H64)
    return x if x == _Z64 else y


# ---------------------------------------------------------------- log, log1p

@njit(**_JIT)
def _log1p_core32(f):
    f2 = f * f
    return _mad(f2 * f, _horner(f, _LOG32), _mad(f2, -_H32, f))


@njit(**_JIT)
def _log_special32(x, y):
    # NOTE: one select each: +inf and NaN pass through, x < 0 -> NaN, +-0 -> -inf.
    y = y if x < _INF32 else x
    y = _NAN32 if x < _Z32 else y
    return _NINF32 if x == _Z32 else y


@njit(**_JIT)
def _log_special64(x, y):
    y = y if x < _INF64 else x
    y = _NAN64 if x < _Z64 else y
    return _NINF64 if x == _Z64 else y


@njit(**_JIT)
def _log32(x):
    # NOTE: denormals are scaled into the normal range by a select, not a branch.
    tiny = x < _MIN_NORMAL32
    m, e = _frexp2(x * _TWO23_32 if tiny else x)
    e = e + _N23_32 if tiny else e
    y = _mad(e, _LN2LO32, _log1p_core32(m - _O32))
    return _log_special32(x, _mad(e, _LN2HI32, y))


@njit(**_JIT)
def _log64(x):
    tiny = x < _MIN_NORMAL64
    m, e = _frexp2(x * _TWO54_64 if tiny else x)
    e = e + _N54_64 if tiny else e
    f = m - _O64
    # NOTE: fdlibm's log(1+f) = f - s*(f - R): f stays exact and the rounded part is < f/4.
    s = f / (_T64 + f)
    z = s * s
    w = _mad(s, _mad(-z, _horner(z, _LOG64), f), e * _NLN2LO64)
    return _log_special64(x, _mad(e, _LN2HI64, f - w))


@njit(**_JIT)
def _log1p32(x):
    f, k = _log1p_split(x)
    f2 = f * f
    y = _mad(f2 * f, _horner(f, _LOG1P32), _mad(f2, -_H32, f))
    y = _mad(k, _LN2HI32, _mad(k, _LN2LO32, y))
    y = _log_special32(x + _O32, y)
    return x if x == _Z32 else y


@njit(**_JIT)
def _log1p64(x):
    f, k = _log1p_split(x)
    # NOTE: fdlibm's log(1+f) = f - s*(f - R) as in _log64; f is exact, so nothing else to carry.
    s = f / (_T64 + f)
    z = s * s
    w = _mad(s, _mad(-z, _horner(z, _LOG1P64), f), k * _NLN2LO64)
    y = _log_special64(x + _O64, _mad(k, _LN2HI64, f - w))
    return x if x == _Z64 else y


# ---------------------------------------------------------------- tanh, sigmoid

@njit(**_JIT)
def _tanh32(x):
    a = abs(x)
    a = _TANH_CLAMP32 if a > _TANH_CLAMP32 else a
    # NOTE: e = e^(-2a) = 2s(1 + p), s = 2**(k-1), p = expm1(r) as in _expm1_32 (-2a <= 0, so no
    # clamps), and tanh = (1 - e)/(1 + e) = -(s*p + s - 1/2) / (s*p + s + 1/2): each side rounds
    # once (s +- 1/2 is exact) and nothing cancels. Max 1.9 ulp (exhaustive); an odd polynomial
    # below 0.625 gives 1.3 ulp but costs 15% more time.
    z = a * _NTWO32
    k = _mad(z, _LOG2E32, _MAGIC32) - _MAGIC32
    r = _mad(k, -_LN2LO32, _mad(k, -_LN2HI32, z))
    p = _mad(r * r, _mad(r, _horner(r, _EXPM1_32), _H32), r)
    s = _pow2i(k - _O32)
    return _copysign(-_mad(s, p, s - _H32) / _mad(s, p, s + _H32), x)


@njit(**_JIT)
def _tanh64(x):
    a = abs(x)
    a = _TANH_CLAMP64 if a > _TANH_CLAMP64 else a
    # NOTE: e = e^(-2a) = 2s(1 + p) with s = 2**(k-1) and p = expm1(r) as in _expm1_64 (-2a <= 0,
    # so k <= 0 and no clamps). For small a, tanh = (1 - e)/(1 + e) = -(s*p + s - 1/2) /
    # (s*p + s + 1/2): each side rounds once (s +- 1/2 is exact) and nothing cancels. For
    # a >= 0.97, 1 - 2e/(1 + e) is more accurate (the quotient is < 1/4 of the result). One
    # division serves both through selects.
    z = a * _NTWO64
    k = _mad(z, _LOG2E64, _MAGIC64) - _MAGIC64
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, z))
    p = _mad(r * r, _mad(r, _horner(r, _EXPM1_64), _H64), r)
    s = _pow2i(k - _O64)
    e = _T64 * _mad(s, p, s)
    big = a > _TANH_T64
    num = _NTWO64 * e if big else -_mad(s, p, s - _H64)
    den = (_O64 + e) if big else _mad(s, p, s + _H64)
    y = (_O64 if big else _Z64) + num / den
    return _copysign(y, x)


@njit(**_JIT)
def _sigmoid32(x):
    # NOTE: with e = exp(-|x|) = 2**k (1 + q) <= 1 nothing overflows: sigmoid = 1/(1 + e) for
    # x >= 0 and e/(1 + e) for x < 0. e = eh + el and 1 + e = dh + dl are kept as exact pairs
    # (2**k is a power of two, so s*q and the differences are exact) and the quotient is
    # corrected to first order, using 1/(1 + e) = 1 - y (x < 0) or y (x >= 0): only the division
    # rounds, where the plain formula reached 2.5 ulp. e is scaled in two steps (s1, s2) so it
    # can be denormal.
    z = -abs(x)
    z = _EXP_LO32 if z < _EXP_LO32 else z
    k = _mad(z, _LOG2E32, _MAGIC32) - _MAGIC32
    r = _mad(k, -_LN2LO32, _mad(k, -_LN2HI32, z))
    q = _mad(r * r, _horner(r, _EXP32), r)
    k1 = _MIN_EXP32 if k < _MIN_EXP32 else k
    s1 = _pow2i(k1)
    s2 = _pow2i(k - k1)
    eh = _mad(s1, q, s1)
    el = _mad(s1, q, s1 - eh)
    dh = _mad(s1, q, s1 + _O32)
    dl = _mad(s1, q, (_O32 - dh) + s1)
    neg = x < _Z32
    y = (eh * s2 if neg else _O32) / dh
    w = (_O32 - y) if neg else y
    return _mad(_mad(-y, dl, el * s2 if neg else _Z32), w, y)


@njit(**_JIT)
def _sigmoid64(x):
    z = -abs(x)
    z = _EXP_LO64 if z < _EXP_LO64 else z
    k = _mad(z, _LOG2E64, _MAGIC64) - _MAGIC64
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, z))
    q = _mad(r * r, _horner(r, _EXP64), r)
    k1 = _MIN_EXP64 if k < _MIN_EXP64 else k
    s1 = _pow2i(k1)
    s2 = _pow2i(k - k1)
    eh = _mad(s1, q, s1)
    el = _mad(s1, q, s1 - eh)
    dh = _mad(s1, q, s1 + _O64)
    dl = _mad(s1, q, (_O64 - dh) + s1)
    neg = x < _Z64
    y = (eh * s2 if neg else _O64) / dh
    w = (_O64 - y) if neg else y
    return _mad(_mad(-y, dl, el * s2 if neg else _Z64), w, y)


# ---------------------------------------------------------------- sin, cos

@njit(**_JIT)
def _reduce(k, x, p, three):
    """x - k*(p[0] + ... + p[4]) for integer-valued k, rounded about once.

    k*p[0], k*p[1], k*p[2] and k*p[3] are exact, and so are the first two differences. t = k*p[2]
    is split at the 2**-22 (float32) / 2**-51 (float64) grid so r - hi is exact too; the rest
    (lo, exact) is subtracted with one rounding, and k*p[4] only matters when that was exact
    (r tiny). A plain chain of subtractions rounds twice, which cost up to 2.3 ulp.
    """
    r = _mad(k, -p[0], x)
    r = _mad(k, -p[1], r)
    t = k * p[2]
    hi = (t + three) - three
    lo = _mad(k, p[3], t - hi)
    r = (r - hi) - lo
    return _mad(k, -p[4], r)


@njit(**_JIT)
def _sincos_q32(x, t, tq):
    """sin(x) for t = n + 1.5*2**23, n = round(x*2/pi), and quadrant tq = t; cos(x) for tq = t+1."""
    n = t - _MAGIC32
    r = _reduce(n, x, _HPI32, _THREE32)
    r2 = r * r
    # NOTE: both polynomials on [-pi/4, pi/4] and a select; the cubic term stays < 0.09 of the
    # result, where one sin polynomial on [-pi/2, pi/2] rounded to 2 ulp near its maximum.
    s = _mad(r * r2, _horner(r2, _SIN32), r)
    c = _mad(r2 * r2, _horner(r2, _COS32), _mad(r2, -_H32, _O32))
    return _flipsign_bit1(c if _is_odd(tq) else s, tq)


@njit(**_JIT)
def _sincos_q64(x, t, tq):
    n = t - _MAGIC64
    r = _reduce(n, x, _HPI64, _THREE64)
    r2 = r * r
    s = _mad(r * r2, _horner(r2, _SIN64), r)
    c = _mad(r2 * r2, _horner(r2, _COS64), _mad(r2, -_H64, _O64))
    return _flipsign_bit1(c if _is_odd(tq) else s, tq)


@njit(**_JIT)
def _sin32(x):
    x = x if abs(x) < _TRIG_MAX32 else _NAN32
    t = _mad(x, _2OVERPI32, _MAGIC32)
    y = _sincos_q32(x, t, t)
    return x if abs(x) < _SIN_TINY32 else y


@njit(**_JIT)
def _sin64(x):
    x = x if abs(x) < _TRIG_MAX64 else _NAN64
    t = _mad(x, _2OVERPI64, _MAGIC64)
    y = _sincos_q64(x, t, t)
    return x if abs(x) < _SIN_TINY64 else y


@njit(**_JIT)
def _cos32(x):
    # NOTE: cos(x) = sin(x + pi/2): the same reduction with quadrant n + 1.
    x = x if abs(x) < _TRIG_MAX32 else _NAN32
    t = _mad(x, _2OVERPI32, _MAGIC32)
    return _sincos_q32(x, t, t + _O32)


@njit(**_JIT)
def _cos64(x):
    x = x if abs(x) < _TRIG_MAX64 else _NAN64
    t = _mad(x, _2OVERPI64, _MAGIC64)
    return _sincos_q64(x, t, t + _O64)


# ---------------------------------------------------------------- erf

@njit(**_JIT)
def _erf32(x):
    a = abs(x)
    small = _mad(a, _horner(a * a, _ERF32), a)
    ac = _ERF_CLAMP32 if a > _ERF_CLAMP32 else a
    t = _O32 / (_O32 + ac)
    large = _mad(-_expc32(-(ac * ac)), _horner(t, _ERFC32), _O32)
    return _copysign(small if a < _ERF_T32 else large, x)


@njit(**_JIT)
def _erf64(x):
    a = abs(x)
    small = _mad(a, _horner(a * a, _ERF64), a)
    ac = _ERF_CLAMP64 if a > _ERF_CLAMP64 else a
    t = _O64 / (_O64 + ac)
    large = _mad(-_expc64(-(ac * ac)), _horner(t, _ERFC64), _O64)
    return _copysign(small if a < _ERF_T64 else large, x)


# ---------------------------------------------------------------- pow

@njit(inline="always", **_JIT)
def _pow_log_edges(ax, lg):
    """log|x| (lg, computed for finite nonzero |x|) with log 0 = -inf, log inf = inf, log nan = nan,
    so y*log|x| carries 0 and inf bases (and infinite y) to exp's 0 and inf by itself."""
    lg = lg if ax < np.inf else ax
    return -np.inf if ax == 0 else lg


@njit(inline="always", **_JIT)
def _pow_is_one(y, ax):
    """Whether x**y is 1 whatever exp(y*log|x|) gives: y = 0 or |x| = 1 (NaNs and -1**+-inf
    included, as C99 and PyTorch have it). pow zeroes its exponent there, so exp gives the 1
    and only an odd power of -1 needs its sign."""
    return (y == _Z64) | (ax == _O64)


@njit(inline="always", **_JIT)
def _pow_sign(x, y, mag, c):
    """x**y from mag = exp(y*log|x|): the sign of an odd power of a negative base, NaN for a
    finite negative base with a non-integer exponent. c: _POW_C32 or _POW_C64."""
    zero, inf, nan, half = c
    # NOTE: y is an integer when rint(y) == y (infinities count, as C99 treats them: even), and
    # odd when y/2 is not; from 2**(mant+1) on y/2 is an integer too, so large y are even.
    whole = _rint(y) == y
    h = y * half
    odd = whole & (_rint(h) != h)
    # the sign of x on an odd power, -0 included (mag is inf or 0 there)
    r = _copysign(mag, x) if odd else mag
    return nan if (x < zero) & (x > -inf) & ~whole else r


@njit(inline="always", **_JIT)
def _pow32_log2(ax):
    """log2(ax) in float64 to 2**-33 relative, for a positive normal float64 ax."""
    m, e = _frexp2(ax)
    f = m - _O64
    return _mad(f, _estrin(f, _POW_LOG2_32), e)


@njit(inline="always", **_JIT)
def _pow32_exp2(t):
    """2**t rounded to float32, for t within _POW_CLAMP32. Horner, not Estrin: with the log's
    Estrin chain beside it the loop is bound by operations, not latency (1.36 -> 1.30 ms a
    1M-element loop on one core)."""
    k = (t + _MAGIC64) - _MAGIC64
    return np.float32(_horner(t - k, _POW_EXP2_32) * _pow2i(k))


# NOTE: inline="always" (numba IR inlining): LLVM's inliner finds these too big, and a call in
# the loop body stops vectorization. Their helpers above are inlined the same way: left to LLVM,
# a float32 pow loop ran ~10% slower (1M elements, 1.46 against 1.33 ms on one core).
@njit(inline="always", **_JIT)
def _pow32(x, y):
    # NOTE: float64 inside: log2|x| to 2**-33 relative, y*log2|x| rounds once, and 2**t has
    # error 2**-28.5 before the one rounding to float32 (measured 0.65 ulp at most). float32
    # denormals are normal float64 numbers, and float32 overflow/underflow happen in the final
    # conversion, so the clamps only keep 2**k finite.
    ax = np.float64(abs(x))
    yd = np.float64(y)
    t = yd * _pow_log_edges(ax, _pow32_log2(ax))
    t = _Z64 if _pow_is_one(yd, ax) else t
    lo, hi = _POW_CLAMP32
    t = hi if t > hi else t
    t = lo if t < lo else t
    return _pow_sign(x, y, _pow32_exp2(t), _POW_C32)


# The common case of float32 pow without its special cases: a positive finite base and
# y*log2(x) within _POW_CLAMP32, where _pow32's selects all keep their value and give the same
# bits. Edge handling is a third of _pow32's operations; a generated kernel runs a block of
# elements through _pow32_common, counts the arguments outside the common case with
# _pow32_uncommon (LLVM merges the two functions' shared log), and reruns the block with
# _pow32 only when that count is not 0 (codegen._common_pow_kernels).
@njit(inline="always", **_JIT)
def _pow32_common_t(x, y):
    return np.float64(y) * _pow32_log2(np.float64(x))


@njit(inline="always", **_JIT)
def _pow32_common(x, y):
    return _pow32_exp2(_pow32_common_t(x, y))


@njit(inline="always", **_JIT)
def _pow32_uncommon(x, y):
    t = _pow32_common_t(x, y)
    lo, hi = _POW_CLAMP32
    return 0 if (x > _Z32) & (x < _INF32) & (t >= lo) & (t <= hi) else 1


@njit(inline="always", **_JIT)
def _pow64(x, y):
    # NOTE: y*log|x| must be good to ~2**-54 absolute for |x|**y to be within an ulp, up to
    # |y*log|x|| = 745, so log|x| is computed as a double-double to ~2**-66 relative: the
    # exact products of _fma give the low parts of s = f/(2+f), s^2, s^3 and 2s^3/3.
    ax = abs(x)
    tiny = ax < _MIN_NORMAL64
    m, e = _frexp2(ax * _TWO54_64 if tiny else ax)
    e = e + _N54_64 if tiny else e
    f = m - _O64
    d = _T64 + f
    dl = (_T64 - d) + f
    inv = _O64 / d
    sh = f * inv
    sl = (_fma(-sh, d, f) - sh * dl) * inv
    zh = sh * sh
    zl = _fma(sh, sh, -zh) + _T64 * sh * sl
    s3h = zh * sh
    s3l = _fma(zh, sh, -s3h) + _mad(zl, sh, zh * sl)
    bh = _TWO_THIRDS_HI * s3h
    bl = _fma(_TWO_THIRDS_HI, s3h, -bh) + _mad(_TWO_THIRDS_HI, s3l, _TWO_THIRDS_LO * s3h)
    ah = _T64 * sh
    hh = ah + bh
    hl = (ah - hh) + bh + (_T64 * sl + bl + s3h * zh * _horner(zh, _POW_LOG64))
    # NOTE: renormalized: s^5*P is up to 2**-12 of hh, too big to ride in the low part, which
    # becomes part of exp's reduced argument.
    h = hh + hl
    hl = (hh - h) + hl
    # log|x| = e*ln2 + log1p(f); e*LN2HI is exact and outweighs hh unless e = 0
    a = e * _LN2HI64
    lh = _pow_log_edges(ax, a + h)
    ll = (a - lh) + h + _mad(e, -_NLN2LO64, hl)
    th = y * lh
    tl = _fma(y, lh, -th) + y * ll
    # NOTE: past |y*log|x|| ~ 745 the result is 0 or inf and tl may be inf or nan: drop it.
    tl = tl if abs(th) < _POW_BIG64 else _Z64
    one = _pow_is_one(y, ax)
    th = _Z64 if one else th
    tl = _Z64 if one else tl
    xc = _EXP_HI64 if th > _EXP_HI64 else th
    xc = _EXP_LO64 if xc < _EXP_LO64 else xc
    k = _mad(xc, _LOG2E64, _MAGIC64) - _MAGIC64
    r = _mad(k, -_LN2LO64, _mad(k, -_LN2HI64, xc)) + tl
    p = _O64 + _mad(r * r, _horner(r, _EXP64), r)
    k1 = _mad(k, _H64, _MAGIC64) - _MAGIC64
    return _pow_sign(x, y, p * _pow2i(k1) * _pow2i(k - k1), _POW_C64)


# ---------------------------------------------------------------- tensor ** scalar

# NOTE: the exponents PyTorch's pow(Tensor, Scalar) computes without pow, with its formulas
# (sqrt, 1/sqrt, 1/x, x*x, x*x*x, 1/(x*x), a fill, a copy), so results match it bit for bit:
# x*x*x is within 1.3 ulp, 1/sqrt 1.5 ulp, the others 0.5. sqrt differs from C99's pow at
# (-0)**0.5 = -0 and (-inf)**0.5 = nan (C99: +0, +inf), so (-0)**-0.5 = -inf and
# (-inf)**-0.5 = nan (C99: +inf, +0); numpy's ndarray ** 0.5 is sqrt too. 1/(x*x) becomes
# (1/x)**2 (1.9 ulp) where x*x would overflow or be denormal: PyTorch gives 0 and a few-bit
# result there.
@njit(**_JIT)
def pow_0(x):
    return type(x)(1.0)


@njit(**_JIT)
def pow_1(x):
    return x


@njit(**_JIT)
def pow_2(x):
    return x * x


@njit(**_JIT)
def pow_3(x):
    return x * x * x


@njit(**_JIT)
def pow_half(x):
    return np.sqrt(x)


@njit(**_JIT)
def pow_neg_half(x):
    return type(x)(1.0) / np.sqrt(x)


@njit(**_JIT)
def pow_neg_1(x):
    return type(x)(1.0) / x


@njit(**_JIT)
def _pow_neg_2_edges(x, lo, hi):
    """1/(x*x) where lo < |x| < hi (x*x normal and finite), (1/x)**2 elsewhere."""
    r = type(x)(1.0) / x
    ax = abs(x)
    return type(x)(1.0) / (x * x) if (ax > lo) & (ax < hi) else r * r


_NEG2_EDGES32 = _f32(2.0**-63, 2.0**63)
_NEG2_EDGES64 = _f64(2.0**-511, 2.0**511)


def _pow_neg_2_32(x):
    return _pow_neg_2_edges(x, _NEG2_EDGES32[0], _NEG2_EDGES32[1])


def _pow_neg_2_64(x):
    return _pow_neg_2_edges(x, _NEG2_EDGES64[0], _NEG2_EDGES64[1])


def pow_neg_2(x):
    raise NotImplementedError("only callable from jitted code")


@overload(pow_neg_2)
def _ol_pow_neg_2(x):
    if isinstance(x, types.Float):
        return {32: _pow_neg_2_32, 64: _pow_neg_2_64}.get(x.bitwidth)
    return None


# Use: a generated kernel of ``x ** y`` with a scalar y tests y against these once and runs a
# loop of POW_BY_SCALAR[y](x) instead of pow(x, y) (see codegen.elementwise_source). Float
# arguments only.
POW_BY_SCALAR = {2.0: pow_2, 0.5: pow_half, -1.0: pow_neg_1, 3.0: pow_3, 1.0: pow_1,
                 0.0: pow_0, -0.5: pow_neg_half, -2.0: pow_neg_2}


# ---------------------------------------------------------------- public, type-generic entry points

def _register(stub, impl32, impl64):
    def f32(x):
        return impl32(x)

    def f64(x):
        return impl64(x)

    def fint(x):
        return impl64(np.float64(x))

    # Each wrapper gets its own qualname: numba mangles symbols from __qualname__ plus a
    # per-process counter, so nine identical "<lambda>" names could collide between a cached
    # kernel and a fresh compile in another process (a precaution, not an observed failure).
    for f in (f32, f64, fint):
        f.__qualname__ = f.__name__ = f"vmath_{stub.__name__}_{f.__name__}"

    @overload(stub)
    def _ol(x):
        if isinstance(x, types.Float):
            return {32: f32, 64: f64}.get(x.bitwidth)
        if isinstance(x, (types.Integer, types.Boolean)):
            return fint
        return None

    return stub


def _call(impl32, impl64, x):
    # numba boxes float32 results as Python floats; keep the dtype visible to Python callers.
    if isinstance(x, np.float32):
        return np.float32(impl32(x))
    return np.float64(impl64(np.float64(x)))


def exp(x):
    """e**x."""
    return _call(_exp32, _exp64, x)


def expm1(x):
    """e**x - 1, accurate near 0."""
    return _call(_expm1_32, _expm1_64, x)


def log(x):
    """Natural log; log(0) = -inf, log(x < 0) = nan."""
    return _call(_log32, _log64, x)


def log1p(x):
    """log(1 + x), accurate near 0."""
    return _call(_log1p32, _log1p64, x)


def tanh(x):
    """Hyperbolic tangent."""
    return _call(_tanh32, _tanh64, x)


def sigmoid(x):
    """1 / (1 + e**-x), without overflow for x << 0."""
    return _call(_sigmoid32, _sigmoid64, x)


def sin(x):
    """Sine; ulp-accurate for |x| <= 25_700 (float32) / 2.1e8 (float64); nan for inf, huge |x|."""
    return _call(_sin32, _sin64, x)


def cos(x):
    """Cosine; same range as sin."""
    return _call(_cos32, _cos64, x)


def erf(x):
    """Error function."""
    return _call(_erf32, _erf64, x)


def pow(x, y):  # noqa: A001 - numpy's and torch's name
    """x**y with C99's special cases (0**y, inf, nan, negative bases); not for integer dtypes."""
    if isinstance(x, np.float32) and isinstance(y, np.float32):
        return np.float32(_pow32(x, y))
    return np.float64(_pow64(np.float64(x), np.float64(y)))


def _pow_f32(x, y):
    return _pow32(x, y)


def _pow_f64(x, y):
    return _pow64(np.float64(x), np.float64(y))


@overload(pow, inline="always")
def _ol_pow(x, y):
    # float32 ** float32 in float32; any other float/int mix in float64, as the one-argument
    # functions do with integers (generated kernels never mix types).
    real = (types.Float, types.Integer, types.Boolean)
    if not (isinstance(x, real) and isinstance(y, real)):
        return None
    if x == y == types.float32:
        return _pow_f32
    return _pow_f64


def pow_common(x, y):
    """x**y where ``pow_uncommon(x, y)`` is 0, else any value; the same bits as ``pow`` there.
    float32 only runs a faster path; other types are ``pow``."""
    raise NotImplementedError("only callable from jitted code")


def pow_uncommon(x, y):
    """1 where ``pow_common(x, y)`` may differ from ``pow(x, y)``, else 0."""
    raise NotImplementedError("only callable from jitted code")


def _pow_common_f32(x, y):
    return _pow32_common(x, y)


def _pow_uncommon_f32(x, y):
    return _pow32_uncommon(x, y)


def _pow_uncommon_never(x, y):
    return 0


@overload(pow_common, inline="always")
def _ol_pow_common(x, y):
    return _pow_common_f32 if x == y == types.float32 else _ol_pow(x, y)


@overload(pow_uncommon, inline="always")
def _ol_pow_uncommon(x, y):
    if x == y == types.float32:
        return _pow_uncommon_f32
    return None if _ol_pow(x, y) is None else _pow_uncommon_never


for _stub, _i32, _i64 in (
    (exp, _exp32, _exp64),
    (expm1, _expm1_32, _expm1_64),
    (log, _log32, _log64),
    (log1p, _log1p32, _log1p64),
    (tanh, _tanh32, _tanh64),
    (sigmoid, _sigmoid32, _sigmoid64),
    (sin, _sin32, _sin64),
    (cos, _cos32, _cos64),
    (erf, _erf32, _erf64),
):
    _register(_stub, _i32, _i64)
del _stub, _i32, _i64
