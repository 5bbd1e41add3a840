"""Anomaly detection: nodes remember where the forward pass made them; NaN gradients raise."""

import traceback

__all__ = ["detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled"]

_state = {"enabled": False}


def is_enabled():
    return _state["enabled"]


is_anomaly_enabled = is_enabled


def forward_trace():
    """The forward call stack, kept on nodes made while anomaly mode is on."""
    return "".join(traceback.format_stack()[:-3]) if _state["enabled"] else None


class set_detect_anomaly:
    """Turns anomaly detection on or off; as a context manager it restores the previous mode."""

    def __init__(self, mode, check_nan=True):
        self._prev = _state["enabled"]
        _state["enabled"] = bool(mode) and check_nan

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state["enabled"] = self._prev
        return False


class detect_anomaly(set_detect_anomaly):
    """Context manager: backward raises when a node returns NaN, naming the forward call site.

    Example::

        >>> import jitgrad
        >>> x = jitgrad.tensor([0.0], requires_grad=True)
        >>> with jitgrad.autograd.detect_anomaly():
        ...     (x.sqrt() * 0).sum().backward()
        Traceback (most recent call last):
        ...
        RuntimeError: Function 'SqrtBackward0' returned nan values in its 0th output. ...
    """

    def __init__(self, check_nan=True):
        super().__init__(True, check_nan)


def check_nan(node, grads):
    """Raise if any gradient a node returned holds NaN, showing where the node was created."""
    for i, g in enumerate(grads):
        if g is not None and g.isnan().any().item():
            where = node.trace or "(enable anomaly mode before the forward pass to see it)\n"
            raise RuntimeError(
                f"Function '{node.name()}' returned nan values in its {i}th output. "
                f"Traceback of forward call that caused the error:\n{where}")
