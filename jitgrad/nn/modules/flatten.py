"""``Flatten``."""

from jitgrad.nn.modules.module import Module

__all__ = ["Flatten"]


class Flatten(Module):
    """Flatten dimensions ``start_dim`` to ``end_dim`` into one.

    Example::

        >>> import jitgrad
        >>> from jitgrad import nn
        >>> nn.Flatten()(jitgrad.zeros(32, 1, 5, 5)).shape
        jitgrad.Size([32, 25])
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
