"""The examples run: the blitz "Neural Networks" page prints what PyTorch prints, and the
digits CNN trains to a stated accuracy, saves, reloads and re-checks it."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLITZ = os.path.join(ROOT, "examples", "blitz_neural_networks.py")
DIGITS = os.path.join(ROOT, "examples", "train_digits.py")

EXPECTED_BLITZ = """\
Net(
  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=400, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)
10
LIB.Size([6, 1, 5, 5])
tensor([[RANDOM]], grad_fn=<NODE>)
tensor(RANDOM, grad_fn=<NODE>)
<NODE object at ADDR>
<NODE object at ADDR>
<NODE object at ADDR>
conv1.bias.grad before backward
None
conv1.bias.grad after backward
tensor([RANDOM])
"""

# grad_fn names as PyTorch prints them on lines 9-13 of the output
TORCH_NODES = ["AddmmBackward0", "MseLossBackward0", "MseLossBackward0", "AddmmBackward0",
               "AccumulateGrad"]


def _run(source):
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout


def _normalise(text):
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)
    text = re.sub(r",\s+grad_fn=", ", grad_fn=", text)  # wide random values wrap grad_fn
    text = re.sub(r"(jitgrad|torch)\.Size", "LIB.Size", text)
    text = re.sub(r"<(\w+)( object at ADDR)?>", lambda m: f"<NODE{m.group(2) or ''}>", text)
    text = re.sub(r"tensor\(\[\[[^\]]*\]\]", "tensor([[RANDOM]]", text, flags=re.S)
    text = re.sub(r"tensor\(\[[^\]]*\]\)", "tensor([RANDOM])", text, flags=re.S)
    return re.sub(r"tensor\(-?\d+\.\d*(e[+-]\d+)?", "tensor(RANDOM", text)


def _nodes(text):
    return re.findall(r"<(\w+Backward\d|AccumulateGrad)", text)


@pytest.fixture(scope="module")
def blitz_output():
    return _run(open(BLITZ).read())


def test_blitz_nn_prints_what_pytorch_prints(blitz_output):
    assert _normalise(blitz_output) == EXPECTED_BLITZ


def test_blitz_nn_torch_reference():
    pytest.importorskip("torch")
    source = open(BLITZ).read().replace("import jitgrad as torch", "import torch")
    source = source.replace("jitgrad.", "torch.")
    out = _run(source)
    assert _normalise(out) == EXPECTED_BLITZ
    assert _nodes(out) == TORCH_NODES


def test_blitz_nn_node_names(blitz_output):
    assert _nodes(blitz_output) == TORCH_NODES


def test_blitz_nn_values_are_sane(blitz_output):
    lines = blitz_output.splitlines()
    out = [float(v) for v in re.findall(r"-?\d+\.\d+", "\n".join(lines[9:11]))]
    assert len(out) == 10 and all(abs(v) < 1 for v in out)  # fresh layers: small outputs
    grad = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[+-]\d+)?", "\n".join(lines[18:]))]
    assert len(grad) == 6 and any(v != 0 for v in grad)


def test_train_digits_reaches_accuracy(tmp_path):
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("train_digits", DIGITS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(["--epochs", "8", "--out", str(tmp_path), "--no-progress"])
    assert acc >= 0.97
    assert (tmp_path / "digits_cnn.jg").exists()
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "digits_curves.png").stat().st_size > 1000
