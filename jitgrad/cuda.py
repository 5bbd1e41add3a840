"""``jitgrad.cuda``: what code written for ``torch.cuda`` asks before choosing a device.

This build has no CUDA backend yet, so no device is available; code such as
``device = "cuda" if jitgrad.cuda.is_available() else "cpu"`` then runs on the CPU.
"""

__all__ = ["device_count", "is_available", "synchronize"]

_NO_BACKEND = ("jitgrad has no CUDA backend in this build: tensors live on the CPU "
               "(jitgrad.cuda.is_available() is False)")


def is_available():
    """Whether a CUDA device can be used: always False until the CUDA backend lands."""
    return False


def device_count():
    """The number of usable CUDA devices: 0."""
    return 0


def synchronize(device=None):
    """Wait for CUDA work to finish; raises RuntimeError, as torch does without CUDA."""
    raise RuntimeError(_NO_BACKEND)
