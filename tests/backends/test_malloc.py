import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# Frees 64 MiB of 4 MB arrays at once, as the end of a training step does, and prints how much
# heap glibc kept (mallinfo2's arena: bytes of heap held from the OS).
_PROGRAM = """
import ctypes
import numpy as np
import jitgrad

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
for _ in range(3):
    arrays = [np.ones(1_000_000, np.float32) for _ in range(16)]
    del arrays
print(mallinfo2().arena >> 20)
"""


def _heap_mib_after_free(keep_mb):
    env = dict(os.environ, JITGRAD_MALLOC_KEEP_MB=str(keep_mb))
    out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_big_arrays_stay_in_the_process():
    assert _heap_mib_after_free(1024) >= 60


def test_zero_keeps_glibc_defaults():
    assert _heap_mib_after_free(0) < 30
