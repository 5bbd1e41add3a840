"""Public elementwise functions with PyTorch's signatures, and their in-place variants."""

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class
from jitgrad.ops import _storage
from jitgrad.ops import elementwise as ew
from jitgrad.ops._checks import shape_str
from jitgrad.tensor import Tensor

_S = ew.SPECS

__all__ = ["add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "pow",
           "neg", "negative", "abs", "exp", "log", "log1p", "expm1", "erf", "sqrt", "rsqrt", "sin",
           "cos", "tanh", "sigmoid", "relu", "sign", "square", "reciprocal", "clamp", "clip",
           "maximum", "minimum", "lerp", "lerp_", "remainder", "floor_divide", "floor", "ceil",
           "trunc", "round", "where", "eq", "ne", "lt", "le", "gt", "ge", "isnan", "logical_and",
           "logical_or", "logical_xor", "logical_not", "add_", "sub_", "mul_", "div_", "pow_",
           "clamp_", "neg_", "exp_", "log_", "log1p_", "expm1_", "erf_", "sqrt_", "tanh_",
           "sigmoid_", "relu_", "abs_", "remainder_", "floor_divide_", "floor_", "ceil_", "trunc_",
           "round_", "zero_", "fill_", "copy_", "masked_fill_", "equal", "allclose", "isclose"]


def _unary(name):
    spec = _S[name]

    def fn(input):
        return ew.apply(spec, (input,))

    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{spec.formula}``."
    return fn


def _binary(name):
    spec = _S[name]

    def fn(input, other):
        return ew.apply(spec, (input, other))

    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``{spec.formula}`` with broadcasting."
    return fn


def _inplace(name):
    spec = _S[name]

    def fn(input, *args):
        return ew.apply_(spec, input, (input, *args))

    fn.__name__ = name + "_"
    fn.__doc__ = f"In-place ``{spec.formula}``."
    return fn


neg, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, sign, abs, isnan, logical_not = (
    _unary(n) for n in ("neg", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid",
                        "relu", "sign", "abs", "isnan", "logical_not"))
log1p, expm1, erf = (_unary(n) for n in ("log1p", "expm1", "erf"))
negative = neg
mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, logical_and, logical_or, logical_xor = (
    _binary(n) for n in ("mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt",
                         "ge", "logical_and", "logical_or", "logical_xor"))
multiply, divide, true_divide = mul, div, div
mul_, div_, pow_, neg_, exp_, log_, sqrt_, tanh_, sigmoid_, relu_, abs_ = (
    _inplace(n) for n in ("mul", "div", "pow", "neg", "exp", "log", "sqrt", "tanh", "sigmoid",
                          "relu", "abs"))
log1p_, expm1_, erf_ = (_inplace(n) for n in ("log1p", "expm1", "erf"))


def _no_negative_integer_power(fn):
    """PyTorch's error for an integer tensor to a negative integer number: the exact integer
    power it computes has no integer value there (a tensor exponent is not checked, as there)."""
    def checked(input, exponent):
        if (type(exponent) is int and exponent < 0 and isinstance(input, Tensor)
                and input._data.dtype.kind in "iub"):
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        return fn(input, exponent)

    checked.__name__, checked.__doc__ = fn.__name__, fn.__doc__
    return checked


pow, pow_ = _no_negative_integer_power(pow), _no_negative_integer_power(pow_)


def _lerp_checks(input, end, weight):
    """PyTorch's dtype errors for lerp: floating point, ``end`` (and a tensor ``weight``) in
    ``input``'s dtype."""
    kind = input._data.dtype.kind
    if kind != "f":
        raise NotImplementedError(
            f'"lerp_kernel_scalar" not implemented for \'{input.dtype.scalar_name}\'')
    for name, other in (("end", end), ("weight", weight)):
        if isinstance(other, Tensor) and other._data.dtype != input._data.dtype:
            raise RuntimeError(f"expected dtype {_C_NAMES[input._data.dtype.name]} for `{name}` "
                               f"but got dtype {_C_NAMES.get(other._data.dtype.name, '?')}")


# the C++ type names PyTorch's dtype errors print
_C_NAMES = {"float32": "float", "float64": "double", "int64": "long int", "int32": "int",
            "bool": "bool"}


def lerp(input, end, weight):
    """``input + weight * (end - input)``, with broadcasting."""
    _lerp_checks(input, end, weight)
    return ew.apply(_S["lerp"], (input, end, weight))


def lerp_(input, end, weight):
    _lerp_checks(input, end, weight)
    return ew.apply_(_S["lerp"], input, (input, end, weight))


def _integral(value):
    return (value._data.dtype.kind in "iub") if isinstance(value, Tensor) else (
        type(value) in (int, bool))


def _is_bool(value):
    return value._data.dtype.kind == "b" if isinstance(value, Tensor) else type(value) is bool


def _integer_division(name, fn):
    """PyTorch's (CPU) error for an integer division or remainder by zero, raised before any
    kernel runs; float division by zero gives inf and nan."""
    def checked(input, other):
        if _is_bool(input) and _is_bool(other):
            raise NotImplementedError(f'"{name.rstrip("_")}_cpu" not implemented for \'Bool\'')
        if _integral(input) and _integral(other):
            zero = (other == 0).any().item() if isinstance(other, Tensor) else other == 0
            if zero:
                raise RuntimeError("ZeroDivisionError")
        return fn(input, other)

    checked.__name__ = name
    checked.__doc__ = (f"Elementwise ``{_S[name.rstrip('_')].formula}`` with broadcasting, the "
                       "result taking the divisor's sign as Python's ``%`` and ``//``.")
    return checked


remainder = _integer_division("remainder", _binary("remainder"))
floor_divide = _integer_division("floor_divide", _binary("floor_divide"))
remainder_ = _integer_division("remainder_", _inplace("remainder"))
floor_divide_ = _integer_division("floor_divide_", _inplace("floor_divide"))


def _rounding(name):
    """A rounding op: its kernel for float tensors; integer tensors are already whole (a copy
    out of place, unchanged in place), as in PyTorch."""
    out_of_place, in_place = _unary(name), _inplace(name)

    def fn(input):
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}(): argument 'input' must be Tensor, not "
                            f"{type(input).__name__}")
        if input._data.dtype.kind != "f":
            return Tensor._wrap(ew.cast(input._data, input._data.dtype))
        return out_of_place(input)

    def fn_(input):
        return input if input._data.dtype.kind != "f" else in_place(input)

    fn.__name__, fn.__doc__ = name, out_of_place.__doc__
    fn_.__name__, fn_.__doc__ = name + "_", in_place.__doc__
    return fn, fn_


(floor, floor_), (ceil, ceil_), (trunc, trunc_) = (_rounding(n) for n in ("floor", "ceil", "trunc"))
_round, _round_ = _rounding("round")


def round(input, *, decimals=0):
    """Round half to even (``decimals`` places: ``round(x * 10**d) / 10**d``, as PyTorch)."""
    if decimals == 0:
        return _round(input)
    scale = 10.0 ** decimals
    return _round(input * scale) / scale


def round_(input, *, decimals=0):
    if decimals == 0:
        return _round_(input)
    scale = 10.0 ** decimals
    return input.mul_(scale).round_().div_(scale)


def _scaled(other, alpha):
    return other if alpha == 1 else ew.apply(_S["mul"], (other, alpha))


def add(input, other, *, alpha=1):
    """``input + alpha * other`` with broadcasting."""
    return ew.apply(_S["add"], (input, _scaled(other, alpha)))


def sub(input, other, *, alpha=1):
    """``input - alpha * other`` with broadcasting."""
    return ew.apply(_S["sub"], (input, _scaled(other, alpha)))


subtract = sub


def add_(input, other, *, alpha=1):
    return ew.apply_(_S["add"], input, (input, _scaled(other, alpha)))


def sub_(input, other, *, alpha=1):
    return ew.apply_(_S["sub"], input, (input, _scaled(other, alpha)))


def square(input):
    return ew.apply(_S["mul"], (input, input))


def reciprocal(input):
    return ew.apply(_S["div"], (1.0, input))


def _clamp_bounds(input, min, max):
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    dt = input._data.dtype
    lo_default, hi_default = ((-np.inf, np.inf) if dt.kind == "f" else
                              (int(np.iinfo(dt).min), int(np.iinfo(dt).max)))
    return (lo_default if min is None else min), (hi_default if max is None else max)


def clamp(input, min=None, max=None):
    """Limit values to [min, max]; either bound may be None."""
    return ew.apply(_S["clamp"], (input, *_clamp_bounds(input, min, max)))


clip = clamp


def clamp_(input, min=None, max=None):
    return ew.apply_(_S["clamp"], input, (input, *_clamp_bounds(input, min, max)))


def where(condition, input, other):
    """``input`` where ``condition`` is True, else ``other``."""
    if not isinstance(condition, Tensor) or condition._data.dtype != np.bool_:
        raise RuntimeError("where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {getattr(condition, 'dtype', type(condition).__name__)}")
    return ew.apply(_S["where"], (condition, input, other))


def _fill_backward(node, g):
    return (g * 0,)


FillBackward0 = node_class("FillBackward0", _fill_backward)


def fill_(input, value):
    """Set every element to ``value``; under autograd the old history gets a zero gradient."""
    from jitgrad.ops import inplace

    value = value.item() if isinstance(value, Tensor) else ew.scalar_value(value)
    if grad_mode.is_grad_enabled() and input._requires_grad:
        inplace.check(input)
        filled = _storage.empty(input._data.shape, input._data.dtype, input._data)
        ew.fill(filled, value)
        return inplace.commit(input, Tensor._wrap(filled, FillBackward0((input._grad_edge(),))))
    ew.fill(input._data, value)
    input._version[0] += 1
    return input


def zero_(input):
    """Set every element to zero."""
    return fill_(input, 0)


def _copy_backward(node, g):
    from jitgrad.ops.reduce import sum_to_shape

    src_shape, src_dtype = node.saved_values()
    return g * 0, sum_to_shape(g, src_shape).to(src_dtype)


CopyBackwards = node_class("CopyBackwards", _copy_backward)


def copy_(input, src, non_blocking=False):
    """Copy ``src`` (broadcast to this shape, any dtype) into ``input``."""
    from jitgrad.ops import inplace

    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' must be Tensor, not {type(src).__name__}")
    if np.broadcast_shapes(src._data.shape, input._data.shape) != input._data.shape:
        raise RuntimeError(
            f"output with shape {shape_str(input._data.shape)} doesn't match the broadcast shape "
            f"{shape_str(np.broadcast_shapes(src._data.shape, input._data.shape))}")
    if _storage.device_of(src._data) != _storage.device_of(input._data):
        src = src.to(input.device)  # copy_ is how PyTorch code moves data between devices
    if grad_mode.is_grad_enabled() and (input._requires_grad or src._requires_grad):
        inplace.check(input)
        copied = _storage.empty(input._data.shape, input._data.dtype, input._data)
        ew.copy_into(copied, src._data)
        node = CopyBackwards((input._grad_edge(), src._grad_edge()), (src._data.shape, src.dtype))
        return inplace.commit(input, Tensor._wrap(copied, node))
    ew.copy_into(input._data, src._data)
    input._version[0] += 1
    return input


def masked_fill_(input, mask, value):
    return ew.apply_(_S["where"], input, (mask, value, input))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Elementwise ``|input - other| <= atol + rtol * |other|``."""
    close = le(abs(sub(input, other)), add(abs(other) * rtol, atol))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(input), isnan(other)))
    return logical_or(close, eq(input, other))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def equal(input, other):
    """True when both tensors have the same shape and elements."""
    return input.shape == other.shape and bool(eq(input, other).all())
