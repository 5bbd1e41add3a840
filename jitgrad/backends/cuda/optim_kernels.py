"""Optimizer update kernels: one fused elementwise launch per parameter per step, in place.

The arguments are those of ``backends/cpu/optim_kernels``: flat contiguous DeviceArrays of the
parameter's dtype and scalars already cast to that dtype, so float32 stays float32. The math is
the CPU kernels' operation by operation. A state buffer a flag leaves unused may be an empty
array (device or numpy): the kernel then gets ``param`` in its place and never touches it.
"""

import math

from jitgrad.backends.cuda import runtime

__all__ = ["adam_step", "rmsprop_step", "sgd_step"]

cuda = runtime.cuda()


@cuda.jit(device=True, cache=True)
def _lerp(start, end, weight, one):
    """PyTorch's lerp: the formula switches at weight 0.5 to stay exact at both ends."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (one - weight)


@cuda.jit(cache=True)
def _sgd(param, grad, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov, maximize,
         first):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if momentum != 0:
            b = g if first else buf[i] * momentum + one_minus_dampening * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


@cuda.jit(cache=True)
def _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2,
          one_minus_beta2, weight_decay, decay_factor, step_size, bias_correction2_sqrt, eps,
          decoupled, amsgrad, maximize):
    one = param.dtype.type(1)
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = -grad[i] if maximize else grad[i]
        p = param[i]
        if weight_decay != 0:
            if decoupled:
                p = p * decay_factor
            else:
                g = g + weight_decay * p
        m = _lerp(exp_avg[i], g, one_minus_beta1, one)
        exp_avg[i] = m
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        denom = math.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = p + -step_size * m / denom


@cuda.jit(cache=True)
def _rmsprop(param, grad, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
             weight_decay, momentum, centered, maximize):
    one = param.dtype.type(1)
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        sa = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = sa
        if centered:
            ga = _lerp(grad_avg[i], g, one_minus_alpha, one)
            grad_avg[i] = ga
            avg = math.sqrt(sa + -one * ga * ga) + eps
        else:
            avg = math.sqrt(sa) + eps
        if momentum > 0:
            b = buf[i] * momentum + g / avg
            buf[i] = b
            param[i] = param[i] + -lr * b
        else:
            param[i] = param[i] + -lr * g / avg


def _state(buf, param):
    """``buf``'s device array, or ``param``'s for an unused (empty) buffer: one kernel type."""
    return param.dev if buf.size == 0 else buf.dev


def sgd_step(param, grad, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov,
             maximize, first):
    """SGD: (n,) param, grad, momentum buf (n, or 0 when momentum == 0); writes param, buf."""
    n = param.shape[0]
    if n:
        _sgd[runtime.grid(n)](param.dev, grad.dev, _state(buf, param), lr, momentum,
                              one_minus_dampening, weight_decay, nesterov, maximize, first)


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2,
              one_minus_beta2, weight_decay, decay_factor, step_size, bias_correction2_sqrt, eps,
              decoupled, amsgrad, maximize):
    """Adam/AdamW: (n,) param, grad, moments (max_exp_avg_sq n or 0); writes param and state.

    ``decoupled`` (AdamW) multiplies param by ``decay_factor`` = 1 - lr * weight_decay instead of
    adding ``weight_decay * param`` to the gradient.
    """
    n = param.shape[0]
    if n:
        _adam[runtime.grid(n)](param.dev, grad.dev, exp_avg.dev, exp_avg_sq.dev,
                               _state(max_exp_avg_sq, param), one_minus_beta1, beta2,
                               one_minus_beta2, weight_decay, decay_factor, step_size,
                               bias_correction2_sqrt, eps, decoupled, amsgrad, maximize)


def rmsprop_step(param, grad, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                 weight_decay, momentum, centered, maximize):
    """RMSprop: (n,) param, grad, square_avg; grad_avg (centered) and buf (momentum) n or 0."""
    n = param.shape[0]
    if n:
        _rmsprop[runtime.grid(n)](param.dev, grad.dev, square_avg.dev, _state(grad_avg, param),
                                  _state(buf, param), lr, alpha, one_minus_alpha, eps,
                                  weight_decay, momentum, centered, maximize)
