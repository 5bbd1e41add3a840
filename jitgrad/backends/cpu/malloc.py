"""glibc malloc settings that keep freed big arrays' memory in the process for the next op.

glibc serves big blocks from the heap once the first one has been freed, but gives the heap's
free top back to the OS whenever it exceeds its trim threshold (twice the largest freed block).
A training step frees all its activations at once, so every step returned them and the next
step page-faulted them back in: on a VM a fault costs ~1 us per 4 KiB page, and the 1M-element
forward+backward chain took 7.4 ms, 4.0 ms with the memory kept (the kernels take 2 ms).
PyTorch's CPU performance guide suggests jemalloc or tcmalloc for the same reason.

jitgrad therefore serves blocks up to 32 MiB (glibc's largest threshold) from the heap and keeps
up to ``JITGRAD_MALLOC_KEEP_MB`` (default 1024) of free heap. ``JITGRAD_MALLOC_KEEP_MB=0``
leaves glibc's defaults alone. Other C libraries (macOS, musl) are left alone.
"""

import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HEAP_BLOCKS_UP_TO = 32 << 20


def keep_freed_memory(keep_mb=None):
    """Apply the settings above; returns False where they do not apply or are turned off."""
    if keep_mb is None:
        keep_mb = int(os.environ.get("JITGRAD_MALLOC_KEEP_MB", 1024))
    if keep_mb <= 0 or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    # NOTE: setting either disables glibc's dynamic threshold, so both are set
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS_UP_TO)
                and mallopt(_M_TRIM_THRESHOLD, keep_mb << 20))


KEPT = keep_freed_memory()
