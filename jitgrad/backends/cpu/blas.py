"""How jitgrad's matrix products use the cores: single-threaded BLAS calls on row slices.

numba's ``np.dot`` calls scipy's own OpenBLAS, a separate library from numpy's. Its worker
threads spin after each call, and so do the OpenMP threads of jitgrad's split kernels
(``threads.py``): with both pools spinning on a 2-core machine a 512x512 matmul forward+backward
took 14 ms instead of 3. jitgrad therefore keeps that BLAS single-threaded and splits a big
product's rows over its own threads (``linalg_kernels.mm_p``, one BLAS call per slice), so one
pool serves every kernel. numpy's BLAS is left alone.
"""

import ctypes
import glob
import os

from jitgrad.backends.cpu import threads

__all__ = ["row_chunks", "set_num_threads"]

# NOTE: measured on 2 cores (float32, one thread / two): 1M multiply-adds 25 / 34 us (threads
# lose), 2.1M 49 / 49, 3.2M 76 / 49, 6.4M 150 / 88, 12.8M (an MLP's 64x784x256) 296 / 159.
# Below 2M one thread is as fast and never fights other pools.
_THREADED_WORK = 1 << 21


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


def row_chunks(n, k, m):
    """How many row slices an (n, k) @ (k, m) product runs as on threads (1: one BLAS call)."""
    if n * k * m < _THREADED_WORK:
        return 1
    return min(threads.usable(), n)


set_num_threads(1)
