"""Binds the op functions to ``Tensor`` as methods and operators: each op is written once."""

from jitgrad import dtypes
from jitgrad.ops import creation, elementwise, index, linalg, pointwise, reduce, scan, shape, sort

_MODULES = (pointwise, reduce, scan, sort, shape, linalg)
_NOT_METHODS = {"cat", "concat", "concatenate", "stack", "embed", "sum_to_shape"}


def _operand_check(fn, reflected=False):
    """An operator method that returns NotImplemented for operands jitgrad can't take.

    ``reflected``: ``other OP self``; ``"commutative"`` computes ``self OP other`` instead, so
    ``2 * x`` records the same graph as ``x * 2``, as in PyTorch.
    """
    if reflected is True:
        def method(self, other):
            try:
                return fn(other, self)
            except elementwise.UnsupportedOperand:
                return NotImplemented
    else:
        def method(self, other):
            try:
                return fn(self, other)
            except elementwise.UnsupportedOperand:
                return NotImplemented
    return method


def _operator(name, reflected=False):
    """``_operand_check`` of an elementwise spec, applied directly: the hottest calls there are.

    ``elementwise.apply`` and ``apply_binary`` are looked up per call, so ``jitgrad.compile``'s
    tracer, which swaps them, sees operators too.
    """
    spec = elementwise.SPECS[name]
    if reflected is True:
        def method(self, other):
            try:
                return elementwise.apply(spec, (other, self))
            except elementwise.UnsupportedOperand:
                return NotImplemented
    else:
        def method(self, other):
            try:
                return elementwise.apply_binary(spec, self, other)
            except elementwise.UnsupportedOperand:
                return NotImplemented
    return method


def _alias_methods(Tensor):
    p = pointwise
    return {
        "__add__": _operator("add"), "__radd__": _operator("add", "commutative"),
        "__sub__": _operator("sub"), "__rsub__": _operator("sub", True),
        "__mul__": _operator("mul"), "__rmul__": _operator("mul", "commutative"),
        "__truediv__": _operator("div"), "__rtruediv__": _operator("div", True),
        "__pow__": _operand_check(p.pow), "__rpow__": _operand_check(p.pow, True),
        "__mod__": _operand_check(p.remainder), "__rmod__": _operand_check(p.remainder, True),
        "__floordiv__": _operand_check(p.floor_divide),
        "__rfloordiv__": _operand_check(p.floor_divide, True),
        "__imod__": p.remainder_, "__ifloordiv__": p.floor_divide_,
        "__matmul__": _operand_check(linalg.matmul),
        "__rmatmul__": _operand_check(linalg.matmul, True),
        "__eq__": _operand_check(p.eq), "__ne__": _operand_check(p.ne),
        "__lt__": _operand_check(p.lt), "__le__": _operand_check(p.le),
        "__gt__": _operand_check(p.gt), "__ge__": _operand_check(p.ge),
        "__and__": _operand_check(p.logical_and), "__or__": _operand_check(p.logical_or),
        "__xor__": _operand_check(p.logical_xor), "__invert__": p.logical_not,
        "__rand__": _operand_check(p.logical_and, "commutative"),
        "__ror__": _operand_check(p.logical_or, "commutative"),
        "__rxor__": _operand_check(p.logical_xor, "commutative"),
        "__iadd__": p.add_, "__isub__": p.sub_, "__imul__": p.mul_, "__itruediv__": p.div_,
        "__ipow__": p.pow_, "__neg__": p.neg, "__abs__": p.abs,
        "__getitem__": index.getitem, "__setitem__": index.setitem,
        "index_select": index.index_select, "masked_fill": index.masked_fill,
        "take": index.take, "gather": reduce.gather, "flip": index.flip,
        "T": property(lambda self: self.permute(*reversed(range(self._data.ndim)))),
        "mT": property(lambda self: self.transpose(-2, -1)),
        "new_zeros": lambda self, *s, **kw: creation.zeros(*s, **_like(self, kw)),
        "new_ones": lambda self, *s, **kw: creation.ones(*s, **_like(self, kw)),
        "new_tensor": lambda self, d, **kw: creation.tensor(d, **_like(self, kw)),
        "new_full": lambda self, s, v, **kw: creation.full(s, v, **_like(self, kw)),
        "new_empty": lambda self, *s, **kw: creation.empty(*s, **_like(self, kw)),
        "float": lambda self: shape.to(self, dtypes.float32),
        "double": lambda self: shape.to(self, dtypes.float64),
        "long": lambda self: shape.to(self, dtypes.int64),
        "int": lambda self: shape.to(self, dtypes.int32),
        "bool": lambda self: shape.to(self, dtypes.bool_),
        "type": lambda self, dtype=None: (
            f"jitgrad.{'cuda.' if self.is_cuda else ''}{self.dtype.tensor_type}"
            if dtype is None else self.to(dtype)),
    }




def _like(tensor, kwargs):
    """``new_*`` methods default to the tensor's dtype and device, as in PyTorch."""
    return {"dtype": tensor.dtype, "device": tensor.device, **kwargs}


def bind(Tensor):
    """Attach every public op as a Tensor method and fill the formula namespace."""
    for module in _MODULES:
        for name in module.__all__:
            if name not in _NOT_METHODS:
                setattr(Tensor, name, getattr(module, name))
    for name, fn in _alias_methods(Tensor).items():
        setattr(Tensor, name, fn)
    Tensor.__hash__ = object.__hash__  # __eq__ is elementwise, identity stays the hash
    elementwise._GRAPH_NAMESPACE.update(
        {n: getattr(pointwise, n) for n in ("where", "exp", "log", "sqrt", "tanh", "sigmoid",
                                             "sin", "cos", "maximum", "minimum", "logical_not",
                                             "isnan", "floor_divide")})
