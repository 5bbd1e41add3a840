"""Reduction kernels. Every input is viewed as a C-contiguous (outer, reduced, inner) array."""

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from jitgrad.backends.cpu.scalar import exp, log
from jitgrad.backends.cpu.simd import maxnum, minnum, prefer_wide_vectors
from jitgrad.backends.cpu.threads import chunk_bounds

_FAST = {"reassoc", "contract"}  # lets LLVM vectorize accumulations; NaN still propagates


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def sum_3d(x, is_prod, scale, out):
    """x (O, R, I) -> out (O, I): scale * sum (or product) over R, accumulated in float64."""
    n_outer, n_red, n_inner = x.shape
    acc = np.empty(n_inner, np.float64)
    for o in range(n_outer):
        acc[:] = 1.0 if is_prod else 0.0
        if n_inner == 1:
            total = acc[0]
            for r in range(n_red):
                total = total * x[o, r, 0] if is_prod else total + x[o, r, 0]
            acc[0] = total
        else:
            _fold_rows(x[o], is_prod, acc)
        for i in range(n_inner):
            out[o, i] = acc[i] * scale


@njit(fastmath=_FAST, error_model="numpy")
def _fold_rows(x, is_prod, acc):
    """acc (float64) += (or *=) each row of the 2-D x."""
    n_red, n_inner = x.shape
    done = 0
    if not is_prod:  # four rows a pass: acc is read and written once, not four times
        done = n_red - n_red % 4
        for r in range(0, done, 4):
            for i in range(n_inner):
                acc[i] += ((np.float64(x[r, i]) + x[r + 1, i])
                           + (np.float64(x[r + 2, i]) + x[r + 3, i]))
    for r in range(done, n_red):
        for i in range(n_inner):
            acc[i] = acc[i] * x[r, i] if is_prod else acc[i] + x[r, i]


@njit(cache=True, nogil=True, parallel=True)
def sum_reduced_p(chunks, x, is_prod, scale, out):
    """``sum_3d`` of x (1, R, I) with R in ``chunks`` blocks on threads, a float64 partial each:
    for a sum over leading dims (a bias gradient), which has one outer row to split."""
    n_red, n_inner = x.shape[1], x.shape[2]
    partial = np.empty((chunks, n_inner), np.float64)
    for c in prange(chunks):
        lo, hi = chunk_bounds(c, chunks, n_red, 1)
        partial[c] = 1.0 if is_prod else 0.0
        _fold_rows(x[0, lo:hi], is_prod, partial[c])
    for i in range(n_inner):
        total = partial[0, i]
        for c in range(1, chunks):
            total = total * partial[c, i] if is_prod else total + partial[c, i]
        out[0, i] = total * scale


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _fold(x, is_prod):
    """The float64 sum (or product) of a 1-D array, in a loop that vectorizes."""
    total = 1.0
    if is_prod:
        for i in range(x.size):  # NOTE: ``for v in x`` did not vectorize (4x slower)
            total *= x[i]
        return total
    total = 0.0
    for i in range(x.size):
        total += x[i]
    return total


@njit(cache=True, error_model="numpy")
def sum_flat(x, is_prod, scale, out):
    """``sum_3d`` of a whole flat x into the one-element out: a full reduction, one loop over
    contiguous values (``sum_flat_p`` runs the same loop per slice)."""
    out[0] = _fold(x, is_prod) * scale


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sum_flat_p(chunks, x, is_prod, scale, out):
    """``sum_3d`` of a whole flat x, in ``chunks`` slices on threads (threads.py); out (1, 1)."""
    partial = np.empty(chunks, np.float64)
    for c in prange(chunks):
        lo, hi = chunk_bounds(c, chunks, x.size, 64)
        partial[c] = _fold(x[lo:hi], is_prod)
    total = partial[0]
    for c in range(1, chunks):
        total = total * partial[c] if is_prod else total + partial[c]
    out[0, 0] = total * scale


@njit(cache=True, error_model="numpy")
def sum_int_3d(x, is_prod, out):
    """Integer x (O, R, I) -> int64 out (O, I): exact sum (or product) over R."""
    n_outer, n_red, n_inner = x.shape
    for o in range(n_outer):
        for i in range(n_inner):
            total = np.int64(1) if is_prod else np.int64(0)
            for r in range(n_red):
                total = total * x[o, r, i] if is_prod else total + x[o, r, i]
            out[o, i] = total


def _extreme_fold(m, v, largest):
    """max(m, v) (min when not ``largest``) in a form whose loop vectorizes as a reduction;
    floats ignore a NaN (the caller searches for NaNs)."""
    raise NotImplementedError("only callable from jitted code")


@overload(_extreme_fold, inline="always")
def _ol_extreme_fold(m, v, largest):
    if isinstance(m, types.Float):
        return lambda m, v, largest: maxnum(m, v) if largest else minnum(m, v)
    return lambda m, v, largest: (v if v > m else m) if largest else (v if v < m else m)


@njit(inline="always")
def _row_extreme(v, largest):
    """The max (min) of a 1-D array's non-NaN values, in a loop that vectorizes."""
    m = v[0]
    for j in range(v.size):
        m = _extreme_fold(m, v[j], largest)
    return m


@njit(inline="always")
def _max_over_r(x, o, m):
    """m[i] = max over R of x[o, :, i], ignoring NaNs; the loops over the contiguous I
    vectorize."""
    m[:] = x[o, 0]
    for r in range(1, x.shape[1]):
        xr = x[o, r]
        for i in range(m.size):
            m[i] = maxnum(m[i], xr[i])


@njit(inline="always")
def _first_nan_or(v, start, m, nan_only):
    """The first j >= start where v[j] is NaN or (unless ``nan_only``) equals m, or -1. Blocks
    are tested by a vectorized any() first, so only the block holding the match is scanned."""
    want_m = np.int32(not nan_only)
    for b in range(start, v.size, 256):
        block = v[b:b + 256]  # NOTE: a slice's loop from 0 vectorizes; range(b, e) ran 2x slower
        hit = np.int32(0)  # an int32 OR vectorizes; a bool one does not
        for j in range(block.size):
            w = block[j]
            hit |= np.int32(w != w) | (np.int32(w == m) & want_m)  # noqa: PLR0124
        if hit:
            for j in range(block.size):
                w = block[j]
                if w != w or (want_m and w == m):  # noqa: PLR0124
                    return b + j
    return -1


@njit(cache=True, error_model="numpy")
def argextreme_3d(x, largest, values, indices):
    """x (O, R, I) -> values, indices (O, I) of the max (or min) over R; the first NaN wins,
    then the first extreme."""
    prefer_wide_vectors()
    n_outer, n_red, n_inner = x.shape
    if n_inner == 1:  # contiguous rows: a pass for the extreme, then searches for where it is
        rows = x.reshape((n_outer, n_red))
        for o in range(n_outer):
            v = rows[o]
            m = _row_extreme(v, largest)
            # NOTE: the extreme ignores NaNs; the first NaN or extreme found, then (if that was
            # the extreme) a NaN after it, gives the first NaN or else the first extreme
            at = _first_nan_or(v, 0, m, False)
            if v[at] == v[at]:  # noqa: PLR0124
                nan_at = _first_nan_or(v, at + 1, m, True)
                at = at if nan_at < 0 else nan_at
            values[o, 0] = v[at]
            indices[o, 0] = at
        return
    # R is strided: a running extreme and index per inner position, updated by selects
    for o in range(n_outer):
        best, at = values[o], indices[o]
        best[:] = x[o, 0]
        at[:] = 0
        for r in range(1, n_red):
            xr = x[o, r]
            for i in range(n_inner):
                v, b = xr[i], best[i]
                # NOTE: a NaN replaces a number (b == b), and nothing replaces a NaN
                take = ((v > b) if largest else (v < b)) or (v != v and b == b)  # noqa: PLR0124
                best[i] = v if take else b
                at[i] = r if take else at[i]


@njit(cache=True, error_model="numpy")
def _softmax_row(v, take_log, out):
    """softmax (or log_softmax) of one contiguous row: max, exp, sum and scale passes that each
    vectorize (the sum is reassociated in a function of its own, ``_fold``, so the exps keep
    their exact rounding; one loop of exps and a reassociated float64 sum ran 1.5x slower)."""
    m = _row_extreme(v, True)
    for j in range(v.size):
        out[j] = exp(v[j] - m)
    total = _fold(out, False)
    if take_log:
        shift = m + log(total)
        for j in range(v.size):
            out[j] = v[j] - shift
    else:
        inv = 1 / total
        for j in range(v.size):
            out[j] = out[j] * inv


@njit(cache=True, error_model="numpy")
def softmax_3d(x, take_log, out):
    """x (O, R, I) -> out (O, R, I): softmax (or log_softmax) over R, max-shifted for stability.

    NOTE: the shift is the max of the non-NaN values (maxnum, which vectorizes); a NaN still
    makes its whole slice NaN through the sum, and an all -inf slice gives NaN, as in PyTorch.
    """
    prefer_wide_vectors()
    n_outer, n_red, n_inner = x.shape
    if n_inner == 1:
        rows, out_rows = x.reshape((n_outer, n_red)), out.reshape((n_outer, n_red))
        for o in range(n_outer):
            _softmax_row(rows[o], take_log, out_rows[o])
        return
    # R is strided: keep a running max and float64 total per inner position, so the loops over
    # the contiguous inner dim vectorize
    m = np.empty(n_inner, x.dtype)
    total = np.empty(n_inner, np.float64)
    for o in range(n_outer):
        _max_over_r(x, o, m)
        total[:] = 0.0
        for r in range(n_red):
            xr, outr = x[o, r], out[o, r]
            for i in range(n_inner):
                e = exp(xr[i] - m[i])
                outr[i] = e
                total[i] += e
        for i in range(n_inner):
            total[i] = m[i] + log(total[i]) if take_log else 1 / total[i]
        for r in range(n_red):
            xr, outr = x[o, r], out[o, r]
            for i in range(n_inner):
                outr[i] = xr[i] - total[i] if take_log else outr[i] * total[i]


@njit(inline="always")
def _finite_or_zero(m):
    """logsumexp's shift: the max, or 0 where it is infinite (so +inf gives +inf and an all
    -inf slice -inf, as in PyTorch, instead of inf - inf = nan); a NaN slice stays NaN
    through its exps."""
    return m if abs(m) < np.inf else type(m)(0)


@njit(cache=True, error_model="numpy")
def logsumexp_3d(x, out):
    """x (O, R, I) -> out (O, I): log(sum(exp(x))) over R, shifted by the max; the sum in
    float64. An empty R gives -inf."""
    prefer_wide_vectors()
    n_outer, n_red, n_inner = x.shape
    if n_red == 0:
        out[:] = -np.inf
        return
    if n_inner == 1:  # contiguous rows: max, exp (into a scratch row) and sum passes
        rows = x.reshape((n_outer, n_red))
        scratch = np.empty(n_red, x.dtype)
        for o in range(n_outer):
            v = rows[o]
            m = _finite_or_zero(_row_extreme(v, True))
            for j in range(n_red):
                scratch[j] = exp(v[j] - m)
            out[o, 0] = m + log(_fold(scratch, False))
        return
    m = np.empty(n_inner, x.dtype)  # R is strided: a running max and total per position
    total = np.empty(n_inner, np.float64)
    for o in range(n_outer):
        _max_over_r(x, o, m)
        for i in range(n_inner):
            m[i] = _finite_or_zero(m[i])
        total[:] = 0.0
        for r in range(n_red):
            xr = x[o, r]
            for i in range(n_inner):
                total[i] += exp(xr[i] - m[i])
        for i in range(n_inner):
            out[o, i] = m[i] + log(total[i])


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _dot_f64(a, b):
    """The float64 sum of a * b over two 1-D arrays (reassociated, so it vectorizes)."""
    total = 0.0
    for j in range(a.size):
        total += a[j] * np.float64(b[j])
    return total


@njit(cache=True, error_model="numpy")
def softmax_backward_3d(y, g, take_log, out):
    """y (softmax or log_softmax over R of some x), g (O, R, I) -> out (O, R, I): the gradient,
    y * (g - sum(g * y)) or g - exp(y) * sum(g), the sums over R in float64."""
    prefer_wide_vectors()
    n_outer, n_red, n_inner = y.shape
    if n_inner == 1:
        shape = (n_outer, n_red)
        ys, gs, outs = y.reshape(shape), g.reshape(shape), out.reshape(shape)
        for o in range(n_outer):
            yr, gr, outr = ys[o], gs[o], outs[o]
            if take_log:
                total = _fold(gr, False)
                for j in range(n_red):
                    outr[j] = gr[j] - exp(yr[j]) * total
            else:
                total = _dot_f64(gr, yr)
                for j in range(n_red):
                    outr[j] = yr[j] * (gr[j] - total)
        return
    totals = np.empty(n_inner, np.float64)  # R is strided: a total per inner position
    for o in range(n_outer):
        totals[:] = 0.0
        for r in range(n_red):
            yr, gr = y[o, r], g[o, r]
            for i in range(n_inner):
                totals[i] += gr[i] if take_log else gr[i] * np.float64(yr[i])
        for r in range(n_red):
            yr, gr, outr = y[o, r], g[o, r], out[o, r]
            for i in range(n_inner):
                outr[i] = (gr[i] - exp(yr[i]) * totals[i]) if take_log else \
                    yr[i] * (gr[i] - totals[i])


@njit(cache=True, error_model="numpy")
def gather_3d(x, index, out):
    """out[o, k, i] = x[o, index[o, k, i], i] for x (O, R, I), index/out (O, K, I)."""
    n_outer, n_k, n_inner = out.shape
    for o in range(n_outer):
        for k in range(n_k):
            for i in range(n_inner):
                out[o, k, i] = x[o, index[o, k, i], i]


@njit(cache=True, error_model="numpy")
def scatter_add_3d(src, index, out):
    """out[o, index[o, k, i], i] += src[o, k, i]; out (O, R, I) is pre-filled by the caller."""
    n_outer, n_k, n_inner = src.shape
    for o in range(n_outer):
        for k in range(n_k):
            for i in range(n_inner):
                out[o, index[o, k, i], i] += src[o, k, i]


@njit(cache=True, error_model="numpy")
def prod_except_3d(x, out):
    """out[o, r, i] = product of x[o, :, i] except x[o, r, i]; exact when x holds zeros."""
    n_outer, n_red, n_inner = x.shape
    for o in range(n_outer):
        for i in range(n_inner):
            acc = 1.0  # NOTE: float64 products; a constant, so an infinite x[o, 0, i] is no NaN
            for r in range(n_red):
                out[o, r, i] = acc
                acc *= x[o, r, i]
            acc = 1.0
            for r in range(n_red - 1, -1, -1):
                out[o, r, i] *= acc
                acc *= x[o, r, i]


@njit(cache=True, error_model="numpy")
def cumsum_3d(x, reverse, zero, out):
    """out[o, r, i] = x[o, 0, i] + ... + x[o, r, i] (from the end when ``reverse``), summed in
    ``zero``'s type: float64 for floats as PyTorch's CPU accumulator, int64 for integers."""
    n_outer, n_red, n_inner = x.shape
    for o in range(n_outer):
        for i in range(n_inner):
            acc = zero
            for j in range(n_red):
                r = n_red - 1 - j if reverse else j
                acc += x[o, r, i]
                out[o, r, i] = acc


@njit(inline="always")
def _before(a, b, descending):
    """Whether a sorts strictly before b; NaN counts as the largest value, as in PyTorch."""
    if descending:
        return a > b or (a != a and b == b)
    return a < b or (b != b and a == a)


@njit(cache=True, error_model="numpy")
def sort_3d(x, descending, values, indices):
    """Each x[o, :, i] sorted into values (and the positions it came from into indices): a
    stable bottom-up merge sort, so equal values keep their order."""
    n_outer, n, n_inner = x.shape
    order = np.empty(n, np.int64)
    spare = np.empty(n, np.int64)
    for o in range(n_outer):
        for i in range(n_inner):
            for r in range(n):
                order[r] = r
            width = 1
            while width < n:
                for lo in range(0, n, 2 * width):
                    mid = min(lo + width, n)
                    hi = min(lo + 2 * width, n)
                    a, b = lo, mid
                    for k in range(lo, hi):
                        # the left run wins ties: that is what keeps the sort stable
                        if a < mid and (b >= hi or not _before(x[o, order[b], i],
                                                                x[o, order[a], i], descending)):
                            spare[k] = order[a]
                            a += 1
                        else:
                            spare[k] = order[b]
                            b += 1
                order, spare = spare, order
                width *= 2
            for r in range(n):
                indices[o, r, i] = order[r]
                values[o, r, i] = x[o, order[r], i]
