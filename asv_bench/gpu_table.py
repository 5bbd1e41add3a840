"""GPU workloads in one process: jitgrad on CUDA against PyTorch on CUDA (when torch has it).

Run: ``python3 asv_bench/gpu_table.py`` on a machine with an NVIDIA GPU (scripts/gpu_check.sh
does). ``--quick`` uses tiny sizes so the script itself can be smoke-tested under numba's
simulator. Every timing synchronises the device, so it covers the kernels, not just launches.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import jitgrad


def median_seconds(lib, fn, reps):
    fn()
    lib.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        lib.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def workloads(lib, quick):
    """name -> (callable, bytes moved or None): the same seeded tensors for each library."""
    rng = np.random.default_rng(0)
    big = 16 if quick else 10_000_000
    rows, cols = (4, 8) if quick else (4096, 1024)
    mat = 8 if quick else 2048

    def t(*shape, grad=False):
        values = rng.uniform(-1, 1, shape).astype(np.float32)
        return lib.tensor(values, device="cuda", requires_grad=grad)

    tiny_a, tiny_b = t(4), t(4)
    xa, xb, xg = t(big), t(big), t(big, grad=True)
    soft = t(rows, cols, grad=True)
    ma, mb = t(mat, mat, grad=True), t(mat, mat, grad=True)
    nn = lib.nn
    lib.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10)).to("cuda")
    images = t(2 if quick else 64, 784)
    labels = lib.tensor(rng.integers(0, 10, images.shape[0]), device="cuda")
    opt = lib.optim.SGD(mlp.parameters(), lr=0.01, momentum=0.9)

    def mlp_step():
        opt.zero_grad()
        lib.nn.functional.cross_entropy(mlp(images), labels).backward()
        opt.step()

    f32 = 4
    return {
        "add, 4 elements (launch overhead)": (lambda: tiny_a + tiny_b, None),
        f"add, {big:,} f32": (lambda: xa + xb, 3 * big * f32),
        f"tanh fwd+bwd, {big:,} f32": (
            lambda: xg.tanh().backward(xa), 5 * big * f32),
        f"sum, {big:,} f32": (lambda: xa.sum(), big * f32),
        f"softmax fwd+bwd, {rows}x{cols}": (
            lambda: soft.softmax(1).backward(soft.detach()), 5 * rows * cols * f32),
        f"matmul fwd+bwd, {mat}x{mat} f32": (lambda: (ma @ mb).backward(ma.detach()), None),
        "MLP 784-256-128-10 b64 SGD step": (mlp_step, None),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes (simulator smoke test)")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    if not jitgrad.cuda.is_available():
        sys.exit("no CUDA device: " + "jitgrad.cuda.is_available() is False")
    libs = [jitgrad]
    try:
        import torch

        if torch.cuda.is_available():
            libs.append(torch)
    except ImportError:
        pass
    print(f"device: {jitgrad.cuda.get_device_name()}; torch CUDA: {len(libs) > 1}")
    results = {}
    for lib in libs:
        for name, (fn, nbytes) in workloads(lib, args.quick).items():
            results[(name, lib.__name__)] = (median_seconds(lib, fn, args.reps), nbytes)
    print(f"{'workload':40s} {'jitgrad':>11s} {'GB/s':>6s} {'torch':>11s} {'ratio':>6s}")
    for name in [n for n, lib_name in results if lib_name == "jitgrad"]:
        ours, nbytes = results[(name, "jitgrad")]
        rate = f"{nbytes / ours / 1e9:6.0f}" if nbytes else "     -"
        theirs = results.get((name, "torch"), (None,))[0]
        other = f"{theirs * 1e6:9.1f}us {ours / theirs:6.2f}" if theirs else f"{'-':>11s} {'-':>6s}"
        print(f"{name:40s} {ours * 1e6:9.1f}us {rate} {other}")


if __name__ == "__main__":
    main()
