"""Automatic differentiation: graph nodes, the backward engine, grad mode and anomaly mode."""

from jitgrad.autograd import functional
from jitgrad.autograd.anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from jitgrad.autograd.backward import backward, grad
from jitgrad.autograd.function import Function, FunctionCtx
from jitgrad.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck
from jitgrad.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

__all__ = ["Function", "FunctionCtx", "GradcheckError", "backward", "detect_anomaly",
           "enable_grad", "functional", "grad", "gradcheck", "gradgradcheck",
           "is_anomaly_enabled", "is_grad_enabled", "no_grad", "set_detect_anomaly",
           "set_grad_enabled"]
