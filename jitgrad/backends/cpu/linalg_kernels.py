"""Matrix product kernels: BLAS (``np.dot`` inside numba, needs scipy) for floats."""

import numpy as np
from numba import njit, prange

from jitgrad.backends.cpu import blas  # noqa: F401  (limits BLAS threads before first use)


@njit(cache=True)
def mm(a, b, out):
    """out (n, m) = a (n, k) @ b (k, m); float32/float64, C- or F-contiguous operands."""
    np.dot(a, b, out)


@njit(cache=True, nogil=True, parallel=True)
def mm_p(chunks, a, b, out):
    """``mm`` with ``out``'s rows in ``chunks`` slices on threads, a BLAS call each (blas.py)."""
    n = a.shape[0]
    step = (n + chunks - 1) // chunks
    for c in prange(chunks):
        lo = min(c * step, n)
        hi = min(lo + step, n)
        if hi > lo:
            if a.flags.c_contiguous:
                np.dot(np.ascontiguousarray(a[lo:hi]), b, out[lo:hi])
            else:  # an F-contiguous a's row slice is strided: copy it column by column
                cols = np.empty((a.shape[1], hi - lo), a.dtype)
                for j in range(a.shape[1]):
                    cols[j] = a[lo:hi, j]
                np.dot(cols.T, b, out[lo:hi])


@njit(cache=True, nogil=True, parallel=True)
def mm_cols_p(chunks, a, b, out):
    """``mm`` with ``out``'s columns in ``chunks`` slices on threads: for a few rows times a big
    ``b``, whose packing a row split would repeat on every thread (blas.py)."""
    m = b.shape[1]
    step = (m + chunks - 1) // chunks
    for c in prange(chunks):
        lo = min(c * step, m)
        hi = min(lo + step, m)
        if hi > lo:  # an F-contiguous b's column slice is contiguous; out's is strided
            if b.flags.f_contiguous:
                out[:, lo:hi] = np.dot(a, np.asfortranarray(b[:, lo:hi]))
            else:  # copied row by row
                rows = np.empty((b.shape[0], hi - lo), b.dtype)
                for j in range(b.shape[0]):
                    rows[j] = b[j, lo:hi]
                out[:, lo:hi] = np.dot(a, rows)


@njit(cache=True)
def bmm(a, b, out):
    """out[i] = a[i] @ b[i] for C-contiguous float a (B, n, k), b (B, k, m)."""
    for i in range(a.shape[0]):
        np.dot(a[i], b[i], out[i])


@njit(cache=True)
def bmm_int(a, b, out):
    """Integer out[i] = a[i] @ b[i] (no BLAS for integers)."""
    n_batch, n, k = a.shape
    m = b.shape[2]
    for i in range(n_batch):
        for r in range(n):
            for c in range(m):
                out[i, r, c] = 0
            for j in range(k):
                av = a[i, r, j]
                for c in range(m):
                    out[i, r, c] += av * b[i, j, c]
