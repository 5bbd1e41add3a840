"""Draw the backward graph of a tensor: Graphviz DOT text, rendered by the ``dot`` program.

In the spirit of torchviz's ``make_dot``: one node per ``grad_fn`` (named as PyTorch prints it),
leaves as blue boxes with their shape (and name, from ``params``), saved tensors as orange boxes
joined to the node that saved them, and the output tensor in green.
"""

import os
import shutil
import subprocess

import numpy as np

from jitgrad.autograd.node import AccumulateGrad
from jitgrad.tensor import Tensor

__all__ = ["render", "to_dot"]

_HEADER = ('digraph {\n'
           '\tgraph [rankdir=TB ranksep=0.2 size="12,12"]\n'
           '\tnode [align=left fontname=monospace fontsize=10 height=0.2 ranksep=0.1 '
           'shape=box style=filled]\n')
_STYLES = {
    "fn": 'fillcolor=lightgrey shape=ellipse',
    "leaf": 'fillcolor=lightblue',
    "saved": 'fillcolor=orange',
    "output": 'fillcolor=darkolivegreen1',
}


def _shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_TORCH_ARG_NAMES = {"x": "self", "y": "other"}  # as PyTorch names saved values (_saved_self)


def _saved_items(fn):
    """``(name, value)`` pairs of what ``fn`` saved for its backward.

    Elementwise nodes keep all their arguments; only those their derivative formulas read
    (and the result, when read) are shown, named as in the formula table.
    """
    spec = getattr(type(fn), "spec", None)
    if spec is None:
        return [("", fn.saved)]
    args, cast_values, result = fn.saved[:3]
    values = cast_values or args
    items = [(_TORCH_ARG_NAMES.get(spec.inputs[i], spec.inputs[i]), values[i])
             for i in spec.read_inputs]
    return items + ([("result", result)] if result is not None else [])


def _saved_arrays(fn):
    """``(label, shape, key)`` of each Tensor or array ``fn`` saved, found in nested tuples."""
    found, stack = [], [(name, value) for name, value in reversed(_saved_items(fn))]
    while stack:
        name, value = stack.pop()
        if isinstance(value, Tensor):
            found.append((name, value._data.shape, id(value._data)))
        elif isinstance(value, np.ndarray):
            found.append((name, value.shape, id(value)))
        elif isinstance(value, (tuple, list)):
            stack.extend((f"{name}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    merged = {}  # one entry per array, naming every slot that holds it ("self, other")
    for name, shape, key in found:
        if key in merged:
            merged[key] = (f"{merged[key][0]}, {name}", shape, key)
        else:
            merged[key] = (name, shape, key)
    return list(merged.values())


def to_dot(tensor, params=None, show_saved=True):
    """Graphviz DOT text of the backward graph that ends at ``tensor`` (or a tuple of tensors).

    Args:
        tensor: the output whose ``grad_fn`` graph is drawn.
        params: optional ``{name: tensor}``; leaves found there are labelled with their name.
        show_saved: draw the tensors each node saved for its backward, with their shapes.

    Returns:
        The DOT source as a string (no Graphviz needed).

    Example::

        >>> import jitgrad
        >>> from jitgrad.viz import to_dot
        >>> x = jitgrad.ones(2, requires_grad=True)
        >>> "MulBackward0" in to_dot((x * 2).sum(), params={"x": x})
        True
    """
    names = {id(t): name for name, t in (params or {}).items()}
    outputs = tensor if isinstance(tensor, (tuple, list)) else (tensor,)
    lines, edges = [], []
    ids = {}

    def node_id(obj):
        return ids.setdefault(id(obj), f"n{len(ids)}")

    def add(key, label, style):
        lines.append(f"\t{key} [label={_quote(label)} {_STYLES[style]}]\n")

    seen, stack = set(), []
    for k, out in enumerate(outputs):
        label = names.get(id(out), "output" if len(outputs) == 1 else f"output {k}")
        out_key = node_id(out)
        add(out_key, f"{label}\n{_shape(out.shape)}", "output")
        root = out.grad_fn or (out._grad_edge()[0] if out.requires_grad else None)
        if root is not None:
            edges.append(f"\t{node_id(root)} -> {out_key}\n")
            if root not in seen:
                seen.add(root)
                stack.append(root)
    saved_seen = set()
    while stack:
        fn = stack.pop()
        key = node_id(fn)
        if type(fn) is AccumulateGrad:
            var = fn.variable
            name = names.get(id(var))
            add(key, (f"{name}\n" if name else "") + _shape(var.shape), "leaf")
            continue
        add(key, fn.name(), "fn")
        if show_saved and fn.saved:
            for name, shape, array_key in _saved_arrays(fn):
                skey = ids.setdefault(("saved", array_key), f"s{len(ids)}")
                if (skey, key) in saved_seen:
                    continue
                if skey not in saved_seen:
                    add(skey, f"saved {name}".rstrip() + f"\n{_shape(shape)}", "saved")
                saved_seen.update((skey, (skey, key)))
                edges.append(f"\t{skey} -> {key} [dir=none style=dashed]\n")
        for nxt, _ in fn.next_functions:
            if nxt is None:
                continue
            edges.append(f"\t{node_id(nxt)} -> {key}\n")
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return _HEADER + "".join(lines) + "".join(edges) + "}\n"


_FORMATS = ("svg", "png", "pdf", "jpg", "jpeg", "gif", "dot", "ps", "eps")
_NO_DOT = (
    "jitgrad.viz.render needs the Graphviz 'dot' program, which was not found on PATH. Install "
    "the Graphviz binaries: 'apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' "
    "(macOS), 'conda install -c conda-forge graphviz', or https://graphviz.org/download/. Note "
    "that 'pip install graphviz' installs only Python bindings, not the 'dot' program. "
    "jitgrad.viz.to_dot(tensor) returns the DOT text without Graphviz (paste it into any "
    "Graphviz viewer).")


def render(tensor, path, format=None, params=None, show_saved=True):
    """Write the backward graph of ``tensor`` to ``path`` as SVG, PNG, PDF, ... via Graphviz.

    Args:
        tensor: the output whose graph is drawn (see ``to_dot``).
        path: the file to write.
        format: a Graphviz output format; by default taken from ``path``'s extension.

    Returns:
        ``path``.

    Raises:
        RuntimeError: when Graphviz's ``dot`` program is not installed (``to_dot`` still works).
    """
    if format is None:
        format = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "svg"
    if format not in _FORMATS:
        raise ValueError(f"unsupported format {format!r}: expected one of {', '.join(_FORMATS)}")
    source = to_dot(tensor, params=params, show_saved=show_saved)
    if format == "dot":
        with open(path, "w") as f:
            f.write(source)
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(_NO_DOT)
    extra = ["-Gdpi=144"] if format in ("png", "jpg", "jpeg", "gif") else []
    done = subprocess.run([dot, f"-T{format}", *extra, "-o", os.fspath(path)],
                          input=source.encode(), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"Graphviz 'dot' failed: {done.stderr.decode(errors='replace')}")
    return path
