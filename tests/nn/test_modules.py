"""nn modules: registration, traversal, state dicts, repr and values/grads against torch."""

from collections import OrderedDict

import numpy as np
import pytest

import jitgrad
import jitgrad.optim  # noqa: F401  (reached as lib.optim below)
from jitgrad import nn

# --- the torch-free behaviour of Module ------------------------------------------------------


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(jitgrad.ones(1))
        self.register_buffer("counter", jitgrad.zeros(1))
        self.register_buffer("scratch", jitgrad.zeros(2), persistent=False)

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
        self.shared = self.head  # the same module twice: reported once

    def forward(self, x):
        return self.head(self.block(x))


def test_registration_and_traversal():
    m = Outer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["block.scale", "block.fc.weight", "block.fc.bias", "block.bn.weight",
                     "block.bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "block.counter", "block.scratch", "block.bn.running_mean", "block.bn.running_var",
        "block.bn.num_batches_tracked"]
    assert [n for n, _ in m.named_children()] == ["block", "head"]
    assert [n for n, _ in m.named_modules()] == ["", "block", "block.fc", "block.bn", "head",
                                                 "head.0", "head.1"]
    assert len(list(m.modules())) == 7
    assert len(list(m.block.parameters(recurse=False))) == 1
    assert sum(p.numel() for p in m.parameters()) == 1 + 12 + 4 + 4 + 4 + 8 + 2
    assert m.get_submodule("head.1") is m.head[1]
    assert isinstance(m.block.fc.weight, nn.Parameter) and m.block.fc.weight.requires_grad
    assert "fc" in dir(m.block) and "counter" in dir(m.block)


def test_setattr_rules():
    m = Block()
    m.fc.bias = None  # a registered parameter may be set to None
    assert m.fc.bias is None and "fc.bias" not in m.state_dict()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        m.fc.weight = jitgrad.ones(4, 3)
    m.counter = jitgrad.ones(1)  # buffers accept plain tensors
    assert m.counter.item() == 1.0
    with pytest.raises(TypeError, match="as child module 'fc'"):
        m.fc = 3
    m.extra = nn.Parameter(jitgrad.zeros(2))
    assert "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'missing'"):
        m.missing  # noqa: B018
    with pytest.raises(KeyError, match="attribute 'fc' already exists"):
        m.register_buffer("fc", jitgrad.zeros(1))
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", None)


def test_non_leaf_parameter_rejected():
    m = nn.Module()
    p = nn.Parameter(jitgrad.ones(1))
    with pytest.raises(TypeError, match="jitgrad.nn.Parameter or None required"):
        m.register_parameter("x", p * 2)


def test_train_eval_apply_and_zero_grad():
    m = Outer()
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m and not any(mod.training for mod in m.modules())
    m.train()
    assert m.block.bn.training
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Block", "ReLU", "Linear", "Sequential", "Outer"]
    m(jitgrad.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0.0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_to_dtype_keeps_parameter_identity():
    m = Outer()
    w = m.block.fc.weight
    m.to(jitgrad.float64)
    assert m.block.fc.weight is w and w.dtype == jitgrad.float64
    assert m.block.bn.running_mean.dtype == jitgrad.float64
    assert m.block.bn.num_batches_tracked.dtype == jitgrad.int64  # integers untouched
    assert m(jitgrad.randn(2, 3, dtype=jitgrad.float64)).dtype == jitgrad.float64
    m.float()
    assert w.dtype == jitgrad.float32
    m.to("cpu")


def test_state_dict_round_trip_and_shares_storage():
    a, b = Outer(), Outer()
    sd = a.state_dict()
    assert list(sd) == ["block.scale", "block.counter", "block.fc.weight", "block.fc.bias",
                        "block.bn.weight", "block.bn.bias", "block.bn.running_mean",
                        "block.bn.running_var", "block.bn.num_batches_tracked",
                        "head.1.weight", "head.1.bias", "shared.1.weight", "shared.1.bias"]
    assert not sd["block.fc.weight"].requires_grad
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in b.state_dict().items():
        assert jitgrad.equal(value, sd[key]), key
    # state_dict tensors alias the parameters
    with jitgrad.no_grad():
        a.block.fc.weight.fill_(3.0)
    assert float(sd["block.fc.weight"].sum()) == 36.0
    assert "block.fc.weight" in a.state_dict(keep_vars=True)
    assert a.state_dict(keep_vars=True)["block.fc.weight"] is a.block.fc.weight


def test_load_state_dict_errors():
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    sd = m.state_dict()
    bad = OrderedDict(sd)
    del bad["0.bias"]
    bad["0.extra"] = jitgrad.zeros(1)
    bad["1.thing"] = jitgrad.zeros(1)
    bad["0.weight"] = jitgrad.zeros(5, 3)
    with pytest.raises(RuntimeError) as info:
        m.load_state_dict(bad)
    assert str(info.value) == (
        'Error(s) in loading state_dict for Sequential:\n'
        '\tMissing key(s) in state_dict: "0.bias". \n'
        '\tUnexpected key(s) in state_dict: "0.extra", "1.thing". \n'
        '\tsize mismatch for 0.weight: copying a param with shape jitgrad.Size([5, 3]) from '
        'checkpoint, the shape in current model is jitgrad.Size([2, 3]).')
    del bad["0.weight"]
    result = m.load_state_dict(bad, strict=False)
    assert result.missing_keys == ["0.weight", "0.bias"]
    assert result.unexpected_keys == ["0.extra", "1.thing"]


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    assert seq(jitgrad.randn(4, 2)).shape == (4, 1)
    named = nn.Sequential(OrderedDict(first=nn.Linear(2, 2), act=nn.Tanh()))
    assert [n for n, _ in named.named_children()] == ["first", "act"]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        seq[5]  # noqa: B018
    del seq[1]
    assert [n for n, _ in seq.named_children()] == ["0", "1"]
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    assert len(ml) == 3 and isinstance(ml[2], nn.Tanh)
    assert len(list(nn.Sequential(ml).parameters())) == 2
    md = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    assert list(md.keys()) == ["a", "b"] and "a" in md and len(md) == 2
    assert [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]


def test_parameter():
    p = nn.Parameter(jitgrad.tensor([1.0, 2.0]))
    assert repr(p) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"
    assert p.is_leaf and p.requires_grad and isinstance(p, jitgrad.Tensor)
    frozen = nn.Parameter(jitgrad.ones(1), requires_grad=False)
    assert repr(frozen) == "Parameter containing:\ntensor([1.])"
    assert (p * 2).grad_fn is not None and type(p * 2) is jitgrad.Tensor


def test_batchnorm_running_stats_without_torch():
    bn = nn.BatchNorm1d(2, momentum=None)
    x1 = jitgrad.tensor([[1.0, 2.0], [3.0, 6.0]])
    x2 = jitgrad.tensor([[5.0, 0.0], [7.0, 0.0]])
    bn(x1)
    bn(x2)
    assert bn.num_batches_tracked.item() == 2
    # momentum=None: a cumulative average of the batch means / unbiased variances
    np.testing.assert_allclose(bn.running_mean.numpy(), [4.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), [2.0, 4.0], rtol=1e-6)
    bn.eval()
    out = bn(jitgrad.tensor([[4.0, 2.0]]))
    np.testing.assert_allclose(out.detach().numpy(), [[0.0, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        bn(jitgrad.zeros(1, 2, 1, 1))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input\)"):
        nn.BatchNorm2d(2)(jitgrad.zeros(2, 2))


def test_dropout_modes():
    jitgrad.manual_seed(0)
    d = nn.Dropout(0.5)
    x = jitgrad.ones(1000)
    y = d(x)
    kept = y.numpy() != 0
    assert 400 < kept.sum() < 600 and np.allclose(y.numpy()[kept], 2.0)
    d.eval()
    assert jitgrad.equal(d(x), x)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# --- against torch ---------------------------------------------------------------------------

REPR_CASES = [
    "nn.Linear(20, 30)", "nn.Linear(3, 1, bias=False)", "nn.Conv2d(1, 6, 5)",
    "nn.Conv2d(4, 8, (3, 5), stride=2, padding=(1, 2), dilation=2, groups=2, bias=False)",
    "nn.Conv2d(3, 3, 3, padding='same', padding_mode='reflect')",
    "nn.MaxPool2d(2)", "nn.MaxPool2d((3, 2), stride=1, padding=1, ceil_mode=True)",
    "nn.AvgPool2d(3, stride=2)", "nn.AdaptiveAvgPool2d((5, 7))", "nn.AdaptiveAvgPool2d(1)",
    "nn.BatchNorm1d(100)", "nn.BatchNorm2d(8, eps=1e-3, momentum=None, affine=False)",
    "nn.BatchNorm2d(3, track_running_stats=False)", "nn.LayerNorm(10)",
    "nn.LayerNorm([4, 5], elementwise_affine=False)", "nn.LayerNorm(3, bias=False)",
    "nn.Embedding(10, 3)", "nn.Embedding(10, 3, padding_idx=-1, max_norm=1.0)",
    "nn.Dropout()", "nn.Dropout(0.1, inplace=True)", "nn.Flatten()", "nn.Flatten(0, 2)",
    "nn.ReLU()", "nn.ReLU(inplace=True)", "nn.LeakyReLU()", "nn.LeakyReLU(0.2, inplace=True)",
    "nn.GELU()", "nn.GELU(approximate='tanh')", "nn.Sigmoid()", "nn.Tanh()", "nn.Softmax(dim=1)",
    "nn.LogSoftmax(dim=-1)", "nn.Softmax()", "nn.MSELoss()", "nn.L1Loss(reduction='sum')",
    "nn.CrossEntropyLoss()", "nn.NLLLoss()", "nn.BCELoss()", "nn.BCEWithLogitsLoss()",
    "nn.Identity()",
    "nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.Sequential(nn.Linear(2, 2), nn.Tanh()))",
    "nn.Sequential(OrderedDict([('conv1', nn.Conv2d(1, 20, 5)), ('relu1', nn.ReLU())]))",
    "nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU(), nn.Linear(2, 2)])",
    "nn.ModuleList()", "nn.ModuleDict({'a': nn.ReLU(), 'b': nn.Sequential(nn.Linear(1, 2))})",
]


@pytest.mark.parametrize("source", REPR_CASES)
def test_repr_matches_torch(source):
    torch = pytest.importorskip("torch")
    ours = eval(source, {"nn": nn, "OrderedDict": OrderedDict})
    theirs = eval(source, {"nn": torch.nn, "OrderedDict": OrderedDict})
    assert repr(ours) == repr(theirs)


def test_custom_module_repr_and_parameter_count_match_torch():
    torch = pytest.importorskip("torch")

    def build(lib):
        class Net(lib.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = lib.nn.Conv2d(1, 6, 5)
                self.conv2 = lib.nn.Conv2d(6, 16, 5)
                self.fc1 = lib.nn.Linear(16 * 5 * 5, 120)
                self.bn = lib.nn.BatchNorm1d(120)
                self.heads = lib.nn.ModuleList([lib.nn.Linear(120, 10) for _ in range(2)])

        return Net()

    ours, theirs = build(jitgrad), build(torch)
    assert repr(ours) == repr(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel()
                                                            for p in theirs.parameters())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]


def _copy_from_torch(module, tmodule):
    sd = OrderedDict((k, jitgrad.tensor(v.detach().numpy())) for k, v in
                     tmodule.state_dict().items())
    module.load_state_dict(sd)


LAYER_CASES = [
    ("Linear(5, 3)", (4, 5)),
    ("Linear(5, 3, bias=False)", (2, 7, 5)),
    ("Conv2d(3, 4, 3)", (2, 3, 7, 6)),
    ("Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2)", (2, 4, 9, 8)),
    ("Conv2d(2, 2, 3, padding='same', bias=False)", (1, 2, 5, 5)),
    ("MaxPool2d(2)", (2, 3, 6, 6)),
    ("MaxPool2d(3, stride=2, padding=1, ceil_mode=True)", (1, 2, 7, 7)),
    ("AvgPool2d(2, stride=1)", (2, 2, 5, 4)),
    ("AvgPool2d(3, stride=2, padding=1, count_include_pad=False)", (1, 2, 6, 6)),
    ("AdaptiveAvgPool2d((2, 3))", (2, 3, 7, 8)),
    ("BatchNorm1d(3)", (6, 3)),
    ("BatchNorm1d(3, affine=False)", (4, 3, 5)),
    ("BatchNorm2d(3, momentum=0.3)", (4, 3, 2, 5)),
    ("BatchNorm2d(3, track_running_stats=False)", (4, 3, 2, 2)),
    ("LayerNorm(6)", (3, 6)),
    ("LayerNorm((2, 3), bias=False)", (4, 2, 3)),
    ("Flatten()", (2, 3, 4)),
    ("ReLU()", (3, 5)),
    ("LeakyReLU(0.2)", (3, 5)),
    ("GELU()", (3, 5)),
    ("GELU(approximate='tanh')", (3, 5)),
    ("Sigmoid()", (3, 5)),
    ("Tanh()", (3, 5)),
    ("Softmax(dim=1)", (3, 5)),
    ("LogSoftmax(dim=0)", (3, 5)),
    ("Dropout(0.3)", (3, 5)),  # compared in eval mode
]


@pytest.mark.parametrize("source,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_forward_backward_matches_torch(source, shape, mode):
    torch = pytest.importorskip("torch")
    if source.startswith("Dropout") and mode == "train":
        pytest.skip("random masks differ between libraries")
    tm = eval("torch.nn." + source, {"torch": torch})
    jm = eval("nn." + source, {"nn": nn})
    with torch.no_grad():
        for p in tm.parameters():  # non-trivial affine parameters
            p.uniform_(-1, 1)
    _copy_from_torch(jm, tm)
    getattr(tm, mode)()
    getattr(jm, mode)()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    jx = jitgrad.tensor(x, requires_grad=True)
    tout, jout = tm(tx), jm(jx)
    np.testing.assert_allclose(jout.detach().numpy(), tout.detach().numpy(), rtol=1e-4,
                               atol=1e-5)
    g = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.tensor(g))
    jout.backward(jitgrad.tensor(g))
    np.testing.assert_allclose(jx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    for (name, tp), jp in zip(tm.named_parameters(), jm.parameters()):
        np.testing.assert_allclose(jp.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=name)
    for (name, tb), jb in zip(tm.named_buffers(), jm.buffers()):
        np.testing.assert_allclose(jb.numpy(), tb.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_embedding_matches_torch():
    torch = pytest.importorskip("torch")
    tm, jm = torch.nn.Embedding(7, 3, padding_idx=2), nn.Embedding(7, 3, padding_idx=2)
    assert jm.weight[2].tolist() == [0.0, 0.0, 0.0]
    _copy_from_torch(jm, tm)
    idx = [[0, 2, 5], [2, 6, 0]]
    tout, jout = tm(torch.tensor(idx)), jm(jitgrad.tensor(idx))
    np.testing.assert_allclose(jout.detach().numpy(), tout.detach().numpy())
    g = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    tout.backward(torch.tensor(g))
    jout.backward(jitgrad.tensor(g))
    np.testing.assert_allclose(jm.weight.grad.numpy(), tm.weight.grad.numpy())
    pre = nn.Embedding.from_pretrained(jitgrad.eye(3))
    assert not pre.weight.requires_grad and pre(jitgrad.tensor([1])).tolist() == [[0, 1, 0]]


LOSS_CASES = [
    ("MSELoss()", "real"), ("MSELoss(reduction='sum')", "real"),
    ("L1Loss()", "real"), ("L1Loss(reduction='none')", "real"),
    ("CrossEntropyLoss()", "class"), ("CrossEntropyLoss(label_smoothing=0.1)", "class"),
    ("CrossEntropyLoss(weight=W, reduction='sum')", "class"),
    ("CrossEntropyLoss(ignore_index=1)", "class"),
    ("NLLLoss()", "logclass"), ("NLLLoss(weight=W)", "logclass"),
    ("BCELoss()", "prob"), ("BCELoss(weight=W4)", "prob"),
    ("BCEWithLogitsLoss()", "binary"), ("BCEWithLogitsLoss(pos_weight=W4)", "binary"),
]


@pytest.mark.parametrize("source,kind", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_matches_torch(source, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    if kind == "real":
        target = rng.standard_normal((6, 4)).astype(np.float32)
    elif kind in ("class", "logclass"):
        target = rng.integers(0, 4, 6)
    else:
        target = rng.integers(0, 2, (6, 4)).astype(np.float32)
    if kind == "prob":
        x = 1 / (1 + np.exp(-x))
    if kind == "logclass":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    w = rng.uniform(0.5, 2, 4).astype(np.float32)

    def run(lib, mod):
        env = {"W": lib.tensor(w), "W4": lib.tensor(w)}
        loss = eval("mod." + source, {"mod": mod, **env})
        inp = lib.tensor(x, requires_grad=True)
        out = loss(inp, lib.tensor(target))
        out.backward(lib.ones_like(out))
        return out.detach().numpy(), inp.grad.numpy(), loss

    tout, tgrad, tloss = run(torch, torch.nn)
    jout, jgrad, jloss = run(jitgrad, nn)
    np.testing.assert_allclose(jout, tout, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jgrad, tgrad, rtol=1e-5, atol=1e-6)
    assert list(jloss.state_dict()) == list(tloss.state_dict())


def test_blitz_style_training_step_matches_torch():
    torch = pytest.importorskip("torch")

    def build(lib):
        return lib.nn.Sequential(lib.nn.Conv2d(1, 4, 3), lib.nn.BatchNorm2d(4), lib.nn.ReLU(),
                                 lib.nn.MaxPool2d(2), lib.nn.Flatten(), lib.nn.Linear(36, 5))

    tm, jm = build(torch), build(jitgrad)
    _copy_from_torch(jm, tm)
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 5
    for lib, m in ((torch, tm), (jitgrad, jm)):
        opt = lib.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            lib.nn.CrossEntropyLoss()(m(lib.tensor(x)), lib.tensor(y)).backward()
            opt.step()
    for (k, tv), jv in zip(tm.state_dict().items(), jm.state_dict().values()):
        np.testing.assert_allclose(jv.numpy(), tv.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
