"""CUDA tests: they run where a GPU exists, or under numba's simulator as their own process.

    NUMBA_ENABLE_CUDASIM=1 python3 -m pytest tests/cuda

The simulator is chosen when numba.cuda is imported, so it cannot be switched on inside the
main test process; there these tests skip unless a real GPU is present.
"""

import pytest

from jitgrad.backends.cuda import runtime


def pytest_collection_modifyitems(config, items):
    if runtime.available():
        return
    skip = pytest.mark.skip(reason=runtime.unavailable_reason())
    for item in items:
        if "tests/cuda" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
