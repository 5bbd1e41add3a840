"""CUDA kernels of ``jitgrad.nn.functional``: the functions and arguments of ``cpu/nn_kernels``.

Each public function is a host wrapper launching grid-stride kernels on ``DeviceArray.dev``;
nothing is copied to the host. Convolution products run on a small tiled shared-memory GEMM;
scatters use atomics; loss sums are per-thread partials added atomically into a float64
scratch pair that a one-thread kernel turns into ``result`` and ``total_weight``.
"""

import math

from numba import cuda

from jitgrad.backends.cuda import array, runtime

# GEMM tile edge: one thread per tile element, so a block is runtime.THREADS threads (16 on a
# GPU, 2 under the simulator, whose blocks are tiny).
TILE = math.isqrt(runtime.THREADS)


_grid = runtime.grid


def _scratch_sums():
    """A float64 (2,) device pair [loss sum, weight sum], zeroed on the device."""
    sums = array.empty((2,), "float64")
    _zero[_grid(2)](sums.dev)
    return sums


# --- small shared kernels ---------------------------------------------------------------------

@cuda.jit(cache=True)
def _zero(a):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = 0


@cuda.jit(cache=True)
def _gemm(a, b, c, bias, has_bias, zero):
    """c[z, g] = sum over r of a[r, g] @ b[r, g] (+ bias[g, :, None]); 4-D operands.

    A batch extent of 1 in ``a`` or ``b`` broadcasts; one in ``c`` sums over the batch (a
    weight gradient), otherwise r = z. One block per TILE x TILE tile of c, grid-strided;
    ``zero`` is c's dtype's zero, so float32 products accumulate in float32 as cuBLAS does.
    """
    sa = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    n_z, n_groups, n_rows, n_cols = c.shape
    k_len = a.shape[3]
    summed = n_z == 1
    n_r = max(a.shape[0], b.shape[0]) if summed else 1
    tiles_m = (n_rows + TILE - 1) // TILE
    tiles_n = (n_cols + TILE - 1) // TILE
    ty = cuda.threadIdx.x // TILE
    tx = cuda.threadIdx.x % TILE
    for tile in range(cuda.blockIdx.x, n_z * n_groups * tiles_m * tiles_n, cuda.gridDim.x):
        row = (tile // tiles_n) % tiles_m * TILE + ty
        col = tile % tiles_n * TILE + tx
        g = tile // (tiles_n * tiles_m) % n_groups
        z = tile // (tiles_n * tiles_m * n_groups)
        acc = zero
        for rr in range(n_r):
            r = rr if summed else z
            ia = r if a.shape[0] > 1 else 0
            ib = r if b.shape[0] > 1 else 0
            for k0 in range(0, k_len, TILE):
                ka = k0 + tx
                kb = k0 + ty
                sa[ty, tx] = a[ia, g, row, ka] if row < n_rows and ka < k_len else zero
                sb[ty, tx] = b[ib, g, kb, col] if kb < k_len and col < n_cols else zero
                cuda.syncthreads()
                for k in range(TILE):
                    acc += sa[ty, k] * sb[k, tx]
                cuda.syncthreads()
        if row < n_rows and col < n_cols:
            if has_bias:
                acc += bias[g, row]
            c[z, g, row, col] = acc


def _launch_gemm(a, b, c, bias, has_bias):
    n_tiles = c.shape[0] * c.shape[1] * -(-c.shape[2] // TILE) * -(-c.shape[3] // TILE)
    _gemm[_grid(n_tiles * runtime.THREADS)](a.dev, b.dev, c.dev, bias.dev, has_bias,
                                            c.dtype.type(0))


def _split_groups(cols, n_groups):
    """cols (N, G*Kg, L) as a (N, G, Kg, L) view, whatever its strides."""
    n, rows, length = cols.shape
    s0, s1, s2 = cols.strides
    k_g = rows // n_groups
    return cols.as_strided((n, n_groups, k_g, length), (s0, k_g * s1, s1, s2))


# --- convolution -------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _im2col(x, p, oh, ow, cols):
    kh, kw, sh, sw, ph, pw, dh, dw = p
    _, _, h, w = x.shape
    n_rows, length = cols.shape[1], cols.shape[2]
    for e in range(cuda.grid(1), cols.shape[0] * n_rows * length, cuda.gridsize(1)):
        q = e % length
        row = e // length % n_rows
        n = e // (length * n_rows)
        iy = q // ow * sh + row // kw % kh * dh - ph
        ix = q % ow * sw + row % kw * dw - pw
        if 0 <= iy < h and 0 <= ix < w:
            cols[n, row, q] = x[n, row // (kh * kw), iy, ix]


def im2col(x, p, oh, ow, cols):
    """x (N, C, H, W) -> cols (N, C*kh*kw, oh*ow) (pre-zeroed): cols[n, (c,i,j), (y,x)]."""
    _im2col[_grid(cols.size)](x.dev, p, oh, ow, cols.dev)


@cuda.jit(cache=True)
def _col2im(buf, p, oh, ow, dx):
    """dx (N, C, H, W) += buf (N, C*kh*kw, oh*ow) summed back onto pixels, gathered per pixel
    (race-free: no atomics, and the same summation order every run)."""
    kh, kw, sh, sw, ph, pw, dh, dw = p
    n_batch, n_chan, h, w = dx.shape
    for e in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        ix = e % w
        iy = e // w % h
        c = e // (w * h) % n_chan
        n = e // (w * h * n_chan)
        total = dx[n, c, iy, ix]
        for i in range(kh):
            ty = iy + ph - i * dh
            if ty < 0 or ty % sh != 0 or ty // sh >= oh:
                continue
            for j in range(kw):
                tx = ix + pw - j * dw
                if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                    continue
                total += buf[n, (c * kh + i) * kw + j, ty // sh * ow + tx // sw]
        dx[n, c, iy, ix] = total


def conv2d_forward(cols, w, bias, has_bias, out):
    """out[n, g] (Og, L) = w[g] (Og, Kg) @ cols[n, g*Kg:(g+1)*Kg] (+ bias[g, :, None])."""
    _launch_gemm(w[None], _split_groups(cols, w.shape[0]), out, bias, has_bias)


def conv2d_backward_input(grad, w, p, oh, ow, buf, dx):
    """dx (N, C, H, W) (pre-zeroed) = col2im(w[g].T @ grad[n, g]); buf (C*kh*kw, L) scratch.

    With N > 1 the whole batch's columns go through one product and one col2im launch, in a
    (N, C*kh*kw, L) scratch (the size of the forward's im2col matrix) instead of ``buf``.
    """
    n = grad.shape[0]
    cols = buf[None] if n == 1 else array.empty((n,) + buf.shape, buf.dtype)
    _launch_gemm(w.transpose(0, 2, 1)[None], grad, _split_groups(cols, w.shape[0]), w[0], False)
    _col2im[_grid(dx.size)](cols.dev, p, oh, ow, dx.dev)


def conv2d_backward_weight(grad, cols, tmp, dw):
    """dw[g] (Og, Kg) = sum over n of grad[n, g] (Og, L) @ cols[n, g rows].T; tmp unused here."""
    rows_t = _split_groups(cols, dw.shape[0]).transpose(0, 1, 3, 2)
    _launch_gemm(grad, rows_t, dw[None], dw[0], False)


# --- pooling -----------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _max_pool(x, p, out, idx):
    kh, kw, sh, sw, ph, pw, dh, dw = p
    _, h, w = x.shape
    _, oh, ow = out.shape
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        ox = e % ow
        oy = e // ow % oh
        m = e // (ow * oh)
        y0 = oy * sh - ph
        y1 = min(y0 + (kh - 1) * dh + 1, h)
        while y0 < 0:
            y0 += dh
        x0 = ox * sw - pw
        x1 = min(x0 + (kw - 1) * dw + 1, w)
        while x0 < 0:
            x0 += dw
        best = x[m, y0, x0]
        at = y0 * w + x0
        for iy in range(y0, y1, dh):
            for ix in range(x0, x1, dw):
                v = x[m, iy, ix]
                if v > best or v != v:
                    best = v
                    at = iy * w + ix
        out[m, oy, ox] = best
        idx[m, oy, ox] = at


def max_pool2d_forward(x, p, out, idx):
    """x (M, H, W) -> out, idx (M, OH, OW): window maximum and its flat index in H*W (NaN wins)."""
    _max_pool[_grid(out.size)](x.dev, p, out.dev, idx.dev)


@cuda.jit(cache=True)
def _index_scatter_add(grad, idx, dx):
    n_q = grad.shape[1]
    for e in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        m = e // n_q
        q = e % n_q
        cuda.atomic.add(dx, (m, idx[m, q]), grad[m, q])


def index_scatter_add(grad, idx, dx):
    """dx[m, idx[m, q]] += grad[m, q] for grad/idx (M, Q), dx (M, P) pre-zeroed."""
    _index_scatter_add[_grid(grad.size)](grad.dev, idx.dev, dx.dev)


@cuda.jit(cache=True)
def _window_mean(x, hs, he, ws, we, div, out, backward):
    """Forward: out[m, i, j] = window sum of x / div. Backward (x is grad, out is dx):
    atomically spread grad[m, i, j] / div over the window, as windows may overlap."""
    oh, ow = div.shape
    for e in range(cuda.grid(1), x.shape[0] * oh * ow, cuda.gridsize(1)):
        j = e % ow
        i = e // ow % oh
        m = e // (ow * oh)
        if backward:
            share = x[m, i, j] / div[i, j]
            for iy in range(hs[i], he[i]):
                for ix in range(ws[j], we[j]):
                    cuda.atomic.add(out, (m, iy, ix), share)
        else:
            total = div[i, j] * 0
            for iy in range(hs[i], he[i]):
                for ix in range(ws[j], we[j]):
                    total += x[m, iy, ix]
            out[m, i, j] = total / div[i, j]


def window_mean_forward(x, hs, he, ws, we, div, out):
    """out[m, i, j] = sum of x[m, hs[i]:he[i], ws[j]:we[j]] / div[i, j]; x (M, H, W)."""
    _window_mean[_grid(out.size)](x.dev, hs.dev, he.dev, ws.dev, we.dev, div.dev, out.dev,
                                  False)


def window_mean_backward(grad, hs, he, ws, we, div, dx):
    """dx[m, window(i, j)] += grad[m, i, j] / div[i, j]; dx (M, H, W) pre-zeroed."""
    _window_mean[_grid(grad.size)](grad.dev, hs.dev, he.dev, ws.dev, we.dev, div.dev, dx.dev,
                                   True)


# --- elementwise -------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _dropout(x, u, p, scale, out, mask):
    zero = scale - scale
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        k = scale if u[i] >= p else zero
        mask[i] = k
        out[i] = x[i] * k


def dropout_forward(x, u, p, scale, out, mask):
    """Flat arrays: mask = scale where u >= p else 0; out = x * mask."""
    _dropout[_grid(x.size)](x.dev, u.dev, p, scale, out.dev, mask.dev)


@cuda.jit(cache=True)
def _erf_family(op, grad, x, out):
    """op 0: out = erf(x); 1: gelu(x); 2: grad * gelu'(x) (grad unread unless op 2)."""
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        v = x[i]
        if op == 0:
            out[i] = math.erf(v)
        elif op == 1:
            out[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))
        else:
            cdf = 0.5 * (1.0 + math.erf(v * 0.7071067811865476))
            pdf = 0.3989422804014327 * math.exp(-0.5 * v * v)
            out[i] = grad[i] * (cdf + v * pdf)


def erf(x, out):
    """Flat arrays: out = erf(x)."""
    _erf_family[_grid(x.size)](0, x.dev, x.dev, out.dev)


def gelu_forward(x, out):
    """Flat arrays: out = x * Phi(x), Phi the standard normal CDF (via erf)."""
    _erf_family[_grid(x.size)](1, x.dev, x.dev, out.dev)


def gelu_backward(grad, x, out):
    """Flat arrays: out = grad * (Phi(x) + x * phi(x))."""
    _erf_family[_grid(x.size)](2, grad.dev, x.dev, out.dev)


# --- embedding ---------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _embedding_forward(idx, weight, pad, out):
    dim = out.shape[1]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        i = e // dim
        j = e % dim
        k = idx[i]
        out[i, j] = 0 if k == pad else weight[k, j]


def embedding_forward(idx, weight, pad, out):
    """out[i] = weight[idx[i]], or zeros where idx[i] == pad (pad < 0: never); out (n, D)."""
    _embedding_forward[_grid(out.size)](idx.dev, weight.dev, pad, out.dev)


@cuda.jit(cache=True)
def _count(idx, counts):
    for i in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        cuda.atomic.add(counts, idx[i], 1)


@cuda.jit(cache=True)
def _embedding_backward(idx, grad, pad, by_freq, counts, dw):
    dim = dw.shape[1]
    for e in range(cuda.grid(1), idx.size * dim, cuda.gridsize(1)):
        i = e // dim
        j = e % dim
        k = idx[i]
        if k != pad:
            cuda.atomic.add(dw, (k, j), grad[i, j] / counts[k] if by_freq else grad[i, j])


def embedding_backward(idx, grad, pad, by_freq, counts, dw):
    """dw[idx[i]] += grad[i] (divided by idx[i]'s count when by_freq), except where == pad."""
    if by_freq:  # counts must be complete before any row is divided: a launch of its own
        _count[_grid(idx.size)](idx.dev, counts.dev)
    _embedding_backward[_grid(idx.size * dw.shape[1])](idx.dev, grad.dev, pad, by_freq,
                                                      counts.dev, dw.dev)


@cuda.jit(cache=True)
def _embedding_renorm(idx, weight, max_norm, norm_type, claimed):
    for i in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        k = idx[i]
        # NOTE: a repeated index renorms its row once (on the CPU the repeats find it in range)
        if cuda.atomic.add(claimed, k, 1) != 0:
            continue
        total = 0.0
        for j in range(weight.shape[1]):
            total += abs(weight[k, j]) ** norm_type
        norm = total ** (1.0 / norm_type)
        if norm > max_norm:
            scale = max_norm / (norm + 1e-7)
            for j in range(weight.shape[1]):
                weight[k, j] *= scale


def embedding_renorm(idx, weight, max_norm, norm_type):
    """In place: rows weight[idx[i]] whose norm_type-norm exceeds max_norm are scaled down to it."""
    claimed = array.empty((weight.shape[0],), "int32")
    _zero[_grid(claimed.size)](claimed.dev)
    _embedding_renorm[_grid(idx.size)](idx.dev, weight.dev, max_norm, norm_type, claimed.dev)


# --- losses ------------------------------------------------------------------------------------

@cuda.jit(cache=True)
def _loss_finish(sums, reduction, result, total_weight):
    if cuda.grid(1) == 0:
        total_weight[0] = sums[1]
        if reduction == 1:
            result[0] = sums[0] / sums[1]
        elif reduction == 2:
            result[0] = sums[0]


@cuda.jit(cache=True)
def _nll_forward(x, target, weight, ignore, losses, sums):
    n_inner = x.shape[2]
    acc = 0.0
    wsum = 0.0
    for e in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        n = e // n_inner
        d = e % n_inner
        t = target[n, d]
        if t == ignore:
            losses[n, d] = 0
            continue
        wt = weight[t]
        loss = -wt * x[n, t, d]
        losses[n, d] = loss
        acc += loss
        wsum += wt
    cuda.atomic.add(sums, 0, acc)
    cuda.atomic.add(sums, 1, wsum)


def nll_forward(x, target, weight, ignore, reduction, losses, result, total_weight):
    """x (N, C, D), target (N, D): losses = -weight[t] * x[n, t, d] (0 where ignored).

    reduction 1 (mean) / 2 (sum) writes result[0]; total_weight[0] gets sum of weight[t].
    """
    sums = _scratch_sums()
    _nll_forward[_grid(target.size)](x.dev, target.dev, weight.dev, ignore, losses.dev, sums.dev)
    _loss_finish[1, 1](sums.dev, reduction, result.dev, total_weight.dev)


@cuda.jit(cache=True)
def _nll_backward(grad, full, scale, target, weight, ignore, dx):
    n_inner = dx.shape[2]
    for e in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        n = e // n_inner
        d = e % n_inner
        t = target[n, d]
        if t != ignore:
            g = grad[n, d] if full else grad[0, 0]
            dx[n, t, d] = -weight[t] * g * scale


def nll_backward(grad, full, scale, target, weight, ignore, dx):
    """dx[n, t, d] = -weight[t] * grad * scale (grad[n, d] when full, else grad[0, 0])."""
    _nll_backward[_grid(target.size)](grad.dev, full, scale, target.dev, weight.dev, ignore,
                                      dx.dev)


@cuda.jit(cache=True)
def _cross_entropy_forward(x, target, weight, ignore, smoothing, logp, losses, sums):
    """One thread per (n, d) row of C classes: max, partition sum, log_softmax, loss."""
    _, n_class, n_inner = x.shape
    keep = 1.0 - smoothing
    share = smoothing / n_class
    acc = 0.0
    wsum = 0.0
    for e in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        n = e // n_inner
        d = e % n_inner
        m = x[n, 0, d]
        for c in range(1, n_class):
            v = x[n, c, d]
            if v > m or v != v:
                m = v
        s = 0.0  # NOTE: float64 accumulator for the partition sum, as on the CPU
        for c in range(n_class):
            s += math.exp(x[n, c, d] - m)
        shift = m + math.log(s)
        smooth = 0.0
        for c in range(n_class):
            lp = x[n, c, d] - shift
            logp[n, c, d] = lp
            smooth -= weight[c] * lp
        t = target[n, d]
        if t == ignore:
            losses[n, d] = 0
            continue
        wt = weight[t]
        loss = keep * (-wt * logp[n, t, d]) + share * smooth
        losses[n, d] = loss
        acc += loss
        wsum += wt
    cuda.atomic.add(sums, 0, acc)
    cuda.atomic.add(sums, 1, wsum)


def cross_entropy_forward(x, target, weight, ignore, smoothing, reduction, logp, losses, result,
                          total_weight):
    """Fused log_softmax + nll (+ label smoothing) over C of x (N, C, D); target (N, D).

    logp gets log_softmax(x); losses[n, d] = (1 - s) * -w[t] logp[t] + s / C * -sum_c w[c] logp[c],
    0 where ignored; result[0] the mean (over sum of w[t]) or sum; total_weight[0] = sum of w[t].
    """
    sums = _scratch_sums()
    _cross_entropy_forward[_grid(target.size)](x.dev, target.dev, weight.dev, ignore, smoothing,
                                               logp.dev, losses.dev, sums.dev)
    _loss_finish[1, 1](sums.dev, reduction, result.dev, total_weight.dev)


@cuda.jit(cache=True)
def _cross_entropy_backward(grad, full, scale, logp, target, weight, weight_sum, ignore,
                            smoothing, dx):
    _, n_class, n_inner = dx.shape
    keep = 1.0 - smoothing
    share = smoothing / n_class
    for e in range(cuda.grid(1), target.size, cuda.gridsize(1)):
        n = e // n_inner
        d = e % n_inner
        t = target[n, d]
        if t == ignore:
            for c in range(n_class):
                dx[n, c, d] = 0
            continue
        g = (grad[n, d] if full else grad[0, 0]) * scale
        a = keep * weight[t]
        b = share * weight_sum
        for c in range(n_class):
            dx[n, c, d] = g * ((a + b) * math.exp(logp[n, c, d]) - share * weight[c])
        dx[n, t, d] -= g * a


def cross_entropy_backward(grad, full, scale, logp, target, weight, weight_sum, ignore, smoothing,
                           dx):
    """d(cross_entropy_forward's losses)/dx times grad * scale; dx (N, C, D), 0 where ignored."""
    _cross_entropy_backward[_grid(target.size)](grad.dev, full, scale, logp.dev, target.dev,
                                                weight.dev, weight_sum, ignore, smoothing, dx.dev)
