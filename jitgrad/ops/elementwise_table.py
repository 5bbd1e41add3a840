"""The elementwise op catalogue: one scalar formula per forward and per input's derivative.

In the spirit of PyTorch's ``derivatives.yaml``. Formulas are Python expressions over the
input names, ``result`` (the op's output) and ``g`` (the incoming gradient). The code generator
turns each into numba kernels; the same text, evaluated on Tensors, gives differentiable
backward graphs for ``create_graph=True``.

An optional fifth field names PyTorch's scalar overloads: for an argument pattern ('a' tensor,
's' Python number), the node's name; such a node has edges for its tensor inputs only, as
PyTorch's ``pow(Tensor, Scalar)`` (``PowBackward0``) has.

Kinds: ``arith`` keeps integer dtypes, ``float`` promotes integers to the default float dtype,
``compare`` returns bool, ``logical`` works on bool, ``cast`` writes into any dtype.
"""

__all__ = ["ELEMENTWISE"]

# name: (inputs, forward, kind, {input: derivative}[, {argument pattern: node name}])
ELEMENTWISE = {
    "add": ("x y", "x + y", "arith", {"x": "g", "y": "g"}),
    "sub": ("x y", "x - y", "arith", {"x": "g", "y": "-g"}, {"sa": "RsubBackward1"}),
    "mul": ("x y", "x * y", "arith", {"x": "g * y", "y": "g * x"}),
    "div": ("x y", "x / y", "float", {"x": "g / y", "y": "-g * result / y"}),
    # NOTE: d/dy of x**y is 0 where x == 0 and y >= 0 (PyTorch's choice), not nan from log(0);
    # d/dx is 0 where y == 0, as PyTorch masks it, not 0 * inf at x == 0.
    "pow": ("x y", "x ** y", "arith", {"x": "where(y == 0, 0, g * y * x ** (y - 1))",
                                       "y": "where((x == 0) & (y >= 0), 0, g * result * log(x))"},
            {"aa": "PowBackward1", "as": "PowBackward0", "sa": "PowBackward2"}),
    # NOTE: ties split the gradient evenly between the operands, as PyTorch does.
    "maximum": ("x y", "maximum(x, y)", "arith",
                {"x": "where(x > y, g, where(x == y, g * 0.5, 0))",
                 "y": "where(y > x, g, where(x == y, g * 0.5, 0))"}),
    "minimum": ("x y", "minimum(x, y)", "arith",
                {"x": "where(x < y, g, where(x == y, g * 0.5, 0))",
                 "y": "where(y < x, g, where(x == y, g * 0.5, 0))"}),
    # NOTE: floor-mod and floor division with Python's (and PyTorch's) signs; floor_divide has
    # no derivative (PyTorch raises there; its gradient is 0 almost everywhere).
    "remainder": ("x y", "remainder(x, y)", "arith", {"x": "g", "y": "-g * floor_divide(x, y)"},
                  {"aa": "RemainderBackward1", "as": "RemainderBackward0"}),
    "floor_divide": ("x y", "floor_divide(x, y)", "arith", {}),
    # rounding: float inputs only (integers are returned as copies before any kernel)
    "floor": ("x", "floor(x)", "arith", {"x": "g * 0"}),
    "ceil": ("x", "ceil(x)", "arith", {"x": "g * 0"}),
    "trunc": ("x", "trunc(x)", "arith", {"x": "g * 0"}),
    "round": ("x", "rint(x)", "arith", {"x": "g * 0"}),
    "neg": ("x", "-x", "arith", {"x": "-g"}),
    "abs": ("x", "where(x < 0, -x, x)", "arith", {"x": "where(x > 0, g, where(x < 0, -g, g * 0))"}),
    "sign": ("x", "where(x > 0, 1, where(x < 0, -1, 0))", "arith", {"x": "g * 0"}),
    "exp": ("x", "exp(x)", "float", {"x": "g * result"}),
    "log": ("x", "log(x)", "float", {"x": "g / x"}),
    "log1p": ("x", "log1p(x)", "float", {"x": "g / (1 + x)"}),
    "expm1": ("x", "expm1(x)", "float", {"x": "g * (result + 1)"}),
    # d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
    "erf": ("x", "erf(x)", "float", {"x": "g * 1.1283791670955126 * exp(-(x * x))"}),
    "sqrt": ("x", "sqrt(x)", "float", {"x": "g / (2 * result)"}),
    "rsqrt": ("x", "1 / sqrt(x)", "float", {"x": "-0.5 * g * result * result * result"}),
    "sin": ("x", "sin(x)", "float", {"x": "g * cos(x)"}),
    "cos": ("x", "cos(x)", "float", {"x": "-g * sin(x)"}),
    "tanh": ("x", "tanh(x)", "float", {"x": "g * (1 - result * result)"}),
    "sigmoid": ("x", "sigmoid(x)", "float", {"x": "g * result * (1 - result)"}),
    # NOTE: relu's subgradient at 0 is 0, as in PyTorch.
    "relu": ("x", "where(x < 0, 0, x)", "arith", {"x": "where(result > 0, g, 0)"}),
    # NOTE: clamp passes the gradient where lo <= x <= hi, bounds included, as PyTorch does.
    "clamp": ("x lo hi", "minimum(maximum(x, lo), hi)", "arith",
              {"x": "where((x >= lo) & (x <= hi), g, 0)", "lo": "where(x < lo, g, 0)",
               "hi": "where(x > hi, g, 0)"}, {"ass": "ClampBackward1"}),
    "where": ("c x y", "where(c, x, y)", "arith", {"x": "where(c, g, 0)", "y": "where(c, 0, g)"}),
    # NOTE: PyTorch's two-sided formula, exact at both ends (w = 0 gives x, w = 1 gives y)
    "lerp": ("x y w", "where(w < 0.5, x + w * (y - x), y - (y - x) * (1 - w))", "arith",
             {"x": "g * (1 - w)", "y": "g * w", "w": "g * (y - x)"},
             {"aas": "LerpBackward0", "aaa": "LerpBackward1"}),
    "eq": ("x y", "x == y", "compare", {}),
    "ne": ("x y", "x != y", "compare", {}),
    "lt": ("x y", "x < y", "compare", {}),
    "le": ("x y", "x <= y", "compare", {}),
    "gt": ("x y", "x > y", "compare", {}),
    "ge": ("x y", "x >= y", "compare", {}),
    "isnan": ("x", "isnan(x)", "compare", {}),
    "logical_and": ("x y", "x & y", "logical", {}),
    "logical_or": ("x y", "x | y", "logical", {}),
    "logical_xor": ("x y", "x != y", "logical", {}),
    "logical_not": ("x", "logical_not(x)", "logical", {}),
    "copy": ("x", "x", "cast", {"x": "g"}),
}
