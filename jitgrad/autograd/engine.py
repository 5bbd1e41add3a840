"""The backward scheduler: dependency counting, then nodes in topological order, iteratively."""

from jitgrad.autograd import grad_mode

__all__ = ["run_backward"]


def _count_dependencies(roots):
    deps = {}
    seen = set(roots)
    stack = list(roots)
    while stack:
        for nxt, _ in stack.pop().next_functions:
            if nxt is None:
                continue
            deps[nxt] = deps.get(nxt, 0) + 1
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return deps


def run_backward(roots, root_grads, retain_graph, create_graph):
    """Propagate ``root_grads`` from the ``roots`` nodes to every reachable node.

    Gradients meeting at a node are summed; each node runs once, when all its consumers are done.
    """
    deps = _count_dependencies(roots)
    buffers = {}
    for node, grad in zip(roots, root_grads):
        buffers[node] = grad if node not in buffers else buffers[node] + grad
    ready = [n for n in dict.fromkeys(roots) if n not in deps]
    with grad_mode.set_grad_enabled(create_graph):
        while ready:
            node = ready.pop()
            grad = buffers.pop(node, None)
            grads = ()
            if grad is not None:
                if node.retained is not None:
                    node.retained._accumulate_grad(grad)
                grads = node.apply(grad)
                if not retain_graph:
                    node.release()
            for i, (nxt, _) in enumerate(node.next_functions):
                if nxt is None:
                    continue
                g = grads[i] if grads else None
                if g is not None:
                    prev = buffers.get(nxt)
                    buffers[nxt] = g if prev is None else prev + g
                remaining = deps[nxt] - 1
                deps[nxt] = remaining
                if remaining == 0:
                    ready.append(nxt)
