"""How many threads jitgrad's big CPU kernels use: its share of the cores, as torch's intra-op pool.

A kernel whose work falls into independent slices (a flat loop over 1-D arrays, blocks of rows,
an outer dim) gives the same result on any split, so it gets a parallel twin
(``codegen.split_source`` and relatives: 'p', 'rp', 'ndp' kernels, ``split_module``) that runs
it on one slice per thread through numba's parallel layer. numba's OpenMP layer keeps its
threads spinning between calls, so a split costs ~1 us; a Python thread pool measured 40-70 us
a call on a 2-vCPU VM (waking a sleeping thread). Without the OpenMP or TBB layer nothing is
split.

``chunks(n)`` says how many slices a loop of ``n`` elements gets: 1 below ``MIN_SPLIT`` or
when splitting is off. ``JITGRAD_NUM_THREADS`` (default: numba's thread count, the CPUs this
process may use) or ``set_num_threads`` set the count, 1 turns splitting off; big matrix
products split over as many (``blas.py``). A forked child runs single-threaded, as torch's
DataLoader workers do: GNU OpenMP does not survive a fork.
"""

import os

import numba
from numba import njit

__all__ = ["MIN_SPLIT", "chunk_bounds", "chunks", "get_num_threads", "set_num_threads",
           "usable"]

# NOTE: measured on 2 cores, float32 multiply (serial / split, us): 16K 2.2 / 2.9,
# 64K 5.8 / 4.8, 256K 88 / 20, 1M 397 / 205. With OMP_WAIT_POLICY=passive the threads sleep
# between calls and waking one costs ~50 us: 64K 6.6 / 60, 256K 94 / 107, 1M 420 / 295.
MIN_SPLIT = 1 << (20 if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive" else 16)

_state = {"threads": int(os.environ.get("JITGRAD_NUM_THREADS", 0))
          or numba.config.NUMBA_NUM_THREADS, "layer_ok": None}


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


def usable():
    """How many threads a split may use now (1 when splitting is off)."""
    if _state["threads"] == 1:
        return 1
    if not (_state["layer_ok"] or _state["layer_ok"] is None and _check_layer()):
        return 1
    return min(_state["threads"], numba.config.NUMBA_NUM_THREADS)  # numba's pool is fixed


def chunks(n, most=None):
    """The number of slices a loop over ``n`` elements runs as (1: call it serially), at most
    ``most`` (the rows or samples there are to split)."""
    if n < MIN_SPLIT:
        return 1
    count = max(1, min(usable(), n // (MIN_SPLIT // 2)))
    return count if most is None else min(count, most)


@njit(cache=True, nogil=True)
def chunk_bounds(c, chunks, n, align):
    """(lo, hi): slice ``c`` of ``range(n)`` cut into ``chunks``, each starting on a multiple of
    ``align`` (64 elements: whole cache lines); the last ones may be short or empty. Every
    split kernel, generated or written by hand, cuts its loop here. (numba's cache of a caller
    does not notice edits to this function: generated kernels are keyed on this file's hash.)"""
    step = (n + align * chunks - 1) // (align * chunks) * align
    lo = min(c * step, n)
    return lo, min(lo + step, n)


def _check_layer():
    """Start numba's thread pool; True when it is OpenMP or TBB. numba's fallback, 'workqueue',
    sleeps between calls (70-140 us a wake-up here) and aborts the process when two threads
    launch at once, so jitgrad then stays serial."""
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        ok = numba.threading_layer() in ("omp", "tbb")
    except (ImportError, ValueError, RuntimeError):  # no layer could start
        ok = False
    _state["layer_ok"] = ok
    return ok


def _single_threaded_after_fork():
    _state["threads"] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_threaded_after_fork)
