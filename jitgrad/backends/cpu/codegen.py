"""Turn op formulas into numba kernel modules, written to a disk cache and imported.

numba can only cache functions that live in a real ``.py`` file, so generated source is
written under ``JITGRAD_CACHE_DIR`` (file name = content hash) and imported with the
module registered in ``sys.modules`` first (see shared/NUMBA_NOTES.md).
"""

import ast
import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import tempfile
import threading
import warnings

import numpy as np
from numba.core.errors import NumbaIRAssumptionWarning

from jitgrad.backends.cpu import threads
from jitgrad.backends.cpu.vmath import POW_BY_SCALAR

__all__ = ["CPU_TARGET", "QuietFirstCall", "SplitKernels", "VMATH_IMPORT", "WIDE_VECTORS",
           "cache_dir", "elementwise_source", "kernel_name", "load_module", "masks",
           "scalar_expr", "split_module", "split_source", "substitute"]

_NP_TYPE = {"float32": "np.float32", "float64": "np.float64", "int64": "np.int64",
            "int32": "np.int32", "bool": "np.bool_"}
MAX_DIMS = 4  # strided kernels are 4-D; the op layer coalesces or loops over the rest


class QuietFirstCall:
    """A kernel whose first call (where numba compiles it) hides NumbaIRAssumptionWarning.

    numba's pedantic SSA check warns "variable ... is not in scope" when a function inlines
    the same ``inline="always"`` helper twice (two pows in one fused kernel); the code is
    right, and users should not see numba's internal check.
    """

    __slots__ = ("kernel", "_call", "_owner")

    def __init__(self, kernel, owner=None):
        self.kernel = kernel
        self._call = self._first
        self._owner = owner  # a list holding this wrapper: it holds the kernel after the call

    def _first(self, *args):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)
            result = self.kernel(*args)
        self._call = self.kernel
        if self._owner is not None:  # later calls skip this wrapper's frame
            self._owner[self._owner.index(self)] = self.kernel
        return result

    def __call__(self, *args):
        return self._call(*args)


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


_loaded = {}  # module name -> module, once fully executed
_loading = threading.RLock()  # sys.modules holds a module before it finishes executing


def load_module(stem, source):
    """Import ``source`` as a module named after ``stem`` and its content hash."""
    name = f"jitgrad_gen_{stem}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    module = _loaded.get(name)
    if module is not None:
        return module
    with _loading:  # another thread may be executing it: wait, then take it
        module = _loaded.get(name)
        if module is None:
            module = _loaded[name] = _import(name, source)
    return module


def _import(name, source):
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
    """``a ** b`` -> ``pow(a, b)``: vmath's pow, which vectorizes, for numba's scalar libm call.

    The node ``hoisted`` (see ``_hoisted_pow``) reads its exponent from the kernel's ``pow_y``
    instead, and becomes ``special(a)`` when the loop is the one for a POW_BY_SCALAR exponent.
    """

    def __init__(self, hoisted=None, special=None):
        self.hoisted, self.special = hoisted, special

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if not isinstance(node.op, ast.Pow):
            return node
        if node is not self.hoisted:
            special = _POW_FUNCTIONS.get(_constant(node.right))  # a literal exponent: x*x for 2
            if special is not None:
                return ast.Call(ast.Name(special, ast.Load()), [node.left], [])
            return ast.Call(ast.Name("pow", ast.Load()), [node.left, node.right], [])
        if self.special is not None:
            return ast.Call(ast.Name(self.special, ast.Load()), [node.left], [])
        return ast.Call(ast.Name("pow", ast.Load()), [node.left, ast.Name("pow_y", ast.Load())],
                        [])


_POW_FUNCTIONS = {y: f.__name__ for y, f in POW_BY_SCALAR.items()}


def _constant(node):
    """The value of an expression made of number literals only (``2.0 - 1``), else None."""
    if _names(node):
        return None
    try:
        return float(eval(compile(ast.Expression(node), "<exponent>", "eval"), {}))
    except (ArithmeticError, TypeError, ValueError):
        return None


def _names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _hoisted_pow(tree, arrays):
    """The first ``**`` in ``tree`` whose base reads an array input and whose exponent reads
    none (tensor ** scalar), or None."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
                and _names(node.left) & arrays and not _names(node.right) & arrays):
            return node
    return None


def scalar_expr(formula, dtype_name, vector_pow=False, arrays=None, special=None):
    """The formula as numba source, with constants typed for ``dtype_name``.

    ``vector_pow``: float ``**`` calls vmath's ``pow``, or a POW_BY_SCALAR function when the
    exponent is a number literal (the module must import ``VMATH_IMPORT``); integer dtypes keep
    numba's exact integer power. ``arrays``: the names of array inputs; a float
    tensor ** scalar then reads its exponent from ``pow_y`` (see ``_hoisted_pow``), or calls
    ``special`` (a POW_BY_SCALAR function's name) on its base.
    """
    return _scalar_expr(formula, dtype_name, vector_pow, frozenset(arrays or ()), special)


# NOTE: a module's kernels (masks x layouts) share a few expressions; parsing each once keeps
# generating a module's source (needed for its cache name, even when warm) cheap.
@functools.lru_cache(maxsize=4096)
def _scalar_expr(formula, dtype_name, vector_pow, arrays, special):
    tree = ast.parse(formula, mode="eval")
    if vector_pow and dtype_name.startswith("float"):
        hoisted = _hoisted_pow(tree, arrays) if arrays else None
        tree = _VectorPow(hoisted, special).visit(tree)
    return ast.unparse(_TypedConstants(_NP_TYPE[dtype_name]).visit(tree))


class _Rename(ast.NodeTransformer):
    def __init__(self, names):
        self.names = names

    def visit_Name(self, node):
        new = self.names.get(node.id)
        return ast.copy_location(ast.Name(new, ast.Load()), node) if new else node


def substitute(formula, names, dtype_name, vector_pow):
    """``scalar_expr`` of ``formula`` with its names replaced (``names``: name -> source, a
    variable or a number literal, which ``vector_pow`` folds into ``** 2`` -> ``pow_2``)."""
    tree = _Rename(names).visit(ast.parse(formula, mode="eval"))
    return scalar_expr(ast.unparse(tree), dtype_name, vector_pow)


@functools.lru_cache(maxsize=4096)
def _pow_exponent(formula, dtype_name, arrays):
    """The source of a float tensor ** scalar's exponent (see ``_hoisted_pow``), or None."""
    if not dtype_name.startswith("float"):
        return None
    node = _hoisted_pow(ast.parse(formula, mode="eval"), arrays)
    return None if node is None else scalar_expr(ast.unparse(node.right), dtype_name)


def kernel_name(dtype_name, mask, layout):
    """``mask`` has one letter per input: 'a' array, 's' scalar; layout 'c' flat, 'nd' strided,
    'r' rows (CPU: flat arrays read from row starts, so broadcast rows still vectorize), 'p'
    (CPU: 'c' over chunks on threads, see ``split_source``), 'rp' ('r' over blocks of rows) or
    'ndp' ('nd' over slices of an outer dim)."""
    return f"k_{dtype_name}_{mask}_{layout}"


def masks(n):
    masks = [""]
    for _ in range(n):
        masks = [m + c for m in masks for c in "as"]
    return masks  # all-scalar masks are fills


def _scalar_library_hash():
    """Hash of the functions generated kernels call (scalar math, SIMD hints, ``chunk_bounds``):
    numba's cache does not track them."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha1()
    for name in ("scalar.py", "vmath.py", "simd.py", "threads.py"):
        with open(os.path.join(here, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:12]


_SCALAR_HASH = _scalar_library_hash()


# The first line of every generated CPU kernel's body (see simd.py).
WIDE_VECTORS = ["    prefer_wide_vectors()"]


def _cpu_loop(layout, arrays=()):
    """Loop lines opening a CPU kernel body (``arrays``: the array inputs' names), and the
    indentation of the loop's body."""
    if layout == "c":
        return [*WIDE_VECTORS, "    for i in range(out.size):"], "        "
    if layout == "r":  # row views: their index c >= 0 needs no wraparound check, so it vectorizes
        return ([*WIDE_VECTORS, "    for i_row in range(n_rows):",
                 "        out_r = out[i_row * out_rs:]",
                 *[f"        {n}_r = {n}_[i_row * {n}_rs:]" for n in arrays],
                 "        for i_col in range(n_cols):"], "            ")
    lines = [*WIDE_VECTORS, f"    {', '.join(f'n{d}' for d in range(MAX_DIMS))} = out.shape"]
    pad = "    "
    for d in range(MAX_DIMS):
        lines.append(f"{pad}for i{d} in range(n{d}):")
        pad += "    "
    return lines, pad


# what a module of kernels from ``scalar_expr(..., vector_pow=True)`` imports beside scalar.py
VMATH_IMPORT = ("from jitgrad.backends.cpu.vmath import pow, pow_common, pow_uncommon, "
                f"{', '.join(_POW_FUNCTIONS.values())}  # noqa: F401")
CPU_TARGET = ([f"# scalar functions {_SCALAR_HASH}", "import numpy as np",
               "from numba import njit, prange",
               "from jitgrad.backends.cpu.threads import chunk_bounds  # noqa: F401",
               "from jitgrad.backends.cpu.scalar import *  # noqa: F403", VMATH_IMPORT,
               "from jitgrad.backends.cpu.simd import prefer_wide_vectors, shares_memory"
               "  # noqa: F401", ""],
              '@njit(cache=True, error_model="numpy")', _cpu_loop)


# NOTE: only 'p' kernels release the GIL: it costs ~0.2 us a call, a tenth of a small op
_PARALLEL_JIT = '@njit(cache=True, nogil=True, parallel=True, error_model="numpy")'


def _chunk_loop(n, align=1):
    """The lines opening a parallel twin: a prange over ``chunks`` slices ``lo:hi`` of
    ``range(n)`` (``n``: a variable), each starting on a multiple of ``align``."""
    return ["    for c in prange(chunks):",
            f"        lo, hi = chunk_bounds(c, chunks, {n}, {align})"]


def split_source(name, kernel, params, sliced, count=None, rows=False):
    """Lines of ``name(chunks, *params)``: ``kernel(*params)`` run on ``chunks`` slices in parallel.

    ``sliced``: the 1-D array parameters cut to the chunk (of the loop's length, or empty);
    ``count``: a parameter holding that length, which becomes the chunk's (default: the
    length of ``sliced[-1]``). Chunks start on multiples of 64 elements (whole cache lines).
    ``rows``: the arrays are cut along their first dim instead (rows of (O, ...) arrays).
    """
    args = ", ".join(f"{p}[lo:hi]" if p in sliced else "hi - lo" if p == count else p
                     for p in params)
    return [_PARALLEL_JIT, f"def {name}(chunks, {', '.join(params)}):",
            f"    n = {count or sliced[-1] + ('.shape[0]' if rows else '.size')}",
            *_chunk_loop("n", 1 if rows else 64), f"        {kernel}({args})", ""]


def _split_rows_source(name, kernel, params, arrays):
    """Lines of ``name(chunks, *params)``: the 'r' kernel ``kernel`` on ``chunks`` blocks of
    rows in parallel; each array (``x_``, ``out``) starts at its block's first row (``x_rs``,
    ``out_rs``: its row stride, 0 for a broadcast row)."""
    args = ", ".join(f"{p}[lo * {p.rstrip('_')}_rs:]" if p in arrays
                     else "hi - lo" if p == "n_rows" else p for p in params)
    return [_PARALLEL_JIT, f"def {name}(chunks, {', '.join(params)}):",
            *_chunk_loop("n_rows"), f"        {kernel}({args})", ""]


def _split_dims_source(name, kernel, params, arrays):
    """Lines of ``name(chunks, axis, *params)``: the 4-D strided kernel ``kernel`` on ``chunks``
    slices of dim ``axis`` (0-2: the innermost dim stays whole, it is the vectorized loop)."""
    lines = [_PARALLEL_JIT, f"def {name}(chunks, axis, {', '.join(params)}):",
             "    n = out.shape[axis]", *_chunk_loop("n")]
    for axis in range(MAX_DIMS - 1):
        cut = ":, " * axis + "lo:hi"
        args = ", ".join(f"{p}[{cut}]" if p in arrays else p for p in params)
        lines += [f"        {'el' if axis else ''}if axis == {axis}:",
                  f"            {kernel}({args})"]
    return lines + [""]


def split_module(module, kernels, rows=False):
    """The generated module of the 'p' twins (``{kernel}_p``, see ``split_source``) of some
    functions of the kernel module ``module``; ``kernels``: name -> its sliced parameters."""
    digest = hashlib.sha1(_SCALAR_HASH.encode())
    with open(inspect.getsourcefile(module), "rb") as f:  # numba's cache misses callee edits
        digest.update(f.read())
    lines = [f"# {module.__name__} {digest.hexdigest()[:12]}",
             "from numba import njit, prange  # noqa: F401",
             "from jitgrad.backends.cpu.threads import chunk_bounds  # noqa: F401",
             f"from {module.__name__} import {', '.join(kernels)}", ""]
    for name, sliced in kernels.items():
        params = list(inspect.signature(getattr(module, name).py_func).parameters)
        lines += split_source(f"{name}_p", name, params, list(sliced), rows=rows)
    return load_module(module.__name__.rsplit(".", 1)[-1] + "_split", "\n".join(lines) + "\n")


class SplitKernels:
    """Calls of a kernel family's functions (``family``: a ``backends.Family``) on the first
    argument's device. On the CPU, those in ``kernels`` (name -> their array parameters) split
    over threads when the first is big: its elements, or with ``rows`` its first dim (rows of
    (O, ...) arrays); the twins (``split_module``) are generated on first need."""

    def __init__(self, family, kernels, rows=False):
        self.family, self.kernels, self.rows, self.split = family, kernels, rows, None

    def __call__(self, name, *args):
        first = args[0]
        if type(first) is not np.ndarray:
            return getattr(self.family.cuda, name)(*args)
        chunks = threads.chunks(first.size, first.shape[0] if self.rows else None)
        if chunks <= 1:
            return getattr(self.family.cpu, name)(*args)
        if self.split is None:
            self.split = split_module(self.family.cpu, self.kernels, rows=self.rows)
        return getattr(self.split, name + "_p")(chunks, *args)


def elementwise_source(inputs, formula, dtype_names, target=CPU_TARGET):
    """Source of a module with a kernel per (dtype, scalar mask, layout) of an elementwise formula.

    Each kernel has the contract ``k(*inputs, out)``: array inputs have ``out``'s shape (flat
    C-contiguous for 'c', 4-D strided for 'nd'), scalar inputs are Python numbers. CPU modules
    also have 'r' kernels, ``k(*inputs, out, n_rows, n_cols, *row_strides, out_row_stride)``:
    ``out`` and the array inputs are flat, and row r of each starts at ``r * row_stride`` (0
    repeats one row, as a broadcast bias does), so the inner loop is contiguous and vectorizes,
    and 'p' kernels, ``k(chunks, *inputs, out)``: the 'c' kernel on ``chunks`` slices at once.
    ``target`` is (module header lines, decorator, loop(layout, array inputs) -> (lines, body
    indentation)): the CPU's or CUDA's (``backends/cuda/codegen.py``). A CPU kernel of float
    tensor ** scalar tests the exponent once and runs one loop per POW_BY_SCALAR exponent (x*x
    for 2, ...) besides pow's.
    """
    header, decorator, loop = target
    cpu = target is CPU_TARGET
    lines = list(header)
    idx_nd = ", ".join(f"i{d}" for d in range(MAX_DIMS))
    # (layout, extra parameters, element of input n, element of out)
    layouts = [("c", "", lambda n: f"{n}_[i]", "out[i]"),
               ("nd", "", lambda n: f"{n}_[{idx_nd}]", f"out[{idx_nd}]")]
    if cpu:  # rows: flat arrays, each input's row start at r * its row stride (0: broadcast)
        layouts.append(("r", ", n_rows, n_cols, " + ", ".join(f"{n}_rs" for n in inputs)
                        + ", out_rs",
                        lambda n: f"{n}_r[i_col]", "out_r[i_col]"))
    for dtype_name in dtype_names:
        np_type = _NP_TYPE[dtype_name]
        for mask in masks(len(inputs)):
            arrays = {n for n, m in zip(inputs, mask) if m == "a"}
            scalars = [f"    {n} = {np_type}({n}_)" for n, m in zip(inputs, mask) if m == "s"]
            exponent = _pow_exponent(formula, dtype_name, frozenset(arrays)) if cpu else None
            for layout, extra_params, index, out_index in layouts:
                params = ", ".join(f"{name}_" for name in inputs) + ", out" + extra_params
                name = kernel_name(dtype_name, mask, layout)
                # (kernel name, scalar lines, [(condition or None, loop's formula)])
                if exponent is None:
                    kernels = [(name, scalars, [(None, scalar_expr(formula, dtype_name, cpu))])]
                else:
                    # NOTE: pow's loop in a function of its own: in one function with the others
                    # LLVM stops inlining pow's helpers, and the loop no longer vectorizes.
                    general = scalar_expr(formula, dtype_name, True, arrays)
                    special = [(f"    {'el' if k else ''}if pow_y == {np_type}({y!r}):",
                                scalar_expr(formula, dtype_name, True, arrays, f.__name__))
                               for k, (y, f) in enumerate(POW_BY_SCALAR.items())]
                    pow_lines = [*scalars, f"    pow_y = {exponent}"]
                    kernels = [(f"{name}_pow", pow_lines, [(None, general)]),
                               (name, pow_lines, special + [("    else:", None)])]
                if cpu and layout == "c":  # the parallel 'p' kernel: 'c' kernels on chunks
                    lines += split_source(kernel_name(dtype_name, mask, "p"), name,
                                          params.split(", "),
                                          [f"{n}_" for n in arrays] + ["out"])
                if cpu and layout == "nd":  # 'ndp': 'nd' kernels on slices of one outer dim
                    lines += _split_dims_source(kernel_name(dtype_name, mask, "ndp"), name,
                                                params.split(", "),
                                                [f"{n}_" for n in arrays] + ["out"])
                if cpu and layout == "r":  # 'rp': 'r' kernels on blocks of rows
                    lines += _split_rows_source(kernel_name(dtype_name, mask, "rp"), name,
                                                params.split(", "),
                                                [f"{n}_" for n in inputs if n in arrays] + ["out"])
                array_inputs = [n for n in inputs if n in arrays]
                for kname, prologue, loops in kernels:
                    common = (_common_pow(loops[0][1]) if cpu and layout == "c"
                              and dtype_name == "float32" and len(loops) == 1 else None)
                    if common is not None:
                        lines += _common_pow_kernels(
                            decorator, kname, params.split(", "), prologue,
                            _loop_head(loop, layout, array_inputs, index), loops[0][1], common,
                            [f"{n}_" for n in array_inputs])
                        continue
                    lines += [decorator, f"def {kname}({params}):", *prologue]
                    for condition, expr in loops:
                        indent = "    " if condition else ""
                        lines += [condition] if condition else []
                        if expr is None:  # the general loop
                            lines.append(f"        {name}_pow({params})")
                            continue
                        loop_lines, pad = _loop_head(loop, layout, array_inputs, index)
                        lines += [indent + line for line in loop_lines]
                        lines.append(f"{indent}{pad}{out_index} = {expr}")
                    lines.append("")
    return "\n".join(lines) + "\n"


_POW_BLOCK = 2048  # elements per block of a common-case pow loop (see _common_pow_kernels)


@functools.lru_cache(maxsize=4096)
def _common_pow(expr):
    """(``expr`` with vmath's pow calls as pow_common, the sum of their pow_uncommon), or None
    when ``expr`` calls no general pow."""
    tree = ast.parse(expr, mode="eval")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "pow"]
    if not calls:
        return None
    for call in calls:
        call.func.id = "pow_common"
    checks = " + ".join(f"pow_uncommon({ast.unparse(c.args[0])}, {ast.unparse(c.args[1])})"
                        for c in calls)
    return ast.unparse(tree), checks


def _loop_head(loop, layout, array_inputs, index):
    """(lines opening a kernel's loop and reading each array input's element, the indentation
    of the loop's body); ``loop`` and ``index`` as in ``elementwise_source``."""
    loop_lines, pad = loop(layout, array_inputs)
    return [*loop_lines, *(f"{pad}{n} = {index(n)}" for n in array_inputs)], pad


def _common_pow_kernels(decorator, name, params, prologue, head, expr, common, arrays):
    """Lines of the flat float32 kernel ``name`` of a formula ``expr`` that calls pow, as three
    functions: ``name`` runs blocks of the elements through ``name_common`` (pow without its
    special cases, a fifth faster, see vmath._pow32_common), which returns how many of its pow
    calls were outside the common case, and reruns those blocks with ``name_checked`` (the
    plain loop). An output that shares memory with an input (in-place ops) runs
    ``name_checked`` alone, as a rerun would read values already overwritten. ``head``: a
    ``_loop_head``; ``common``: ``_common_pow(expr)``."""
    (common_expr, checks), (loop_lines, pad) = common, head
    sliced = ", ".join(f"{p}[lo:hi]" if p in arrays or p == "out" else p for p in params)
    overlap = " or ".join(f"shares_memory(out, {a})" for a in arrays)
    args = ", ".join(params)
    lines = [decorator, f"def {name}({args}):"]
    if overlap:
        lines += [f"    if {overlap}:", f"        {name}_checked({args})", "        return"]
    lines += ["    n = out.size", f"    for lo in range(0, n, {_POW_BLOCK}):",
              f"        hi = min(lo + {_POW_BLOCK}, n)", f"        if {name}_common({sliced}):",
              f"            {name}_checked({sliced})", ""]
    for suffix, first, body in (("_common", ["    uncommon = 0"],
                                 [f"out[i] = {common_expr}", f"uncommon += {checks}"]),
                                ("_checked", [], [f"out[i] = {expr}"])):
        lines += [decorator, f"def {name}{suffix}({args}):", *prologue, *first, *loop_lines,
                  *(pad + line for line in body)]
        lines += ["    return uncommon", ""] if first else [""]
    return lines
