"""Format tensor values exactly as PyTorch prints them (a port of torch/_tensor_str.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["format_tensor", "set_printoptions"]


@dataclasses.dataclass
class _PrinterOptions:
    """Global print options, with torch's defaults."""

    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


PRINT_OPTS = _PrinterOptions()

_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
_INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8"})
_DEFAULT_DTYPE = "float32"
# torch omits the dtype suffix for these (for non-empty tensors).
_DEFAULT_DTYPES = frozenset({_DEFAULT_DTYPE, "int64", "bool"})


def set_printoptions(
    precision=None,
    threshold=None,
    edgeitems=None,
    linewidth=None,
    profile=None,
    sci_mode=None,
):
    """Set print options; same semantics as ``torch.set_printoptions``."""
    if profile is not None:
        if profile == "default":
            PRINT_OPTS.precision = 4
            PRINT_OPTS.threshold = 1000
            PRINT_OPTS.edgeitems = 3
            PRINT_OPTS.linewidth = 80
        elif profile == "short":
            PRINT_OPTS.precision = 2
            PRINT_OPTS.threshold = 1000
            PRINT_OPTS.edgeitems = 2
            PRINT_OPTS.linewidth = 80
        elif profile == "full":
            PRINT_OPTS.precision = 4
            PRINT_OPTS.threshold = math.inf
            PRINT_OPTS.edgeitems = 3
            PRINT_OPTS.linewidth = 80

    if precision is not None:
        PRINT_OPTS.precision = precision
    if threshold is not None:
        PRINT_OPTS.threshold = threshold
    if edgeitems is not None:
        PRINT_OPTS.edgeitems = edgeitems
    if linewidth is not None:
        PRINT_OPTS.linewidth = linewidth
    # Like torch, sci_mode is always overwritten (None restores automatic choice).
    PRINT_OPTS.sci_mode = sci_mode


class _Formatter:
    """Choose a common width and notation for every element of a tensor."""

    def __init__(self, values: np.ndarray, floating_dtype: bool):
        self.floating_dtype = floating_dtype
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1

        flat = values.reshape(-1)
        if not floating_dtype:
            for value in flat.tolist():
                self.max_width = max(self.max_width, len(f"{value}"))
            return

        nonzero_finite = flat[np.isfinite(flat) & (flat != 0)]
        if nonzero_finite.size == 0:
            return

        abs_vals = np.abs(nonzero_finite)
        # Python floats: overflow of the ratio must give inf, not a numpy warning.
        nonzero_finite_min = float(abs_vals.min())
        nonzero_finite_max = float(abs_vals.max())

        self.int_mode = bool(np.all(nonzero_finite == np.ceil(nonzero_finite)))

        if PRINT_OPTS.sci_mode is None:
            self.sci_mode = (
                nonzero_finite_max / nonzero_finite_min > 1000.0
                or nonzero_finite_max > 1.0e8
                or nonzero_finite_min < 1.0e-4
            )
        else:
            self.sci_mode = PRINT_OPTS.sci_mode

        precision = PRINT_OPTS.precision
        for value in nonzero_finite.tolist():
            if self.sci_mode:
                width = len(f"{value:.{precision}e}")
            elif self.int_mode:
                # The trailing "." that marks a floating dtype counts towards the width.
                width = len(f"{value:.0f}") + 1
            else:
                width = len(f"{value:.{precision}f}")
            self.max_width = max(self.max_width, width)

    def width(self) -> int:
        """Return the padded width of one element."""
        return self.max_width

    def format(self, value) -> str:
        """Format one Python scalar, right-aligned to the common width."""
        precision = PRINT_OPTS.precision
        if self.floating_dtype:
            if self.sci_mode:
                ret = f"{value:{self.max_width}.{precision}e}"
            elif self.int_mode:
                ret = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    ret += "."
            else:
                ret = f"{value:.{precision}f}"
        else:
            ret = f"{value}"
        return (self.max_width - len(ret)) * " " + ret


def _vector_str(
    values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter
) -> str:
    """Format a 1-D array, wrapping rows at the line width."""
    # Each element is followed by ", " (or ",\n").
    element_length = formatter.width() + 2
    elements_per_line = max(
        1, math.floor((PRINT_OPTS.linewidth - indent) / element_length)
    )
    edgeitems = PRINT_OPTS.edgeitems

    if summarize and not edgeitems:
        data = ["..."]
    elif summarize and values.shape[0] > 2 * edgeitems:
        data = (
            [formatter.format(v) for v in values[:edgeitems].tolist()]
            + [" ..."]
            + [formatter.format(v) for v in values[-edgeitems:].tolist()]
        )
    else:
        data = [formatter.format(v) for v in values.tolist()]

    lines = [
        ", ".join(data[i : i + elements_per_line])
        for i in range(0, len(data), elements_per_line)
    ]
    return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"


def _tensor_str_with_formatter(
    values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter
) -> str:
    """Format an array of any rank with nested, indented brackets."""
    dim = values.ndim
    if dim == 0:
        return formatter.format(values.item())
    if dim == 1:
        return _vector_str(values, indent, summarize, formatter)

    edgeitems = PRINT_OPTS.edgeitems
    size = values.shape[0]
    if summarize and size > 2 * edgeitems:
        slices = (
            [
                _tensor_str_with_formatter(values[i], indent + 1, summarize, formatter)
                for i in range(edgeitems)
            ]
            + ["..."]
            + [
                _tensor_str_with_formatter(values[i], indent + 1, summarize, formatter)
                for i in range(size - edgeitems, size)
            ]
        )
    else:
        slices = [
            _tensor_str_with_formatter(values[i], indent + 1, summarize, formatter)
            for i in range(size)
        ]

    return "[" + ("," + "\n" * (dim - 1) + " " * (indent + 1)).join(slices) + "]"


def _summarized_data(values: np.ndarray) -> np.ndarray:
    """Keep only the elements that a summarized print shows."""
    dim = values.ndim
    edgeitems = PRINT_OPTS.edgeitems
    if dim == 0:
        return values
    if dim == 1:
        if values.shape[0] > 2 * edgeitems:
            # With edgeitems == 0 the slice [-0:] is the whole vector, as in torch.
            return np.concatenate((values[:edgeitems], values[-edgeitems:]))
        return values
    if not edgeitems:
        return np.empty([0] * dim, dtype=values.dtype)
    size = values.shape[0]
    if size > 2 * edgeitems:
        rows = list(range(edgeitems)) + list(range(size - edgeitems, size))
    else:
        rows = list(range(size))
    return np.stack([_summarized_data(values[i]) for i in rows])


def _tensor_str(values: np.ndarray, indent: int, floating_dtype: bool) -> str:
    """Format the bracketed body of a tensor's repr."""
    if values.size == 0:
        return "[]"
    summarize = values.size > PRINT_OPTS.threshold
    formatter = _Formatter(
        _summarized_data(values) if summarize else values, floating_dtype
    )
    return _tensor_str_with_formatter(values, indent, summarize, formatter)


def _add_suffixes(
    tensor_str: str, suffixes: list[tuple[str, int]], indent: int, force_newline: bool
) -> str:
    """Append ``, suffix`` items, moving any that would overflow onto a new line.

    Each suffix comes with the length torch would measure for it.
    """
    tensor_strs = [tensor_str]
    # torch's arithmetic (including its off-by-two) is kept so line breaks match.
    last_line_len = len(tensor_str) - tensor_str.rfind("\n") + 1
    for suffix, suffix_len in suffixes:
        if force_newline or last_line_len + suffix_len + 2 > PRINT_OPTS.linewidth:
            tensor_strs.append(",\n" + " " * indent + suffix)
            last_line_len = indent + suffix_len
            force_newline = False
        else:
            tensor_strs.append(", " + suffix)
            last_line_len += suffix_len + 2
    tensor_strs.append(")")
    return "".join(tensor_strs)


def format_tensor(
    values: np.ndarray,
    dtype_name: str,
    suffixes: list[str],
    module: str = "jitgrad",
    device: str | None = None,
) -> str:
    """Return the repr, e.g. 'tensor([[1., 1.],\\n        [1., 1.]], requires_grad=True)'.

    ``suffixes`` are the items torch prints after the dtype (``grad_fn=<X>``,
    ``requires_grad=True``); ``device``, ``size=`` and ``dtype=`` are added here
    in torch's order. ``module`` replaces ``torch`` in the dtype name; line
    breaks are still placed where torch places them, so the result is exactly
    torch's repr with ``torch.`` renamed.
    """
    if dtype_name in _FLOAT_DTYPES:
        floating_dtype = True
    elif dtype_name in _INT_DTYPES or dtype_name == "bool":
        floating_dtype = False
    else:
        raise ValueError(f"unsupported dtype for printing: {dtype_name!r}")

    # Round through the real dtype first so the printed digits are those of the tensor.
    arr = np.asarray(values, dtype=np.dtype(dtype_name))
    if floating_dtype:
        # Widening is exact and matches torch's .tolist()/.item() Python floats.
        arr = arr.astype(np.float64)

    prefix = "tensor("
    indent = len(prefix)
    # (text, length torch measures) pairs; see _add_suffixes.
    measured: list[tuple[str, int]] = []
    if device is not None:
        device_suffix = f"device='{device}'"
        measured.append((device_suffix, len(device_suffix)))

    # Measure the dtype as torch spells it, so suffix wrapping matches torch's repr.
    dtype_item = (f"dtype={module}.{dtype_name}", len(f"dtype=torch.{dtype_name}"))
    size_suffix = "size=" + str(tuple(int(n) for n in arr.shape))
    size_item = (size_suffix, len(size_suffix))
    if arr.size == 0:
        # Matches NumPy: the shape is shown unless it is (0,).
        if arr.ndim != 1:
            measured.append(size_item)
        # No elements to infer int64 from, so only the default float dtype is implicit.
        if dtype_name != _DEFAULT_DTYPE:
            measured.append(dtype_item)
        tensor_str = "[]"
    else:
        if not PRINT_OPTS.edgeitems:
            measured.append(size_item)
        if dtype_name not in _DEFAULT_DTYPES:
            measured.append(dtype_item)
        tensor_str = _tensor_str(arr, indent, floating_dtype)

    measured.extend((suffix, len(suffix)) for suffix in suffixes)
    return _add_suffixes(prefix + tensor_str, measured, indent, force_newline=False)
