"""Single ops, forward and forward+backward, across sizes and dtypes (jitgrad vs torch)."""

import numpy as np

from .common import DEVICES, LIBRARIES, array, check_device, library, sync, tensor

SIZES = [4, 1_000, 1_000_000]


class Elementwise:
    params = (LIBRARIES, ["add", "mul", "exp", "tanh", "sigmoid"], SIZES, ["float32", "float64"],
              DEVICES)
    param_names = ["library", "op", "size", "dtype", "device"]

    def setup(self, lib_name, op, size, dtype, device):
        self.lib = library(lib_name)
        self.device = device
        check_device(self.lib, device)
        self.x = tensor(self.lib, (size,), dtype, 0, requires_grad=True, device=device)
        self.y = tensor(self.lib, (size,), dtype, 1, device=device)
        binary = op in ("add", "mul")
        self.fn = (lambda x: getattr(x, op)(self.y)) if binary else (lambda x: getattr(x, op)())
        self.time_forward_backward()  # compile outside the timed region

    def time_forward(self, *_):
        self.fn(self.x)
        sync(self.lib, self.device)

    def time_forward_backward(self, *_):
        self.fn(self.x).sum().backward()
        sync(self.lib, self.device)


class Reduction:
    params = (LIBRARIES, ["sum", "mean", "amax", "softmax", "log_softmax", "logsumexp",
                          "cross_entropy"], [(64, 10), (1000, 1000)], ["float32"], DEVICES)
    param_names = ["library", "op", "shape", "dtype", "device"]

    def setup(self, lib_name, op, shape, dtype, device):
        self.lib = library(lib_name)
        self.device = device
        check_device(self.lib, device)
        self.x = tensor(self.lib, shape, dtype, requires_grad=True, device=device)
        labels = self.lib.tensor(np.random.default_rng(0).integers(0, shape[1], shape[0]),
                                 device=device)
        self.fn = {
            "sum": lambda x: x.sum(1),
            "mean": lambda x: x.mean(1),
            "amax": lambda x: x.amax(1),
            "softmax": lambda x: x.softmax(1),
            "log_softmax": lambda x: x.log_softmax(1),
            "logsumexp": lambda x: x.logsumexp(1),
            "cross_entropy": lambda x: self.lib.nn.functional.cross_entropy(x, labels),
        }[op]
        self.time_forward_backward()

    def time_forward(self, *_):
        self.fn(self.x)
        sync(self.lib, self.device)

    def time_forward_backward(self, *_):
        self.fn(self.x).sum().backward()
        sync(self.lib, self.device)


class Matmul:
    params = (LIBRARIES, [(64, 784, 256), (512, 512, 512), (8, 64, 64)], ["float32"], DEVICES)
    param_names = ["library", "mnk", "dtype", "device"]

    def setup(self, lib_name, mnk, dtype, device):
        self.lib = library(lib_name)
        check_device(self.lib, device)
        m, n, k = mnk
        self.device = device
        self.a = tensor(self.lib, (m, n), dtype, 0, requires_grad=True, device=device)
        self.b = tensor(self.lib, (n, k), dtype, 1, requires_grad=True, device=device)
        self.time_forward_backward()

    def time_forward(self, *_):
        self.a @ self.b
        sync(self.lib, self.device)

    def time_forward_backward(self, *_):
        (self.a @ self.b).sum().backward()
        sync(self.lib, self.device)


class ShapeAndIndexing:
    params = (LIBRARIES, ["transpose_contiguous", "cat", "getitem_slice", "getitem_index"],
              [(256, 256)])
    param_names = ["library", "op", "shape"]

    def setup(self, lib_name, op, shape):
        self.lib = lib = library(lib_name)
        self.x = tensor(lib, shape, requires_grad=True)
        idx = lib.tensor(array((shape[0],), "float64", 2, 0, shape[0]).astype("int64"))
        self.fn = {
            "transpose_contiguous": lambda x: x.t().contiguous(),
            "cat": lambda x: lib.cat([x, x], 0),
            "getitem_slice": lambda x: x[1::2, :128],
            "getitem_index": lambda x: x[idx],
        }[op]
        self.time_forward_backward()

    def time_forward(self, *_):
        self.fn(self.x)

    def time_forward_backward(self, *_):
        self.fn(self.x).sum().backward()
