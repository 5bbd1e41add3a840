"""Gather/scatter kernels over flat positions (numpy resolves index semantics into positions)."""

from numba import njit


@njit(cache=True)
def take_flat(x, positions, out):
    """out[i] = x[positions[i]]; 1-D arrays."""
    for i in range(positions.size):
        out[i] = x[positions[i]]


@njit(cache=True)
def put_flat(x, positions, values, accumulate):
    """x[positions[i]] = values[i] (or += when accumulate); repeated positions add up."""
    for i in range(positions.size):
        if accumulate:
            x[positions[i]] += values[i]
        else:
            x[positions[i]] = values[i]
