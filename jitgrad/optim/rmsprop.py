"""``RMSprop`` (centered, momentum, weight decay, maximize)."""

import jitgrad
from jitgrad.optim.optimizer import Optimizer, _buffer, _check_state, _empty, _grads_and_params

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop, step for step as ``torch.optim.RMSprop``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant of the squared-gradient average.
        eps: added to the denominator for stability.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor.
        centered: normalise by the estimated variance instead of the raw second moment.
        maximize: ascend instead of descend.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        for name, value in (("learning rate", lr), ("epsilon value", eps),
                            ("momentum value", momentum), ("weight_decay value", weight_decay),
                            ("alpha value", alpha)):
            if value < 0.0:
                raise ValueError(f"Invalid {name}: {value}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    @jitgrad.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            momentum, centered = group["momentum"], group["centered"]
            for p, grad in _grads_and_params(group):
                state = self.state[p]
                if not state:
                    state["step"] = jitgrad.tensor(0.0)
                    state["square_avg"] = jitgrad.zeros_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = jitgrad.zeros_like(p)
                    if centered:
                        state["grad_avg"] = jitgrad.zeros_like(p)
                state["step"].add_(1)
                data = _buffer(p)
                t = data.dtype.type
                grad_avg = state["grad_avg"] if centered else None
                buf = state["momentum_buffer"] if momentum > 0 else None
                _check_state(p, state["square_avg"], grad_avg, buf)
                empty = _empty(data)
                self._update(
                    "rmsprop_step", data, _buffer(grad), _buffer(state["square_avg"]),
                    empty if grad_avg is None else _buffer(grad_avg),
                    empty if buf is None else _buffer(buf), t(group["lr"]), t(group["alpha"]),
                    t(1 - group["alpha"]), t(group["eps"]), t(group["weight_decay"]),
                    t(momentum), centered, group["maximize"])
                p._version[0] += 1
        return loss
