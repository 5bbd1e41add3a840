"""Graph nodes: ``grad_fn`` objects and the ``AccumulateGrad`` node of a leaf."""

import numpy as np

from jitgrad.autograd import anomaly, grad_mode

_GRAD = grad_mode._state  # thread-local grad mode, read directly on hot paths
_ANOMALY = anomaly._state  # read on every node: a dict lookup, not a call

__all__ = ["RESULT", "AccumulateGrad", "Node", "node_class", "record"]

_FREED = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward."
)


class Node:
    """A backward step: ``apply(grad_output)`` returns one gradient (or None) per edge.

    ``next_functions`` holds ``(node, 0)`` per input as PyTorch exposes it; ``saved`` holds
    what the backward formula reads, dropped after the pass unless the graph is retained.
    """

    __slots__ = ("next_functions", "saved", "versions", "retained", "hooks", "trace",
                 "__weakref__")
    n_outputs = 1

    def __init__(self, next_functions, saved=()):
        self.next_functions = next_functions
        self.saved = saved
        self.versions = None  # (version box, version at save, tensor or None for the output)
        self.retained = None  # a non-leaf tensor that called retain_grad()
        self.hooks = None
        self.trace = anomaly.forward_trace() if _ANOMALY["enabled"] else None

    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs)`` runs after this node; it may return new grad_inputs."""
        return self._hook_list().post.add(fn)

    def register_prehook(self, fn):
        """``fn(grad_outputs)`` runs before this node; it may return new grad_outputs."""
        return self._hook_list().pre.add(fn)

    def _hook_list(self):
        if self.hooks is None:
            self.hooks = _Hooks()
        return self.hooks

    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def saved_values(self):
        """The saved values, or PyTorch's error when a previous backward freed them."""
        if self.saved is None:
            raise RuntimeError(_FREED)
        if self.versions is not None:
            for box, expected, tensor in self.versions:
                if box[0] != expected:
                    raise RuntimeError(_modified_message(self, box[0], expected, tensor))
        return self.saved

    def release(self):
        """Free saved tensors after a backward; nodes that saved only metadata keep it."""
        if self.saved and _holds_values(self.saved):
            self.saved = self.versions = None  # versions hold the saved tensors too

    def apply(self, grad_output):
        raise NotImplementedError


def _holds_values(saved):
    """Whether ``saved`` (one level of nesting) holds tensors or arrays, as PyTorch frees them."""
    for v in saved if isinstance(saved, (tuple, list)) else (saved,):
        if isinstance(v, tuple):
            if any(hasattr(w, "_data") or isinstance(w, np.ndarray) for w in v):
                return True
        elif hasattr(v, "_data") or isinstance(v, np.ndarray):
            return True
    return False


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    __slots__ = ("_hooks", "_key")

    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class _HookDict(dict):
    _next = 0

    def add(self, fn):
        _HookDict._next += 1
        self[_HookDict._next] = fn
        return RemovableHandle(self, _HookDict._next)


class _Hooks:
    """A node's hooks: tensor hooks and pre-hooks before ``apply``, post hooks after it."""

    __slots__ = ("tensor", "pre", "post")

    def __init__(self):
        self.tensor, self.pre, self.post = _HookDict(), _HookDict(), _HookDict()

    def before(self, node, grad):
        for fn in list(self.tensor.values()):
            new = fn(grad)
            grad = grad if new is None else new
        for fn in list(self.pre.values()):
            new = fn((grad,))
            grad = grad if new is None else new[0]
        return grad

    def after(self, grads, grad_output):
        for fn in list(self.post.values()):
            new = fn(tuple(grads), (grad_output,))
            grads = grads if new is None else new
        return grads


class AccumulateGrad(Node):
    """Adds the incoming gradient into a leaf's ``.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        Node.__init__(self, ())  # not super(): one per leaf of every graph, and cheaper
        self.variable = variable

    def apply(self, grad_output):
        self.variable._accumulate_grad(grad_output)
        return ()


def _modified_message(node, version, expected, tensor):
    if tensor is None:
        where = f", which is output 0 of {node.name()},"
        described = "a saved output"
    else:
        where = f", which is output 0 of {tensor.grad_fn.name()}," if tensor.grad_fn else ""
        described = f"[jitgrad.{tensor.dtype.tensor_type} {list(tensor._data.shape)}]"
    return (
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: {described}{where} is at version {version}; expected version {expected} "
        "instead.")


RESULT = object()  # stands for an op's own output in ``record(..., check=...)``


def record(result, node_cls, inputs, saved, check=()):
    """Attach a ``node_cls`` node to ``result`` when grad mode is on and an input needs a gradient.

    ``check`` names the tensors the backward reads (``RESULT`` for the output): modifying one in
    place before the backward then raises PyTorch's "modified by an inplace operation" error.
    """
    if not _GRAD.enabled:
        return result
    for t in inputs:
        if t._requires_grad:
            # NOTE: one input (most ops) needs no loop; list comprehensions, not generators:
            # ~0.3 us less per recorded op
            edges = ((t._grad_edge(),) if len(inputs) == 1
                     else tuple([u._grad_edge() for u in inputs]))
            node = node_cls(edges, saved)
            if check:
                node.versions = tuple([
                    (result._version, 0, None) if c is RESULT else (c._version, c._version[0], c)
                    for c in check])
            result.grad_fn = node
            result._requires_grad = True
            break
    return result


def node_class(name, apply, base=Node):
    """A Node subclass named as PyTorch prints it (``MulBackward0``), ``apply`` its backward."""
    return type(name, (base,), {"__slots__": (), "apply": apply})
