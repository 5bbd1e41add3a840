"""numba.cuda kernels: the same families and function names as ``backends/cpu``.

Array arguments arrive as ``array.DeviceArray`` (kernels launch on ``.dev``); scalars as on
the CPU. Launch shapes come from ``runtime.grid``; kernels use grid-stride loops.
"""
