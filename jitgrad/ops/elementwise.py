"""Elementwise ops: dtype promotion, broadcasting, kernel launch and the generic backward node.

Each entry of ``ELEMENTWISE`` becomes an ``Elementwise`` spec whose kernels are generated on
first use. Derivative formulas become specs of their own (one fused kernel per formula) and,
under ``create_graph``, are evaluated on Tensors so the backward is differentiable again.
"""

import ast

import numpy as np

from jitgrad import dtypes
from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class
from jitgrad.backends.cpu import codegen, threads
from jitgrad.ops import _storage
from jitgrad.ops._checks import broadcast_shapes, shape_str
from jitgrad.ops._views import strided_view
from jitgrad.ops.elementwise_table import ELEMENTWISE
from jitgrad.tensor import Tensor

_GRAD = grad_mode._state  # thread-local grad mode, read directly on hot paths

__all__ = ["SPECS", "apply", "apply_", "apply_binary", "cast", "contiguous", "copy_into", "fill",
           "scalar_value"]

_DTYPES_BY_KIND = {
    "arith": ("float32", "float64", "int64", "int32"),
    "float": ("float32", "float64"),
    "compare": ("float32", "float64", "int64", "int32", "bool"),
    "logical": ("bool",),
    "cast": ("float32", "float64", "int64", "int32", "bool"),
}
_SCALAR_TYPES = (bool, int, float)
NODE_CLASSES = set()  # the backward node classes of every Elementwise spec


def _names(formula):
    return {n.id for n in ast.walk(ast.parse(formula, mode="eval")) if isinstance(n, ast.Name)}


class Elementwise:
    """One elementwise formula and its lazily generated kernels."""

    __slots__ = ("name", "inputs", "formula", "kind", "grads", "derivatives", "node_cls",
                 "overload_nodes", "saves_result", "read_inputs", "plans", "_kernels", "_modules",
                 "_cuda_kernels", "_cuda_modules")

    def __init__(self, name, inputs, formula, kind, grads=None, overloads=None):
        self.name = name
        self.inputs = tuple(inputs)
        self.formula = formula
        self.kind = kind
        self.grads = grads or {}
        self.plans = {}  # argument signature -> _Plan
        self._kernels = {}
        self._modules = {}  # dtype name -> generated module
        self._cuda_kernels = {}
        self._cuda_modules = {}
        used = set().union(*(_names(f) for f in self.grads.values())) if self.grads else set()
        self.saves_result = "result" in used
        self.read_inputs = tuple(i for i, n in enumerate(self.inputs) if n in used)
        self.node_cls = None
        self.derivatives = tuple(_Derivative(self, n, self.grads[n]) if n in self.grads else None
                                 for n in self.inputs)
        self.overload_nodes = {}
        if self.grads:
            camel = "".join(p.capitalize() for p in name.split("_"))
            self.node_cls = self._node_class(f"{camel}Backward0", None)
            for mask, node_name in (overloads or {}).items():
                tensors = tuple(i for i, m in enumerate(mask) if m == "a")
                self.overload_nodes[mask] = self._node_class(
                    node_name, None if len(tensors) == len(mask) else tensors)

    def _node_class(self, node_name, edge_inputs):
        cls = node_class(node_name, _backward)
        NODE_CLASSES.add(cls)
        cls.spec = self
        cls.edge_inputs = edge_inputs  # inputs that have graph edges; None means all
        # formulas that read values free them after the pass; others keep shapes and dtypes
        cls.release = _free_saved if (self.read_inputs or self.saves_result) else _keep_metadata
        return cls

    # NOTE: one kernel module per dtype: a process loads (and numba builds dispatchers for)
    # only the dtypes it uses, which is most of a warm start's cost per op.
    def kernel(self, dtype_name, mask, layout):
        key = (dtype_name, mask, layout)
        k = self._kernels.get(key)
        if k is None:
            module = self._modules.get(dtype_name)
            if module is None:
                source = codegen.elementwise_source(self.inputs, self.formula, (dtype_name,))
                module = self._modules[dtype_name] = codegen.load_module(
                    f"{self.name}_{dtype_name}", source)
            k = self._kernels[key] = getattr(module, codegen.kernel_name(dtype_name, mask, layout))
        return k

    def cuda_kernel(self, dtype_name, mask, layout):
        """The CUDA kernel for a key, wrapped to take DeviceArrays like the CPU kernel."""
        key = (dtype_name, mask, layout)
        k = self._cuda_kernels.get(key)
        if k is None:
            from jitgrad.backends.cuda import codegen as cuda_codegen

            module = self._cuda_modules.get(dtype_name)
            if module is None:
                source = cuda_codegen.elementwise_source(self.inputs, self.formula, (dtype_name,))
                module = self._cuda_modules[dtype_name] = cuda_codegen.load_module(
                    f"cuda_{self.name}_{dtype_name}", source)
            k = self._cuda_kernels[key] = cuda_codegen.launcher(
                getattr(module, codegen.kernel_name(dtype_name, mask, layout)))
        return k


class _Plan:
    """How to run a spec for one argument signature: compute dtype, output dtype, casts."""

    __slots__ = ("compute", "out_dtype", "mask", "casts", "node_cls", "flat_kernel", "on_cuda",
                 "tensors", "edges", "read_tensors", "derivative_kernels", "fused_entries")

    def __init__(self, spec, args, on_cuda):
        self.compute = _compute_dtype(spec, args)
        self.out_dtype = np.dtype(np.bool_) if spec.kind == "compare" else self.compute.np
        self.mask = "".join("a" if isinstance(a, Tensor) else "s" for a in args)
        self.node_cls = spec.overload_nodes.get(self.mask, spec.node_cls)
        self.on_cuda = on_cuda
        # precomputed for recording a node, so ``apply`` needs no isinstance tests per call:
        # which arguments are Tensors, which get graph edges, which the backward reads
        self.tensors = tuple(i for i, m in enumerate(self.mask) if m == "a")
        edge_inputs = range(len(args)) if self.node_cls is None or \
            self.node_cls.edge_inputs is None else self.node_cls.edge_inputs
        self.edges = tuple((i, self.mask[i] == "a") for i in edge_inputs)
        self.read_tensors = tuple(i for i in spec.read_inputs if self.mask[i] == "a")
        self.flat_kernel = (spec.cuda_kernel if on_cuda else spec.kernel)(
            self.compute.name, self.mask, "c")
        casts = []
        for name, a in zip(spec.inputs, args):
            is_bool = name == "c" or spec.kind == "logical"
            want = np.dtype(np.bool_) if is_bool else self.compute.np
            casts.append(want if isinstance(a, Tensor) and a._data.dtype != want else None)
        self.casts = tuple(casts) if any(c is not None for c in casts) else None
        # per input, the derivative's flat CPU kernel for this signature (found on first use);
        # only plans without casts, over floats, take the backward's flat path
        self.derivative_kernels = [None] * len(args) if (
            self.casts is None and not on_cuda and self.compute.is_floating_point) else None
        self.fused_entries = {}  # edge targets -> (key code, values read): fused_backward

    def derivative_kernel(self, derivative, i):
        """The flat kernel of ``derivative`` (of input ``i``) for this plan's dtypes and mask."""
        k = self.derivative_kernels[i]
        if k is None:
            k = self.derivative_kernels[i] = derivative.spec.kernel(
                self.compute.name, self.derivative_mask(derivative), "c")
        return k

    def derivative_mask(self, derivative):
        """The scalar mask of ``derivative``'s kernel: the gradient, then the values it reads."""
        return "a" + "".join("a" if j < 0 else self.mask[j] for j in derivative.arg_index)


class _Derivative:
    """d(op)/d(input): a fused kernel, or under ``create_graph`` a Tensor expression."""

    __slots__ = ("identity", "spec", "arg_index", "graph_fn")

    def __init__(self, op, input_name, formula):
        self.identity = formula == "g"
        used = _names(formula) & (set(op.inputs) | {"result"})
        names = tuple(n for n in (*op.inputs, "result") if n in used)
        self.arg_index = tuple(op.inputs.index(n) if n != "result" else -1 for n in names)
        self.spec = Elementwise(f"{op.name}_backward_{input_name}", ("g", *names), formula, "float")
        self.graph_fn = eval(f"lambda {', '.join(('g',) + names)}: {formula}", _GRAPH_NAMESPACE)

    def __call__(self, g, values, result):
        if self.identity:
            return g
        args = [g]
        for i in self.arg_index:
            args.append(values[i] if i >= 0 else result)
        if _GRAD.enabled:
            # numbers become 0-d tensors so functions like log(2.0) stay Tensor ops
            return self.graph_fn(*[a if isinstance(a, Tensor) else
                                   Tensor._wrap(np.array(a, g._data.dtype)) for a in args])
        out = apply(self.spec, args)
        out._fresh = True  # a new buffer only the engine holds
        return out


_GRAPH_NAMESPACE = {}  # filled by jitgrad.ops.methods with the public Tensor functions


class UnsupportedOperand(TypeError):
    """An argument that is neither a Tensor nor a number (operators return NotImplemented)."""


def scalar_value(value):
    """A Python scalar from an int/float/bool or numpy scalar; TypeError otherwise."""
    if isinstance(value, _SCALAR_TYPES):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise UnsupportedOperand(f"expected a Tensor or a number, got {type(value).__name__}")


def _category(d):
    return 2 if d.is_floating_point else (0 if d is dtypes.bool_ else 1)


def _compute_dtype(spec, args):
    """PyTorch's result_type: dimensioned tensors > zero-dim tensors > Python scalars."""
    dim_dt = zero_dt = scalar_dt = None
    for name, a in zip(spec.inputs, args):
        if name == "c":
            continue
        if isinstance(a, Tensor):
            d = dtypes.from_numpy_dtype(a._data.dtype)
            if a._data.ndim:
                dim_dt = d if dim_dt is None else dtypes.promote(dim_dt, d)
            else:
                zero_dt = d if zero_dt is None else dtypes.promote(zero_dt, d)
        else:
            d = dtypes.scalar_dtype(a)
            scalar_dt = d if scalar_dt is None else dtypes.promote(scalar_dt, d)
    result = dim_dt
    for d in (zero_dt, scalar_dt):
        if d is not None and (result is None or _category(d) > _category(result)):
            result = d if d is zero_dt or d is dtypes.bool_ else (
                dtypes.get_default_dtype() if d.is_floating_point else dtypes.int64)
    if spec.kind == "float" and not result.is_floating_point:
        return dtypes.get_default_dtype()
    if spec.kind == "logical":
        return dtypes.bool_
    return result


def _coalesced(arrays, shape):
    """(sizes, byte strides per array) of ``arrays`` broadcast to ``shape``: size-1 dims dropped
    and neighbouring dims merged where every array is contiguous across them."""
    ndim = len(shape)
    metas = [(ndim - a.ndim, a.shape, a.strides) for a in arrays]
    sizes = []
    strides = [[] for _ in arrays]
    for d in range(ndim):
        n = shape[d]
        if n == 1:
            continue
        new = [0 if d < pad or dims[d - pad] == 1 else steps[d - pad]
               for pad, dims, steps in metas]
        if sizes and all(st[-1] == s * n for st, s in zip(strides, new)):
            sizes[-1] *= n  # contiguous across the previous dim for every array: one dim
            for st, s in zip(strides, new):
                st[-1] = s
        else:
            sizes.append(n)
            for st, s in zip(strides, new):
                st.append(s)
    return sizes, strides


def _strided(arrays, shape):
    """4-D strided views of ``arrays`` broadcast to ``shape``, dims coalesced; a list of chunks."""
    sizes, strides = _coalesced(arrays, shape)
    extra = max(len(sizes) - codegen.MAX_DIMS, 0)
    pad = [1] * (codegen.MAX_DIMS - len(sizes))
    full = [strided_view(a, tuple(pad + sizes), tuple([0] * len(pad) + st))
            for a, st in zip(arrays, strides)]
    if not extra:
        return [full]
    return [[f[lead] for f in full] for lead in np.ndindex(*sizes[:extra])]


def _rows(arrays, shape):
    """For the 'r' kernels: (rows, cols, flat views, row strides in elements), or None.

    Applies when, dims coalesced, every array is contiguous along the last dim and steps a
    whole number of non-negative elements from row to row (0 for a broadcast row, as a bias).
    """
    fast = _trailing_rows(arrays, shape)
    if fast is not None:
        return fast
    sizes, strides = _coalesced(arrays, shape)
    if len(sizes) > 2:
        return None
    n_rows, n_cols = (1, *sizes) if len(sizes) == 1 else sizes
    views, row_strides = [], []
    for a, st in zip(arrays, strides):
        item = a.itemsize
        inner, outer = st[-1], (st[0] if len(st) == 2 else 0)
        if inner != item or outer < 0 or outer % item:
            return None
        row = outer // item
        views.append(strided_view(a, ((n_rows - 1) * row + n_cols,), (item,)))
        row_strides.append(row)
    return n_rows, n_cols, views, row_strides


def _trailing_rows(arrays, shape):
    """``_rows`` without coalescing, for contiguous arrays that are either whole or one block
    of trailing dims repeated over the leading ones (a bias row); else None."""
    n_cols = None
    for a in arrays:
        dims = a.shape
        if dims == shape:
            continue
        lead = 0
        while lead < len(dims) and dims[lead] == 1:
            lead += 1
        dims = dims[lead:]
        if not dims or shape[len(shape) - len(dims):] != dims:
            return None
        size = a.size
        if n_cols is None:
            n_cols = size
        elif size != n_cols:
            return None
    if n_cols is None:
        return None
    views, row_strides = [], []
    for a in arrays:
        if not a.flags.c_contiguous:
            return None
        views.append(a.ravel())
        row_strides.append(0 if a.size == n_cols and a.shape != shape else n_cols)
    return arrays[-1].size // n_cols, n_cols, views, row_strides


def _launch(spec, dtype_name, values, mask, out):
    """Run the kernel: flat when every array matches ``out`` and is contiguous, else strided.

    An array input that holds one value broadcast everywhere (size 1 or all strides 0) is passed
    as a scalar, so ``x * tensor(2.)`` and expanded gradients take the flat path.
    """
    shape = out.shape
    if not out.size:
        return
    if type(out) is not np.ndarray:
        return _launch_cuda(spec, dtype_name, values, mask, out)
    flat = out.flags.c_contiguous
    args = list(values)
    kind = mask
    for i, v in enumerate(values):
        if type(v) is np.ndarray:
            if v.shape == shape and v.flags.c_contiguous:
                args[i] = v.reshape(-1)
            elif v.size == 1 or not any(v.strides):
                args[i] = v.item(0)
                kind = kind[:i] + "s" + kind[i + 1:]
            else:
                flat = False
    if flat:
        kernel = spec._kernels.get((dtype_name, kind, "c")) or spec.kernel(dtype_name, kind, "c")
        _run_flat(kernel, spec, dtype_name, kind, [*args, out.reshape(-1)])
        return
    args = [v if type(v) is not np.ndarray or v.ndim == len(shape) else
            values[i] for i, v in enumerate(args)]  # undo flattening for the strided kernel
    arrays = [v for v in args if type(v) is np.ndarray]
    rows = _rows([*arrays, out], shape)
    if rows is not None:
        _run_rows(spec, dtype_name, kind, args, rows)
        return
    kernel = spec.kernel(dtype_name, kind, "nd")
    for chunk in _strided([*arrays, out], shape):
        it = iter(chunk)
        nd_args = [next(it) if type(v) is np.ndarray else v for v in args]
        view = chunk[-1]
        axis = _split_axis(view.shape)  # the longest outer dim, split over threads
        chunks = threads.chunks(view.size, view.shape[axis])
        if chunks > 1:
            spec.kernel(dtype_name, kind, "ndp")(chunks, axis, *nd_args, view)
        else:
            kernel(*nd_args, view)


def _split_axis(shape4):
    """Of a 4-D kernel view's outer dims (the innermost is the vectorized loop), the longest."""
    return max(range(3), key=lambda d: shape4[d])


def _launch_cuda(spec, dtype_name, values, mask, out):
    """``_launch`` for DeviceArrays: single values stay arrays, since reading one is a copy."""
    shape = out.shape
    arrays = [v for v in values if hasattr(v, "dev")]
    if out.flags.c_contiguous and all(v.shape == shape and v.flags.c_contiguous for v in arrays):
        spec.cuda_kernel(dtype_name, mask, "c")(
            *[v.ravel() if hasattr(v, "dev") else v for v in values], out.ravel())
        return
    kernel = spec.cuda_kernel(dtype_name, mask, "nd")
    for chunk in _strided([*arrays, out], shape):
        it = iter(chunk)
        kernel(*[next(it) if hasattr(v, "dev") else v for v in values], chunk[-1])


_SCALAR_SIG = {float: "F", int: "I", bool: "B"}


def _prepare(spec, args):
    """Validate and cast the inputs; returns (plan, values, broadcast shape, args, flat).

    ``flat``: every array input has the broadcast shape and is C-contiguous.
    """
    sig = ""
    values = []
    shape = None
    flat = True
    cuda = False
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            values.append(d)
            sig += d.dtype.char if d.ndim else d.dtype.char + "0"
            if type(d) is not np.ndarray:
                sig += "@"
                cuda = True
            if shape is None:
                shape = d.shape
            elif d.shape != shape:
                flat = False
            if flat and not d.flags.c_contiguous:  # ``flags`` builds an object: only when needed
                flat = False
        else:
            code = _SCALAR_SIG.get(type(a))
            if code is None:
                return _prepare(spec, tuple(a if isinstance(a, Tensor) else scalar_value(a)
                                            for a in args))
            values.append(a)
            sig += code
    if cuda:
        values = _on_one_device(values)
    plan = spec.plans.get(sig)
    if plan is None:
        plan = spec.plans[sig] = _Plan(spec, args, cuda)
    if plan.casts is not None:
        values = [v if c is None else cast(v, c) for v, c in zip(values, plan.casts)]
    if not flat:
        shapes = [v.shape for v in values if hasattr(v, "shape")]
        shape = shapes[0] if all(s == shapes[0] for s in shapes) else broadcast_shapes(*shapes)
    return plan, values, shape, args, flat


def _on_one_device(values):
    """CUDA operands, with 0-d CPU tensors copied over as PyTorch allows; else a device error."""
    out = []
    for v in values:
        if type(v) is np.ndarray:
            if v.ndim:
                _storage.check_same_device(*[a for a in values if hasattr(a, "shape")])
            v = _storage.move(v, _storage.CUDA0)
        out.append(v)
    return out


def fill(out, value):
    """Write the number ``value`` into every element of the array ``out``."""
    _launch(SPECS["copy"], _kernel_dtype(out), [value], "s", out)


def copy_into(dst, src):
    """Write ``src`` (broadcast to ``dst``'s shape, any dtype) into the array ``dst``."""
    _launch(SPECS["copy"], _kernel_dtype(src), [src], "a", dst)


def _kernel_dtype(array):
    return "bool" if array.dtype.kind == "b" else array.dtype.name


def contiguous(array):
    """``array`` itself when C-contiguous, else a contiguous copy through the copy kernel."""
    return array if array.flags.c_contiguous else cast(array, array.dtype)


def cast(array, np_dtype):
    """A new C-contiguous array of ``array``'s values in ``np_dtype`` (the ``copy`` kernel)."""
    out = _storage.empty(array.shape, np_dtype, array)
    copy_into(out, array)
    return out


def apply(spec, args):
    """``spec`` applied out of place to Tensors / scalars, recording a node if grad is needed.

    The common cases (CPU tensors of one shape, contiguous, needing no casts, and Python
    numbers; or such tensors where some repeat over leading dims, as a bias row does) are
    checked and run inline here: on tiny tensors each extra call is a visible cost.
    """
    sig = ""
    shape = None
    broadcast = False
    flat_values = []
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            if type(d) is not np.ndarray or not d.flags.c_contiguous:
                break
            if shape is None:
                shape = d.shape
            elif d.shape != shape:
                broadcast = True
            sig += d.dtype.char if d.ndim else d.dtype.char + "0"
            flat_values.append(d.ravel())
        else:
            code = _SCALAR_SIG.get(type(a))
            if code is None:
                break
            sig += code
            flat_values.append(a)
    else:
        plan = spec.plans.get(sig)
        if plan is not None and plan.casts is None and broadcast:
            out = _apply_rows(spec, plan, args, flat_values)
            if out is not None:
                return out
        elif plan is not None and plan.casts is None and shape is not None:
            out = np.empty(shape, plan.out_dtype)
            out_flat = out.ravel()
            if out.size < threads.MIN_SPLIT:
                plan.flat_kernel(*flat_values, out_flat)
            else:
                _run_flat(plan.flat_kernel, spec, plan.compute.name, plan.mask,
                          [*flat_values, out_flat])
            if spec.node_cls is not None and _GRAD.enabled:
                for i in plan.tensors:
                    if args[i]._requires_grad:
                        flat_values.append(out_flat if spec.saves_result else None)
                        return _record(spec, plan, args, None, out, flat_values)
            return Tensor._wrap(out)
    return _apply_general(spec, args)


def apply_binary(spec, a, b):
    """``apply(spec, (a, b))`` for a Tensor ``a``: the entry of the operators (``x + 2``,
    ``y * y``). Their common cases, a contiguous CPU tensor with a Python number or with a
    contiguous tensor of its shape, go straight to the flat kernel: ``apply``'s loop over
    arguments took a tenth of a tiny graph's step."""
    d = a._data
    if type(d) is np.ndarray and d.ndim and d.flags.c_contiguous:
        code = _SCALAR_SIG.get(type(b))
        plan = None
        if code is not None:
            plan = spec.plans.get(d.dtype.char + code)
            flat, other = d.ravel(), b
            needs = False
        elif isinstance(b, Tensor):
            e = b._data
            if type(e) is np.ndarray and e.shape == d.shape and e.flags.c_contiguous:
                plan = spec.plans.get(d.dtype.char + e.dtype.char)
                flat = d.ravel()
                other = flat if e is d else e.ravel()
                needs = b._requires_grad
        if plan is not None and plan.casts is None:
            out = np.empty(d.shape, plan.out_dtype)
            out_flat = out.ravel()
            if out.size < threads.MIN_SPLIT:
                plan.flat_kernel(flat, other, out_flat)
            else:
                _run_flat(plan.flat_kernel, spec, plan.compute.name, plan.mask,
                          [flat, other, out_flat])
            if spec.node_cls is not None and _GRAD.enabled and (a._requires_grad or needs):
                return _record(spec, plan, (a, b), None, out,
                               [flat, other, out_flat if spec.saves_result else None])
            return Tensor._wrap(out)
    return apply(spec, (a, b))


def _run_flat(kernel, spec, dtype_name, mask, args):
    """The flat ``kernel`` (``spec``'s 'c' kernel for ``dtype_name`` and ``mask``) on ``args``
    (the inputs, then the output), its 'p' twin on threads when the output is long. The
    hottest callers (``apply``'s inline path, the flat backward) test ``threads.MIN_SPLIT``
    first, saving this call on tiny tensors."""
    n_chunks = threads.chunks(args[-1].size)
    if n_chunks == 1:
        kernel(*args)
    else:
        spec.kernel(dtype_name, mask, "p")(n_chunks, *args)


def _apply_rows(spec, plan, args, flat_values):
    """``apply`` through the 'r' kernel when every tensor is whole or one block of trailing dims
    of the largest (``_trailing_rows``); None to take the general path."""
    shape = max((args[i]._data for i in plan.tensors), key=lambda d: d.size).shape
    out = np.empty(shape, plan.out_dtype)
    rows = _trailing_rows([*(args[i]._data for i in plan.tensors), out], shape)
    if rows is None:
        return None
    _run_rows(spec, plan.compute.name, plan.mask, flat_values, rows)
    if spec.node_cls is not None and _GRAD.enabled:
        for i in plan.tensors:
            if args[i]._requires_grad:
                return _record(spec, plan, args, None, out, None)
    return Tensor._wrap(out)


def _run_rows(spec, dtype_name, mask, values, rows):
    """The 'r' kernel for ``mask`` on ``values`` (its 'a' entries replaced by the flat views of
    ``rows``, a ``_rows`` result for those arrays and the output, numbers passed as they are)."""
    n_rows, n_cols, views, row_strides = rows
    it = iter(zip(views, row_strides))
    kernel_args, strides = [], []
    for v, m in zip(values, mask):
        if m == "a":
            view, row = next(it)
            kernel_args.append(view)
            strides.append(row)
        else:
            kernel_args.append(v)
            strides.append(0)
    chunks = threads.chunks(n_rows * n_cols, n_rows)
    if chunks > 1:  # blocks of rows on threads
        spec.kernel(dtype_name, mask, "rp")(chunks, *kernel_args, views[-1], n_rows, n_cols,
                                            *strides, row_strides[-1])
    else:
        spec.kernel(dtype_name, mask, "r")(*kernel_args, views[-1], n_rows, n_cols, *strides,
                                           row_strides[-1])


def _apply_general(spec, args):
    """``apply`` for every case: casts, broadcasting, strided inputs, CUDA, numpy scalars."""
    plan, values, shape, args, flat = _prepare(spec, args)
    flat_values = None
    if plan.on_cuda:
        out = _storage.empty(shape, plan.out_dtype, _storage.CUDA0)
        if flat and out.size:  # the plan's launcher: no kernel lookup per call
            plan.flat_kernel(*[v.ravel() if hasattr(v, "dev") else v for v in values],
                             out.ravel())
        else:
            _launch(spec, plan.compute.name, values, plan.mask, out)
    elif flat:
        out = np.empty(shape, plan.out_dtype)
        # a loop over the plan's tensor positions, not a comprehension: on tiny tensors the
        # comprehension's own frame costs as much as the kernel
        flat_values = list(values)
        for i in plan.tensors:
            flat_values[i] = flat_values[i].ravel()
        out_flat = out.ravel()
        _run_flat(plan.flat_kernel, spec, plan.compute.name, plan.mask, [*flat_values, out_flat])
        flat_values.append(out_flat if spec.saves_result else None)
    else:
        out = np.empty(shape, plan.out_dtype)
        _launch(spec, plan.compute.name, values, plan.mask, out)
    if spec.node_cls is not None and _GRAD.enabled:
        for i in plan.tensors:
            if args[i]._requires_grad:
                return _record(spec, plan, args, values, out, flat_values)
    return Tensor._wrap(out)


def _record(spec, plan, args, values, out, flat_values):
    """The result of ``apply`` with its backward node, when an input requires grad.

    ``flat_values``: the flat views the forward kernel read (the result's last, when a
    derivative reads it); with them the backward calls the derivatives' flat kernels directly.
    """
    # plain loops rather than comprehensions, which cost a frame each on tiny tensors
    edges = []
    for i, is_tensor in plan.edges:
        if not is_tensor:
            edges.append(_NO_EDGE)
        else:
            t = args[i]
            edges.append((t.grad_fn, t._output_nr) if t.grad_fn is not None else t._grad_edge())
    cast_values = None if plan.casts is None else tuple(
        Tensor._wrap(v) if c is not None else a for a, v, c in zip(args, values, plan.casts))
    fast = plan if flat_values is not None and plan.derivative_kernels is not None else None
    node = plan.node_cls(tuple(edges), (args, cast_values, out if spec.saves_result else None,
                                        fast, flat_values))
    result = Tensor._wrap(out, node)
    # versions of the tensors the derivatives read, checked when the backward runs
    checks = []
    for i in plan.read_tensors:
        version = args[i]._version
        checks.append((version, version[0], args[i]))
    if spec.saves_result:
        checks.append((result._version, 0, None))
    if checks:
        node.versions = tuple(checks)
    return result


_NO_EDGE = (None, 0)


class _Metadata:
    """What a released node keeps of an input its formulas do not read: shape and dtype, where
    ``_backward`` looks for them (``arg._data.shape``)."""

    __slots__ = ("shape", "dtype")

    def __init__(self, data):
        self.shape, self.dtype = data.shape, data.dtype

    @property
    def _data(self):
        return self


def _keep_metadata(node):
    """``release`` of a node whose formulas read no values: a second backward may still run, so
    it keeps its inputs' shapes and dtypes, but not tensors with big buffers."""
    saved = node.saved
    if saved is None:
        return
    for a in saved[0]:
        # NOTE: small inputs stay: replacing them costs more (0.7 µs a node) than they hold
        if isinstance(a, Tensor) and a._data.size > _KEEP_SMALL:
            node.saved = (tuple(_Metadata(a._data) if isinstance(a, Tensor) else a
                                for a in saved[0]), None, None, None, None)
            return


_KEEP_SMALL = 4096


def _free_saved(node):
    node.saved = node.versions = None  # versions hold the saved tensors too


def _backward(node, grad_output):
    saved = node.saved
    if saved is None or node.versions is not None:
        saved = node.saved_values()  # raises when freed or modified in place
    args, cast_values, result, fast, flat_values = saved
    g = grad_output._data
    # the forward was flat: when ``g`` matches its output, each derivative is one flat kernel
    # call on the forward's own flat views, and needs no broadcast sum or cast
    flat = (fast is not None and not _GRAD.enabled and type(g) is np.ndarray
            and g.dtype == fast.out_dtype and g.flags.c_contiguous
            and g.shape == args[fast.tensors[0]]._data.shape)
    if flat:
        gflat = g.ravel()
    else:
        values = cast_values or args
        if result is not None:
            result = Tensor._wrap(result, node if _GRAD.enabled else None)
    grads = []
    derivatives = node.spec.derivatives
    inputs = range(len(args)) if node.edge_inputs is None else node.edge_inputs
    for i, (edge, _) in zip(inputs, node.next_functions):
        if edge is None:
            grads.append(None)
            continue
        derivative = derivatives[i]
        if flat:
            if derivative.identity:
                grads.append(grad_output)
                continue
            kernel_args = [gflat]
            for j in derivative.arg_index:
                kernel_args.append(flat_values[j])
            out = np.empty(g.shape, g.dtype)
            kernel_args.append(out.ravel())
            if out.size < threads.MIN_SPLIT:
                fast.derivative_kernel(derivative, i)(*kernel_args)
            else:
                _run_flat(fast.derivative_kernel(derivative, i), derivative.spec,
                          fast.compute.name, fast.derivative_mask(derivative), kernel_args)
            gi = Tensor._wrap(out)
            gi._fresh = True  # a new buffer only the engine holds
        else:
            a = args[i]
            gi = derivative(grad_output, values, result)
            if gi._data.shape != a._data.shape:  # a broadcast input
                from jitgrad.ops.reduce import sum_to_shape

                gi = sum_to_shape(gi, a._data.shape)
            if gi._data.dtype != a._data.dtype:
                gi = gi.to(dtypes.from_numpy_dtype(a._data.dtype))
        grads.append(gi)
    return grads


def apply_(spec, target, args):
    """In-place ``target = spec(*args)`` (``target`` is one of args), keeping ``target``'s dtype.

    Under grad mode with a graph involved, the op is recorded out of place and ``target`` takes
    over the result's history, as PyTorch rebases an in-place op's output.
    """
    if not isinstance(target, Tensor):
        raise TypeError("in-place ops need a Tensor to write into")
    if _inplace_fast(spec, target, args):
        return target
    plan, values, shape, args, _ = _prepare(spec, args)
    compute = plan.compute
    if shape != target._data.shape:
        raise RuntimeError(
            f"output with shape {shape_str(target._data.shape)} doesn't match the broadcast shape "
            f"{shape_str(shape)}")
    out_dt = dtypes.from_numpy_dtype(target._data.dtype)
    if _category(compute) > _category(out_dt):
        raise RuntimeError(
            f"result type {compute.scalar_name} can't be cast to the desired output type "
            f"{out_dt.scalar_name}")
    records = _GRAD.enabled and any(
        isinstance(a, Tensor) and a._requires_grad for a in args)
    if records:
        from jitgrad.ops import inplace
        from jitgrad.ops.shape import clone

        inplace.check(target)
        # the op's backward may read the old value, which the write is about to overwrite
        return inplace.commit(target, apply(spec, [clone(a) if a is target else a for a in args]))
    _launch(spec, compute.name, values, plan.mask, target._data)
    target._version[0] += 1
    return target


def _inplace_fast(spec, target, args):
    """``apply_`` without a graph on contiguous CPU tensors of ``target``'s dtype that are
    whole or repeat over its leading dims (``linear``'s bias); False to take the general path."""
    out = target._data
    if type(out) is not np.ndarray or not out.flags.c_contiguous:
        return False
    sig = ""
    arrays, flat_values = [], []
    for a in args:
        if isinstance(a, Tensor):
            d = a._data
            if (a._requires_grad and _GRAD.enabled) or type(d) is not np.ndarray or \
                    not d.flags.c_contiguous:
                return False
            sig += d.dtype.char if d.ndim else d.dtype.char + "0"
            arrays.append(d)
            flat_values.append(d.ravel())
        else:
            code = _SCALAR_SIG.get(type(a))
            if code is None:
                return False
            sig += code
            flat_values.append(a)
    plan = spec.plans.get(sig)
    if plan is None or plan.casts is not None or plan.out_dtype != out.dtype or not out.size:
        return False
    if all(d.shape == out.shape for d in arrays):
        _run_flat(plan.flat_kernel, spec, plan.compute.name, plan.mask,
                  [*flat_values, out.ravel()])
    else:
        rows = _trailing_rows([*arrays, out], out.shape)
        if rows is None:
            return False
        _run_rows(spec, plan.compute.name, plan.mask, flat_values, rows)
    target._version[0] += 1
    return True


SPECS = {name: Elementwise(name, entry[0].split(), *entry[1:])
         for name, entry in ELEMENTWISE.items()}
