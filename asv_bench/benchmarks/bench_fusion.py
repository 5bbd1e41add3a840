"""jitgrad.compile: fused elementwise chains against eager jitgrad and torch."""

import os
import subprocess
import sys
import tempfile

from .common import library, tensor

FUSION_LIBRARIES = ["jitgrad-compiled", "jitgrad-eager", "torch"]


def _lib(name):
    return library("torch" if name == "torch" else "jitgrad")


def _maybe_compile(name, fn):
    if name == "jitgrad-compiled":
        from jitgrad.compile import compile

        return compile(fn)
    return fn


def _chain(x, w):
    return ((x * w + 0.5).tanh() * x).sigmoid().sum()


class FusedChain:
    """((x*w+0.5).tanh()*x).sigmoid().sum() forward + backward; compiled once in setup."""

    params = (FUSION_LIBRARIES, [10_000, 1_000_000])
    param_names = ["library", "n"]

    def setup(self, lib_name, n):
        lib = _lib(lib_name)
        self.x = tensor(lib, (n,), requires_grad=True)
        self.w = tensor(lib, (n,), seed=1, requires_grad=True)
        self.fn = _maybe_compile(lib_name, _chain)
        self.time_forward_backward()
        self.time_forward_backward()  # trace, then the fused kernels' compile

    def time_forward_backward(self, *_):
        self.x.grad = self.w.grad = None
        self.fn(self.x, self.w).backward()

    def time_forward(self, *_):
        self.fn(self.x, self.w)


def _bias_chain(x, w, b):
    return ((x * w + b).tanh() * x).sigmoid().sum()


class FusedBiasChain:
    """The chain with a broadcast bias on (1000, 1000) float32: a row (1000,) or column (1000, 1).

    Compiled, the bias is read through an index map inside the one fused region."""

    params = (FUSION_LIBRARIES, ["row", "column"])
    param_names = ["library", "bias"]

    def setup(self, lib_name, bias):
        lib = _lib(lib_name)
        self.x = tensor(lib, (1000, 1000), requires_grad=True)
        self.w = tensor(lib, (1000, 1000), seed=1, requires_grad=True)
        self.b = tensor(lib, (1000,) if bias == "row" else (1000, 1), seed=2, requires_grad=True)
        self.fn = _maybe_compile(lib_name, _bias_chain)
        self.time_forward_backward()
        self.time_forward_backward()

    def time_forward_backward(self, *_):
        self.x.grad = self.w.grad = self.b.grad = None
        self.fn(self.x, self.w, self.b).backward()


def _row_chain(x, w):
    return ((x * w + 0.5).tanh() * x).sigmoid().sum(1)


def _column_chain(x, w):
    return ((x * w + 0.5).tanh() * x).sigmoid().mean(0, keepdim=True)


class FusedPartialReduction:
    """The chain ended by a partial reduction on (1000, 1000) float32, forward + backward of
    ``out.sum()``: ``sum(1)`` (rows) or ``mean(0, keepdim=True)`` (columns).

    Compiled, the chain and the reduction are one region; its backward kernel broadcasts the
    incoming (1000,) gradient over the reduced dim."""

    params = (FUSION_LIBRARIES, ["sum(1)", "mean(0,keepdim)"])
    param_names = ["library", "reduction"]

    def setup(self, lib_name, reduction):
        lib = _lib(lib_name)
        self.x = tensor(lib, (1000, 1000), requires_grad=True)
        self.w = tensor(lib, (1000, 1000), seed=1, requires_grad=True)
        chain = _row_chain if reduction == "sum(1)" else _column_chain
        self.fn = _maybe_compile(lib_name, chain)
        self.time_forward_backward()
        self.time_forward_backward()

    def time_forward_backward(self, *_):
        self.x.grad = self.w.grad = None
        self.fn(self.x, self.w).sum().backward()

    def time_forward(self, *_):
        self.fn(self.x, self.w)


class MLPStep:
    """Linear-ReLU-Linear with an MSE loss (batch 64, width 256), compiled loss, SGD step."""

    params = (FUSION_LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        lib = _lib(lib_name)
        lib.manual_seed(0)
        self.model = lib.nn.Sequential(lib.nn.Linear(256, 256), lib.nn.ReLU(),
                                       lib.nn.Linear(256, 256))
        self.opt = lib.optim.SGD(self.model.parameters(), lr=0.01)
        self.x = tensor(lib, (64, 256))
        self.t = tensor(lib, (64, 256), seed=1)
        model = self.model
        self.loss = _maybe_compile(lib_name, lambda x, t: ((model(x) - t) ** 2 * 0.5).mean())
        self.time_step()
        self.time_step()

    def time_step(self, *_):
        self.opt.zero_grad()
        self.loss(self.x, self.t).backward()
        self.opt.step()


_COMPILE_SCRIPT = """
import sys
import time
import numpy as np
import jitgrad
from jitgrad.compile import compile
if "--after-numba-init" in sys.argv:  # numba's once-per-process set-up, paid by any first kernel
    jitgrad.ones(2) > 0
f = compile(lambda x, w: ((x * w + 0.5).tanh() * x).sigmoid().sum())
x = jitgrad.tensor(np.linspace(-1, 1, 1000, dtype=np.float32), requires_grad=True)
w = jitgrad.tensor(np.linspace(1, 2, 1000, dtype=np.float32), requires_grad=True)
t1 = time.perf_counter()
for _ in range(2):  # the trace, then the fused kernels' compile
    f(x, w).backward()
t2 = time.perf_counter()
f(x, w).backward()
print(t2 - t1 - (time.perf_counter() - t2))
"""


def _compile_seconds(cache_dir, *flags):
    env = dict(os.environ, JITGRAD_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, *flags], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


class FusionCompileTime:
    """Seconds from the first call to a steady state (trace + codegen + numba), fresh process."""

    timeout = 300

    def track_cold_seconds(self):
        with tempfile.TemporaryDirectory() as cache:
            return _compile_seconds(cache)

    def track_warm_seconds(self):
        with tempfile.TemporaryDirectory() as cache:
            _compile_seconds(cache)
            return _compile_seconds(cache)

    def track_warm_seconds_after_numba_init(self):
        """The warm compile without numba's once-per-process set-up (~0.3 s here), which the
        first kernel of any program pays: the part jitgrad's trace, codegen and loads cost."""
        with tempfile.TemporaryDirectory() as cache:
            _compile_seconds(cache)
            return _compile_seconds(cache, "--after-numba-init")

    track_cold_seconds.unit = "seconds"
    track_warm_seconds.unit = "seconds"
    track_warm_seconds_after_numba_init.unit = "seconds"
