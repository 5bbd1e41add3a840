"""nn.init: gains, fans, fill statistics (against torch on large layers), no_grad, seeding."""

import math

import numpy as np
import pytest

import jitgrad
from jitgrad import nn
from jitgrad.nn import init


@pytest.mark.parametrize("name,param,expected", [
    ("linear", None, 1), ("conv2d", None, 1), ("sigmoid", None, 1), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", math.sqrt(5), math.sqrt(1 / 3)), ("selu", None, 0.75),
])
def test_calculate_gain(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ("linear", "conv1d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        assert init.calculate_gain(name) == torch.nn.init.calculate_gain(name)
    assert init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain(
        "leaky_relu", 0.2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unsupported nonlinearity foo"):
        init.calculate_gain("foo")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(jitgrad.empty(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(jitgrad.empty(3, 3), mode="fan_avg")


def test_fans():
    assert init._calculate_fan_in_and_fan_out(jitgrad.empty(6, 3, 5, 5)) == (75, 150)
    assert init._calculate_fan_in_and_fan_out(jitgrad.empty(4, 7)) == (7, 4)


def test_fills_run_under_no_grad_and_keep_leaves():
    w = nn.Parameter(jitgrad.empty(50, 40))
    version = w._version[0]
    for fn in (init.uniform_, init.normal_, init.xavier_uniform_, init.xavier_normal_,
               init.kaiming_uniform_, init.kaiming_normal_, init.ones_, init.zeros_):
        assert fn(w) is w
        assert w.is_leaf and w.grad_fn is None and w.requires_grad
        assert w.dtype == jitgrad.float32
    assert w._version[0] > version
    init.constant_(w, 0.25)
    assert float(w.sum()) == pytest.approx(0.25 * 2000)
    init.eye_(w)
    assert float(w.sum()) == 40.0


def test_seeded_fills_are_reproducible():
    jitgrad.manual_seed(3)
    a = nn.Linear(10, 10).weight.detach().numpy().copy()
    jitgrad.manual_seed(3)
    b = nn.Linear(10, 10).weight.detach().numpy().copy()
    assert np.array_equal(a, b)
    x = init.normal_(jitgrad.empty(5), generator=np.random.default_rng(1)).numpy().copy()
    y = init.normal_(jitgrad.empty(5), generator=np.random.default_rng(1)).numpy().copy()
    assert np.array_equal(x, y)


def _uniform_std(bound):
    return bound / math.sqrt(3)


@pytest.mark.parametrize("fn,kwargs,expected_std", [
    (init.uniform_, dict(a=-2.0, b=2.0), _uniform_std(2.0)),
    (init.normal_, dict(mean=1.0, std=0.5), 0.5),
    (init.xavier_uniform_, dict(gain=2.0), 2.0 * math.sqrt(2 / (400 + 300))),
    (init.xavier_normal_, {}, math.sqrt(2 / (400 + 300))),
    (init.kaiming_uniform_, dict(nonlinearity="relu"), math.sqrt(2 / 300)),
    (init.kaiming_normal_, dict(mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 400)),
])
def test_fill_statistics(fn, kwargs, expected_std):
    t = fn(jitgrad.empty(400, 300), **kwargs)
    assert float(t.std()) == pytest.approx(expected_std, rel=0.02)


@pytest.mark.parametrize("build", [
    lambda nn: nn.Linear(800, 600),
    lambda nn: nn.Conv2d(32, 64, 5),
    lambda nn: nn.Embedding(500, 400),
])
def test_default_layer_init_has_torch_statistics(build):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    jitgrad.manual_seed(0)
    ours, theirs = build(nn), build(torch.nn)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        a, b = p.detach().numpy(), tp.detach().numpy()
        assert a.shape == b.shape and a.dtype == b.dtype
        rel = 0.01 + 4 / math.sqrt(2 * a.size)  # sampling noise of a std estimate
        assert float(np.abs(a).max()) == pytest.approx(float(np.abs(b).max()), rel=rel), name
        assert float(a.std()) == pytest.approx(float(b.std()), rel=rel), name
        assert abs(float(a.mean())) < 3 * float(b.std()) / math.sqrt(a.size), name


def test_linear_default_bounds_without_torch():
    jitgrad.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert np.abs(b).max() <= bound
    assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.02)
    bn = nn.BatchNorm2d(3)
    assert bn.weight.tolist() == [1.0] * 3 and bn.bias.tolist() == [0.0] * 3
    assert bn.running_var.tolist() == [1.0] * 3 and bn.num_batches_tracked.item() == 0
