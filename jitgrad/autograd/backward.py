"""``backward`` and ``grad``: validate roots and inputs, then hand them to the engine."""


from jitgrad.autograd.engine import run_backward, run_scalar_fused
from jitgrad.ops import _storage
from jitgrad.tensor import Tensor

__all__ = ["backward", "grad"]


def _as_tuple(x):
    if x is None:
        return None
    return (x,) if isinstance(x, Tensor) else tuple(x)


def _roots(outputs, grad_outputs):
    grad_outputs = grad_outputs or (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad requires one grad_output per output: got {len(grad_outputs)} "
                           f"grad_outputs and {len(outputs)} outputs")
    roots, grads = [], []
    for i, (t, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected a Tensor as output {i}, got {type(t).__name__}")
        if not t._requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if t._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = Tensor._wrap(_storage.full(t._data.shape, 1, t._data.dtype, t._data))
        elif not isinstance(g, Tensor):
            raise TypeError(f"gradient must be a Tensor, got {type(g).__name__}")
        elif g._data.shape != t._data.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                f"has a shape of {t.shape}.")
        elif g._data.dtype != t._data.dtype:
            g = g.to(t.dtype)
        roots.append(t._grad_edge())
        grads.append(g)
    return roots, grads


def _input_nodes(inputs):
    nodes = []
    for t in inputs:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
        nodes.append(t._grad_edge()[0])
    return nodes


def _captured(captured, t, node):
    """The gradient that reached ``t``: a multi-output node holds one per output."""
    g = captured.get(node)
    return g[t._output_nr] if isinstance(g, list) else g


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """The gradients of ``outputs`` with respect to ``inputs``, returned instead of accumulated.

    Example::

        >>> import jitgrad
        >>> x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
        >>> jitgrad.autograd.grad((x * x).sum(), x)
        (tensor([2., 4.]),)
    """
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    if retain_graph is None:
        retain_graph = create_graph
    allow_unused = allow_unused or materialize_grads
    roots, grads = _roots(outputs, _as_tuple(grad_outputs))
    nodes = _input_nodes(inputs)
    captured = run_backward(roots, grads, retain_graph, create_graph, capture=nodes)
    result = []
    for t, node in zip(inputs, nodes):
        g = _captured(captured, t, node)
        if g is None and not allow_unused:
            raise RuntimeError(
                "One of the differentiated Tensors appears to not have been used in the graph. "
                "Set allow_unused=True if this is the desired behavior.")
        if g is None and materialize_grads:
            from jitgrad.ops.creation import zeros_like

            g = zeros_like(t)
        result.append(g)
    return tuple(result)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves (or ``inputs``)."""
    fused = None
    if grad_tensors is None and inputs is None and not create_graph and type(tensors) is Tensor:
        fused = run_scalar_fused(tensors, retain_graph)
        if fused:
            return
    tensors = _as_tuple(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    roots, grads = _roots(tensors, _as_tuple(grad_tensors))
    if inputs is None:
        run_backward(roots, grads, retain_graph, create_graph, fuse=fused is None)
        return
    inputs = _as_tuple(inputs)
    if not inputs:
        raise RuntimeError("backward() received an empty list of inputs")
    nodes = _input_nodes(inputs)
    captured = run_backward(roots, grads, retain_graph, create_graph, capture=nodes)
    from jitgrad.autograd import grad_mode

    with grad_mode.set_grad_enabled(create_graph):
        for t, node in zip(inputs, nodes):
            g = _captured(captured, t, node)
            if g is not None:
                t._accumulate_grad(g)
