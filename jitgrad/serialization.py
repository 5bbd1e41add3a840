"""``save`` / ``load``: tensors and nested containers in a format that cannot run code on load.

The file is a numpy ``.npz`` archive: one ``.npy`` entry per tensor plus ``__meta__``, a JSON
document (stored as uint8 bytes) describing the object tree. ``load`` reads it with
``allow_pickle=False`` and rebuilds only the types listed below, so a crafted file can at worst
fail to load.

Supported: Tensor (and ``nn.Parameter``), dict / OrderedDict (any JSON-scalar keys, tuple keys),
list, tuple, str, int, float (nan/inf too), bool, None, and jitgrad dtypes.
"""

import io
import json
import math
import os
from collections import OrderedDict

import numpy as np

import jitgrad
from jitgrad.tensor import Tensor

__all__ = ["load", "save"]

_FORMAT = "jitgrad-npz"
_VERSION = 1
_META = "__meta__"


class _Encoder:
    def __init__(self):
        self.arrays = {}
        self.seen = {}  # id(tensor) -> array name, so a tensor stored twice loads as one object

    def encode(self, obj):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return {"int": str(obj)} if abs(obj) >= 2**53 else obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"float": repr(obj)}
        if isinstance(obj, Tensor):
            return self._tensor(obj)
        if isinstance(obj, jitgrad.dtype):
            return {"dtype": obj.name}
        if isinstance(obj, (list, tuple)):
            return {"list" if isinstance(obj, list) else "tuple": [self.encode(v) for v in obj]}
        if isinstance(obj, dict):
            kind = "odict" if isinstance(obj, OrderedDict) else "dict"
            return {kind: [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return self.encode(obj.item())
        raise TypeError(f"jitgrad.save cannot store objects of type {type(obj).__name__}; "
                        "supported: tensors, dicts, lists, tuples, str, int, float, bool, None")

    def _tensor(self, t):
        name = self.seen.get(id(t))
        if name is None:
            name = self.seen[id(t)] = f"t{len(self.arrays)}"
            self.arrays[name] = np.array(t.detach().cpu().numpy(), order="C")
        from jitgrad.nn.parameter import Parameter

        node = {"tensor": name, "requires_grad": bool(t.requires_grad),
                "parameter": isinstance(t, Parameter)}
        if t.is_cuda:
            node["device"] = str(t.device)
        return node


def save(obj, f):
    """Write ``obj`` (tensors, state dicts, nested containers) to the path or binary file ``f``.

    Example::

        >>> import io, jitgrad
        >>> buf = io.BytesIO()
        >>> jitgrad.serialization.save({"w": jitgrad.ones(2), "step": 3}, buf)
        >>> _ = buf.seek(0)
        >>> jitgrad.serialization.load(buf)
        {'w': tensor([1., 1.]), 'step': 3}
    """
    enc = _Encoder()
    tree = enc.encode(obj)
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "object": tree})
    arrays = dict(enc.arrays)
    arrays[_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as fh:  # a path is written as given (np.savez would append .npz)
            np.savez(fh, **arrays)
    else:
        np.savez(f, **arrays)


class _Decoder:
    def __init__(self, archive, map_location):
        self.archive = archive
        self.map_location = map_location
        self.tensors = {}

    def decode(self, node):
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or len(node) not in (1, 3, 4):
            raise ValueError(f"jitgrad.load: malformed entry {node!r}")
        if "tensor" in node:
            return self._tensor(node)
        (kind, value), = node.items()
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "dtype":
            return jitgrad.dtypes.to_dtype(value)
        if kind == "list":
            return [self.decode(v) for v in value]
        if kind == "tuple":
            return tuple(self.decode(v) for v in value)
        if kind in ("dict", "odict"):
            pairs = [(self.decode(k), self.decode(v)) for k, v in value]
            return OrderedDict(pairs) if kind == "odict" else dict(pairs)
        raise ValueError(f"jitgrad.load: unknown entry kind {kind!r}")

    def _tensor(self, node):
        name = node["tensor"]
        t = self.tensors.get(name)
        if t is None:
            if name not in self.archive.files or name == _META:
                raise ValueError(f"jitgrad.load: missing array {name!r}")
            data = self.archive[name]
            t = jitgrad.from_numpy(np.array(data, order="C", copy=None))
            device = self.map_location or node.get("device")
            if device is not None:
                t = t.to(device)  # saved on a GPU: back there, unless map_location says else
            if node.get("parameter"):
                from jitgrad.nn.parameter import Parameter

                t = Parameter(t, requires_grad=bool(node.get("requires_grad")))
            elif node.get("requires_grad"):
                t.requires_grad_(True)
            self.tensors[name] = t
        return t


def load(f, map_location=None):
    """Read an object written by ``save`` from a path or binary file; never unpickles.

    Tensors saved from a GPU load onto it again; ``map_location`` ("cpu", "cuda") overrides.

    Raises:
        ValueError: the file is not a jitgrad save file or is malformed (pickled content
            included: numpy refuses it with ``allow_pickle=False``).
    """
    if not isinstance(f, (str, os.PathLike)):
        f = io.BytesIO(f.read())
    try:
        archive = np.load(f, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"jitgrad.load: not a jitgrad save file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError("jitgrad.load: not a jitgrad save file (expected an .npz archive)")
    with archive:
        if _META not in archive.files:
            raise ValueError("jitgrad.load: not a jitgrad save file (no metadata entry)")
        meta = json.loads(archive[_META].tobytes().decode("utf-8"))
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ValueError("jitgrad.load: unsupported file format or version")
        return _Decoder(archive, map_location).decode(meta["object"])
