"""Whole steps from the performance table of the benchmark issue (jitgrad vs torch)."""

from .common import LIBRARIES, check_device, library, tensor


class TutorialStep:
    """ones, +2, *, *3, mean, backward: the 60 Minute Blitz autograd step."""

    params = (LIBRARIES, ["cpu"])
    param_names = ["library", "device"]

    def setup(self, lib_name, device):
        self.lib = library(lib_name)
        check_device(self.lib, device)
        self.time_step()

    def time_step(self, *_):
        x = self.lib.ones(2, 2, requires_grad=True)
        y = x + 2
        z = y * y * 3
        z.mean().backward()


class SmallChain:
    """50 x (y * 0.5 + 1).tanh() on 4 elements: per-op overhead."""

    params = (LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        self.x = tensor(library(lib_name), (4,), requires_grad=True)
        self.time_chain()

    def time_chain(self, *_):
        y = self.x
        for _ in range(50):
            y = (y * 0.5 + 1).tanh()
        y.sum().backward()


class LargeElementwiseChain:
    """((x*w+0.5).tanh()*x).sigmoid().sum() on 1M float32: memory traffic."""

    params = (LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        lib = library(lib_name)
        self.x = tensor(lib, (1_000_000,), requires_grad=True)
        self.w = tensor(lib, (1_000_000,), seed=1, requires_grad=True)
        self.time_chain()

    def time_chain(self, *_):
        ((self.x * self.w + 0.5).tanh() * self.x).sigmoid().sum().backward()


class Matmul512:
    params = (LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        lib = library(lib_name)
        self.a = tensor(lib, (512, 512), requires_grad=True)
        self.b = tensor(lib, (512, 512), seed=1, requires_grad=True)
        self.time_matmul_forward_backward()

    def time_matmul_forward_backward(self, *_):
        (self.a @ self.b).sum().backward()
