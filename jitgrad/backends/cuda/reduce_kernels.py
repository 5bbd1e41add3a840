"""Reduction kernels on CUDA: the functions and arguments of ``cpu/reduce_kernels``.

Every input is viewed as an (outer, reduced, inner) array, as on the CPU. Reductions run one
block per (outer, inner) group: each thread folds a strided slice of the reduced axis, then the
block combines the partial results in shared memory with a halving tree. Blocks loop over
groups, so any grid size gives the same result.
"""

import math

from numba import cuda, float64, int64

from jitgrad.backends.cuda import runtime

__all__ = ["argextreme_3d", "cumsum_3d", "gather_3d", "prod_except_3d", "scatter_add_3d",
           "logsumexp_3d", "softmax_3d", "softmax_backward_3d", "sort_3d", "sum_3d",
           "sum_int_3d"]

# a module global, so numba freezes it as the (compile-time) size of the shared arrays
THREADS = runtime.THREADS


def _blocks(n_groups):
    """Launch shape with one block of ``THREADS`` threads per group (capped; blocks loop)."""
    return runtime.grid(n_groups * THREADS)


# --- device functions -----------------------------------------------------------------------
@cuda.jit(device=True)
def _tree(shared, t, is_prod):
    """Sum (or product) of ``shared`` (each thread wrote its slot) as seen by every thread."""
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            a = shared[t]
            b = shared[t + step]
            shared[t] = a * b if is_prod else a + b
        cuda.syncthreads()
        step //= 2
    total = shared[0]
    cuda.syncthreads()  # every thread has read slot 0 before the next group overwrites it
    return total


@cuda.jit(device=True)
def _beats(x, o, i, a, b, largest):
    """Whether reduced index ``b`` replaces ``a`` (-1: none yet) as the max (or min).

    The CPU scans in order and stops at the first NaN, so: the lowest NaN index wins, else the
    extreme value, ties going to the lower index; this order makes the tree give the same answer.
    """
    if b < 0:
        return False
    if a < 0:
        return True
    va = x[o, a, i]
    vb = x[o, b, i]
    if va != va:  # noqa: PLR0124 - a NaN test that compiles for every dtype
        return vb != vb and b < a  # noqa: PLR0124
    if vb != vb:  # noqa: PLR0124
        return True
    if vb == va:
        return b < a
    return vb > va if largest else vb < va


@cuda.jit(device=True)
def _arg_best(x, o, i, largest, best, t):
    """Reduced index of the max (or min) of x[o, :, i] under the CPU's NaN and tie rules."""
    at = int64(-1)
    for r in range(t, x.shape[1], THREADS):
        if _beats(x, o, i, at, r, largest):
            at = r
    best[t] = at
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step and _beats(x, o, i, best[t], best[t + step], largest):
            best[t] = best[t + step]
        cuda.syncthreads()
        step //= 2
    at = best[0]
    cuda.syncthreads()
    return at


# --- kernels --------------------------------------------------------------------------------
@cuda.jit(cache=True)
def _sum_float(x, is_prod, scale, out):
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = x.shape
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        acc = float64(1.0) if is_prod else float64(0.0)
        for r in range(t, n_red, THREADS):
            acc = acc * x[o, r, i] if is_prod else acc + x[o, r, i]
        shared[t] = acc
        total = _tree(shared, t, is_prod)
        if t == 0:
            out[o, i] = total * scale


@cuda.jit(cache=True)
def _sum_int(x, is_prod, out):
    shared = cuda.shared.array(THREADS, int64)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = x.shape
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        acc = int64(1) if is_prod else int64(0)
        for r in range(t, n_red, THREADS):
            acc = acc * int64(x[o, r, i]) if is_prod else acc + int64(x[o, r, i])
        shared[t] = acc
        total = _tree(shared, t, is_prod)
        if t == 0:
            out[o, i] = total


@cuda.jit(cache=True)
def _argextreme(x, largest, values, indices):
    best = cuda.shared.array(THREADS, int64)
    t = cuda.threadIdx.x
    n_outer, _, n_inner = x.shape
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        at = _arg_best(x, o, i, largest, best, t)
        if t == 0:
            values[o, i] = x[o, at, i]
            indices[o, i] = at


@cuda.jit(cache=True)
def _softmax(x, take_log, out):
    best = cuda.shared.array(THREADS, int64)
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = x.shape
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        # the max's index (NaN wins), so the shift keeps x's dtype as on the CPU
        m = x[o, _arg_best(x, o, i, True, best, t), i]
        total = float64(0.0)  # NOTE: all -inf rows give nan, as in PyTorch
        for r in range(t, n_red, THREADS):
            e = math.exp(x[o, r, i] - m)
            if not take_log:
                out[o, r, i] = e
            total += e
        shared[t] = total
        total = _tree(shared, t, False)
        # each thread rescales only the elements it wrote, so no barrier is needed
        if take_log:
            shift = m + math.log(total)
            for r in range(t, n_red, THREADS):
                out[o, r, i] = x[o, r, i] - shift
        else:
            inv = 1 / total
            for r in range(t, n_red, THREADS):
                out[o, r, i] = out[o, r, i] * inv


@cuda.jit(cache=True)
def _logsumexp(x, out):
    best = cuda.shared.array(THREADS, int64)
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = x.shape
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        m = x[o, _arg_best(x, o, i, True, best, t), i]
        # NOTE: the shift is 0 where the max is infinite, as on the CPU (a NaN max, which wins
        # here, gives NaN through the exps either way)
        m = m if abs(m) < math.inf else type(m)(0)
        total = float64(0.0)
        for r in range(t, n_red, THREADS):
            total += math.exp(x[o, r, i] - m)
        shared[t] = total
        total = _tree(shared, t, False)
        if t == 0:
            out[o, i] = m + math.log(total) if total != 0 else -math.inf


@cuda.jit(cache=True)
def _softmax_backward(y, g, take_log, out):
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = y.shape
    for grp in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = grp // n_inner
        i = grp - o * n_inner
        total = float64(0.0)
        for r in range(t, n_red, THREADS):
            total += g[o, r, i] if take_log else g[o, r, i] * float64(y[o, r, i])
        shared[t] = total
        total = _tree(shared, t, False)
        for r in range(t, n_red, THREADS):
            if take_log:
                out[o, r, i] = g[o, r, i] - math.exp(y[o, r, i]) * total
            else:
                out[o, r, i] = y[o, r, i] * (g[o, r, i] - total)


@cuda.jit(cache=True)
def _prod_except(x, out):
    # per group: each thread takes a contiguous chunk; chunk products are scanned across the
    # block both ways, so every element gets (product before) * (product after), no division
    pre = cuda.shared.array(THREADS, x.dtype)
    suf = cuda.shared.array(THREADS, x.dtype)
    t = cuda.threadIdx.x
    n_outer, n_red, n_inner = x.shape
    chunk = (n_red + THREADS - 1) // THREADS
    lo = min(t * chunk, n_red)
    hi = min(lo + chunk, n_red)
    for g in range(cuda.blockIdx.x, n_outer * n_inner, cuda.gridDim.x):
        o = g // n_inner
        i = g - o * n_inner
        one = 1.0  # a constant (float64 products as on the CPU): an infinite x[o, 0, i] is no NaN
        p = one
        for r in range(lo, hi):
            out[o, r, i] = p  # the product before r within the chunk
            p *= x[o, r, i]
        pre[t] = p
        suf[t] = p
        cuda.syncthreads()
        step = 1
        while step < THREADS:  # Hillis-Steele: inclusive scans of the chunk products
            a = pre[t - step] if t >= step else one
            b = suf[t + step] if t + step < THREADS else one
            cuda.syncthreads()
            pre[t] *= a
            suf[t] *= b
            cuda.syncthreads()
            step *= 2
        before = pre[t - 1] if t > 0 else one
        after = suf[t + 1] if t + 1 < THREADS else one
        for r in range(hi - 1, lo - 1, -1):
            out[o, r, i] = before * out[o, r, i] * after
            after *= x[o, r, i]
        cuda.syncthreads()  # the scans are read before the next group overwrites them


@cuda.jit(cache=True)
def _gather(x, index, out):
    n_outer, n_k, n_inner = out.shape
    for n in range(cuda.grid(1), n_outer * n_k * n_inner, cuda.gridsize(1)):
        o = n // (n_k * n_inner)
        k = (n // n_inner) % n_k
        i = n % n_inner
        out[o, k, i] = x[o, index[o, k, i], i]


@cuda.jit(cache=True)
def _scatter_add(src, index, out):
    n_outer, n_k, n_inner = src.shape
    for n in range(cuda.grid(1), n_outer * n_k * n_inner, cuda.gridsize(1)):
        o = n // (n_k * n_inner)
        k = (n // n_inner) % n_k
        i = n % n_inner
        cuda.atomic.add(out, (o, index[o, k, i], i), src[o, k, i])


# --- host wrappers (the CPU module's signatures) --------------------------------------------
def sum_3d(x, is_prod, scale, out):
    """x (O, R, I) -> out (O, I): scale * sum (or product) over R, accumulated in float64."""
    if out.size:
        _sum_float[_blocks(out.size)](x.dev, is_prod, scale, out.dev)


def sum_int_3d(x, is_prod, out):
    """Integer x (O, R, I) -> int64 out (O, I): exact sum (or product) over R."""
    if out.size:
        _sum_int[_blocks(out.size)](x.dev, is_prod, out.dev)


def argextreme_3d(x, largest, values, indices):
    """x (O, R, I) -> values, indices (O, I) of the max (or min) over R; the first NaN wins.

    R must be at least 1 (the op layer raises before reducing an empty axis).
    """
    if values.size and x.shape[1]:
        _argextreme[_blocks(values.size)](x.dev, largest, values.dev, indices.dev)


def softmax_3d(x, take_log, out):
    """x (O, R, I) -> out (O, R, I): softmax (or log_softmax) over R, max-shifted for stability."""
    if x.size:
        _softmax[_blocks(x.shape[0] * x.shape[2])](x.dev, take_log, out.dev)


def logsumexp_3d(x, out):
    """x (O, R, I) -> out (O, I): log(sum(exp(x))) over R, shifted by the max; the sum in
    float64. An empty R gives -inf."""
    if not out.size:
        return
    if x.shape[1]:
        _logsumexp[_blocks(out.size)](x.dev, out.dev)
    else:
        from jitgrad.ops.elementwise import fill

        fill(out, -math.inf)


def softmax_backward_3d(y, g, take_log, out):
    """y (softmax or log_softmax over R of some x), g (O, R, I) -> out (O, R, I): the gradient,
    y * (g - sum(g * y)) or g - exp(y) * sum(g), the sums over R in float64."""
    if y.size:
        _softmax_backward[_blocks(y.shape[0] * y.shape[2])](y.dev, g.dev, take_log, out.dev)


def gather_3d(x, index, out):
    """out[o, k, i] = x[o, index[o, k, i], i] for x (O, R, I), index/out (O, K, I)."""
    if out.size:
        _gather[runtime.grid(out.size)](x.dev, index.dev, out.dev)


def scatter_add_3d(src, index, out):
    """out[o, index[o, k, i], i] += src[o, k, i]; out (O, R, I) is pre-filled by the caller.

    Repeated indices add up through atomics, so out's dtype must be int32/int64/uint32/uint64/
    float32/float64 (what ``cuda.atomic.add`` supports); float sums may differ in the last bits
    from run to run, as on PyTorch CUDA.
    """
    if src.size:
        _scatter_add[runtime.grid(src.size)](src.dev, index.dev, out.dev)


def prod_except_3d(x, out):
    """out[o, r, i] = product of x[o, :, i] except x[o, r, i]; exact when x holds zeros."""
    if x.size:
        _prod_except[_blocks(x.shape[0] * x.shape[2])](x.dev, out.dev)


@cuda.jit(cache=True)
def _cumsum(x, reverse, zero, out):
    # one thread per (outer, inner) line, summing along it in order, as the CPU does
    n_outer, n_red, n_inner = x.shape
    for n in range(cuda.grid(1), n_outer * n_inner, cuda.gridsize(1)):
        o = n // n_inner
        i = n - o * n_inner
        acc = zero
        for j in range(n_red):
            r = n_red - 1 - j if reverse else j
            acc += x[o, r, i]
            out[o, r, i] = acc


def cumsum_3d(x, reverse, zero, out):
    """Running sums along the middle axis; one thread per line (the lines run in parallel)."""
    if x.size:
        _cumsum[runtime.grid(x.shape[0] * x.shape[2])](x.dev, reverse, zero, out.dev)


@cuda.jit(device=True)
def _before(a, b, descending):
    # a sorts strictly before b; NaN counts as the largest value, as in PyTorch
    if descending:
        return a > b or (a != a and b == b)
    return a < b or (b != b and a == a)


@cuda.jit(cache=True)
def _sort_by_rank(x, descending, values, indices):
    # one thread per element: its place is the number of elements sorting before it, ties
    # broken by position (stable, as the CPU's merge sort); O(n) work per element
    n_outer, n, n_inner = x.shape
    for t in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        o = t // (n * n_inner)
        r = (t // n_inner) % n
        i = t % n_inner
        v = x[o, r, i]
        place = 0
        for j in range(n):
            w = x[o, j, i]
            if _before(w, v, descending) or (j < r and not _before(v, w, descending)):
                place += 1
        values[o, place, i] = v
        indices[o, place, i] = r


def sort_3d(x, descending, values, indices):
    """Each x[o, :, i] sorted along the middle axis, stably; O(n^2) work per line."""
    if x.size:
        _sort_by_rank[runtime.grid(x.size)](x.dev, descending, values.dev, indices.dev)
