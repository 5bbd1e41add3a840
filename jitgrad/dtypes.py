"""jitgrad dtypes and PyTorch's type-promotion rules."""

import builtins

import numpy as np

__all__ = ["bool", "double", "dtype", "float", "float32", "float64", "int", "int32", "int64",
           "long"]


class dtype:
    """A tensor element type; prints as ``jitgrad.float32`` like ``torch.float32``."""

    __slots__ = ("name", "np", "is_floating_point", "itemsize", "_rank", "scalar_name",
                 "tensor_type")

    def __init__(self, name, np_dtype, is_floating_point, rank, scalar_name):
        self.name = name
        self.scalar_name = scalar_name  # PyTorch's name in error messages: "Float", "Long"
        self.tensor_type = scalar_name + "Tensor"  # the legacy type name: "FloatTensor"
        self.np = np.dtype(np_dtype)
        self.is_floating_point = is_floating_point
        self.itemsize = self.np.itemsize
        self._rank = rank  # promotion order: bool < int32 < int64 < float32 < float64

    def __repr__(self):
        return f"jitgrad.{self.name}"

    def __reduce__(self):
        return self.name


bool_ = dtype("bool", np.bool_, False, 0, "Bool")
int32 = dtype("int32", np.int32, False, 1, "Int")
int64 = dtype("int64", np.int64, False, 2, "Long")
float32 = dtype("float32", np.float32, True, 3, "Float")
float64 = dtype("float64", np.float64, True, 4, "Double")

bool = bool_  # noqa: A001 - PyTorch's public name
float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001

_BY_NUMPY = {d.np: d for d in (bool_, int32, int64, float32, float64)}
_BY_NAME = {d.name: d for d in (bool_, int32, int64, float32, float64)}
_DEFAULT_FLOAT = float32


def from_numpy_dtype(np_dtype):
    """The jitgrad dtype for a numpy dtype, or TypeError naming it."""
    d = _BY_NUMPY.get(np.dtype(np_dtype))
    if d is None:
        raise TypeError(
            f"can't convert np.ndarray of type numpy.{np.dtype(np_dtype).name}. The only supported "
            "types are: float64, float32, int64, int32, and bool."
        )
    return d


def to_dtype(d):
    """Normalise a dtype argument (jitgrad dtype, numpy dtype, Python type or None)."""
    if d is None or isinstance(d, dtype):
        return d
    if d is builtins.float:
        return float32
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool_
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    try:
        return from_numpy_dtype(d)
    except TypeError:
        raise TypeError(f"expected a jitgrad dtype, got {d!r}") from None


def scalar_dtype(value):
    """The dtype category of a Python scalar: PyTorch's 'wrapped number' rule."""
    if isinstance(value, builtins.bool):
        return bool_
    if isinstance(value, builtins.int):
        return int64
    return _DEFAULT_FLOAT


def promote(a, b):
    """Result dtype of a binary op between two tensor dtypes."""
    return a if a._rank >= b._rank else b


def promote_with_scalar(t, value):
    """Result dtype of tensor-op-scalar: a scalar only moves the dtype to a higher category."""
    s = scalar_dtype(value)
    if s.is_floating_point and not t.is_floating_point:
        return _DEFAULT_FLOAT
    if s is int64 and t is bool_:
        return int64
    return t


def get_default_dtype():
    return _DEFAULT_FLOAT
