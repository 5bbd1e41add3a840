"""Tracing a call into a tape, grouping the tape into fused regions, and replaying the plan."""

import math

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.backends.cpu import codegen
from jitgrad.backends.cpu.vmath import POW_BY_SCALAR
from jitgrad.compile import _codegen, _trace
from jitgrad.compile._trace import ORIGINAL_APPLY, Divergence, Dummy, Traced
from jitgrad.ops import _storage, elementwise
from jitgrad.ops._checks import normalize_dims
from jitgrad.ops.reduce import sum_to_shape
from jitgrad.tensor import Tensor

__all__ = ["Recorder", "Plan", "Region"]

_FLOATS = ("float32", "float64")
_MUL = elementwise.SPECS["mul"]
# where/copy take bool or any-dtype inputs; compare/logical ops have no derivative
_FUSABLE = frozenset(id(s) for name, s in elementwise.SPECS.items()
                     if s.grads and s.kind in ("arith", "float") and name not in ("where", "copy"))


class _Entry:
    """One recorded call: ``kind`` is a spec, "sum" or "mean"; ``refs`` per argument; a fusable
    sum/mean's ``dims`` are None (full) or the reduced dims, ``args`` its (dim, keepdim)."""

    __slots__ = ("kind", "refs", "in_shapes", "out", "out_id", "shape", "dtype", "cuda",
                 "fusable", "dims", "args")

    def __init__(self, kind, refs, in_shapes, out, fusable):
        self.kind, self.refs, self.out, self.fusable = kind, refs, out, fusable
        self.dims, self.args = None, (None, False)
        self.in_shapes = in_shapes
        self.out_id = id(out)
        data = Tensor.__dict__["_data"].__get__(out)
        self.shape, self.dtype = data.shape, data.dtype.name
        self.cuda = type(data) is not np.ndarray


class Recorder:
    """The tape of a tracing call: runs every op eagerly and notes it."""

    def __init__(self):
        self.inside = False
        self.entries = []
        self.escaped = set()
        self.keep = []  # every tensor seen, so ids stay unique while tracing

    def _run(self, fn, *args, **kwargs):
        self.inside = True
        try:
            return fn(*args, **kwargs)
        finally:
            self.inside = False

    def _ref(self, a):
        if isinstance(a, Tensor):
            self.keep.append(a)
            return ("t", id(a))
        return ("s", type(a))

    def _add(self, kind, args, out, fusable):
        entry = _Entry(kind, tuple(self._ref(a) for a in args),
                       tuple(a._data.shape if isinstance(a, Tensor) else None for a in args),
                       out, fusable)
        self.entries.append(entry)
        self.keep.append(out)
        if type(out) is Tensor:
            out.__class__ = Traced
        return entry

    def apply(self, spec, args):
        return self._run(self._apply, spec, args)

    def _apply(self, spec, args):
        out = ORIGINAL_APPLY(spec, args)
        d = out._data
        fusable = id(spec) in _FUSABLE and d.dtype.name in _FLOATS and d.size > 0
        for a in args:
            if isinstance(a, Tensor):  # any shape that broadcasts to the output's fuses
                fusable = (fusable and a._data.dtype == d.dtype and type(a._data) is type(d)
                           and a._data.size > 0)
            else:
                fusable = fusable and type(a) in (int, float)
        return self._add(spec, args, out, fusable).out

    def reduce(self, kind, original, input, dim, keepdim, dtype):
        return self._run(self._reduce, kind, original, input, dim, keepdim, dtype)

    def _reduce(self, kind, original, input, dim, keepdim, dtype):
        out = original(input, dim, keepdim, dtype=dtype)  # raises on bad arguments first
        dims = False
        if dtype is None and isinstance(input, Tensor) and input._data.dtype.name in _FLOATS:
            dims = _reduced_dims(dim, keepdim, input._data.ndim)
        entry = self._add(kind, (input,), out, dims is not False)
        entry.dims, entry.args = (dims or None), (dim, keepdim)
        return out

    def finish(self, outputs):
        """Mark what the function returned as escaping, give traced tensors their class back."""
        stack = [outputs]
        while stack:
            o = stack.pop()
            if isinstance(o, Tensor):
                self.escaped.add(id(o))
            elif isinstance(o, (tuple, list)):
                stack.extend(o)
            elif isinstance(o, dict):
                stack.extend(o.values())
        for t in self.keep:
            if type(t) is Traced:
                t.__class__ = Tensor


def _reduced_dims(dim, keepdim, ndim):
    """None for a full reduction to a 0-d value, the sorted reduced dims for a partial one (a
    full one with ``keepdim`` included), False where the region cannot end in it."""
    if dim is None or (not isinstance(dim, int) and len(dim) == 0):
        return tuple(range(ndim)) if keepdim and ndim else None
    if not ndim:
        return False
    return normalize_dims(dim, ndim)


class _Baked:
    """A region seen by the code generator with the exponents of ``variant`` as literals."""

    def __init__(self, region, variant):
        self._region = region
        self.baked = {j: y for j, y in zip(region.pow_slots, variant) if y is not None}

    def __getattr__(self, name):
        return getattr(self._region, name)


class Region:
    """A fused chain: ``ops`` as (spec, refs) with refs ('a', array slot), ('s', scalar slot) or
    ('v', earlier op); ``reduce`` None, "sum" or "mean" after the last op, over every element
    (``dims`` None: a 0-d output) or over ``dims`` (output ``out_shape``, read through the
    index map of ``_codegen.reduce_params``). Array slot ``j`` has
    shape ``in_shapes[j]``, which broadcasts to ``shape``: the kernels read it through the
    index map ``patterns[j]`` (see ``_codegen.broadcast_pattern``) with the ints
    ``index_args``, and its gradient is summed back to its shape after the backward kernel.
    CPU regions run njit kernels on numpy arrays; ``_cuda.CudaRegion`` overrides the launches
    for CUDA."""

    cuda = False

    def __init__(self, ops, reduce, shape, dtype, n_arrays, n_scalars, names, in_shapes=None,
                 dims=None, keepdim=False):
        self.ops, self.reduce, self.shape, self.dtype = ops, reduce, shape, dtype
        self.n_arrays, self.n_scalars, self.names = n_arrays, n_scalars, names
        self.dims, self.keepdim = dims, keepdim
        self.size = int(np.prod(shape))
        self.np_dtype = np.dtype(dtype)
        self.in_shapes = tuple(in_shapes) if in_shapes is not None else (shape,) * n_arrays
        found = [_codegen.broadcast_pattern(s, shape) for s in self.in_shapes]
        self.patterns = tuple(code for code, _ in found)
        self.index_args = ()  # the ints of _codegen.index_params
        reduce_args = self._reduce_layout() if dims is not None else ()
        if reduce_args or any(code not in "fx" for code in self.patterns):
            inner = 0  # the chunk of the CPU loops: every "r" input's m and "c"/"b" input's d
            for code, ints in found:
                inner = math.gcd(inner, ints[0]) if code in "rcb" else inner
            if reduce_args:  # and the size of the reduction's last group
                inner = math.gcd(inner, reduce_args[-4])
            self.index_args = ((self.size,) + ((inner,) if inner else ()) +
                               tuple(n for _, ints in found for n in ints) + reduce_args)
        # per slot: the axes (of ``shape``) its gradient sums over, None when it is full-size
        self.grad_axes = tuple(None if code == "f" else _sum_axes(s, shape)
                               for s, code in zip(self.in_shapes, self.patterns))
        # scalar slots that are pow exponents: kernels are specialised on common values
        self.pow_slots = () if getattr(self, "cuda", False) else tuple(
            refs[1][1] for spec, refs in ops if spec.name == "pow" and refs[1][0] == "s")
        self.forward_src = _codegen.forward_source(self)
        self._forward = {}
        self._backward = {}
        self._forward_grad = {}
        self.node_cls = node_class("CompiledFunctionBackward", _node_backward)
        self.node_cls.region = self

    def _reduce_layout(self):
        """Set ``groups``, ``out_shape``, ``keep_shape``, ``nred`` for a partial reduction and
        return the values of ``_codegen.reduce_params``."""
        dims = self.dims
        self.keep_shape = tuple(1 if d in dims else n for d, n in enumerate(self.shape))
        self.out_shape = (self.keep_shape if self.keepdim else
                          tuple(n for d, n in enumerate(self.shape) if d not in dims))
        self.nred = int(np.prod([self.shape[d] for d in dims]))
        groups = []  # [kind, size]: dims of size 1 dropped, neighbours of one kind merged
        for d, n in enumerate(self.shape):
            kind = "r" if d in dims else "k"
            if n == 1:
                continue
            if groups and groups[-1][0] == kind:
                groups[-1][1] *= n
            else:
                groups.append([kind, n])
        groups = groups or [["r", 1]]
        self.groups = "".join(kind for kind, _ in groups)
        ints = []
        for q, (kind, n) in enumerate(groups):
            after = groups[q + 1:]
            ints += [int(np.prod([m for _, m in after])), n,
                     int(np.prod([m for k, m in after if k == kind]))]
        scale = 1.0 / self.nred if self.reduce == "mean" else 1.0
        return (*ints, self.nred, scale)

    @property
    def forward(self):
        """The forward kernel, imported on first use (a loss region with grads never needs it)."""
        return self.forward_kernel(())

    def forward_kernel(self, variant):
        k = self._forward.get(variant)
        if k is None:
            src = (self.forward_src if not variant else
                   _codegen.forward_source(_Baked(self, variant)))
            k = self._forward[variant] = self._quiet(codegen.load_module("fused_fwd", src).forward)
        return k

    def _quiet(self, kernel):
        """CPU kernels hide numba's inlining warning on their compiling call (CUDA kernels
        are launched with ``kernel[grid]`` and keep their own dispatcher)."""
        return kernel if self.cuda else codegen.QuietFirstCall(kernel)

    def variant(self, scalars):
        """Which pow exponents this call's kernels bake in (``POW_BY_SCALAR`` values: ``** 2``
        runs x*x); exponents are kernel arguments otherwise. () for regions without pow."""
        if not self.pow_slots:
            return ()
        return tuple(scalars[j] if scalars[j] in POW_BY_SCALAR else None for j in self.pow_slots)

    def describe(self):
        end = [self.reduce] if self.reduce else []
        if self.dims is not None:
            end = [f"{self.reduce}(dim={self.dims}{', keepdim=True' if self.keepdim else ''})"]
        return " -> ".join(self.names + end)

    def backward_kernel(self, mask, variant=()):
        k = self._backward.get((mask, variant))
        if k is None:
            src = _codegen.backward_source(_Baked(self, variant), mask)
            k = self._backward[mask, variant] = self._quiet(
                codegen.load_module("fused_bwd", src).backward)
        return k

    def forward_grad_kernel(self, mask, variant=()):
        k = self._forward_grad.get((mask, variant))
        if k is None:
            src = _codegen.forward_grad_source(_Baked(self, variant), mask)
            k = self._forward_grad[mask, variant] = self._quiet(codegen.load_module(
                "fused_fwdgrad", src).forward_grad)
        return k

    def run(self, tensors, scalars):
        arrays = []
        for t, shape, code in zip(tensors, self.in_shapes, self.patterns):
            d = t._data
            if d.shape != shape or d.dtype != self.np_dtype or type(d) is not np.ndarray:
                raise Divergence("region input changed shape, dtype or device")
            if code == "x":  # a broadcast the index maps do not cover: expanded by a copy
                d = elementwise.cast(np.broadcast_to(d, self.shape), self.np_dtype)
            arrays.append(elementwise.contiguous(d).reshape(-1))
        variant = self.variant(scalars)
        forward = self.forward_kernel(variant)
        scalars = scalars + self.index_args
        grads = None
        if self.dims is not None:
            out = np.empty(self.out_shape, self.np_dtype)
            forward(*arrays, *scalars, out.reshape(-1))
        elif self.reduce:
            scale = 1.0 / self.size if self.reduce == "mean" else 1.0
            mask = tuple(t._requires_grad for t in tensors)
            if grad_mode.is_grad_enabled() and any(mask):
                # NOTE: a loss-like region computes its gradients for g == 1 in the forward pass
                # (one pass instead of two); the backward rescales them by the incoming g.
                grads = [np.empty(self.shape, self.np_dtype) for m in mask if m]
                acc = self.forward_grad_kernel(mask, variant)(*arrays, *scalars, scale,
                                                              *[o.reshape(-1) for o in grads])
            else:
                acc = forward(*arrays, *scalars)
            out = np.array(acc * scale, self.np_dtype)
        else:
            out = np.empty(self.shape, self.np_dtype)
            forward(*arrays, *scalars, out.reshape(-1))
        return record(Tensor._wrap(out), self.node_cls, tensors,
                      [tensors, arrays, scalars, grads], check=tensors)

    def fast_backward(self, saved, g, mask):
        _, arrays, scalars, grads = saved
        if grads is not None and len(grads) == sum(mask):
            saved[3] = None  # handed over: a retained graph's next backward recomputes
            factor = g.item()
            it = iter(grads)
            outs = self._reduced([next(it) if m else None for m in mask])
            if factor != 1.0:
                for o in outs:
                    if o is not None:
                        elementwise.apply_(_MUL, o, (o, factor))
            return outs
        if self.reduce and self.dims is None:
            g = g.item() / self.size if self.reduce == "mean" else g.item()
        else:  # a partial reduction's g has the output's shape: the kernel broadcasts it
            shape = self.shape if self.dims is None else self.out_shape
            if g.shape != shape or g.dtype != self.np_dtype or not g.flags.c_contiguous:
                g = elementwise.cast(np.broadcast_to(g, shape), self.np_dtype)
            g = g.reshape(-1)
        outs = [np.empty(self.shape, self.np_dtype) for m in mask if m]
        variant = self.variant(scalars)  # the saved scalars end with the index ints
        self.backward_kernel(mask, variant)(*arrays, *scalars, g, *[o.reshape(-1) for o in outs])
        it = iter(outs)
        return self._reduced([next(it) if m else None for m in mask])

    def _reduced(self, grads):
        """Per slot: a Tensor of its region-shaped gradient buffer (or None) summed back to the
        slot's shape (eager sum kernel), marked ``_fresh``: only the engine holds these
        buffers, so ``.grad`` may take them without a copy."""
        out = []
        for g, axes, shape in zip(grads, self.grad_axes, self.in_shapes):
            if g is not None:
                g = Tensor._wrap(g)
                if axes is not None:
                    g = _trace.ORIGINAL_SUM(g, axes, True)
                g._fresh = True
                if g._data.shape != shape:
                    g = g.reshape(shape)
            out.append(g)
        return out

    def graph_backward(self, tensors, scalars, g, mask):
        """create_graph: the region re-evaluated with eager ops, derivatives as Tensor formulas."""
        values = []
        inputs = []
        for spec, refs in self.ops:
            args = [tensors[i] if kind == "a" else scalars[i] if kind == "s" else values[i]
                    for kind, i in refs]
            inputs.append(args)
            values.append(ORIGINAL_APPLY(spec, args))
        if self.dims is not None:
            g = (g / self.nred if self.reduce == "mean" else g).reshape(self.keep_shape)
            g = g.expand(self.shape)
        elif self.reduce:
            g = (g / self.size if self.reduce == "mean" else g).expand(self.shape)
        adjoint = {("v", len(self.ops) - 1): g}
        for k in range(len(self.ops) - 1, -1, -1):
            gk = adjoint.pop(("v", k), None)
            if gk is None:
                continue
            spec, refs = self.ops[k]
            for i, ref in enumerate(refs):
                derivative = spec.derivatives[i]
                if ref[0] == "s" or derivative is None or (ref[0] == "a" and not mask[ref[1]]):
                    continue
                gi = derivative(gk, inputs[k], values[k])
                if tuple(gi.shape) != self.shape:
                    gi = gi.expand(self.shape)
                adjoint[ref] = gi if ref not in adjoint else adjoint[ref] + gi
        grads = []
        for j, m in enumerate(mask):
            gj = adjoint.get(("a", j)) if m else None
            if m and gj is None:
                gj = Tensor._wrap(_storage.zeros(self.in_shapes[j], self.np_dtype,
                                                 tensors[0]._data))
            elif gj is not None and tuple(gj.shape) != self.in_shapes[j]:
                gj = sum_to_shape(gj, self.in_shapes[j])
            grads.append(gj)
        return grads


def _sum_axes(in_shape, shape):
    """The axes of ``shape`` that a gradient sums over to reach ``in_shape`` (kept as 1s)."""
    lead = len(shape) - len(in_shape)
    return tuple(range(lead)) + tuple(lead + i for i, n in enumerate(in_shape)
                                      if n == 1 and shape[lead + i] != 1)


def _node_backward(node, grad_output):
    region = type(node).region
    saved = node.saved_values()
    mask = tuple(edge is not None for edge, _ in node.next_functions)
    if grad_mode.is_grad_enabled():
        return region.graph_backward(saved[0], saved[2], grad_output, mask)
    return region.fast_backward(saved, grad_output._data, mask)


def _group(entries, escaped):
    """Region id per entry (None: eager), grown backwards from each region's output."""
    producer = {e.out_id: k for k, e in enumerate(entries)}
    consumers = {}
    for k, e in enumerate(entries):
        for ref in e.refs:
            if ref[0] == "t":
                consumers.setdefault(ref[1], []).append(k)
    region_of = [None] * len(entries)
    shapes = []  # per region: the shape of its elementwise values
    n_regions = 0
    for k in range(len(entries) - 1, -1, -1):
        e = entries[k]
        if not e.fusable:
            continue
        if isinstance(e.kind, str):  # a full sum/mean: a region output when its input fuses
            p = producer.get(e.refs[0][1])
            if p is not None and entries[p].fusable and not isinstance(entries[p].kind, str):
                region_of[k] = n_regions
                shapes.append(entries[p].shape)
                n_regions += 1
            continue
        users = consumers.get(e.out_id, ())
        owner = region_of[users[0]] if users else None
        if (owner is not None and e.out_id not in escaped and e.shape == shapes[owner]
                and all(region_of[c] == owner for c in users)):
            region_of[k] = owner  # (a value of another shape enters as a broadcast input)
        else:
            region_of[k] = n_regions
            shapes.append(e.shape)
            n_regions += 1
    counts = {}
    for r in region_of:
        counts[r] = counts.get(r, 0) + 1
    return [r if r is not None and counts[r] > 1 else None for r in region_of]


class _Step:
    """Replay instructions for one recorded call."""

    __slots__ = ("kind", "region", "actions", "dummy", "is_root", "args")

    def __init__(self, kind, region=None, actions=None, is_root=False):
        self.kind, self.region, self.actions, self.is_root = kind, region, actions, is_root
        self.args = (None, False)  # a fused sum/mean's traced (dim, keepdim)
        self.dummy = None if region is None or is_root else Dummy.make()


class Plan:
    """The fused regions of one call signature and the steps that replay it."""

    def __init__(self, recorder):
        entries = recorder.entries
        region_of = _group(entries, recorder.escaped)
        self.regions = []
        self.steps = [None] * len(entries)
        members = {}
        for k, r in enumerate(region_of):
            if r is None:
                self.steps[k] = _Step(entries[k].kind)
            else:
                members.setdefault(r, []).append(k)
        for ks in sorted(members.values()):
            self._build(entries, ks)
        for e in entries:
            e.out = None

    def _build(self, entries, ks):
        root = entries[ks[-1]]
        reduce = root.kind if isinstance(root.kind, str) else None
        ew = ks[:-1] if reduce else ks
        local = {entries[k].out_id: i for i, k in enumerate(ew)}
        slots = {}
        in_shapes = []
        n_scalars = 0
        ops, step_actions = [], []
        for k in ew:
            refs, actions = [], []
            for ref, in_shape in zip(entries[k].refs, entries[k].in_shapes):
                if ref[0] == "s":
                    refs.append(("s", n_scalars))
                    actions.append(("s", n_scalars, ref[1]))
                    n_scalars += 1
                elif ref[1] in local:
                    refs.append(("v", local[ref[1]]))
                    actions.append(("v", local[ref[1]], None))
                else:
                    first = ref[1] not in slots
                    j = slots.setdefault(ref[1], len(slots))
                    if first:
                        in_shapes.append(in_shape)
                    refs.append(("a", j))
                    actions.append(("a" if first else "A", j, None))
            ops.append((entries[k].kind, tuple(refs)))
            step_actions.append(tuple(actions))
        shape = entries[ew[0]].shape
        cls = Region
        if entries[ew[0]].cuda:
            from jitgrad.compile._cuda import CudaRegion as cls
        region = cls(ops, reduce, shape, entries[ew[0]].dtype, len(slots), n_scalars,
                     [entries[k].kind.name for k in ew], tuple(in_shapes), root.dims,
                     bool(root.args[1]))
        region.index = len(self.regions)
        self.regions.append(region)
        steps = [_Step(entries[k].kind, region, a, k == ks[-1]) for k, a in zip(ew, step_actions)]
        if reduce:
            steps.append(_Step(root.kind, region, (("v", len(ew) - 1, None),), True))
            steps[-1].args = root.args
        for k, step in zip(ks, steps):
            self.steps[k] = step
        for step in steps:  # an inner value's dummy, checked where it is read
            step.actions = tuple((kind, j, steps[j].dummy if kind == "v" else extra)
                                 for kind, j, extra in step.actions)


class Replayer:
    """The tape of a replayed call: eager calls run, fused regions run at their output."""

    def __init__(self, plan):
        self.inside = False
        self.escaped = set()
        self.steps = plan.steps
        self.pos = 0
        self.tensors = [[None] * r.n_arrays for r in plan.regions]
        self.scalars = [[None] * r.n_scalars for r in plan.regions]

    def _next(self, kind):
        if self.pos >= len(self.steps):
            raise Divergence("more calls than traced")
        step = self.steps[self.pos]
        self.pos += 1
        if step.kind != kind:
            raise Divergence("a different call than traced")
        return step

    def _member(self, step, args):
        r = step.region.index
        tensors, scalars = self.tensors[r], self.scalars[r]
        for (kind, j, extra), a in zip(step.actions, args):
            if kind == "a":
                if not isinstance(a, Tensor) or type(a) is Dummy:
                    raise Divergence("expected a tensor")
                tensors[j] = a
            elif kind == "A":
                if tensors[j] is not a:
                    raise Divergence("expected the same tensor")
            elif kind == "s":
                if type(a) is not extra:
                    raise Divergence("scalar type changed")
                scalars[j] = a
            elif a is not extra:
                raise Divergence("expected a fused inner value")
        if not step.is_root:
            return step.dummy
        self.inside = True
        try:
            return step.region.run(tuple(tensors), tuple(scalars))
        finally:
            self.inside = False

    def apply(self, spec, args):
        step = self._next(spec)
        if step.region is None:
            self.inside = True
            try:
                return ORIGINAL_APPLY(spec, args)
            finally:
                self.inside = False
        if len(args) != len(step.actions):
            raise Divergence("argument count changed")
        return self._member(step, args)

    def reduce(self, kind, original, input, dim, keepdim, dtype):
        step = self._next(kind)
        if step.region is None:
            self.inside = True
            try:
                return original(input, dim, keepdim, dtype=dtype)
            finally:
                self.inside = False
        if dtype is not None or (dim, keepdim) != step.args:
            raise Divergence("reduction arguments changed")
        return self._member(step, (input,))

    def finish(self):
        if self.pos != len(self.steps):
            raise Divergence("fewer calls than traced")
