"""The thread count of the BLAS that jitgrad's matmul kernels call (scipy's OpenBLAS).

numba's ``np.dot`` calls scipy's own OpenBLAS, a separate library from numpy's. Its worker
threads spin after each call and fight numba's kernels, torch's pool and other processes for the
cores: on 2 cores an MLP step ran 15x slower with them. jitgrad therefore runs that BLAS on
``JITGRAD_BLAS_THREADS`` threads (default 1); numpy's BLAS is left alone.
"""

import ctypes
import glob
import os

__all__ = ["set_num_threads"]


def _scipy_openblas():
    import scipy

    libs = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def set_num_threads(n):
    """Set the thread count of scipy's OpenBLAS; returns False where there is none to set."""
    setter = _scipy_openblas()
    if setter is None:
        return False
    setter(int(n))
    return True


set_num_threads(os.environ.get("JITGRAD_BLAS_THREADS", "1"))
