"""How jitgrad's matrix products use the cores: single-threaded BLAS calls on row slices.

numba's ``np.dot`` calls scipy's own OpenBLAS, a separate library from numpy's. Its worker
threads spin after each call, and so do the OpenMP threads of jitgrad's split kernels
(``threads.py``): with both pools spinning on a 2-core machine a 512x512 matmul forward+backward
took 14 ms instead of 3. jitgrad therefore keeps that BLAS single-threaded and splits a big
product's rows (or columns) over its own threads (``linalg_kernels.mm_p``, ``mm_cols_p``, one
BLAS call per slice), so one pool serves every kernel. numpy's BLAS is left alone.
"""

import ctypes
import glob
import os

from jitgrad.backends.cpu import threads

__all__ = ["set_num_threads", "split"]

# NOTE: measured on 2 cores with OpenBLAS's own threads (float32, one thread / two): 1M
# multiply-adds 25 / 34 us (threads lose), 2.1M 49 / 49, 3.2M 76 / 49, 6.4M 150 / 88, 12.8M
# (an MLP's 64x784x256) 296 / 159. Row slices on jitgrad's threads: 64x256x128 (2.1M) 33 / 25.
_THREADED_WORK = 1 << 21
# A row split packs all of b on every thread. For an MLP's 64x784 @ 784x256 a column split
# took 97 us, a row split 127 (one thread 175, torch 86); for 64x256 @ 256x128 rows won.
_FEW_ROWS, _BIG_B = 128, 1 << 17


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


def split(n, k, m):
    """How an (n, k) @ (k, m) product runs: ("mm", 1), one BLAS call, or ("mm_p" or
    "mm_cols_p", slices), its rows or columns split over threads."""
    if n * k * m < _THREADED_WORK:
        return "mm", 1
    if n < _FEW_ROWS and k * m >= _BIG_B:
        return "mm_cols_p", min(threads.usable(), m)
    return "mm_p", min(threads.usable(), n)


set_num_threads(1)
