"""Optimizers step for step against torch.optim, every option combination; state dicts."""

import itertools

import numpy as np
import pytest

import jitgrad
from jitgrad import optim
from jitgrad.nn import Parameter

SHAPES = [(3, 4), (5,)]


def _combos(**options):
    keys = list(options)
    return [dict(zip(keys, values)) for values in itertools.product(*options.values())]


SGD_CASES = [c for c in _combos(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True],
                                weight_decay=[0.0, 0.1], maximize=[False, True])
             if not c["nesterov"] or (c["momentum"] > 0 and c["dampening"] == 0)]
ADAM_CASES = _combos(weight_decay=[0.0, 0.1], amsgrad=[False, True], maximize=[False, True],
                     betas=[(0.9, 0.999), (0.6, 0.7)])
RMSPROP_CASES = _combos(momentum=[0.0, 0.5], centered=[False, True], weight_decay=[0.0, 0.1],
                        maximize=[False, True], alpha=[0.99, 0.3])


def _initial(dtype):
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, s).astype(dtype) for s in SHAPES]


def _loss(lib, params, coeffs):
    """A quadratic-plus-linear loss whose gradient changes with the parameters."""
    total = 0
    for p, (c, d) in zip(params, coeffs):
        total = total + (p * p * lib.tensor(c)).sum() + (p * lib.tensor(d)).sum()
    return total


def _run(lib, opt_cls, params, steps, dtype, **kwargs):
    rng = np.random.default_rng(1)
    coeffs = [(rng.uniform(0.5, 2, s).astype(dtype), rng.uniform(-1, 1, s).astype(dtype))
              for s in SHAPES]
    opt = opt_cls(params, **kwargs)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(lib, params, coeffs).backward()
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return opt, history


def _compare(name, kwargs, dtype=np.float32, steps=6):
    torch = pytest.importorskip("torch")
    tparams = [torch.nn.Parameter(torch.tensor(a)) for a in _initial(dtype)]
    jparams = [Parameter(jitgrad.tensor(a)) for a in _initial(dtype)]
    _, expected = _run(torch, getattr(torch.optim, name), tparams, steps, dtype, **kwargs)
    _, got = _run(jitgrad, getattr(optim, name), jparams, steps, dtype, **kwargs)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for step, (e, g) in enumerate(zip(expected, got)):
        for ep, gp in zip(e, g):
            assert gp.dtype == dtype
            np.testing.assert_allclose(gp, ep, err_msg=f"step {step}", **tol)


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=str)
def test_sgd_matches_torch(kwargs):
    _compare("SGD", dict(lr=0.05, **kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=str)
def test_adam_matches_torch(kwargs):
    _compare("Adam", dict(lr=0.05, **kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=str)
def test_adamw_matches_torch(kwargs):
    _compare("AdamW", dict(lr=0.05, **kwargs))


@pytest.mark.parametrize("kwargs", RMSPROP_CASES, ids=str)
def test_rmsprop_matches_torch(kwargs):
    _compare("RMSprop", dict(lr=0.02, **kwargs))


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
])
def test_float64_matches_torch(name, kwargs):
    _compare(name, kwargs, dtype=np.float64)


def test_sgd_by_hand_without_torch():
    w = Parameter(jitgrad.tensor([1.0, -2.0]))
    opt = optim.SGD([w], lr=0.1, momentum=0.5)
    expected_w, buf = np.array([1.0, -2.0], np.float32), None
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
        g = 2 * expected_w
        buf = g if buf is None else 0.5 * buf + g
        expected_w = expected_w - 0.1 * buf
        np.testing.assert_allclose(w.detach().numpy(), expected_w, rtol=1e-6)
    assert w.dtype == jitgrad.float32
    assert w._version[0] >= 3


def test_adam_first_step_moves_by_lr():
    w = Parameter(jitgrad.tensor([1.0, -3.0, 0.5]))
    opt = optim.Adam([w], lr=0.01)
    (w * w).sum().backward()
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [0.99, -2.99, 0.49], rtol=1e-5)
    state = opt.state[w]
    assert sorted(state) == ["exp_avg", "exp_avg_sq", "step"]
    assert state["step"].item() == 1.0


def test_param_groups_and_skipped_params():
    a, b, c = (Parameter(jitgrad.ones(2)) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    opt.add_param_group({"params": c, "lr": 0.5})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0, 0.5]
    (a.sum() + b.sum()).backward()
    opt.step()  # c has no grad: left alone
    assert a.tolist() == pytest.approx([0.9, 0.9])
    assert b.tolist() == [0.0, 0.0]
    assert c.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_zero_grad():
    w = Parameter(jitgrad.ones(2))
    opt = optim.SGD([w], lr=0.1)
    w.sum().backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert w.grad is None


@pytest.mark.parametrize("call,message", [
    (lambda p: optim.SGD(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), "Invalid beta parameter at index 0"),
    (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: optim.SGD([{"params": set(p)}], lr=0.1), "ordered collections"),
    (lambda p: optim.SGD(p[0], lr=0.1), "iterable of Tensors"),
    (lambda p: optim.SGD([p[0] * 2], lr=0.1), "non-leaf"),
])
def test_bad_arguments(call, message):
    params = [Parameter(jitgrad.ones(2))]
    with pytest.raises((ValueError, TypeError), match=message):
        call(params)


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("Adam", dict(lr=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
])
def test_state_dict_resume_equals_uninterrupted_run(name, kwargs):
    cls = getattr(optim, name)
    init = _initial(np.float32)
    straight = [Parameter(jitgrad.tensor(a)) for a in init]
    _run(jitgrad, cls, straight, 6, np.float32, **kwargs)

    first = [Parameter(jitgrad.tensor(a)) for a in init]
    opt, _ = _run(jitgrad, cls, first, 3, np.float32, **kwargs)
    saved = opt.state_dict()
    assert saved["param_groups"][0]["params"] == [0, 1]
    assert set(saved["state"]) == {0, 1}
    resumed = [Parameter(p.detach().clone()) for p in first]
    fresh = cls(resumed, **{**kwargs, "lr": 123.0})
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == kwargs["lr"]
    assert fresh.param_groups[0]["params"][0] is resumed[0]
    # the loaded state is a copy: stepping the original optimizer must not change it
    before = {k: v.clone() for k, v in fresh.state[resumed[0]].items()}
    _run(jitgrad, cls, first, 1, np.float32, **kwargs)
    for k, v in fresh.state[resumed[0]].items():
        assert jitgrad.equal(v, before[k])
    rng = np.random.default_rng(1)
    coeffs = [(rng.uniform(0.5, 2, s).astype(np.float32),
               rng.uniform(-1, 1, s).astype(np.float32)) for s in SHAPES]
    for _ in range(3):
        fresh.zero_grad()
        _loss(jitgrad, resumed, coeffs).backward()
        fresh.step()
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-6)


def test_load_state_dict_mismatch():
    opt = optim.SGD([Parameter(jitgrad.ones(1))], lr=0.1)
    other = optim.SGD([Parameter(jitgrad.ones(1)), Parameter(jitgrad.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other.state_dict())
    two = optim.SGD([{"params": [Parameter(jitgrad.ones(1))]},
                     {"params": [Parameter(jitgrad.ones(1))]}], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(two.state_dict())


def test_closure_is_evaluated():
    w = Parameter(jitgrad.ones(2))
    opt = optim.SGD([w], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 2.0
    assert w.tolist() == [0.0, 0.0]
