"""Optimizer update kernels: one fused pass per parameter per step, in place.

Every array is a flat contiguous buffer of the parameter's dtype; every scalar arrives already
cast to that dtype, so float32 stays float32. Each formula follows PyTorch's single-tensor
implementation operation by operation (``lerp``, ``addcmul``, ``addcdiv`` order), so results
agree with ``torch.optim`` to rounding.
"""

import numpy as np
from numba import njit

__all__ = ["ARRAYS", "adam_step", "rmsprop_step", "sgd_step"]

# kernel -> how many of its leading parameters are buffers of the parameter's length (or 0):
# the ones ``optim.optimizer.update`` slices when it splits an update over threads
ARRAYS = {"sgd_step": 3, "adam_step": 5, "rmsprop_step": 5}


@njit(cache=True)
def _lerp(start, end, weight, one):
    """PyTorch's lerp: the formula switches at weight 0.5 to stay exact at both ends."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (one - weight)


@njit(cache=True)
def sgd_step(param, grad, buf, lr, momentum, one_minus_dampening, weight_decay, nesterov,
             maximize, first):
    """SGD: (n,) param, grad, momentum buf (n, or 0 when momentum == 0); writes param, buf."""
    for i in range(param.shape[0]):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        if momentum != 0:
            b = g if first else buf[i] * momentum + one_minus_dampening * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = param[i] - lr * g


@njit(cache=True)
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2,
              one_minus_beta2, weight_decay, decay_factor, step_size, bias_correction2_sqrt, eps,
              decoupled, amsgrad, maximize):
    """Adam/AdamW: (n,) param, grad, moments (max_exp_avg_sq n or 0); writes param and state.

    ``decoupled`` (AdamW) multiplies param by ``decay_factor`` = 1 - lr * weight_decay instead of
    adding ``weight_decay * param`` to the gradient.
    """
    one = param.dtype.type(1)
    for i in range(param.shape[0]):
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
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = p + -step_size * m / denom


@njit(cache=True)
def rmsprop_step(param, grad, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                 weight_decay, momentum, centered, maximize):
    """RMSprop: (n,) param, grad, square_avg; grad_avg (centered) and buf (momentum) n or 0."""
    one = param.dtype.type(1)
    for i in range(param.shape[0]):
        g = -grad[i] if maximize else grad[i]
        if weight_decay != 0:
            g = g + weight_decay * param[i]
        sa = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = sa
        if centered:
            ga = _lerp(grad_avg[i], g, one_minus_alpha, one)
            grad_avg[i] = ga
            avg = np.sqrt(sa + -one * ga * ga) + eps
        else:
            avg = np.sqrt(sa) + eps
        if momentum > 0:
            b = buf[i] * momentum + g / avg
            buf[i] = b
            param[i] = param[i] + -lr * b
        else:
            param[i] = param[i] + -lr * g / avg
