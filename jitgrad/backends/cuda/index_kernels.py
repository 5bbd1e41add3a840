"""Gather/scatter kernels over flat positions on CUDA: the functions of ``cpu/index_kernels``.

Positions arrive already resolved (non-negative, in range) on the device, as on the CPU.
"""

from numba import cuda

from jitgrad.backends.cuda import runtime

__all__ = ["put_flat", "take_flat"]


@cuda.jit(cache=True)
def _take(x, positions, out):
    for n in range(cuda.grid(1), positions.size, cuda.gridsize(1)):
        out[n] = x[positions[n]]


@cuda.jit(cache=True)
def _put(x, positions, values):
    for n in range(cuda.grid(1), positions.size, cuda.gridsize(1)):
        x[positions[n]] = values[n]


@cuda.jit(cache=True)
def _put_add(x, positions, values):
    for n in range(cuda.grid(1), positions.size, cuda.gridsize(1)):
        cuda.atomic.add(x, positions[n], values[n])


def take_flat(x, positions, out):
    """out[i] = x[positions[i]]; 1-D arrays."""
    if positions.size:
        _take[runtime.grid(positions.size)](x.dev, positions.dev, out.dev)


def put_flat(x, positions, values, accumulate):
    """x[positions[i]] = values[i] (or += when accumulate); repeated positions add up.

    Without ``accumulate``, which of several values for one position lands is unspecified (as
    on PyTorch CUDA). With it, repeated positions add up through atomics, so x's dtype must be
    int32/int64/uint32/uint64/float32/float64 (what ``cuda.atomic.add`` supports).
    """
    if positions.size:
        kernel = _put_add if accumulate else _put
        kernel[runtime.grid(positions.size)](x.dev, positions.dev, values.dev)
