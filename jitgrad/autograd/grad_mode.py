"""Thread-local grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``."""

import functools
import threading

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


class _GradState(threading.local):
    enabled = True


_state = _GradState()


def is_grad_enabled():
    """Whether ops record the autograd graph on this thread."""
    return _state.enabled


class _GradModeContext:
    """Sets grad mode on enter, restores the previous mode on exit; also a decorator."""

    _mode = True

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        mode = self._mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = _state.enabled
            _state.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _state.enabled = prev

        return wrapper


class no_grad(_GradModeContext):
    """Context manager and decorator that disables graph recording.

    Example::

        >>> import jitgrad
        >>> x = jitgrad.ones(2, requires_grad=True)
        >>> with jitgrad.no_grad():
        ...     (x * 2).requires_grad
        False
    """

    _mode = False


class enable_grad(_GradModeContext):
    """Context manager and decorator that enables graph recording."""

    _mode = True


class set_grad_enabled(_GradModeContext):
    """Sets grad mode to ``mode`` immediately; as a context manager it restores the old mode."""

    def __init__(self, mode):
        self._prev = _state.enabled
        self._mode = bool(mode)
        _state.enabled = self._mode

    def __enter__(self):
        pass

    def __call__(self, fn):
        _state.enabled = self._prev  # used as a decorator: the mode applies only inside fn
        return super().__call__(fn)
