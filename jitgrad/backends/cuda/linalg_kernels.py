"""Matrix product kernels: a shared-memory tiled product over a batch grid dimension.

Operands may have any strides (transposed or batch-broadcast views): kernels index them through
numba's strided arrays, so the op layer needs no contiguous copies. ``mm`` runs the batched
kernel on one-matrix views.
"""

import numpy as np

from jitgrad.backends.cuda import runtime

__all__ = ["bmm", "bmm_int", "mm"]

cuda = runtime.cuda()

# tile edge, a compile-time constant because shared arrays are sized by it; the simulator runs
# each thread as a Python thread, so it gets 4x4 blocks
TILE = 4 if runtime.simulator() else 16
_MAX_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z; larger extents loop


@cuda.jit(device=True, cache=True)
def _tiled_product(a, b, out, sa, sb, zero):
    """out[z] = a[z] @ b[z] for this block's column tile, accumulating in ``zero``'s type.

    Each step the TILE x TILE block stages one tile of ``a`` and one of ``b`` in shared memory
    (zero-padded past the edges), so every operand element is read from global memory once per
    block instead of once per thread.
    """
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n = a.shape[1]
    k = a.shape[2]
    m = b.shape[2]
    col = cuda.blockIdx.x * TILE + tx
    for z in range(cuda.blockIdx.z, a.shape[0], cuda.gridDim.z):
        for row0 in range(cuda.blockIdx.y * TILE, n, cuda.gridDim.y * TILE):
            row = row0 + ty
            acc = zero
            for k0 in range(0, k, TILE):
                if row < n and k0 + tx < k:
                    sa[ty, tx] = a[z, row, k0 + tx]
                else:
                    sa[ty, tx] = 0
                if k0 + ty < k and col < m:
                    sb[ty, tx] = b[z, k0 + ty, col]
                else:
                    sb[ty, tx] = 0
                cuda.syncthreads()
                for j in range(TILE):
                    acc += sa[ty, j] * sb[j, tx]
                cuda.syncthreads()
            if row < n and col < m:
                out[z, row, col] = acc


@cuda.jit(cache=True)
def _bmm_float(a, b, out, zero):
    """Float product: tiles keep the operands' dtype, so float32 stays float32 (as BLAS)."""
    sa = cuda.shared.array((TILE, TILE), a.dtype)
    sb = cuda.shared.array((TILE, TILE), b.dtype)
    _tiled_product(a, b, out, sa, sb, zero)


@cuda.jit(cache=True)
def _bmm_int(a, b, out, zero):
    """Integer product: int64 tiles make every product and sum exact int64 arithmetic."""
    sa = cuda.shared.array((TILE, TILE), np.int64)
    sb = cuda.shared.array((TILE, TILE), np.int64)
    _tiled_product(a, b, out, sa, sb, zero)


def _launch(kernel, a, b, out, zero):
    n_batch, n, m = out.shape
    if out.size == 0:
        return
    blocks = (-(-m // TILE), min(-(-n // TILE), _MAX_GRID_YZ), min(n_batch, _MAX_GRID_YZ))
    kernel[blocks, (TILE, TILE)](a.dev, b.dev, out.dev, zero)


def mm(a, b, out):
    """out (n, m) = a (n, k) @ b (k, m); float32/float64, any strides."""
    _launch(_bmm_float, a[None], b[None], out[None], out.dtype.type(0))


def bmm(a, b, out):
    """out[i] = a[i] @ b[i] for float a (B, n, k), b (B, k, m); any strides."""
    _launch(_bmm_float, a, b, out, out.dtype.type(0))


def bmm_int(a, b, out):
    """Integer out[i] = a[i] @ b[i], accumulated exactly in int64 (wrapping to out's dtype)."""
    _launch(_bmm_int, a, b, out, np.int64(0))
