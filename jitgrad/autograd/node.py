"""Graph nodes: ``grad_fn`` objects and the ``AccumulateGrad`` node of a leaf."""

__all__ = ["Node", "AccumulateGrad", "node_class"]

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

    __slots__ = ("next_functions", "saved", "retained", "__weakref__")

    def __init__(self, next_functions, saved=()):
        self.next_functions = next_functions
        self.saved = saved
        self.retained = None  # a non-leaf tensor that called retain_grad()

    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def saved_values(self):
        """The saved values, or PyTorch's error when a previous backward freed them."""
        if self.saved is None:
            raise RuntimeError(_FREED)
        return self.saved

    def release(self):
        if self.saved:
            self.saved = None

    def apply(self, grad_output):
        raise NotImplementedError


class AccumulateGrad(Node):
    """Adds the incoming gradient into a leaf's ``.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable):
        super().__init__(())
        self.variable = variable

    def apply(self, grad_output):
        self.variable._accumulate_grad(grad_output)
        return ()


def node_class(name, apply, base=Node):
    """A Node subclass named as PyTorch prints it (``MulBackward0``) with ``apply`` as its backward."""
    return type(name, (base,), {"__slots__": (), "apply": apply})
