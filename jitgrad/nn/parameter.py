"""``Parameter``: a Tensor that a ``Module`` registers as one of its learnable weights."""

from jitgrad.tensor import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf Tensor that requires grad and is registered when assigned to a ``Module`` attribute.

    It shares storage (and the version counter) with ``data``.

    Args:
        data: the tensor to wrap (an empty float32 tensor when None).
        requires_grad: whether the parameter requires gradient (default True).

    Example::

        >>> import jitgrad
        >>> from jitgrad.nn import Parameter
        >>> Parameter(jitgrad.ones(2))
        Parameter containing:
        tensor([1., 1.], requires_grad=True)
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = Tensor()
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter data must be a Tensor, got {type(data).__name__}")
        self._set_fields(data._data, None)
        self._version = data._version
        self.requires_grad_(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def _copy_with(self, data):
        return Parameter(Tensor._wrap(data), self._requires_grad)
