"""Recording and replaying the elementwise / sum calls a function makes.

While a compiled function runs, ``elementwise.apply`` and the ``sum``/``mean`` entry points
are swapped for wrappers that hand each call to the thread's active tape (a ``Recorder`` on the
first call, a ``Replayer`` later) and are restored when the last compiled call returns. Other
threads, and every other op, run untouched.
"""

import threading

import jitgrad
from jitgrad.ops import elementwise, reduce
from jitgrad.tensor import Tensor

__all__ = ["Divergence", "Dummy", "Traced", "active", "patched", "ORIGINAL_APPLY"]

ORIGINAL_APPLY = elementwise.apply
ORIGINAL_APPLY_BINARY = elementwise.apply_binary
ORIGINAL_SUM = reduce.sum
ORIGINAL_MEAN = reduce.mean
_PUBLIC_SPECS = frozenset(id(s) for s in elementwise.SPECS.values())

class _State(threading.local):
    tape = None


_state = _State()


class Divergence(Exception):
    """A replay met a call the trace did not have: the caller reruns the function eagerly."""


def active():
    return _state.tape


def set_active(tape):
    _state.tape = tape


def _escape_on_read(slot):
    """A property over ``slot`` that marks the tensor as escaping when read outside the tape."""
    descriptor = Tensor.__dict__[slot]

    def get(self):
        tape = _state.tape
        if tape is not None and not tape.inside:
            tape.escaped.add(id(self))
        return descriptor.__get__(self)

    def set(self, value):
        tape = _state.tape
        if tape is not None:
            tape.escaped.add(id(self))
        descriptor.__set__(self, value)

    return property(get, set)


class Traced(Tensor):
    """A traced op's output during tracing: notes reads of its data or graph outside the tape."""

    __slots__ = ()
    _data = _escape_on_read("_data")
    grad_fn = _escape_on_read("grad_fn")


def _unavailable(self, value=None):
    if _state.tape is not None:
        raise Divergence("an inner value of a fused region was used")
    raise RuntimeError("this tensor is an inner value of a region that jitgrad.compile fused; "
                       "it was not computed (return it from the compiled function to keep it)")


class Dummy(Tensor):
    """Stands for a fused region's inner value during replay; using its data or graph diverges."""

    __slots__ = ()
    _data = property(_unavailable, _unavailable)
    grad_fn = property(_unavailable, _unavailable)

    @classmethod
    def make(cls):
        t = object.__new__(cls)
        t._requires_grad = t._retains_grad = False
        t.grad = t._base = t._grad_acc = t._views = None
        t._output_nr = 0
        t._version = [0]
        return t


def _apply(spec, args):
    tape = _state.tape
    if tape is None or tape.inside or id(spec) not in _PUBLIC_SPECS:
        return ORIGINAL_APPLY(spec, args)
    return tape.apply(spec, args)


def _reduction(kind, original):
    def fn(input, dim=None, keepdim=False, *, dtype=None):
        tape = _state.tape
        if tape is None or tape.inside:
            return original(input, dim, keepdim, dtype=dtype)
        return tape.reduce(kind, original, input, dim, keepdim, dtype)

    fn.__name__ = fn.__qualname__ = kind
    fn.__doc__ = original.__doc__
    return fn


def _apply_binary(spec, a, b):
    if _state.tape is None:
        return ORIGINAL_APPLY_BINARY(spec, a, b)
    return _apply(spec, (a, b))


_SUM = _reduction("sum", ORIGINAL_SUM)
_MEAN = _reduction("mean", ORIGINAL_MEAN)
_PATCHES = [(elementwise, "apply", ORIGINAL_APPLY, _apply),
            (elementwise, "apply_binary", ORIGINAL_APPLY_BINARY, _apply_binary)]
for _owner in (reduce, Tensor, jitgrad, jitgrad.ops):
    for _name, _orig, _new in (("sum", ORIGINAL_SUM, _SUM), ("mean", ORIGINAL_MEAN, _MEAN)):
        if _owner.__dict__.get(_name) is _orig:
            _PATCHES.append((_owner, _name, _orig, _new))

_lock = threading.Lock()
_users = [0]


class patched:
    """Context manager: the wrappers are installed while any thread runs a compiled function."""

    __slots__ = ()

    def __enter__(self):
        with _lock:
            if not _users[0]:
                for owner, name, _, new in _PATCHES:
                    setattr(owner, name, new)
            _users[0] += 1

    def __exit__(self, *exc):
        with _lock:
            _users[0] -= 1
            if not _users[0]:
                for owner, name, orig, _ in _PATCHES:
                    setattr(owner, name, orig)
