"""The 60 Minute Blitz autograd page prints what PyTorch prints (bar addresses, random values)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "blitz_autograd.py")

EXPECTED = """\
tensor([[1., 1.],
        [1., 1.]], requires_grad=True)
tensor([[3., 3.],
        [3., 3.]], grad_fn=<AddBackward0>)
<AddBackward0 object at ADDR>
tensor([[27., 27.],
        [27., 27.]], grad_fn=<MulBackward0>) tensor(27., grad_fn=<MeanBackward0>)
False
True
<SumBackward0 object at ADDR>
tensor([[4.5000, 4.5000],
        [4.5000, 4.5000]])
tensor([RANDOM], grad_fn=<MulBackward0>)
tensor([RANDOM])
True
True
False
True
False
tensor(True)
"""

RANDOM_LINES = (12, 13)  # y = x * 2 ** k and x.grad depend on randn


def _normalise(text):
    lines = re.sub(r"0x[0-9a-f]+", "ADDR", text).splitlines()
    for i in RANDOM_LINES:
        lines[i] = re.sub(r"\[.*\]", "[RANDOM]", lines[i])
    return "\n".join(lines) + "\n"


def _run(source):
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout


def test_blitz_prints_what_pytorch_prints():
    out = _run(open(SCRIPT).read())
    assert _normalise(out) == EXPECTED


def test_blitz_random_lines_are_consistent():
    lines = _run(open(SCRIPT).read()).splitlines()
    y = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[+-]\d+)?", lines[12])]
    grad = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[+-]\d+)?", lines[13])]
    assert max(abs(v) for v in y) >= 1000 / 3 ** 0.5  # the loop ran until the norm passed 1000
    scale = grad[1]  # x.grad = 2**k * v with v = [0.1, 1.0, 0.0001]
    assert grad == pytest.approx([scale * 0.1, scale, scale * 1e-4], rel=1e-3)


def test_blitz_matches_torch_output():
    pytest.importorskip("torch")
    source = open(SCRIPT).read().replace("import jitgrad as torch", "import torch")
    assert _normalise(_run(source)) == EXPECTED
