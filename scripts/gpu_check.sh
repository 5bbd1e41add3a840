#!/usr/bin/env bash
# The CUDA suite on a real GPU (no simulator), then the GPU benchmarks against torch CUDA.
# Needs the GPU extra: python3 -m pip install -e ".[test,cuda]" (plus a CUDA build of torch to
# compare against). Finishes in about 5 minutes; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
unset NUMBA_ENABLE_CUDASIM
export JITGRAD_CACHE_DIR="${JITGRAD_CACHE_DIR:-$(mktemp -d)}"

python3 - <<'PY'
import jitgrad
if not jitgrad.cuda.is_available():
    from jitgrad.backends.cuda import runtime
    raise SystemExit(runtime.unavailable_reason())
print("GPU:", jitgrad.cuda.get_device_name())
PY
timeout 240 python3 -m pytest tests/cuda -q -p no:cacheprovider -o addopts="" -rs
timeout 120 python3 asv_bench/gpu_table.py
