"""Whole steps from the performance table of the benchmark issue (jitgrad vs torch)."""

from .common import DEVICES, LIBRARIES, array, check_device, library, sync, tensor, warm_up


class TutorialStep:
    """ones, +2, *, *3, mean, backward: the 60 Minute Blitz autograd step."""

    params = (LIBRARIES, DEVICES)
    param_names = ["library", "device"]

    def setup(self, lib_name, device):
        self.lib = library(lib_name)
        self.device = device
        check_device(self.lib, device)
        warm_up(self.time_step)

    def time_step(self, *_):
        x = self.lib.ones(2, 2, requires_grad=True, device=self.device)
        y = x + 2
        z = y * y * 3
        z.mean().backward()
        sync(self.lib, self.device)


class SmallChain:
    """50 x (y * 0.5 + 1).tanh() on 4 elements: per-op overhead."""

    params = (LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        self.x = tensor(library(lib_name), (4,), requires_grad=True)
        warm_up(self.time_chain)

    def time_chain(self, *_):
        y = self.x
        for _ in range(50):
            y = (y * 0.5 + 1).tanh()
        y.sum().backward()


class LargeElementwiseChain:
    """((x*w+0.5).tanh()*x).sigmoid().sum() on 1M float32: memory traffic."""

    params = (LIBRARIES, DEVICES)
    param_names = ["library", "device"]

    def setup(self, lib_name, device):
        self.lib = lib = library(lib_name)
        self.device = device
        check_device(lib, device)
        self.x = tensor(lib, (1_000_000,), requires_grad=True, device=device)
        self.w = tensor(lib, (1_000_000,), seed=1, requires_grad=True, device=device)
        warm_up(self.time_chain)

    def time_chain(self, *_):
        ((self.x * self.w + 0.5).tanh() * self.x).sigmoid().sum().backward()
        sync(self.lib, self.device)


class Matmul512:
    params = (LIBRARIES,)
    param_names = ["library"]

    def setup(self, lib_name):
        lib = library(lib_name)
        self.a = tensor(lib, (512, 512), requires_grad=True)
        self.b = tensor(lib, (512, 512), seed=1, requires_grad=True)
        for _ in range(2):  # the second call adds into .grad: that kernel compiles here too
            self.time_matmul_forward_backward()

    def time_matmul_forward_backward(self, *_):
        (self.a @ self.b).sum().backward()


def _mlp(lib):
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def _lenet(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class TrainingStep:
    """One SGD step (forward, cross_entropy, backward, update) of an MLP or LeNet."""

    params = (LIBRARIES, ["mlp", "lenet"], DEVICES)
    param_names = ["library", "model", "device"]

    def setup(self, lib_name, model, device):
        lib = self.lib = library(lib_name)
        self.device = device
        check_device(lib, device)
        lib.manual_seed(0)
        self.net = (_mlp(lib) if model == "mlp" else _lenet(lib)).to(device)
        shape = (64, 784) if model == "mlp" else (16, 1, 28, 28)
        self.x = tensor(lib, shape, device=device)
        self.y = lib.tensor(array((shape[0],), "float64", 3, 0, 10).astype("int64"), device=device)
        self.opt = lib.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        self.time_step()

    def time_step(self, *_):
        self.opt.zero_grad()
        loss = self.lib.nn.functional.cross_entropy(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        sync(self.lib, self.device)

    def peakmem_step(self, *_):
        self.time_step()


class Threads:
    """The 1M-element chain and the 512x512 matmul on one thread and on the default count:
    what splitting big kernels over threads buys (``set_num_threads``, in both libraries)."""

    params = (LIBRARIES, ["chain", "matmul"], ["1", "default"])
    param_names = ["library", "workload", "threads"]

    def setup(self, lib_name, workload, threads):
        lib = self.lib = library(lib_name)
        self.default = lib.get_num_threads()
        lib.set_num_threads(1 if threads == "1" else self.default)
        if workload == "chain":
            x = tensor(lib, (1_000_000,), requires_grad=True)
            w = tensor(lib, (1_000_000,), seed=1, requires_grad=True)
            self.step = lambda: ((x * w + 0.5).tanh() * x).sigmoid().sum().backward()
        else:
            a = tensor(lib, (512, 512), requires_grad=True)
            b = tensor(lib, (512, 512), seed=1, requires_grad=True)
            self.step = lambda: (a @ b).sum().backward()
        warm_up(self.step)

    def teardown(self, *_):
        self.lib.set_num_threads(self.default)

    def time_step(self, *_):
        self.step()
