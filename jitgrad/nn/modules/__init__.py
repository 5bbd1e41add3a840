"""Layers built on ``Module``, one family per file."""

from jitgrad.nn.modules.activation import (
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from jitgrad.nn.modules.container import ModuleDict, ModuleList, Sequential
from jitgrad.nn.modules.conv import Conv2d
from jitgrad.nn.modules.dropout import Dropout
from jitgrad.nn.modules.flatten import Flatten
from jitgrad.nn.modules.linear import Identity, Linear
from jitgrad.nn.modules.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
)
from jitgrad.nn.modules.module import Module
from jitgrad.nn.modules.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from jitgrad.nn.modules.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from jitgrad.nn.modules.sparse import Embedding

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "BatchNorm1d",
           "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout", "Embedding", "Flatten", "GELU",
           "Identity", "L1Loss", "LayerNorm", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss",
           "MaxPool2d", "Module", "ModuleDict", "ModuleList", "NLLLoss", "ReLU", "Sequential",
           "Sigmoid", "Softmax", "Tanh"]
