"""Neural-network building blocks (``torch.nn``): ``Module`` and its layers, ``functional``,
``init`` and ``Parameter``."""

from jitgrad.nn import functional, init
from jitgrad.nn.modules import *
from jitgrad.nn.modules import __all__ as _modules_all
from jitgrad.nn.parameter import Parameter

__all__ = ["Parameter", "functional", "init", *_modules_all]
