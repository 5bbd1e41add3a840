"""The backward scheduler: dependency counting, then nodes in topological order, iteratively."""

import numpy as np

from jitgrad.autograd import anomaly, grad_mode
from jitgrad.autograd.node import AccumulateGrad

__all__ = ["run_backward", "run_scalar_fused"]

# ``fuser(root_node, root_grad_array, retain_graph) -> bool`` runs a whole backward as one
# fused kernel when it can (jitgrad/ops/fused_backward.py registers it; None turns it off)
fuser = None

_ANOMALY = anomaly._state  # read on every backward: a dict lookup, not a call

# dtype -> a read-only one-element 1: the implicit gradient of a scalar root, never a new array
_ONE = {}


def run_scalar_fused(t, retain_graph):
    """``t.backward()`` of a one-element CPU tensor with the implicit gradient, as one fused
    kernel: True when done, False when the fuser declined the graph (run it eagerly), None
    when this does not apply. No gradient tensor is made for the root: on a tiny graph that
    is a visible share of the backward."""
    d = t._data
    if (fuser is None or t.grad_fn is None or t._output_nr or type(d) is not np.ndarray
            or d.size != 1 or _ANOMALY["enabled"]):
        return None
    one = _ONE.get(d.dtype)
    if one is None:
        one = _ONE[d.dtype] = np.ones(1, d.dtype)
        one.flags.writeable = False
    return fuser(t.grad_fn, one, retain_graph)


def _walk(roots, with_parents):
    """Dependency counts of every node reachable from ``roots`` (and each node's parents).

    Roots start at 0, so a root reached from another root is counted, not walked twice.
    """
    deps = dict.fromkeys(roots, 0)
    parents = {} if with_parents else None
    stack = list(deps)
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            count = deps.get(nxt)
            if count is None:
                deps[nxt] = 1
                stack.append(nxt)
            else:
                deps[nxt] = count + 1
            if with_parents:
                parents.setdefault(nxt, []).append(node)
    return deps, parents


def _needed(capture, parents):
    """Nodes with a path to a captured node: the only ones ``autograd.grad`` has to run."""
    needed = set(capture)
    stack = list(capture)
    while stack:
        for p in parents.get(stack.pop(), ()):
            if p not in needed:
                needed.add(p)
                stack.append(p)
    return needed


def _add(buffers, node, nr, grad):
    if node.n_outputs == 1:
        prev = buffers.get(node)
        buffers[node] = grad if prev is None else prev + grad
        return
    slots = buffers.get(node)
    if slots is None:
        slots = buffers[node] = [None] * node.n_outputs
    slots[nr] = grad if slots[nr] is None else slots[nr] + grad


def run_backward(roots, root_grads, retain_graph, create_graph, capture=None, fuse=True):
    """Propagate ``root_grads`` (one per ``(node, output_nr)`` root) through the graph.

    Gradients meeting at a node are summed; each node runs once, when all its consumers are done.
    With ``capture`` (a list of nodes), returns the gradient arriving at each of them instead of
    accumulating into leaves, and runs only the nodes on paths to them (``autograd.grad``).
    ``fuse=False``: the fuser already declined this graph.
    """
    if (fuse and fuser is not None and capture is None and not create_graph and len(roots) == 1
            and roots[0][1] == 0 and not anomaly.is_enabled()
            and fuser(roots[0][0], root_grads[0]._data, retain_graph)):
        return {}
    root_nodes = [n for n, _ in roots]
    deps, parents = _walk(root_nodes, capture is not None)
    needed = _needed(capture, parents) if capture is not None else None
    captured = {}
    buffers = {}
    for (node, nr), grad in zip(roots, root_grads):
        _add(buffers, node, nr, grad)
    ready = [n for n in dict.fromkeys(root_nodes) if not deps[n]]
    check_nan = anomaly.is_enabled()
    with grad_mode.set_grad_enabled(create_graph):
        if needed is None and not check_nan:
            _run_plain(ready, deps, buffers, retain_graph, create_graph)
            return captured
        while ready:
            node = ready.pop()
            grad = buffers.pop(node, None)
            grads = ()
            if grad is not None:
                if node.hooks is not None:
                    grad = node.hooks.before(node, grad)
                if needed is None:
                    if node.retained is not None:
                        node.retained._accumulate_grad(grad)
                    grads = node.apply(grad)
                elif node in needed:
                    if node in capture:
                        captured[node] = grad
                    if type(node) is not AccumulateGrad:
                        grads = node.apply(grad)
                if grads and node.hooks is not None:
                    grads = node.hooks.after(grads, grad)
                if check_nan and grads:
                    anomaly.check_nan(node, grads)
                if not retain_graph:
                    node.release()
            for i, (nxt, nr) in enumerate(node.next_functions):
                if nxt is None or (needed is not None and nxt not in needed):
                    continue
                g = grads[i] if grads else None
                if g is not None:
                    _pass(buffers, nxt, nr, g, create_graph)
                remaining = deps[nxt] - 1
                deps[nxt] = remaining
                if remaining == 0:
                    ready.append(nxt)
    return captured


def _pass(buffers, nxt, nr, g, create_graph):
    """Hand ``g`` to input ``nr`` of ``nxt``, summing with what already arrived there."""
    if nxt.n_outputs == 1:
        prev = buffers.get(nxt)
        if prev is None:
            buffers[nxt] = g
        else:
            buffers[nxt] = total = prev + g
            total._fresh = not create_graph
    else:
        _add(buffers, nxt, nr, g)


def _run_plain(ready, deps, buffers, retain_graph, create_graph):
    """The scheduler loop of ``backward()`` without capture or anomaly checks: the hot path."""
    while ready:
        node = ready.pop()
        grad = buffers.pop(node, None)
        edges = node.next_functions
        if grad is None:
            grads = None
        else:
            hooks = node.hooks
            if hooks is not None:
                grad = hooks.before(node, grad)
            if node.retained is not None:
                node.retained._accumulate_grad(grad)
            grads = node.apply(grad)
            if hooks is not None and grads:
                grads = hooks.after(grads, grad)
            if not retain_graph:
                node.release()
            if not edges:
                continue
        if grads:
            for (nxt, nr), g in zip(edges, grads):
                if nxt is None:
                    continue
                if g is not None:
                    if nxt.n_outputs == 1 and nxt not in buffers:
                        buffers[nxt] = g
                    else:
                        _pass(buffers, nxt, nr, g, create_graph)
                remaining = deps[nxt] - 1
                deps[nxt] = remaining
                if not remaining:
                    ready.append(nxt)
        else:
            for nxt, _ in edges:
                if nxt is None:
                    continue
                remaining = deps[nxt] - 1
                deps[nxt] = remaining
                if not remaining:
                    ready.append(nxt)
