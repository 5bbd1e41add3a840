"""Seeded inputs and the jitgrad/torch switch shared by every suite (append only)."""

import os

import numpy as np

import jitgrad

try:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:
    torch = None

LIBRARIES = ["jitgrad", "torch"]
DEVICES = ["cpu", "cuda"]


def library(name):
    """The module for a ``library`` parameter; NotImplementedError (asv: skip) when missing."""
    if name == "torch":
        if torch is None:
            raise NotImplementedError("torch is not installed")
        return torch
    return jitgrad


def check_device(lib, device):
    if device == "cuda":
        available = lib.cuda.is_available() if hasattr(lib, "cuda") else False
        if not available:
            raise NotImplementedError("no CUDA device")


def array(shape, dtype="float32", seed=0, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


def tensor(lib, shape, dtype="float32", seed=0, requires_grad=False, low=-1.0, high=1.0,
           device="cpu"):
    """The same seeded values as a jitgrad or torch tensor on ``device``."""
    t = lib.tensor(array(shape, dtype, seed, low, high), device=device)
    return t.requires_grad_(requires_grad)


def sync(lib, device):
    """Wait for queued GPU work, so a timing covers the kernels and not just their launch."""
    if device == "cuda":
        lib.cuda.synchronize()


def warm_up(step):
    """Run ``step`` until a repeated elementwise graph's fused backward is compiled (jitgrad
    compiles it on the ``threshold()``-th sighting), so setup pays for it, never the timing."""
    from jitgrad.ops import fused_backward

    for _ in range(max(fused_backward.threshold(), 1)):
        step()
