"""Fused backward: a repeated graph of flat elementwise nodes runs as one generated kernel.

Eager backward costs a Python node visit and a kernel call per node, which dominates on small
tensors. When ``backward()`` meets a graph made only of elementwise nodes whose forward ran
flat (inputs and output of one shape, contiguous, no casts), ending in a full sum/mean or an
elementwise root, the graph's shape is a key: the derivative formulas of every node, wired as
the graph is, become one numba kernel with one loop over the elements. It reads the arrays
the forward saved and writes each leaf's gradient, so intermediate gradients never reach
memory. A key is compiled once it was seen ``threshold()`` times (a JIT's hot counter: a
one-off graph is not worth a compile), and its source goes to the kernel cache like every
generated kernel. Anything else (hooks, retained grads, create_graph, views, matmul,
broadcasting, CUDA) runs the eager scheduler.
"""

import os
import warnings

import numpy as np

from jitgrad.autograd import engine, grad_mode
from jitgrad.autograd.node import AccumulateGrad
from jitgrad.backends.cpu import codegen, threads
from jitgrad.backends.cpu.vmath import POW_BY_SCALAR
from jitgrad.ops import reduce
from jitgrad.ops.elementwise import NODE_CLASSES
from jitgrad.tensor import Tensor

__all__ = ["set_threshold", "stats", "threshold"]

_MAX_NODES = 256  # larger graphs compile too slowly to pay off (~10 ms a node, cold)

_threshold = int(os.environ.get("JITGRAD_FUSE_BACKWARD", "50"))
_seen = {}  # key -> times seen, until compiled
_kernels = {}  # key -> kernel, or None when the key could not be fused
_stats = {"fused": 0, "compiled": 0}


def threshold():
    """How many times a graph shape must be seen before its fused kernel is compiled (0: off)."""
    return _threshold


def set_threshold(n):
    """Set the hot count (``JITGRAD_FUSE_BACKWARD``); 0 turns fused backward off."""
    global _threshold
    _threshold = int(n)
    engine.fuser = run if _threshold > 0 else None


def stats():
    """Counts of fused backward passes run and kernels compiled in this process."""
    return dict(_stats)


def run(root, g, retain_graph):
    """Run the backward of ``root`` from its gradient ``g`` (an array) fused when its graph
    qualifies; True when it did. Nothing it runs records a graph, whatever the grad mode."""
    if type(g) is not np.ndarray or not g.flags.c_contiguous:
        return False
    walked = _walk(root, g)
    if walked is None:
        return False
    key, nodes, reads, leaves, n = walked
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _hot_kernel(key)
        if kernel is None:
            return False
    outs = []
    args = [n, n, g.ravel(), *reads]
    for leaf in leaves:
        out = np.empty(leaf.variable._data.shape, g.dtype)
        outs.append(out)
        args.append(out.ravel())
    try:  # numba compiles on the first call: nothing is written before this succeeds
        # 1 when small, and when splitting is off (a forked child)
        n_chunks = 1 if n < threads.MIN_SPLIT else threads.chunks(n)
        if n_chunks == 1:
            kernel[0](*args)
        else:
            kernel[1](n_chunks, *args)
    except Exception as error:  # noqa: BLE001  eager backward still gives the right answer
        _disable(key, error)
        return False
    _stats["fused"] += 1
    if not retain_graph:
        for node in nodes:
            node.release()
    for leaf, out in zip(leaves, outs):
        variable = leaf.variable
        if variable.grad is None:  # the new buffer becomes .grad (``_accumulate_grad``'s case)
            variable.grad = Tensor._wrap(out)
        else:
            with grad_mode.no_grad():  # added in place, as a backward without create_graph does
                variable._accumulate_grad(Tensor._wrap(out))
    return True


def _hot_kernel(key):
    """The kernel for ``key`` once it was seen ``threshold()`` times, else None."""
    if key in _kernels:  # compiling it failed before
        return None
    count = _seen.get(key, 0) + 1
    if count < _threshold:
        if len(_seen) > 10_000:
            _seen.clear()
        _seen[key] = count
        return None
    _seen.pop(key, None)
    try:
        module = codegen.load_module("fused_backward", _source(key))
        kernel = [None, None]  # serial, and split on threads
        kernel[0] = codegen.QuietFirstCall(module.fused_backward, kernel)
        kernel[1] = codegen.QuietFirstCall(module.fused_backward_p, kernel)
    except Exception as error:  # noqa: BLE001  eager backward still gives the right answer
        return _disable(key, error)
    _kernels[key] = kernel
    _stats["compiled"] += 1
    return kernel


def _disable(key, error):
    """Run ``key``'s graphs eagerly from now on, and say why (a bug worth reporting)."""
    _kernels[key] = None
    warnings.warn(f"fused backward disabled for one graph: {error!r}", RuntimeWarning,
                  stacklevel=5)


# key codes: a leaf, a full sum or mean at the root, then one code per (plan, edge targets)
_LEAF, _SUM, _MEAN = 0, 1, 2
_ROOTS = {reduce.SumBackward0: _SUM, reduce.MeanBackward0: _MEAN}
_entries = [None, None, None]  # code -> (plan, targets, baked exponent), for the generator


def _walk(root, g):
    """(key, nodes, kernel reads, leaves, element count), or None (also when a value the graph
    saved was modified in place: the eager backward then raises PyTorch's error).

    Nodes are numbered in the order a breadth-first walk from the root meets them, which is
    also the order it visits them. The key has a code per node: the node's forward plan (op,
    dtypes, scalar mask) with the numbers of its edges' nodes. The kernel's arguments are the
    reads and then the leaves' outputs, in node order.
    """
    root_code = _ROOTS.get(type(root))
    if root_code is not None:
        if root.hooks is not None or root.retained is not None or root.saved is None:
            return None
        n = 1
        for s in root.saved[1]:
            n *= s
        (first, _), = root.next_functions
        if g.size != 1 or first is None:
            return None
        key, index, queue = [root_code], {root: 0, first: 1}, [first]
    else:
        n = g.size
        key, index, queue = [], {root: 0}, [root]
    if not n:
        return None
    nodes, reads, leaves = [], [], []
    dtype = g.dtype
    number = index.get
    # NOTE: the cheapest tests first, and locals for what every node reads: this walk is most
    # of a tiny graph's fused backward (~0.3 us a node)
    for node in queue:  # grows as the walk meets new nodes
        cls = type(node)
        if cls is AccumulateGrad:
            if node.hooks is not None or node.variable._data.size != n:
                return None
            key.append(_LEAF)
            leaves.append(node)
            continue
        saved = node.saved
        if (saved is None or cls not in NODE_CLASSES or node.hooks is not None
                or node.retained is not None):
            return None
        plan = saved[3]
        if plan is None or plan.out_dtype is not dtype and plan.out_dtype != dtype:
            return None  # not flat, on CUDA, or another dtype
        targets = []
        for nxt, _ in node.next_functions:
            if nxt is None:
                targets.append(-1)
                continue
            i = number(nxt)
            if i is None:
                i = index[nxt] = len(index)
                if i > _MAX_NODES:
                    return None
                queue.append(nxt)
            targets.append(i)
        targets = tuple(targets)
        entry = plan.fused_entries.get(targets)
        if entry is None:
            entry = _new_entry(plan, targets, None)
        flat_values = saved[4]
        code, entry_reads, exponent = entry
        if exponent is not None and flat_values[exponent] in POW_BY_SCALAR:
            # a scalar exponent eager's kernels special-case (2: x*x, 0.5: sqrt) gets a code
            # of its own, so the fused derivative uses the same formula, bit for bit
            y = flat_values[exponent]
            code, entry_reads, _ = plan.fused_entries.get((targets, y)) or _new_entry(
                plan, targets, y)
        key.append(code)
        for j in entry_reads:
            reads.append(flat_values[j])
        nodes.append(node)
        versions = node.versions
        if versions is not None:
            for box, expected, _ in versions:
                if box[0] != expected:
                    return None
    if not nodes:
        return None
    saved = nodes[0].saved  # the root, or the sum's input: the graph's one element count
    if saved[4][saved[3].tensors[0]].size != n:
        return None
    return tuple(key), nodes, reads, leaves, n


def _new_entry(plan, targets, exponent):
    """(code, values read, index of a pow's scalar exponent or None) for a node of ``plan``
    whose edges reach ``targets``; ``exponent``: a POW_BY_SCALAR value baked into the code."""
    reads = []
    derivatives = plan.node_cls.spec.derivatives
    for (i, _), t in zip(plan.edges, targets):  # the edges' forward inputs
        if t >= 0:
            for j in derivatives[i].arg_index:
                if j not in reads:
                    reads.append(j)
    scalar_pow = exponent is None and plan.node_cls.spec.name == "pow" and plan.mask[1] == "s"
    entry = (len(_entries), tuple(reads), 1 if scalar_pow else None)
    plan.fused_entries[targets if exponent is None else (targets, exponent)] = entry
    _entries.append((plan, targets, exponent))
    return entry


def _order(key, start):
    """Node numbers in Kahn's order: every consumer of a node comes before it."""
    deps = [0] * len(key)
    for code in key[start:]:
        if code > _MEAN:
            for t in _entries[code][1]:
                if t >= 0:
                    deps[t] += 1
    ready, order = [start], []
    while ready:
        k = ready.pop()
        order.append(k)
        if key[k] > _MEAN:
            for t in _entries[key[k]][1]:
                if t >= 0:
                    deps[t] -= 1
                    if not deps[t]:
                        ready.append(t)
    return order


def _source(key):
    """The fused kernel's module source for a graph key (see ``_walk``)."""
    dtype_name = next(_entries[c][0] for c in key if c > _MEAN).compute.name
    np_type = f"np.{dtype_name}"
    # n: this call's elements (a slice of the tensor's, see codegen.split_source); size: all
    params, outs, prologue, loads, body = ["n", "size", "g_root"], [], [], [], []
    scalars = set()
    if key[0] in (_SUM, _MEAN):  # a full sum or mean at the root: one gradient for all
        start = 1
        prologue.append(f"    g1 = g_root[0]{'' if key[0] == _SUM else f' / {np_type}(size)'}")
    else:
        start = 0
        loads.append("        g0 = g_root[i]")
    for k, code in enumerate(key):  # parameters in the walk's order
        if code == _LEAF:
            outs.append(f"out{k}")
        elif code > _MEAN:
            plan, targets, exponent = _entries[code]
            for j in plan.fused_entries[targets if exponent is None else (targets, exponent)][1]:
                var = f"v{k}_r" if j < 0 else f"v{k}_{j}"
                params.append(f"{var}_")
                if j >= 0 and plan.mask[j] == "s":
                    scalars.add(var)
                    prologue.append(f"    {var} = {np_type}({var}_)")
                else:
                    loads.append(f"        {var} = {var}_[i]")
    assigned = {start}
    for k in _order(key, start):  # gradients in dependency order
        if key[k] == _LEAF:
            body.append(f"        out{k}[i] = g{k}")
            continue
        plan, targets, exponent = _entries[key[k]]
        spec = plan.node_cls.spec
        names = {"g": f"g{k}", "result": f"v{k}_r"}
        names.update((name, f"v{k}_{j}") for j, name in enumerate(spec.inputs))
        if exponent is not None:  # a literal: codegen turns x ** (2.0 - 1) into pow_1(x)
            names[spec.inputs[1]] = repr(float(exponent))
        for (i, _), t in zip(plan.edges, targets):  # the edges' forward inputs
            if t < 0:
                continue
            contribution = codegen.substitute(spec.grads[spec.inputs[i]], names, dtype_name, True)
            total = f"g{t} + " if t in assigned else ""
            body.append(f"        g{t} = {total}{contribution}")
            assigned.add(t)
    header, decorator, _ = codegen.CPU_TARGET
    sliced = [p for p in params[3:] if p[:-1] not in scalars] + outs
    if key[0] not in (_SUM, _MEAN):
        sliced.insert(0, "g_root")
    split = codegen.split_source("fused_backward_p", "fused_backward", params + outs, sliced, "n")
    return "\n".join([*header, decorator, f"def fused_backward({', '.join(params + outs)}):",
                      *codegen.WIDE_VECTORS, *prologue, "    for i in range(n):", *loads, *body,
                      "", *split])


if _threshold > 0:
    engine.fuser = run
