"""jitgrad.viz: DOT text of the backward graph, and rendering through Graphviz's ``dot``."""

import shutil

import pytest

import jitgrad
from jitgrad import viz


def _blitz():
    x = jitgrad.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    return x, z.mean()


def test_dot_has_tutorial_nodes_and_leaf_shape():
    x, out = _blitz()
    dot = viz.to_dot(out, params={"x": x})
    assert dot.startswith("digraph {") and dot.rstrip().endswith("}")
    for name in ("MeanBackward0", "MulBackward0", "AddBackward0"):
        assert f'label="{name}"' in dot
    assert dot.count('label="MulBackward0"') == 2
    assert 'label="x\\n(2, 2)"' in dot  # the named leaf, with its shape
    assert 'label="output\\n()"' in dot and "darkolivegreen1" in dot
    assert "AccumulateGrad" not in dot  # the leaf box stands for its AccumulateGrad node
    assert dot.count(" -> ") == 8  # 5 graph edges (y used twice) + output + 2 saved tensors


def test_saved_tensors_shown_with_shapes_and_hidden_on_request():
    a = jitgrad.ones(2, 3, requires_grad=True)
    b = jitgrad.ones(3, 4, requires_grad=True)
    out = (a @ b).exp().sum()
    dot = viz.to_dot(out)
    assert "MmBackward0" in dot and "ExpBackward0" in dot and "SumBackward0" in dot
    assert "(2, 3)" in dot and "(3, 4)" in dot and "saved result\\n(2, 4)" in dot
    assert 'label="(2, 3)"' in dot  # an unnamed leaf shows its shape
    assert "saved" not in viz.to_dot(out, show_saved=False)


def test_dot_after_backward_and_on_leaves():
    x, out = _blitz()
    out.backward()
    assert "saved" not in viz.to_dot(out)  # freed by the backward pass
    assert "MeanBackward0" in viz.to_dot(out)
    assert 'label="output\\n(2, 2)"' in viz.to_dot(x)


def test_long_chain_is_walked_without_recursion():
    x = jitgrad.ones(2, requires_grad=True)
    y = x
    for _ in range(3000):
        y = y * 1.0
    assert viz.to_dot(y).count('label="MulBackward0"') == 3000


def test_labels_are_escaped():
    x = jitgrad.ones(1, requires_grad=True)
    assert 'label="my \\"x\\"\\n(1,)"' in viz.to_dot(x * 2, params={'my "x"': x})


def test_render_needs_graphviz(tmp_path, monkeypatch):
    _, out = _blitz()
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz") as err:
        viz.render(out, tmp_path / "g.svg")
    assert "pip install graphviz" in str(err.value) and "to_dot" in str(err.value)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program not installed")
@pytest.mark.parametrize("fmt, magic", [("svg", b"<?xml"), ("png", b"\x89PNG")])
def test_render_writes_file(tmp_path, fmt, magic):
    x, out = _blitz()
    path = tmp_path / f"graph.{fmt}"
    assert viz.render(out, path, params={"x": x}) == path
    data = path.read_bytes()
    assert data.startswith(magic)
    if fmt == "svg":
        assert b"MeanBackward0" in data


def test_render_rejects_unknown_format(tmp_path):
    _, out = _blitz()
    with pytest.raises(ValueError, match="unsupported format"):
        viz.render(out, tmp_path / "g.xyz")
