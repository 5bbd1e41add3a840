"""StepLR and CosineAnnealingLR against torch and by formula; scheduler state dicts."""

import math

import pytest

import jitgrad
import jitgrad.nn
import jitgrad.optim.lr_scheduler  # importing the submodules makes jitgrad.nn / .optim reachable
from jitgrad import optim
from jitgrad.nn import Parameter
from jitgrad.optim.lr_scheduler import CosineAnnealingLR, StepLR


def _lrs(lib, sched_name, steps, **kwargs):
    p = lib.nn.Parameter(lib.ones(1))
    opt = lib.optim.SGD([{"params": [p]}, {"params": [lib.nn.Parameter(lib.ones(1))], "lr": 0.3}],
                        lr=0.1)
    sched = getattr(lib.optim.lr_scheduler, sched_name)(opt, **kwargs)
    out = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
    return out


@pytest.mark.parametrize("name,kwargs", [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=1)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
])
def test_schedule_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    expected = _lrs(torch, name, 25, **kwargs)
    got = _lrs(jitgrad, name, 25, **kwargs)
    assert sum(got, []) == pytest.approx(sum(expected, []), rel=1e-12)


def _opt(lr=1.0):
    return optim.SGD([Parameter(jitgrad.ones(1))], lr=lr)


def test_step_lr_by_formula():
    opt = _opt()
    sched = StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert opt.param_groups[0]["initial_lr"] == 1.0


def test_cosine_by_formula():
    opt = _opt(0.5)
    sched = CosineAnnealingLR(opt, T_max=8, eta_min=0.1)
    for epoch in range(1, 9):
        sched.step()
        expected = 0.1 + 0.4 * (1 + math.cos(math.pi * epoch / 8)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected)
    assert sched.get_last_lr()[0] == pytest.approx(0.1)


def test_closed_form_epoch_argument():
    opt = _opt()
    sched = StepLR(opt, step_size=2, gamma=0.5)
    sched.step(5)
    assert sched.get_last_lr() == [0.25]


def test_state_dict_round_trip():
    opt = _opt()
    sched = CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 4
    opt2 = _opt()
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    sched2 = CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(state)
    for _ in range(3):
        sched.step()
        sched2.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


def test_resume_needs_initial_lr():
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(_opt(), step_size=1, last_epoch=3)
