"""jitgrad: PyTorch's autograd API on numba-compiled kernels."""

from jitgrad import autograd
from jitgrad._tensor_str import set_printoptions
from jitgrad.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from jitgrad.backends.cpu.threads import get_num_threads, set_num_threads
from jitgrad.dtypes import (bool, double, dtype, float, float32, float64, get_default_dtype, int,
                            int32, int64, long)
from jitgrad.ops import *  # noqa: F403
from jitgrad.size import Size, device
from jitgrad.tensor import Tensor

from jitgrad import cuda, nn, optim, utils  # built on the public API above
from jitgrad.serialization import load, save
from jitgrad.compile import compile  # torch.compile-like; shadows the subpackage, as in torch

__version__ = "0.1.0"
