"""Matrix product kernels: BLAS (scipy's, called as numba calls it: ``blas.gemm``) for floats."""

import numpy as np
from numba import njit, prange

from jitgrad.backends.cpu.blas import gemm  # (limits BLAS threads before first use)
from jitgrad.backends.cpu.threads import chunk_bounds


@njit(cache=True, nogil=True)
def mm(a, b, out):
    """out (n, m) = a (n, k) @ b (k, m); float32/float64 (``blas.gemm``: no operand copied)."""
    gemm(a, b, out, np.empty(0, out.dtype))


@njit(cache=True, nogil=True)
def addmm(a, b, out, bias):
    """out = a @ b + bias on every row (an empty ``bias``: none), one BLAS call."""
    gemm(a, b, out, bias)


@njit(cache=True, nogil=True)
def _addmm_slice(c, chunks, by_cols, a, b, out, bias):
    """Slice ``c`` of ``chunks`` of ``addmm``: a block of ``out``'s rows (columns when
    ``by_cols``), one BLAS call; a column slice of every operand is a strided view, not a copy."""
    n, m = out.shape
    lo, hi = chunk_bounds(c, chunks, m if by_cols else n, 1)
    if hi > lo:
        if by_cols:
            gemm(a, b[:, lo:hi], out[:, lo:hi], bias[lo:hi])
        else:
            gemm(a[lo:hi], b, out[lo:hi], bias)


@njit(cache=True, nogil=True, parallel=True)
def addmm_p(chunks, by_cols, a, b, out, bias):
    """``addmm`` in ``chunks`` slices on threads (blas.py)."""
    for c in prange(chunks):
        _addmm_slice(c, chunks, by_cols, a, b, out, bias)


@njit(cache=True, nogil=True, parallel=True)
def mm_pair_p(chunks1, by_cols1, a1, b1, out1, chunks2, by_cols2, a2, b2, out2):
    """out1 = a1 @ b1 and out2 = a2 @ b2 at once, in ``chunks1`` and ``chunks2`` slices on
    threads: the two gradients of a matrix product, one per thread on two cores."""
    no_bias = np.empty(0, out1.dtype)
    for c in prange(chunks1 + chunks2):
        if c < chunks1:
            _addmm_slice(c, chunks1, by_cols1, a1, b1, out1, no_bias)
        else:
            _addmm_slice(c - chunks1, chunks2, by_cols2, a2, b2, out2, no_bias)


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
