"""CUDA kernel modules generated from the elementwise formula table (see ``cpu/codegen.py``).

The kernels have the CPU contract ``k(*inputs, out)`` once launched: ``launcher`` wraps each
in a function that picks the grid and passes the DeviceArrays' numba views. Flat kernels walk
``out`` with a grid-stride loop; strided ones walk a 4-D index space.
"""

from jitgrad.backends.cpu import codegen as cpu_codegen
from jitgrad.backends.cpu.codegen import MAX_DIMS, load_module
from jitgrad.backends.cuda import runtime

__all__ = ["CUDA_TARGET", "elementwise_source", "launcher", "load_module"]


def _cuda_loop(layout, arrays=()):
    """A grid-stride loop over ``out``; the strided layout unravels ``i`` into i0..i3."""
    lines = ["    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):"]
    if layout == "nd":
        pad = "        "
        lines.append(f"{pad}rest = i")
        for d in range(MAX_DIMS - 1, 0, -1):
            lines += [f"{pad}i{d} = rest % out.shape[{d}]", f"{pad}rest //= out.shape[{d}]"]
        lines.append(f"{pad}i0 = rest")
    return lines, "        "


CUDA_TARGET = (["import math  # noqa: F401", "import numpy as np", "from numba import cuda",
                "from jitgrad.backends.cuda.scalar import *  # noqa: F403", ""],
               "@cuda.jit(cache=True)", _cuda_loop)


def elementwise_source(inputs, formula, dtype_names):
    """Source of a module with a CUDA kernel per (dtype, scalar mask, layout) of a formula."""
    return cpu_codegen.elementwise_source(inputs, formula, dtype_names, CUDA_TARGET)


def launcher(kernel):
    """``kernel`` with the CPU calling convention: DeviceArrays and scalars, ``out`` last."""
    grid = runtime.grid

    def launch(*args):
        kernel[grid(args[-1].size)](*[a.dev if hasattr(a, "dev") else a for a in args])

    return launch
