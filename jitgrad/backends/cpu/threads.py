"""How many threads jitgrad's big CPU kernels use: its share of the cores, as torch's intra-op pool.

A flat kernel (one loop over the elements of 1-D arrays) gives the same result on any split of
its range, so generated modules pair each with a 'p' kernel (``codegen.split_source``) that runs
it on one slice per thread through numba's parallel layer. numba's OpenMP layer keeps its threads
spinning between calls, so a split costs ~1 us; a Python thread pool measured 40-70 us a call
on a 2-vCPU VM (waking a sleeping thread), and numba's own 'workqueue' layer 70-140 us.

``chunks(n)`` says how many slices a loop of ``n`` elements gets: 1 below ``MIN_SPLIT`` or
when splitting is off. ``JITGRAD_NUM_THREADS`` (default: numba's thread count, the CPUs this
process may use) or ``set_num_threads`` set the count, 1 turns splitting off; the BLAS
(``blas.py``) uses as many. A forked child runs single-threaded, as torch's DataLoader workers
do: GNU OpenMP does not survive a fork.
"""

import os

import numba

__all__ = ["MIN_SPLIT", "check_layer", "chunks", "get_num_threads", "max_threads",
           "set_num_threads"]

# NOTE: measured on 2 cores, float32 multiply (serial / split, us): 16K 2.2 / 2.9,
# 64K 5.8 / 4.8, 256K 88 / 20, 1M 397 / 205.
MIN_SPLIT = 1 << 16
# without the OpenMP or TBB layer numba wakes sleeping threads: only very long loops gain
_SLOW_LAYER_MIN_SPLIT = 1 << 20

_state = {"threads": int(os.environ.get("JITGRAD_NUM_THREADS", 0))
          or numba.config.NUMBA_NUM_THREADS, "min_split": MIN_SPLIT, "layer_checked": False}


def get_num_threads():
    """The number of threads jitgrad's CPU kernels use (``torch.get_num_threads``)."""
    return _state["threads"]


def set_num_threads(n):
    """Use ``n`` threads for big CPU kernels and BLAS products (``torch.set_num_threads``)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(n).__name__}")
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")
    _state["threads"] = n


def max_threads():
    """The most threads a parallel kernel can use (numba's pool, fixed at start-up)."""
    return numba.config.NUMBA_NUM_THREADS


def chunks(n):
    """The number of slices a flat loop over ``n`` elements runs as (1: call it serially)."""
    if n < _state["min_split"]:
        return 1
    return max(1, min(_state["threads"], max_threads(), n // (MIN_SPLIT // 2)))


def check_layer():
    """After the first parallel call: raise the split threshold if numba chose a slow layer."""
    if not _state["layer_checked"]:
        _state["layer_checked"] = True
        if numba.threading_layer() not in ("omp", "tbb"):
            _state["min_split"] = _SLOW_LAYER_MIN_SPLIT


def _single_threaded_after_fork():
    _state["threads"] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_threaded_after_fork)
