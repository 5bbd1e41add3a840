"""Compile cost users feel: a fresh process running the tutorial, cold and warm kernel cache."""

import os
import subprocess
import sys
import tempfile
import time

SCRIPT = (
    "import jitgrad as torch\n"
    "x = torch.ones(2, 2, requires_grad=True)\n"
    "out = ((x + 2) * (x + 2) * 3).mean()\n"
    "out.backward()\n"
)


def _run(cache_dir):
    env = dict(os.environ, JITGRAD_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True)
    return time.perf_counter() - start


class CompileTime:
    """Seconds for a whole process; the cold run starts from an empty generated-kernel cache."""

    timeout = 300

    def track_cold_start_seconds(self):
        with tempfile.TemporaryDirectory() as cache:
            return _run(cache)

    def track_warm_start_seconds(self):
        with tempfile.TemporaryDirectory() as cache:
            _run(cache)
            return _run(cache)

    track_cold_start_seconds.unit = "seconds"
    track_warm_start_seconds.unit = "seconds"
