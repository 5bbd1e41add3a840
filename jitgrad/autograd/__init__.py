"""Automatic differentiation: graph nodes, the backward engine and grad mode."""

from jitgrad.autograd.functional import backward
from jitgrad.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]
