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
    seen = set()
    for d in dims:
        n = normalize_dim(d, ndim)
        if n in seen:
            raise RuntimeError(f"dim {n} appears multiple times in the list of dims")
        seen.add(n)
    return tuple(sorted(seen))


def broadcast_shapes(*shapes):
    """The broadcast of ``shapes`` (NumPy rules), or PyTorch's RuntimeError naming the sizes."""
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for back in range(1, ndim + 1):  # PyTorch checks from the last dim, so its error names that
        for shape in shapes:
            if back > len(shape):
                continue
            size, cur = shape[-back], out[-back]
            if size == cur or size == 1:
                continue
            if cur != 1:
                raise RuntimeError(
                    f"The size of tensor a ({cur}) must match the size of tensor b ({size}) at "
                    f"non-singleton dimension {ndim - back}")
            out[-back] = size
    return tuple(out)
