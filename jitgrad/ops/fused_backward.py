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

import ast
import os

import numpy as np

from jitgrad.autograd import engine
from jitgrad.autograd.node import AccumulateGrad
from jitgrad.backends.cpu import codegen
from jitgrad.ops import reduce
from jitgrad.tensor import Tensor

__all__ = ["set_threshold", "stats", "threshold"]

_MAX_NODES = 512  # larger graphs compile too slowly to pay off
_ROOTS = {reduce.SumBackward0: "sum", reduce.MeanBackward0: "mean"}
_LEAF = ("leaf",)

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


def run(root, root_grad, retain_graph):
    """Run the backward of ``root`` fused when its graph qualifies; True when it did."""
    g = root_grad._data
    if type(g) is not np.ndarray or not g.flags.c_contiguous:
        return False
    walked = _walk(root, g)
    if walked is None:
        return False
    key, nodes, reads, leaves, n = walked
    kernel = _kernels.get(key)
    if kernel is None:
        if key in _kernels:  # failed before
            return False
        count = _seen.get(key, 0) + 1
        if count < _threshold:
            if len(_seen) > 10_000:
                _seen.clear()
            _seen[key] = count
            return False
        _seen.pop(key, None)
        kernel = _kernels[key] = _compile(key)
        _stats["compiled"] += 1
    for node in nodes:  # PyTorch's errors for freed or modified saved values, before any work
        if node.saved is None or node.versions is not None:
            node.saved_values()
    outs = [np.empty(leaf.variable._data.shape, g.dtype) for leaf in leaves]
    kernel(n, g.ravel(), *reads, *[o.ravel() for o in outs])
    _stats["fused"] += 1
    if not retain_graph:
        for node in nodes:
            node.release()
    for leaf, out in zip(leaves, outs):
        grad = Tensor._wrap(out)
        grad._fresh = True
        leaf.variable._accumulate_grad(grad)
    return True


def _walk(root, g):
    """(key, nodes, kernel reads, leaves, element count) of a fusable graph, else None.

    Nodes are numbered in the order a breadth-first walk from the root meets them (so the
    walk also visits them in number order); a node's key
    entry is its forward plan (spec, dtypes, scalar mask) and the numbers of its edges' nodes.
    The kernel takes the reads and the leaves' outputs in that order.
    """
    kind = _ROOTS.get(type(root))
    if kind is not None:
        if root.hooks is not None or root.retained is not None or root.saved is None:
            return None
        n = 1
        for s in root.saved[1]:
            n *= s
        (first, _), = root.next_functions
        if g.size != 1 or first is None:
            return None
        entries, nodes, index, queue = [(kind,)], [root], {root: 0, first: 1}, [first]
    else:
        n = g.size
        entries, nodes, index, queue = [], [], {root: 0}, [root]
    if not n:
        return None
    reads, leaves = [], []
    for node in queue:  # grows as the walk meets new nodes
        if node.hooks is not None or node.retained is not None:
            return None
        if type(node) is AccumulateGrad:
            if node.variable._data.size != n:
                return None
            entries.append(_LEAF)
            leaves.append(node)
            continue
        saved = node.saved
        if saved is None or getattr(node, "spec", None) is None:
            return None
        plan = saved[3]
        if plan is None:  # not flat, or on CUDA
            return None
        first_input = saved[4][plan.tensors[0]]
        if first_input.size != n or first_input.dtype != g.dtype:
            return None
        targets = []
        for nxt, _ in node.next_functions:
            if nxt is None:
                targets.append(-1)
                continue
            i = index.get(nxt)
            if i is None:
                i = index[nxt] = len(index)
                queue.append(nxt)
            targets.append(i)
        targets = tuple(targets)
        flat_values = saved[4]
        for j in _reads(plan, targets):
            reads.append(flat_values[j])
        entries.append((plan, targets))
        nodes.append(node)
        if len(entries) > _MAX_NODES:
            return None
    if len(nodes) == (kind is not None):  # no elementwise node: nothing to fuse
        return None
    return tuple(entries), nodes, reads, leaves, n


def _inputs(node_cls):
    """The forward inputs a node class has edges for, in edge order."""
    return range(len(node_cls.spec.inputs)) if node_cls.edge_inputs is None else \
        node_cls.edge_inputs


def _reads(plan, targets):
    """Indices into a node's flat values that its live derivatives read (-1: the result)."""
    reads = plan.fused_reads.get(targets)
    if reads is None:
        reads = []
        derivatives = plan.node_cls.spec.derivatives
        for i, t in zip(_inputs(plan.node_cls), targets):
            if t >= 0:
                for j in derivatives[i].arg_index:
                    if j not in reads:
                        reads.append(j)
        reads = plan.fused_reads[targets] = tuple(reads)
    return reads


class _Rename(ast.NodeTransformer):
    def __init__(self, names):
        self.names = names

    def visit_Name(self, node):
        new = self.names.get(node.id)
        return ast.copy_location(ast.Name(new, node.ctx), node) if new else node


def _expr(formula, dtype_name, names):
    tree = ast.parse(codegen.scalar_expr(formula, dtype_name), mode="eval")
    return ast.unparse(_Rename(names).visit(tree))


def _order(entries, start):
    """Node numbers in Kahn's order: every consumer of a node comes before it."""
    deps = [0] * len(entries)
    for e in entries[start:]:
        if e is not _LEAF:
            for t in e[1]:
                if t >= 0:
                    deps[t] += 1
    ready, order = [start], []
    while ready:
        k = ready.pop()
        order.append(k)
        if entries[k] is not _LEAF:
            for t in entries[k][1]:
                if t >= 0:
                    deps[t] -= 1
                    if not deps[t]:
                        ready.append(t)
    return order


def _source(entries):
    """The fused kernel's module source for a graph key (see ``_walk``)."""
    dtype_name = next(e[0] for e in entries if len(e) == 2).compute.name
    np_type = f"np.{dtype_name}"
    params, outs, prologue, loads, body = ["n", "g_root"], [], [], [], []
    if len(entries[0]) == 1:  # a full sum or mean at the root: one gradient for every element
        start = 1
        prologue.append(f"    g1 = g_root[0]{'' if entries[0][0] == 'sum' else f' / {np_type}(n)'}")
    else:
        start = 0
        loads.append("        g0 = g_root[i]")
    for k, e in enumerate(entries):  # parameters in the walk's order
        if e is _LEAF:
            outs.append(f"out{k}")
        elif len(e) == 2:
            plan, targets = e
            for j in _reads(plan, targets):
                var = f"v{k}_r" if j < 0 else f"v{k}_{j}"
                params.append(f"{var}_")
                if j >= 0 and plan.mask[j] == "s":
                    prologue.append(f"    {var} = {np_type}({var}_)")
                else:
                    loads.append(f"        {var} = {var}_[i]")
    assigned = {start}
    for k in _order(entries, start):  # gradients in dependency order
        e = entries[k]
        if e is _LEAF:
            body.append(f"        out{k}[i] = g{k}")
            continue
        plan, targets = e
        spec = plan.node_cls.spec
        names = {"g": f"g{k}", "result": f"v{k}_r"}
        names.update((name, f"v{k}_{j}") for j, name in enumerate(spec.inputs))
        for i, t in zip(_inputs(plan.node_cls), targets):
            if t < 0:
                continue
            contribution = _expr(spec.grads[spec.inputs[i]], dtype_name, names)
            body.append(f"        g{t} = {'g%d + ' % t if t in assigned else ''}{contribution}")
            assigned.add(t)
    header, decorator, _ = codegen.CPU_TARGET
    return "\n".join([*header, decorator, f"def fused_backward({', '.join(params + outs)}):",
                      *prologue, "    for i in range(n):", *loads, *body, ""])


def _compile(key):
    return codegen.load_module("fused_backward", _source(key)).fused_backward


if _threshold > 0:
    engine.fuser = run
