"""Argument validation shared by all ops, with PyTorch's error wording."""

__all__ = ["normalize_dim", "normalize_dims", "broadcast_shapes", "shape_str"]


def shape_str(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def normalize_dim(dim, ndim):
    """``dim`` as a non-negative index, or IndexError as PyTorch raises it."""
    n = max(ndim, 1)  # a 0-d tensor accepts dim 0 and -1
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n if ndim else 0


def normalize_dims(dim, ndim):
    """A sorted tuple of distinct non-negative dims; None means all dims."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = tuple(sorted({normalize_dim(d, ndim) for d in dims}))
    if len(out) != len(dims):
        raise RuntimeError(f"dim {dims} appears multiple times in the list of dims")
    return out


def broadcast_shapes(*shapes):
    """The broadcast of ``shapes`` (NumPy rules), or PyTorch's RuntimeError naming the sizes."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for which, shape in enumerate(shapes):
        offset = ndim - len(shape)
        for i, size in enumerate(shape):
            cur = out[offset + i]
            if size == cur or size == 1:
                continue
            if cur == 1:
                out[offset + i] = size
                continue
            a, b = "ab"[0], "ab"[1]
            raise RuntimeError(
                f"The size of tensor {a} ({cur}) must match the size of tensor {b} ({size}) at "
                f"non-singleton dimension {offset + i}")
    return tuple(out)
