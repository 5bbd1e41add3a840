"""``Adam`` and ``AdamW`` (with amsgrad and maximize)."""

import math

import jitgrad
from jitgrad.optim.optimizer import Optimizer, _buffer, _check_state, _empty, _grads_and_params

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam, step for step as ``torch.optim.Adam``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-3).
        betas: decay rates of the first and second moment averages.
        eps: added to the denominator for stability.
        weight_decay: L2 penalty added to the gradient (decoupled in ``AdamW``).
        amsgrad: use the running maximum of the second moment.
        maximize: ascend instead of descend.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i in (0, 1):
            if not 0.0 <= betas[i] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    @jitgrad.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd, amsgrad = group["lr"], group["weight_decay"], group["amsgrad"]
            for p, grad in _grads_and_params(group):
                state = self.state[p]
                if not state:
                    state["step"] = jitgrad.tensor(0.0)
                    state["exp_avg"] = jitgrad.zeros_like(p)
                    state["exp_avg_sq"] = jitgrad.zeros_like(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = jitgrad.zeros_like(p)
                state["step"].add_(1)
                step = state["step"].item()
                data = _buffer(p)
                t = data.dtype.type
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                moments = (state["exp_avg"], state["exp_avg_sq"],
                           state["max_exp_avg_sq"] if amsgrad else None)
                _check_state(p, *moments)
                max_sq = _buffer(moments[2]) if amsgrad else _empty(data)
                self._update(
                    "adam_step", data, _buffer(grad), _buffer(moments[0]), _buffer(moments[1]),
                    max_sq, t(1 - beta1), t(beta2), t(1 - beta2), t(wd), t(1 - lr * wd),
                    t(lr / bias_correction1), t(math.sqrt(bias_correction2)), t(group["eps"]),
                    self._decoupled, amsgrad, group["maximize"])
                p._version[0] += 1
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (``param *= 1 - lr * weight_decay``), as
    ``torch.optim.AdamW``; ``weight_decay`` defaults to 1e-2."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
