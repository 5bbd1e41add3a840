"""jitgrad.save / jitgrad.load: round trips, file objects, and that loading never unpickles."""

import io
import math
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import jitgrad
from jitgrad import nn, optim
from jitgrad.serialization import load, save


def _round_trip(obj, tmp_path):
    path = tmp_path / "obj.pt"
    save(obj, path)
    return load(path)


def test_tensors_of_every_dtype(tmp_path):
    obj = [jitgrad.randn(3, 4), jitgrad.randn(2, dtype=jitgrad.float64), jitgrad.arange(5),
           jitgrad.tensor([1, 2], dtype=jitgrad.int32), jitgrad.tensor([True, False]),
           jitgrad.tensor(3.5), jitgrad.zeros(0, 3)]
    out = _round_trip(obj, tmp_path)
    assert isinstance(out, list)
    for a, b in zip(obj, out):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a.numpy(), b.numpy())


def test_nested_plain_values(tmp_path):
    obj = {"a": [1, 2.5, None, True, "s", (3, "x")], 7: {"nested": OrderedDict(z=1, y=2)},
           (1, 2): "tuple key", "big": 2**70, "nan": math.nan, "inf": -math.inf,
           "dtype": jitgrad.float64, "np": np.float32(0.5)}
    out = _round_trip(obj, tmp_path)
    assert out["a"] == [1, 2.5, None, True, "s", (3, "x")]
    assert isinstance(out["a"][5], tuple)
    assert out[7]["nested"] == OrderedDict(z=1, y=2) and isinstance(out[7]["nested"], OrderedDict)
    assert list(out[7]["nested"]) == ["z", "y"]
    assert out[(1, 2)] == "tuple key" and out["big"] == 2**70
    assert math.isnan(out["nan"]) and out["inf"] == -math.inf
    assert out["dtype"] is jitgrad.float64 and out["np"] == 0.5


def test_requires_grad_parameters_and_shared_tensors(tmp_path):
    p = nn.Parameter(jitgrad.ones(2))
    t = jitgrad.zeros(2, requires_grad=True)
    out = _round_trip({"p": p, "t": t, "again": t}, tmp_path)
    assert isinstance(out["p"], nn.Parameter) and out["p"].requires_grad
    assert out["t"].requires_grad and not isinstance(out["t"], nn.Parameter)
    assert out["again"] is out["t"]


def test_file_objects():
    buf = io.BytesIO()
    save({"w": jitgrad.arange(3)}, buf)
    buf.seek(0)
    assert load(buf)["w"].tolist() == [0, 1, 2]


def test_model_and_optimizer_state_dicts(tmp_path):
    jitgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model(jitgrad.randn(5, 3)).sum().backward()
    opt.step()
    save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt")
    ckpt = load(tmp_path / "ckpt")
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    fresh.load_state_dict(ckpt["model"])
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert np.array_equal(a.numpy(), b.numpy()), k
    assert fresh[1].num_batches_tracked.dtype == jitgrad.int64
    opt2 = optim.Adam(fresh.parameters(), lr=0.5)
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.param_groups[0]["lr"] == 0.01
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt2.state[next(fresh.parameters())]["step"].item() == 1.0


def test_unsupported_object():
    with pytest.raises(TypeError, match="cannot store objects of type object"):
        save({"x": object()}, io.BytesIO())


class _Boom:
    def __reduce__(self):
        raise AssertionError("unpickled!")


def test_load_never_unpickles(tmp_path, monkeypatch):
    save({"w": jitgrad.ones(2)}, tmp_path / "ok")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load(tmp_path / "ok")["w"].tolist() == [1.0, 1.0]


def test_pickled_content_is_refused(tmp_path):
    # a forged archive whose "tensor" entry is a pickled object array
    path = tmp_path / "evil"
    np.savez(path, t0=np.array([{"x": 1}], dtype=object),
             __meta__=np.frombuffer(b'{"format": "jitgrad-npz", "version": 1, "object": '
                                    b'{"tensor": "t0", "requires_grad": false, '
                                    b'"parameter": false}}', dtype=np.uint8))
    with pytest.raises(ValueError, match="allow_pickle"):
        load(f"{path}.npz")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a jitgrad save file"):
        load(plain)
    with zipfile.ZipFile(tmp_path / "nometa.zip", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(ValueError, match="not a jitgrad save file"):
        load(tmp_path / "nometa.zip")
