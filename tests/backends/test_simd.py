"""backends/cpu/simd.py: generated kernels ask LLVM for wide vectors; maxnum ignores NaN."""

import llvmlite.binding as llvm
import numpy as np
from numba import njit

from jitgrad.backends.cpu import codegen
from jitgrad.backends.cpu.simd import maxnum, shares_memory


def test_generated_kernels_prefer_512_bit_vectors():
    source = codegen.elementwise_source(("x",), "exp(x)", ("float32",))
    cached = getattr(codegen.load_module("simd_test_exp", source),
                     codegen.kernel_name("float32", "a", "c"))
    kernel = njit(error_model="numpy")(cached.py_func)  # uncached: numba inspects fresh code only
    x = np.linspace(-3, 3, 100, dtype=np.float32)
    out = np.empty_like(x)
    kernel(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=3e-7)
    signature = kernel.signatures[0]
    assert '"prefer-vector-width"="512"' in kernel.inspect_llvm(signature)
    if "+avx512f" in llvm.get_host_cpu_features().flatten():
        assert "zmm" in kernel.inspect_asm(signature)  # the loop really runs 16 lanes wide


@njit(cache=True)
def _running_max(v):
    m = v[0]
    for j in range(v.size):
        m = maxnum(m, v[j])
    return m


def test_maxnum_is_fmax():
    a = np.array([1.0, np.nan, -np.inf, 3.0, np.nan, -0.5])
    b = np.array([np.nan, 2.0, -1.0, np.inf, np.nan, -0.25])
    got = np.array([njit(lambda p, q: maxnum(p, q))(p, q) for p, q in zip(a, b)])
    np.testing.assert_array_equal(got, np.fmax(a, b))
    for dtype in (np.float32, np.float64):
        v = np.random.default_rng(0).normal(size=1001).astype(dtype)
        v[[0, 17, 500]] = np.nan
        assert _running_max(v) == np.nanmax(v)


@njit(cache=True)
def _shares(a, b):
    return shares_memory(a, b)


def test_shares_memory_is_overlap_of_buffers():
    base = np.arange(10.0)
    assert _shares(base, base) and _shares(base[2:6], base[5:9])
    assert not _shares(base[2:5], base[5:9]) and not _shares(base, np.arange(10.0))
    for a, b in ((base[::2], base[1::2]), (base[:3], base[7:])):
        assert _shares(a, b) == np.may_share_memory(a, b)
