"""The CUDA runtime as jitgrad sees it: availability, launch shapes and host-transfer counts.

numba.cuda is imported on first use only, so CPU-only programs never pay for it. The simulator
(``NUMBA_ENABLE_CUDASIM=1``, read when numba.cuda is imported) runs every thread in Python, so
launches there use tiny blocks; kernels are written so any block size gives the same result.
"""

import os

__all__ = ["MAX_BLOCKS", "THREADS", "available", "cuda", "grid", "simulator", "transfers",
           "unavailable_reason"]

_SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
# threads per block: a power of two, fixed at import because shared arrays are sized by it
THREADS = 4 if _SIM else 256
MAX_BLOCKS = 2 if _SIM else 4096


class _Transfers:
    """How many copies crossed between host and device (tests check ops make none)."""

    __slots__ = ("to_host", "to_device")

    def __init__(self):
        self.to_host = 0
        self.to_device = 0


transfers = _Transfers()
_cuda = None
_reason = None


def cuda():
    """The ``numba.cuda`` module (imported on first use)."""
    global _cuda
    if _cuda is None:
        from numba import cuda as module

        _cuda = module
    return _cuda


def simulator():
    return _SIM


def available():
    """Whether a CUDA device (or the simulator) can run kernels."""
    global _reason
    if _reason is None:
        try:
            ok = cuda().is_available()
            _reason = "" if ok else "no CUDA GPU or driver was found"
        except Exception as e:  # numba-cuda missing or broken: say why
            _reason = f"numba.cuda could not be imported ({type(e).__name__}: {e})"
    return _reason == ""


def unavailable_reason():
    """Why CUDA cannot be used, as a sentence for error messages ('' when it can)."""
    if available():
        return ""
    return (f"CUDA is not available: {_reason}. Install the GPU extra (pip install "
            "'jitgrad[cuda]') on a machine with an NVIDIA GPU, or set NUMBA_ENABLE_CUDASIM=1 "
            "before importing jitgrad to run CUDA code on numba's CPU simulator")


_grids = {}


def grid(n):
    """(blocks, threads) for a grid-stride loop over ``n`` items, cached per size."""
    g = _grids.get(n)
    if g is None:
        g = (max(1, min(MAX_BLOCKS, -(-n // THREADS))), THREADS)
        if len(_grids) < 4096:
            _grids[n] = g
    return g
