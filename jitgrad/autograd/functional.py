"""``backward``: validate the roots, then hand them to the engine."""

import numpy as np

from jitgrad.autograd.engine import run_backward

__all__ = ["backward"]


def _root(t, grad, i):
    from jitgrad.tensor import Tensor

    if not t._requires_grad:
        raise RuntimeError(
            f"element {i} of tensors does not require grad and does not have a grad_fn")
    if grad is None:
        if t._data.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs")
        grad = Tensor._wrap(np.ones(t._data.shape, t._data.dtype))
    elif not isinstance(grad, Tensor):
        raise TypeError(f"gradient must be a Tensor, got {type(grad).__name__}")
    elif grad._data.shape != t._data.shape:
        raise RuntimeError(
            f"Mismatch in shape: grad_output[{i}] has a shape of {grad.shape} and output[{i}] "
            f"has a shape of {t.shape}.")
    elif grad.dtype != t.dtype:
        grad = grad.to(t.dtype)
    node = t.grad_fn
    if node is None:
        node = t._grad_edge()[0]
    return node, grad


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves they depend on."""
    from jitgrad.tensor import Tensor

    if isinstance(tensors, Tensor):
        tensors = (tensors,)
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = (grad_tensors,) * (1 if grad_tensors is not None else len(tensors))
    if inputs is not None:
        raise NotImplementedError("backward(inputs=...) is not supported yet")
    if retain_graph is None:
        retain_graph = create_graph
    roots = [_root(t, g, i) for i, (t, g) in enumerate(zip(tensors, grad_tensors))]
    run_backward([n for n, _ in roots], [g for _, g in roots], retain_graph, create_graph)


