"""Custom differentiable operations: subclass ``Function`` with ``forward`` and ``backward``."""

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import Node

__all__ = ["Function", "FunctionCtx"]


class FunctionCtx(Node):
    """The ``ctx`` of a custom Function; it is also the graph node (``grad_fn``) of its outputs."""

    function = None  # the Function subclass, set on each generated node class

    def save_for_backward(self, *tensors):
        self.saved = tensors
        self.versions = tuple((t._version, t._version[0], t) for t in tensors if t is not None)

    @property
    def saved_tensors(self):
        return tuple(self.saved_values())

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = {id(t) for t in tensors}

    def mark_dirty(self, *tensors):
        self.dirty = tensors

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)

    def apply(self, grad_output):
        from jitgrad.ops.creation import zeros

        grads = list(grad_output) if self.n_outputs > 1 else [grad_output]
        if self.materialize_grads:
            grads = [zeros(shape, dtype=dtype) if g is None and shape is not None else g
                     for g, (shape, dtype) in zip(grads, self.output_meta)]
        result = self.function.backward(self, *grads)
        return _check_gradients(self, result if isinstance(result, tuple) else (result,))


def _check_gradients(ctx, grads):
    """Validate what ``backward`` returned: one gradient per forward input, of its shape."""
    from jitgrad.ops.reduce import sum_to_shape
    from jitgrad.tensor import Tensor

    n = len(ctx.input_meta)
    name = ctx.name()
    if len(grads) < n or any(g is not None for g in grads[n:]):
        raise RuntimeError(f"function {name} returned an incorrect number of gradients "
                           f"(expected {n}, got {len(grads)})")
    out = []
    for i, (g, meta) in enumerate(zip(grads, ctx.input_meta)):
        if g is None or meta is None:
            if g is not None and ctx.next_functions[i][0] is None:
                raise RuntimeError(
                    f"function {name} returned a gradient different than None at position "
                    f"{i + 1}, but the corresponding forward input was not a Variable")
            out.append(None)
            continue
        if not isinstance(g, Tensor):
            raise TypeError(f"function {name} returned a {type(g).__name__} as gradient {i}; "
                            "expected a Tensor or None")
        shape, dtype = meta
        if g._data.shape != shape:
            try:
                g = sum_to_shape(g, shape) if g._data.size >= _numel(shape) else None
            except RuntimeError:
                g = None
            if g is None:
                raise RuntimeError(
                    f"Function {name} returned an invalid gradient at index {i} - got "
                    f"{list(grads[i]._data.shape)} but expected shape compatible with "
                    f"{list(shape)}")
        out.append(g if g.dtype == dtype else g.to(dtype))
    return out


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class Function:
    """Base class of custom autograd operations.

    Example::

        >>> import jitgrad
        >>> class Cube(jitgrad.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         ctx.save_for_backward(x)
        ...         return x ** 3
        ...     @staticmethod
        ...     def backward(ctx, grad_output):
        ...         (x,) = ctx.saved_tensors
        ...         return 3 * x ** 2 * grad_output
        >>> x = jitgrad.tensor([2.0], requires_grad=True)
        >>> y = Cube.apply(x)
        >>> y
        tensor([8.], grad_fn=<CubeBackward>)
        >>> y.backward()
        >>> x.grad
        tensor([12.])
    """

    _node_classes = {}

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement the backward function for custom Function.")

    @classmethod
    def _node_class(cls):
        node_cls = Function._node_classes.get(cls)
        if node_cls is None:
            node_cls = type(f"{cls.__name__}Backward", (FunctionCtx,), {"function": cls})
            Function._node_classes[cls] = node_cls
        return node_cls

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` without recording, then make its outputs children of one node."""
        from jitgrad.tensor import Tensor

        is_tensor = [isinstance(a, Tensor) for a in args]
        ctx = cls._node_class()(tuple(a._grad_edge() if t else (None, 0)
                                      for a, t in zip(args, is_tensor)), ())
        ctx.needs_input_grad = tuple(t and a._requires_grad for a, t in zip(args, is_tensor))
        ctx.input_meta = tuple((a._data.shape, a.dtype) if t else None
                               for a, t in zip(args, is_tensor))
        ctx.non_differentiable, ctx.dirty, ctx.materialize_grads = set(), (), True
        with grad_mode.no_grad():
            outputs = cls.forward(ctx, *args, **kwargs)
        if not (grad_mode.is_grad_enabled() and any(ctx.needs_input_grad)):
            return outputs
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        ctx.n_outputs = len(outs)
        ctx.output_meta = tuple((o._data.shape, o.dtype) if isinstance(o, Tensor) else (None, None)
                                for o in outs)
        wired = tuple(_attach(ctx, o, i, args) for i, o in enumerate(outs))
        return wired[0] if single else wired


def _attach(ctx, out, index, inputs):
    """Make ``out`` the ``index``-th output of ``ctx`` (an alias when forward returned an input)."""
    from jitgrad.tensor import Tensor

    if not isinstance(out, Tensor) or id(out) in ctx.non_differentiable or \
            out._data.dtype.kind != "f":
        return out
    if any(out is a for a in inputs) and not any(out is d for d in ctx.dirty):
        out = out.detach()
    out.grad_fn = ctx
    out._output_nr = index
    out._requires_grad = True
    return out
