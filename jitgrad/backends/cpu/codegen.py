"""Turn op formulas into numba kernel modules, written to a disk cache and imported.

numba can only cache functions that live in a real ``.py`` file, so generated source is
written under ``JITGRAD_CACHE_DIR`` (file name = content hash) and imported with the
module registered in ``sys.modules`` first (see shared/NUMBA_NOTES.md).
"""

import ast
import hashlib
import importlib.util
import os
import sys
import tempfile

__all__ = ["CPU_TARGET", "cache_dir", "elementwise_source", "kernel_name", "load_module", "masks",
           "scalar_expr"]

_NP_TYPE = {"float32": "np.float32", "float64": "np.float64", "int64": "np.int64",
            "int32": "np.int32", "bool": "np.bool_"}
MAX_DIMS = 4  # strided kernels are 4-D; the op layer coalesces or loops over the rest


def cache_dir():
    """The directory that holds generated kernel modules (and numba's cache beside them)."""
    path = os.environ.get("JITGRAD_CACHE_DIR")
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "jitgrad")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        path = os.path.join(tempfile.gettempdir(), "jitgrad-cache")
        os.makedirs(path, exist_ok=True)
    return path


def load_module(stem, source):
    """Import ``source`` as a module named after ``stem`` and its content hash."""
    name = f"jitgrad_gen_{stem}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    path = os.path.join(cache_dir(), name + ".py")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: numba's cache locator needs it
    spec.loader.exec_module(module)
    return module


class _TypedConstants(ast.NodeTransformer):
    """Wrap numeric literals in the kernel's scalar type: numba would promote float32 to float64."""

    def __init__(self, np_type):
        self.np_type = np_type

    def visit_Constant(self, node):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            return node
        return ast.parse(f"{self.np_type}({node.value!r})", mode="eval").body


class _VectorPow(ast.NodeTransformer):
    """``a ** b`` -> ``pow(a, b)``: vmath's pow, which vectorizes, for numba's scalar libm call."""

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.Call(ast.Name("pow", ast.Load()), [node.left, node.right], [])
        return node


def scalar_expr(formula, dtype_name, vector_pow=False):
    """The formula as numba source, with constants typed for ``dtype_name``.

    ``vector_pow``: float ``**`` calls vmath's ``pow`` (the module must import it); integer
    dtypes keep numba's exact integer power.
    """
    tree = ast.parse(formula, mode="eval")
    if vector_pow and dtype_name.startswith("float"):
        tree = _VectorPow().visit(tree)
    return ast.unparse(_TypedConstants(_NP_TYPE[dtype_name]).visit(tree))


def kernel_name(dtype_name, mask, layout):
    """``mask`` has one letter per input: 'a' array, 's' scalar; layout 'c' flat or 'nd' strided."""
    return f"k_{dtype_name}_{mask}_{layout}"


def masks(n):
    masks = [""]
    for _ in range(n):
        masks = [m + c for m in masks for c in "as"]
    return masks  # all-scalar masks are fills


def _scalar_library_hash():
    """Hash of the scalar functions kernels inline: numba's cache does not track them."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for name in ("scalar.py", "vmath.py"):
        with open(os.path.join(here, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:12]


_SCALAR_HASH = _scalar_library_hash()


def _cpu_loop(layout):
    """Loop lines opening a CPU kernel body, and the indentation of the loop's body."""
    if layout == "c":
        return ["    for i in range(out.size):"], "        "
    lines = [f"    {', '.join(f'n{d}' for d in range(MAX_DIMS))} = out.shape"]
    pad = "    "
    for d in range(MAX_DIMS):
        lines.append(f"{pad}for i{d} in range(n{d}):")
        pad += "    "
    return lines, pad


CPU_TARGET = ([f"# scalar functions {_SCALAR_HASH}", "import numpy as np", "from numba import njit",
               "from jitgrad.backends.cpu.scalar import *  # noqa: F403",
               "from jitgrad.backends.cpu.vmath import pow  # noqa: F401", ""],
              '@njit(cache=True, error_model="numpy")', _cpu_loop)


def elementwise_source(inputs, formula, dtype_names, target=CPU_TARGET):
    """Source of a module with a kernel per (dtype, scalar mask, layout) of an elementwise formula.

    Each kernel has the contract ``k(*inputs, out)``: array inputs have ``out``'s shape (flat
    C-contiguous for 'c', 4-D strided for 'nd'), scalar inputs are Python numbers. ``target``
    is (module header lines, decorator, loop(layout) -> (lines, body indentation)): the CPU's
    or CUDA's (``backends/cuda/codegen.py``).
    """
    header, decorator, loop = target
    lines = list(header)
    params = ", ".join(f"{name}_" for name in inputs) + ", out"
    idx_nd = ", ".join(f"i{d}" for d in range(MAX_DIMS))
    for dtype_name in dtype_names:
        expr = scalar_expr(formula, dtype_name, vector_pow=target is CPU_TARGET)
        np_type = _NP_TYPE[dtype_name]
        for mask in masks(len(inputs)):
            scalars = [f"    {n} = {np_type}({n}_)" for n, m in zip(inputs, mask) if m == "s"]
            for layout, index in (("c", "i"), ("nd", idx_nd)):
                lines += [decorator, f"def {kernel_name(dtype_name, mask, layout)}({params}):",
                          *scalars]
                loop_lines, pad = loop(layout)
                lines += loop_lines
                lines += [f"{pad}{n} = {n}_[{index}]" for n, m in zip(inputs, mask) if m == "a"]
                lines += [f"{pad}out[{index}] = {expr}", ""]
    return "\n".join(lines) + "\n"
