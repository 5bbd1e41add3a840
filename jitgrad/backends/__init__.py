"""Kernel families, one module per family and device: ``cpu/<family>.py`` and ``cuda/<family>.py``.

Both modules of a family define the same functions with the same arguments; the op layer asks
``KERNELS(data)`` for the module matching where ``data`` lives and calls it. CUDA modules are
imported on first use, so CPU-only programs never import numba.cuda.
"""

import importlib

import numpy as np

__all__ = ["Family"]


class Family:
    """``Family("reduce_kernels")(data)`` is the kernel module for ``data``'s device."""

    __slots__ = ("name", "cpu", "_cuda")

    def __init__(self, name):
        self.name = name
        self.cpu = importlib.import_module(f"jitgrad.backends.cpu.{name}")
        self._cuda = None

    def __call__(self, data):
        if type(data) is np.ndarray:
            return self.cpu
        return self.cuda

    @property
    def cuda(self):
        if self._cuda is None:
            self._cuda = importlib.import_module(f"jitgrad.backends.cuda.{self.name}")
        return self._cuda
