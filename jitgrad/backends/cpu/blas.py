"""How jitgrad's matrix products call BLAS and use the cores: single-threaded calls on slices.

numba's ``np.dot`` calls scipy's own OpenBLAS, a separate library from numpy's. Its worker
threads spin after each call, and so do the OpenMP threads of jitgrad's split kernels
(``threads.py``): with both pools spinning on a 2-core machine a 512x512 matmul forward+backward
took 14 ms instead of 3. jitgrad therefore keeps that BLAS single-threaded and splits a big
product's rows (or columns) over its own threads (``linalg_kernels.addmm_p``, one BLAS call per
slice), so one pool serves every kernel; a product's two gradients run side by side, each on
half the threads (``mm_pair_p``). numpy's BLAS is left alone.

``gemm`` calls that BLAS's ``?gemm`` directly, through numba's own ``numba_xxgemm`` helper (the
symbol ``np.dot`` lowers to): ``np.dot`` copies any operand that is not C- or F-contiguous,
so a transposed operand's row slice, or a column slice of ``out``, cost a copy per call. With
strides passed as BLAS leading dims and transposes as its flags, no slice is copied, and a bias
enters as ``beta = 1`` on rows prefilled with it (PyTorch's ``addmm``).
"""

import ctypes
import glob
import os

import numpy as np
from numba import njit, types
from numba.extending import intrinsic
from numba.np.linalg import ensure_blas

from jitgrad.backends.cpu import threads

__all__ = ["gemm", "gemm_ready", "set_num_threads", "split"]

# NOTE: measured on 2 cores with OpenBLAS's own threads (float32, one thread / two): 1M
# multiply-adds 25 / 34 us (threads lose), 2.1M 49 / 49, 3.2M 76 / 49, 6.4M 150 / 88, 12.8M
# (an MLP's 64x784x256) 296 / 159. Row slices on jitgrad's threads: 64x256x128 (2.1M) 33 / 25.
_THREADED_WORK = 1 << 21
# A row split packs all of b on every thread, a column split only its own columns. For an MLP's
# 64x784 @ 784x256 a column split took 97 us, a row split 127 (one thread 175, torch 86). With
# few rows columns win for a C-contiguous b too (best of 3 x 300, us, rows / columns):
# 64x128 @ 128x256 32.9 / 25.8, 64x256 @ 256x256 42.2 / 33.5, 32x256 @ 256x256 31.1 / 25.5,
# 64x512 @ 512x256 82.8 / 65.0; an MLP step went 650-663 -> 638-651 us. From 128 rows on
# (a weight gradient, 256x64 @ 64x784: 102 / 166) rows win.
_FEW_ROWS = 128


def _scipy_openblas():
    import scipy

    libs = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


_setter = _scipy_openblas()


def set_num_threads(n):
    """Set the thread count of scipy's OpenBLAS; returns False where there is none to set."""
    if _setter is None:
        return False
    _setter(int(n))
    return True


def split(n, k, m, most=None):
    """How an (n, k) @ (k, m) product runs on at most ``most`` threads (default: all usable):
    (slices, by columns). One slice is one BLAS call; more split ``out``'s rows, or its columns
    when there are few rows (each thread then packs only its own part of ``b``)."""
    count = threads.usable() if most is None else most
    if n * k * m < _THREADED_WORK or count == 1:
        return 1, False
    if n < _FEW_ROWS:
        return min(count, m), True
    return min(count, n), False


def gemm_ready(x):
    """Whether the 2-D array ``x`` is one ``gemm`` reads in place: unit stride along one dim,
    and rows (columns) that do not overlap. Anything else needs a contiguous copy first."""
    rows, cols = x.shape
    s0, s1 = x.strides
    size = x.itemsize
    return ((s1 == size or cols == 1) and (rows == 1 or s0 >= max(cols, 1) * size)
            or (s0 == size or rows == 1) and (cols == 1 or s1 >= max(rows, 1) * size))


ensure_blas()  # numba's helper finds scipy's BLAS functions through this import

# numba's helper: column-major ?gemm of kind 's' or 'd', every argument as the BLAS call takes it
_XXGEMM = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp, types.voidptr,
    types.voidptr, types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr,
    types.intp))


@intrinsic
def _address(typingctx, array):
    """The address of ``array``'s first element, as ``void *``."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.bitcast(data, context.get_value_type(types.voidptr))

    return types.voidptr(array), codegen


@njit
def _blas_layout(x):
    """(transpose flag, leading dim) of the row-major matrix ``x`` for column-major BLAS, which
    sees a row-major matrix as its transpose (see ``gemm_ready`` for the layouts)."""
    rows, cols = x.shape
    s0 = x.strides[0] // x.itemsize
    s1 = x.strides[1] // x.itemsize
    if s1 == 1 or cols == 1:
        return ord("n"), max(s0 if rows > 1 else cols, cols, 1)
    return ord("t"), max(s1 if cols > 1 else rows, rows, 1)


@njit(nogil=True)
def gemm(a, b, out, bias):
    """out (n, m) = a (n, k) @ b (k, m), plus ``bias`` (m,) on every row unless it is empty.

    One BLAS call, whatever the operands' strides (``gemm_ready`` layouts: slices of a
    transposed matrix and column slices of ``out`` included), copying nothing.
    """
    n, k = a.shape
    m = b.shape[1]
    if n == 0 or m == 0:
        return
    with_bias = bias.size > 0
    if with_bias or k == 0:  # (with k = 0, BLAS would not touch out)
        for i in range(n):
            for j in range(m):
                out[i, j] = bias[j] if with_bias else 0
        if k == 0:
            return
    scalars = np.empty(2, out.dtype)  # alpha, beta
    scalars[0] = 1
    scalars[1] = 1 if with_bias else 0
    transa, lda = _blas_layout(a)
    transb, ldb = _blas_layout(b)
    _, ldc = _blas_layout(out)
    # column-major BLAS computes out^T = b^T @ a^T, in the layouts it sees
    status = _XXGEMM(ord("s") if out.itemsize == 4 else ord("d"), transb, transa, m, n, k,
                     _address(scalars), _address(b), ldb, _address(a), lda,
                     _address(scalars[1:]), _address(out), ldc)
    if status:
        raise RuntimeError("BLAS ?gemm from scipy could not be called")


set_num_threads(1)
