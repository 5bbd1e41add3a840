"""Optimizers (``SGD``, ``Adam``, ``AdamW``, ``RMSprop``) and ``lr_scheduler``."""

from jitgrad.optim import lr_scheduler
from jitgrad.optim.adam import Adam, AdamW
from jitgrad.optim.optimizer import Optimizer
from jitgrad.optim.rmsprop import RMSprop
from jitgrad.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
