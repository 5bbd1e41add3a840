"""``jitgrad.compile``: trace a function, fuse its elementwise chains into generated kernels.

On the first call with a given signature the function runs eagerly while a tape records every
elementwise op and ``sum``/``mean``; chains of same-shape elementwise ops (with Python
scalars, and tensors that broadcast to that shape), optionally ended by a sum or mean over all
or some dims (``dim=``, ``keepdim=``), become regions with one generated forward kernel and one
backward kernel each (see ``_codegen``), and one autograd node. Later calls with the same
signature run the function again with the tape replaying that plan: a fused region's inner ops
return placeholders and its last op runs the kernel; everything else (matmul, indexing, shape
ops, ...) runs eagerly. A call that strays from the trace reruns eagerly (twice: then that
signature stays eager). With grad enabled, a region ending in a full sum/mean computes its
gradients in the forward kernel; a partial one's backward kernel broadcasts the incoming
gradient over the reduced dims; under ``create_graph`` a region's backward is the eager formulas.
Regions on CUDA tensors run the same formulas as ``@cuda.jit`` kernels (``_cuda``) without
reading anything back to the host; a tensor's device is part of the signature.
"""

import functools
import os
import sys

from jitgrad import dtypes
from jitgrad.autograd import grad_mode
from jitgrad.compile import _codegen, _trace
from jitgrad.compile._fuse import Plan, Recorder, Replayer
from jitgrad.tensor import Tensor

__all__ = ["compile", "CompiledFunction"]

_MAX_DIVERGENCES = 2  # after this many failed replays a signature stays eager


def _signature(obj):
    if isinstance(obj, Tensor):
        d = obj._data
        return ("T", d.shape, d.dtype.str, obj._requires_grad, type(d))  # type: the device
    if obj is None or type(obj) in (bool, int, float, str):
        return (type(obj), obj)
    if isinstance(obj, (tuple, list)):
        return (type(obj), tuple(_signature(o) for o in obj))
    if isinstance(obj, dict):
        return (dict, tuple((k, _signature(v)) for k, v in obj.items()))
    return (type(obj), id(obj))


class CompiledFunction:
    """``fn`` with fused kernels: call it as ``fn``; ``explain()`` shows regions and sources."""

    def __init__(self, fn, debug=False):
        self.fn = fn
        self.debug = debug or os.environ.get("JITGRAD_DEBUG", "") not in ("", "0")
        self.plans = {}  # signature -> Plan, or None once it diverged too often
        self.divergences = {}
        functools.update_wrapper(self, fn, updated=())

    def __get__(self, obj, objtype=None):  # decorating a method binds like a function
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        if _trace.active() is not None:  # nested: the outer tape sees these ops
            return self.fn(*args, **kwargs)
        key = (_signature(args), _signature(kwargs), grad_mode.is_grad_enabled(),
               dtypes.get_default_dtype().name)
        plan = self.plans.get(key, False)
        if plan is False:
            return self._trace(key, args, kwargs)
        if plan is None:
            return self.fn(*args, **kwargs)
        tape = Replayer(plan)
        try:
            with _trace.patched():
                _trace.set_active(tape)
                try:
                    out = self.fn(*args, **kwargs)
                    tape.finish()
                finally:
                    _trace.set_active(None)
            return out
        except _trace.Divergence:
            n = self.divergences[key] = self.divergences.get(key, 0) + 1
            if n >= _MAX_DIVERGENCES:
                self.plans[key] = None
            else:
                del self.plans[key]  # retrace next time
            return self.fn(*args, **kwargs)

    def _trace(self, key, args, kwargs):
        tape = Recorder()
        with _trace.patched():
            _trace.set_active(tape)
            try:
                out = self.fn(*args, **kwargs)
            finally:
                _trace.set_active(None)
                tape.finish(out if "out" in locals() else None)
        plan = Plan(tape)
        self.plans[key] = plan if plan.regions else None
        if self.debug:
            print(_explain(self.fn, [plan]), file=sys.stderr)
        return out

    def explain(self):
        """The fused regions of every traced signature with their generated forward source."""
        return _explain(self.fn, [p for p in self.plans.values() if p is not None])


def _explain(fn, plans):
    name = getattr(fn, "__qualname__", repr(fn))
    lines = [f"jitgrad.compile({name}): {len(plans)} traced signature(s) with fused regions"]
    for i, plan in enumerate(plans):
        eager = sum(1 for s in plan.steps if s.region is None)
        lines.append(f"signature {i}: {len(plan.regions)} fused region(s), {eager} eager call(s)")
        for r in plan.regions:
            lines.append(f"  region {r.index}: {r.describe()}  shape={r.shape} dtype={r.dtype} "
                         f"inputs={r.n_arrays} tensor(s), {r.n_scalars} scalar(s)")
            lines += ["    " + s for s in r.forward_src.rstrip().splitlines()]
            mask = (True,) * r.n_arrays
            sources = [_codegen.backward_source(r, mask)]
            if r.reduce and r.dims is None:
                sources.append(_codegen.forward_grad_source(r, mask))
            for src in sources:
                lines += ["    " + s for s in src.rstrip().splitlines()]
    return "\n".join(lines)


def compile(fn=None, *, debug=False, **options):
    """Compile ``fn`` so its elementwise chains run as fused kernels, like ``torch.compile``.

    Args:
        fn: the function (any Python callable taking Tensors); omitted, returns a decorator.
        debug: print the fused regions and generated source after each trace (also
            ``JITGRAD_DEBUG=1``).
        options: accepted for ``torch.compile`` compatibility (``mode``, ``fullgraph``, ...)
            and ignored.

    Returns:
        A ``CompiledFunction`` that computes what ``fn`` computes, gradients included.

    Example::

        >>> import jitgrad
        >>> from jitgrad.compile import compile
        >>> f = compile(lambda x: (x * 2 + 1).tanh().sum())
        >>> x = jitgrad.ones(3, requires_grad=True)
        >>> round(f(x).item(), 4)
        2.9852
    """
    if fn is None:
        return lambda f: CompiledFunction(f, debug)
    return CompiledFunction(fn, debug)
