"""CUDA kernel modules generated from the elementwise formula table (see ``cpu/codegen.py``).

The kernels have the CPU contract ``k(*inputs, out)`` once launched: ``launcher`` wraps each
in a function that picks the grid and passes the DeviceArrays' numba views. Flat kernels walk
``out`` with a grid-stride loop; strided ones walk a 4-D index space.
"""

from jitgrad.backends.cpu.codegen import MAX_DIMS, kernel_name, load_module, masks, scalar_expr
from jitgrad.backends.cuda import runtime

__all__ = ["elementwise_source", "launcher", "load_module"]

_NP_TYPE = {"float32": "np.float32", "float64": "np.float64", "int64": "np.int64",
            "int32": "np.int32", "bool": "np.bool_"}


def _unravel(pad):
    """Source lines turning the flat index ``i`` into the 4-D index i0..i3 of ``out``."""
    lines = [f"{pad}rest = i"]
    for d in range(MAX_DIMS - 1, 0, -1):
        lines += [f"{pad}i{d} = rest % out.shape[{d}]", f"{pad}rest //= out.shape[{d}]"]
    return lines + [f"{pad}i0 = rest"]


def elementwise_source(inputs, formula, dtype_names):
    """Source of a module with a CUDA kernel per (dtype, scalar mask, layout) of a formula."""
    lines = ["import math  # noqa: F401", "import numpy as np", "from numba import cuda",
             "from jitgrad.backends.cuda.scalar import *  # noqa: F403", ""]
    params = ", ".join(f"{name}_" for name in inputs) + ", out"
    idx_nd = ", ".join(f"i{d}" for d in range(MAX_DIMS))
    for dtype_name in dtype_names:
        expr = scalar_expr(formula, dtype_name)
        np_type = _NP_TYPE[dtype_name]
        for mask in masks(len(inputs)):
            scalars = [f"    {n} = {np_type}({n}_)" for n, m in zip(inputs, mask) if m == "s"]
            for layout, index in (("c", "i"), ("nd", idx_nd)):
                lines += ["@cuda.jit(cache=True)",
                          f"def {kernel_name(dtype_name, mask, layout)}({params}):", *scalars,
                          "    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):"]
                if layout == "nd":
                    lines += _unravel("        ")
                lines += [f"        {n} = {n}_[{index}]" for n, m in zip(inputs, mask) if m == "a"]
                lines += [f"        out[{index}] = {expr}", ""]
    return "\n".join(lines) + "\n"


def launcher(kernel):
    """``kernel`` with the CPU calling convention: DeviceArrays and scalars, ``out`` last."""
    grid = runtime.grid

    def launch(*args):
        kernel[grid(args[-1].size)](*[a.dev if hasattr(a, "dev") else a for a in args])

    return launch
