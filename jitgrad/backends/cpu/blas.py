"""The thread count of the BLAS that jitgrad's matmul kernels call (scipy's OpenBLAS).

numba's ``np.dot`` calls scipy's own OpenBLAS, a separate library from numpy's. Its worker
threads spin after each call and fight numba's kernels, torch's pool and other processes for the
cores: on a busy 2-core machine an MLP step ran 15x slower with them. jitgrad therefore runs
that BLAS single-threaded, except for products big enough that threads pay off even so
(``use_threads_for``); ``JITGRAD_BLAS_THREADS`` caps the count. numpy's BLAS is left alone.
"""

import ctypes
import glob
import os

__all__ = ["set_num_threads", "use_threads_for"]

_MAX_THREADS = int(os.environ.get("JITGRAD_BLAS_THREADS", os.cpu_count() or 1))
# NOTE: measured on 2 cores (float32, one thread / two): 1M multiply-adds 25 / 34 us (threads
# lose), 2.1M 49 / 49, 3.2M 76 / 49, 6.4M 150 / 88, 12.8M (an MLP's 64x784x256) 296 / 159.
# Below 2M one thread is as fast and never fights other pools. (It was 16M, which left
# every product of a batch-64 MLP single-threaded while torch used both cores.)
_THREADED_WORK = 1 << 21
_current = [None]


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
    if _current[0] != n:
        _setter(int(n))
        _current[0] = n
    return True


def use_threads_for(work):
    """Pick the BLAS thread count for a product of ``work`` multiply-adds."""
    set_num_threads(_MAX_THREADS if work >= _THREADED_WORK else 1)


set_num_threads(1)
