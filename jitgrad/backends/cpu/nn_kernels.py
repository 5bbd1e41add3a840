"""Kernels of ``jitgrad.nn.functional``: im2col convolution, pooling, embedding, dropout, losses.

Geometry travels as one int tuple ``p = (kh, kw, sh, sw, ph, pw, dh, dw)`` (kernel, stride,
top/left padding, dilation) so each kernel has one signature per dtype. Output arrays that a
kernel only partly writes are zero-filled by the caller.
"""


import numpy as np
from numba import njit, prange

from jitgrad.backends.cpu.reduce_kernels import softmax_3d
from jitgrad.backends.cpu.scalar import erf as erf_
from jitgrad.backends.cpu.scalar import exp
from jitgrad.backends.cpu.simd import prefer_wide_vectors
from jitgrad.backends.cpu.threads import chunk_bounds


@njit(inline="always")
def _valid_range(off, stride, size, n_out):
    """Outputs o in [lo, hi) whose input index o * stride + off lies in [0, size)."""
    lo = max(0, -(off // stride))
    hi = min(n_out, (size - 1 - off) // stride + 1) if size - 1 - off >= 0 else 0
    return lo, max(lo, hi)


@njit(inline="always")
def _inside(p, h, w, oh, ow):
    """Whether every window lies inside the (H, W) input: no padding on any side."""
    kh, kw, sh, sw, ph, pw, dh, dw = p
    return (ph == 0 and pw == 0 and (oh - 1) * sh + (kh - 1) * dh < h
            and (ow - 1) * sw + (kw - 1) * dw < w)


@njit(cache=True)
def im2col(x, p, oh, ow, cols):
    """x (N, C, H, W) -> cols (N, C*kh*kw, oh*ow) (pre-zeroed): cols[n, (c,i,j), (y,x)]."""
    kh, kw, sh, sw, ph, pw, dh, dw = p
    n_batch, n_chan, h, w = x.shape
    if _inside(p, h, w, oh, ow):
        _im2col_unpadded(x, p, oh, ow, cols)
        return
    for n in range(n_batch):
        for c in range(n_chan):
            for i in range(kh):
                y_lo, y_hi = _valid_range(i * dh - ph, sh, h, oh)
                for j in range(kw):
                    off = j * dw - pw
                    x_lo, x_hi = _valid_range(off, sw, w, ow)
                    row = (c * kh + i) * kw + j
                    for oy in range(y_lo, y_hi):
                        iy = oy * sh + i * dh - ph
                        base = oy * ow
                        if sw == 1:  # the common case: a contiguous run, copied as a block
                            cols[n, row, base + x_lo:base + x_hi] = x[n, c, iy,
                                                                    x_lo + off:x_hi + off]
                        else:
                            for ox in range(x_lo, x_hi):
                                cols[n, row, base + ox] = x[n, c, iy, ox * sw + off]


# NOTE: without padding (``_inside``) every window lies inside the input, and these loops index
# from values LLVM can see are >= 0 (loop counters, products of them and of strides clamped to
# >= 1): it then drops numba's negative-index wraparound and vectorizes. On LeNet's shapes this
# ran 5-7x faster than the padded path's per-row slice copies (~9 ns per row of 8-24 floats).
@njit(cache=True, inline="always")
def _im2col_unpadded(x, p, oh, ow, cols):
    kh, kw, sh, sw, _, _, dh, dw = p
    sh, sw, dh, dw = max(sh, 1), max(sw, 1), max(dh, 1), max(dw, 1)  # tells LLVM they are > 0
    n_batch, n_chan = x.shape[:2]
    for n in range(n_batch):
        for c in range(n_chan):
            for i in range(kh):
                for j in range(kw):
                    dst = cols[n, (c * kh + i) * kw + j]
                    jj = j * dw
                    for oy in range(oh):
                        src = x[n, c, oy * sh + i * dh]
                        b = oy * ow
                        if sw == 1:
                            for ox in range(ow):
                                dst[b + ox] = src[ox + jj]
                        else:
                            for ox in range(ow):
                                dst[b + ox] = src[ox * sw + jj]


@njit(cache=True, inline="always")
def _col2im_unpadded(buf, p, oh, ow, dx):
    kh, kw, sh, sw, _, _, dh, dw = p
    sh, sw, dh, dw = max(sh, 1), max(sw, 1), max(dh, 1), max(dw, 1)
    for c in range(dx.shape[0]):
        for i in range(kh):
            for j in range(kw):
                src = buf[(c * kh + i) * kw + j]
                jj = j * dw
                for oy in range(oh):
                    dst = dx[c, oy * sh + i * dh]
                    b = oy * ow
                    if sw == 1:
                        for ox in range(ow):
                            dst[ox + jj] += src[b + ox]
                    else:
                        for ox in range(ow):
                            dst[ox * sw + jj] += src[b + ox]


@njit(cache=True)
def _col2im_one(buf, p, oh, ow, dx):
    """dx (C, H, W) += the columns of buf (C*kh*kw, oh*ow) scattered back to their pixels."""
    kh, kw, sh, sw, ph, pw, dh, dw = p
    n_chan, h, w = dx.shape
    if _inside(p, h, w, oh, ow):
        _col2im_unpadded(buf, p, oh, ow, dx)
        return
    for c in range(n_chan):
        for i in range(kh):
            y_lo, y_hi = _valid_range(i * dh - ph, sh, h, oh)
            for j in range(kw):
                off = j * dw - pw
                x_lo, x_hi = _valid_range(off, sw, w, ow)
                row = (c * kh + i) * kw + j
                for oy in range(y_lo, y_hi):
                    iy = oy * sh + i * dh - ph
                    base = oy * ow
                    if sw == 1:
                        dx[c, iy, x_lo + off:x_hi + off] += buf[row, base + x_lo:base + x_hi]
                    else:
                        for ox in range(x_lo, x_hi):
                            dx[c, iy, ox * sw + off] += buf[row, base + ox]


# NOTE: one BLAS product per sample (and group), not one over the whole batch: OpenBLAS
# multithreads products above ~262k multiply-adds, and its spinning threads then fight numba
# and torch for the cores (measured 20-50x slower on 2 cores); per-sample products stay serial.
@njit(cache=True)
def conv2d_forward(cols, w, bias, has_bias, out):
    """out[n, g] (Og, L) = w[g] (Og, Kg) @ cols[n, g*Kg:(g+1)*Kg] (+ bias[g, :, None])."""
    n_groups, n_out, k_g = w.shape
    for n in range(cols.shape[0]):
        for g in range(n_groups):
            np.dot(w[g], cols[n, g * k_g:(g + 1) * k_g], out[n, g])
            if has_bias:
                for o in range(n_out):
                    b = bias[g, o]
                    for q in range(out.shape[3]):
                        out[n, g, o, q] += b


@njit(cache=True)
def conv2d_backward_input(grad, w, p, oh, ow, buf, dx):
    """dx (N, C, H, W) (pre-zeroed) = col2im(w[g].T @ grad[n, g]); buf (C*kh*kw, L) scratch."""
    n_groups, n_out, k_g = w.shape
    for n in range(grad.shape[0]):
        for g in range(n_groups):
            np.dot(w[g].T, grad[n, g], buf[g * k_g:(g + 1) * k_g])
        _col2im_one(buf, p, oh, ow, dx[n])


@njit(cache=True)
def conv2d_backward_weight(grad, cols, tmp, dw):
    """dw[g] (Og, Kg) = sum over n of grad[n, g] (Og, L) @ cols[n, g rows].T; tmp like dw[0]."""
    n_groups, n_out, k_g = dw.shape
    for n in range(grad.shape[0]):
        for g in range(n_groups):
            rows = cols[n, g * k_g:(g + 1) * k_g]
            if n == 0:
                np.dot(grad[n, g], rows.T, dw[g])
            else:
                np.dot(grad[n, g], rows.T, tmp)
                dw[g] += tmp  # NOTE: a (Og, Kg) add per sample; small next to the matmul


@njit(cache=True, nogil=True, parallel=True)
def conv2d_backward_input_p(chunks, grad, w, p, oh, ow, buf, dx):
    """``conv2d_backward_input`` with the batch in ``chunks`` slices on threads, a scratch
    like ``buf`` each."""
    for c in prange(chunks):
        lo, hi = chunk_bounds(c, chunks, grad.shape[0], 1)
        conv2d_backward_input(grad[lo:hi], w, p, oh, ow, np.empty_like(buf), dx[lo:hi])


@njit(cache=True, nogil=True, parallel=True)
def conv2d_backward_weight_p(chunks, grad, cols, tmp, dw):
    """``conv2d_backward_weight`` with the batch in ``chunks`` slices on threads: a partial dw
    per slice (zero for an empty one), then their sum."""
    parts = np.zeros((chunks,) + dw.shape, dw.dtype)
    for c in prange(chunks):
        lo, hi = chunk_bounds(c, chunks, grad.shape[0], 1)
        if hi > lo:
            conv2d_backward_weight(grad[lo:hi], cols[lo:hi], np.empty_like(tmp), parts[c])
    dw[:] = parts[0]
    for c in range(1, chunks):
        dw += parts[c]


@njit(cache=True)
def _max_pool_2x2(x, out, idx):
    """``max_pool2d_forward`` for 2x2 windows at stride 2 inside the map: the common layer,
    unrolled (about 3x faster than the general loops)."""
    w = x.shape[2]
    for m in range(x.shape[0]):
        for oy in range(out.shape[1]):
            top, bottom = x[m, 2 * oy], x[m, 2 * oy + 1]
            for ox in range(out.shape[2]):
                x0 = 2 * ox
                best, at = top[x0], 2 * oy * w + x0
                for v, pos in ((top[x0 + 1], at + 1), (bottom[x0], at + w),
                               (bottom[x0 + 1], at + w + 1)):
                    if v > best or v != v:
                        best, at = v, pos
                out[m, oy, ox] = best
                idx[m, oy, ox] = at


@njit(cache=True)
def max_pool2d_forward(x, p, out, idx):
    """x (M, H, W) -> out, idx (M, OH, OW): window maximum and its flat index in H*W (NaN wins)."""
    kh, kw, sh, sw, ph, pw, dh, dw = p
    n_maps, h, w = x.shape
    _, oh, ow = out.shape
    if (kh == kw == sh == sw == 2 and ph == pw == 0 and dh == dw == 1 and 2 * oh <= h
            and 2 * ow <= w):
        _max_pool_2x2(x, out, idx)
        return
    for m in range(n_maps):
        for oy in range(oh):
            y0 = oy * sh - ph
            y1 = min(y0 + (kh - 1) * dh + 1, h)
            while y0 < 0:
                y0 += dh
            for ox in range(ow):
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


@njit(cache=True)
def index_scatter_add(grad, idx, dx):
    """dx[m, idx[m, q]] += grad[m, q] for grad/idx (M, Q), dx (M, P) pre-zeroed."""
    for m in range(grad.shape[0]):
        for q in range(grad.shape[1]):
            dx[m, idx[m, q]] += grad[m, q]


@njit(cache=True)
def window_mean_forward(x, hs, he, ws, we, div, out):
    """out[m, i, j] = sum of x[m, hs[i]:he[i], ws[j]:we[j]] / div[i, j]; x (M, H, W)."""
    n_maps, oh, ow = out.shape
    zero = np.zeros(1, x.dtype)[0]  # typed, and unlike x - x not NaN when x holds an inf
    for m in range(n_maps):
        for i in range(oh):
            for j in range(ow):
                total = zero
                for iy in range(hs[i], he[i]):
                    for ix in range(ws[j], we[j]):
                        total += x[m, iy, ix]
                out[m, i, j] = total / div[i, j]


@njit(cache=True)
def window_mean_backward(grad, hs, he, ws, we, div, dx):
    """dx[m, window(i, j)] += grad[m, i, j] / div[i, j]; dx (M, H, W) pre-zeroed."""
    n_maps, oh, ow = grad.shape
    for m in range(n_maps):
        for i in range(oh):
            for j in range(ow):
                share = grad[m, i, j] / div[i, j]
                for iy in range(hs[i], he[i]):
                    for ix in range(ws[j], we[j]):
                        dx[m, iy, ix] += share


@njit(cache=True)
def dropout_forward(x, u, p, scale, out, mask):
    """Flat arrays: mask = scale where u >= p else 0; out = x * mask."""
    zero = scale - scale
    for i in range(x.size):
        k = scale if u[i] >= p else zero
        mask[i] = k
        out[i] = x[i] * k


@njit(cache=True)
def erf(x, out):
    """Flat arrays: out = erf(x)."""
    prefer_wide_vectors()
    for i in range(x.size):
        out[i] = erf_(x[i])


@njit(cache=True)
def gelu_forward(x, out):
    """Flat arrays: out = x * Phi(x), Phi the standard normal CDF (via erf)."""
    # NOTE: constants of x's dtype: a float64 literal would turn a float32 loop into float64
    # arithmetic and float64 erf (3.5x slower), for no accuracy erf32 does not already give.
    t = x.dtype.type
    half, one, sqrt1_2 = t(0.5), t(1.0), t(0.7071067811865476)
    prefer_wide_vectors()
    for i in range(x.size):
        v = x[i]
        out[i] = half * v * (one + erf_(v * sqrt1_2))


@njit(cache=True)
def gelu_backward(grad, x, out):
    """Flat arrays: out = grad * (Phi(x) + x * phi(x))."""
    t = x.dtype.type
    half, one, sqrt1_2, inv_sqrt_2pi = t(0.5), t(1.0), t(0.7071067811865476), t(0.3989422804014327)
    prefer_wide_vectors()
    for i in range(x.size):
        v = x[i]
        cdf = half * (one + erf_(v * sqrt1_2))
        pdf = inv_sqrt_2pi * exp(-half * v * v)
        out[i] = grad[i] * (cdf + v * pdf)


@njit(cache=True)
def embedding_forward(idx, weight, pad, out):
    """out[i] = weight[idx[i]], or zeros where idx[i] == pad (pad < 0: never); out (n, D)."""
    for i in range(idx.size):
        k = idx[i]
        for j in range(out.shape[1]):
            out[i, j] = 0 if k == pad else weight[k, j]


@njit(cache=True)
def embedding_backward(idx, grad, pad, by_freq, counts, dw):
    """dw[idx[i]] += grad[i] (divided by idx[i]'s count when by_freq), except where == pad."""
    if by_freq:
        for i in range(idx.size):
            counts[idx[i]] += 1
    for i in range(idx.size):
        k = idx[i]
        if k == pad:
            continue
        for j in range(dw.shape[1]):
            dw[k, j] += grad[i, j] / counts[k] if by_freq else grad[i, j]


@njit(cache=True)
def embedding_renorm(idx, weight, max_norm, norm_type):
    """In place: rows weight[idx[i]] whose norm_type-norm exceeds max_norm are scaled down to it."""
    for i in range(idx.size):
        row = weight[idx[i]]
        total = 0.0
        for j in range(row.size):
            total += abs(row[j]) ** norm_type
        norm = total ** (1.0 / norm_type)
        if norm > max_norm:
            scale = max_norm / (norm + 1e-7)
            for j in range(row.size):
                row[j] *= scale


@njit(cache=True)
def nll_forward(x, target, weight, ignore, reduction, losses, result, total_weight):
    """x (N, C, D), target (N, D): losses = -weight[t] * x[n, t, d] (0 where ignored).

    reduction 1 (mean) / 2 (sum) writes result[0]; total_weight[0] gets sum of weight[t].
    """
    n_batch, _, n_inner = x.shape
    acc = 0.0
    wsum = 0.0
    for n in range(n_batch):
        for d in range(n_inner):
            t = target[n, d]
            if t == ignore:
                losses[n, d] = 0
                continue
            wt = weight[t]
            loss = -wt * x[n, t, d]
            losses[n, d] = loss
            acc += loss
            wsum += wt
    total_weight[0] = wsum
    if reduction == 1:
        result[0] = acc / wsum
    elif reduction == 2:
        result[0] = acc


@njit(cache=True)
def nll_backward(grad, full, scale, target, weight, ignore, dx):
    """dx[n, t, d] = -weight[t] * grad * scale (grad[n, d] when full, else grad[0, 0])."""
    n_batch, _, n_inner = dx.shape
    for n in range(n_batch):
        for d in range(n_inner):
            t = target[n, d]
            if t != ignore:
                g = grad[n, d] if full else grad[0, 0]
                dx[n, t, d] = -weight[t] * g * scale


@njit(cache=True)
def cross_entropy_forward(x, target, weight, ignore, smoothing, reduction, logp, losses, result,
                          total_weight):
    """log_softmax + nll (+ label smoothing) over C of x (N, C, D); target (N, D).

    logp gets log_softmax(x); losses[n, d] = (1 - s) * -w[t] logp[t] + s / C * -sum_c w[c] logp[c],
    0 where ignored; result[0] the mean (over sum of w[t]) or sum; total_weight[0] = sum of w[t].
    """
    softmax_3d(x, True, logp)
    n_batch, n_class, n_inner = x.shape
    keep = 1.0 - smoothing
    share = smoothing / n_class
    acc = 0.0
    wsum = 0.0
    for n in range(n_batch):
        for d in range(n_inner):
            t = target[n, d]
            if t == ignore:
                losses[n, d] = 0
                continue
            smooth = 0.0  # NOTE: only summed with smoothing: a -inf logit would give 0 * inf
            if share != 0:
                for c in range(n_class):
                    smooth -= weight[c] * logp[n, c, d]
            wt = weight[t]
            loss = keep * (-wt * logp[n, t, d]) + share * smooth
            losses[n, d] = loss
            acc += loss
            wsum += wt
    total_weight[0] = wsum
    if reduction == 1:
        result[0] = acc / wsum
    elif reduction == 2:
        result[0] = acc


@njit(inline="always")
def _cross_entropy_grad(g, t, a, b, share, weight, logp, dx):
    """One (n, d)'s gradient over C: g * ((a + b) * softmax - share * w), minus g * a at t."""
    for c in range(dx.size):
        dx[c] = g * ((a + b) * exp(logp[c]) - share * weight[c])
    dx[t] -= g * a


@njit(cache=True)
def cross_entropy_backward(grad, full, scale, logp, target, weight, weight_sum, ignore, smoothing,
                           dx):
    """d(cross_entropy_forward's losses)/dx times grad * scale; dx (N, C, D), 0 where ignored."""
    prefer_wide_vectors()
    n_batch, n_class, n_inner = dx.shape
    keep = 1.0 - smoothing
    share = smoothing / n_class
    b = share * weight_sum
    # D == 1 (one label per row): contiguous rows, whose loop over C vectorizes
    logp_rows = logp.reshape((n_batch, n_class * n_inner))
    dx_rows = dx.reshape((n_batch, n_class * n_inner))
    for n in range(n_batch):
        for d in range(n_inner):
            t = target[n, d]
            if t == ignore:
                dx[n, :, d] = 0
                continue
            g = (grad[n, d] if full else grad[0, 0]) * scale
            a = keep * weight[t]
            if n_inner == 1:
                _cross_entropy_grad(g, t, a, b, share, weight, logp_rows[n], dx_rows[n])
            else:
                _cross_entropy_grad(g, t, a, b, share, weight, logp[n, :, d], dx[n, :, d])
