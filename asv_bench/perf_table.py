"""The benchmark issue's table in one process: medians of jitgrad and torch 2.13, and ratios.

Run: ``python3 asv_bench/perf_table.py`` (torch must be installed). asv tracks the same
workloads over time; this script gives one side-by-side snapshot for docs/performance.md.
"""

import statistics
import time

import numpy as np
import torch

import jitgrad


def median_seconds(fn, reps=7, inner=1):
    from jitgrad.ops import fused_backward

    for _ in range(max(fused_backward.threshold(), 1)):  # compiles a fused backward, untimed
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def _training_step(lib, net, x, y):
    opt = lib.optim.SGD(net.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        lib.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def workloads(lib):
    """name -> (callable, inner repetitions)."""
    rng = np.random.default_rng(0)

    def t(*shape, grad=True):
        return lib.tensor(rng.uniform(-1, 1, shape).astype(np.float32), requires_grad=grad)

    x4, xb, wb, a, b = t(4), t(1_000_000), t(1_000_000), t(512, 512), t(512, 512)
    nn = lib.nn
    lib.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    lenet = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(),
                          nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    labels = lib.tensor(rng.integers(0, 10, 64))

    def tutorial():
        x = lib.ones(2, 2, requires_grad=True)
        y = x + 2
        z = y * y * 3
        z.mean().backward()

    def chain():
        y = x4
        for _ in range(50):
            y = (y * 0.5 + 1).tanh()
        y.sum().backward()

    return {
        "tutorial step": (tutorial, 500),
        "50 x (y*0.5+1).tanh(), 4 elements": (chain, 20),
        "MLP 784-256-128-10 b64 SGD step": (
            _training_step(lib, mlp, t(64, 784, grad=False), labels), 20),
        "((x*w+0.5).tanh()*x).sigmoid().sum(), 1M f32": (
            lambda: ((xb * wb + 0.5).tanh() * xb).sigmoid().sum().backward(), 5),
        "512x512 f32 matmul fwd+bwd": (lambda: (a @ b).sum().backward(), 5),
        "LeNet b16 SGD step": (
            _training_step(lib, lenet, t(16, 1, 28, 28, grad=False), labels[:16]), 10),
    }


def main():
    results = {}
    for _ in range(3):  # alternate libraries so machine noise hits both
        for lib in (jitgrad, torch):
            for name, (fn, inner) in workloads(lib).items():
                results.setdefault((name, lib.__name__), []).append(median_seconds(fn, 7, inner))
    print(f"{'workload':48s} {'jitgrad':>11s} {'torch':>11s} {'ratio':>6s}")
    for name in workloads(jitgrad):
        ours = statistics.median(results[(name, "jitgrad")])
        theirs = statistics.median(results[(name, "torch")])
        print(f"{name:48s} {ours * 1e6:9.1f}us {theirs * 1e6:9.1f}us {ours / theirs:6.2f}")


if __name__ == "__main__":
    main()
