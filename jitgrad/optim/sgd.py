"""``SGD`` with momentum, dampening, Nesterov, weight decay and maximize."""

import jitgrad
from jitgrad.optim.optimizer import Optimizer, _buffer, _check_state, _empty, _grads_and_params

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, step for step as ``torch.optim.SGD``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-3).
        momentum, dampening: momentum factor and its dampening.
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend instead of descend.

    Example::

        >>> import jitgrad
        >>> w = jitgrad.nn.Parameter(jitgrad.ones(2))
        >>> opt = jitgrad.optim.SGD([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> w
        Parameter containing:
        tensor([0.8000, 0.8000], requires_grad=True)
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False):
        for name, value in (("learning rate", lr), ("momentum value", momentum),
                            ("weight_decay value", weight_decay)):
            if value < 0.0:
                raise ValueError(f"Invalid {name}: {value}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    @jitgrad.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            for p, grad in _grads_and_params(group):
                data = _buffer(p)
                t = data.dtype.type
                state = self.state[p]
                first = False
                if momentum != 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = jitgrad.zeros_like(p)
                        first = True
                    _check_state(p, buf)
                    buf_data = _buffer(buf)
                else:
                    buf_data = _empty(data)
                self._update("sgd_step", data, _buffer(grad), buf_data, t(group["lr"]),
                             t(momentum), t(1 - group["dampening"]),
                             t(group["weight_decay"]), group["nesterov"], group["maximize"],
                             first)
                p._version[0] += 1
        return loss
