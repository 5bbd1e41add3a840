"""Big CPU kernels split over threads ('p' kernels, addmm_p, mm_pair_p) against serial kernels
and numpy."""

import contextlib
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import jitgrad
from jitgrad.backends.cpu import linalg_kernels, nn_kernels, reduce_kernels, threads
from jitgrad.nn import functional as nn_functional
from jitgrad.ops import fused_backward, reduce
from jitgrad.ops.elementwise import SPECS
from jitgrad.optim import optimizer

MIN_SPLIT = 1 << 16  # threads.MIN_SPLIT unless OMP_WAIT_POLICY=passive raised it
# odd lengths: the last chunk is short and starts mid-vector
SIZES = [MIN_SPLIT, 3 * MIN_SPLIT + 7]


def _split_in_three(monkeypatch):
    monkeypatch.setattr(threads, "MIN_SPLIT", MIN_SPLIT)
    monkeypatch.setattr(threads, "chunks",
                        lambda n, most=None: 1 if n < MIN_SPLIT else min(3, most or 3))


@pytest.fixture
def three_chunks(monkeypatch):
    """Split every loop of 64K elements or more into three slices, whatever this machine's
    core count and OpenMP settings."""
    _split_in_three(monkeypatch)


@contextlib.contextmanager
def _fuse_threshold(n):
    before = fused_backward.threshold()
    fused_backward.set_threshold(n)
    try:
        yield
    finally:
        fused_backward.set_threshold(before)


def _uniform(n, dtype, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, n).astype(dtype)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_split_kernel_equals_serial_kernel(n, chunks):
    x, y = _uniform(n, np.float32), _uniform(n, np.float32, 1)
    serial, split = np.empty_like(x), np.full_like(x, np.nan)
    SPECS["mul"].kernel("float32", "aa", "c")(x, y, serial)
    SPECS["mul"].kernel("float32", "aa", "p")(chunks, x, y, split)
    np.testing.assert_array_equal(split, serial)
    np.testing.assert_array_equal(split, x * y)


@pytest.mark.parametrize("n", SIZES)
def test_split_kernel_with_scalar_operand(n):
    x = _uniform(n, np.float64)
    out = np.full_like(x, np.nan)
    SPECS["add"].kernel("float64", "as", "p")(3, x, 0.5, out)
    np.testing.assert_array_equal(out, x + 0.5)


@pytest.mark.parametrize("n", SIZES)
def test_ops_forward_backward_and_inplace_on_split_loops(n, three_chunks):
    xs, ws = _uniform(n, np.float32), _uniform(n, np.float32, 1)
    x = jitgrad.tensor(xs, requires_grad=True)
    w = jitgrad.tensor(ws, requires_grad=True)
    with _fuse_threshold(0):  # the eager backward: one derivative kernel per input
        y = (x * w + 0.5).tanh()
        y.sum().backward()
    t = np.tanh(xs.astype(np.float64) * ws + 0.5)
    np.testing.assert_allclose(y.detach().numpy(), t, rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(x.grad.numpy(), (1 - t * t) * ws, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), (1 - t * t) * xs, rtol=1e-5, atol=1e-6)
    before = x.grad.numpy().copy()
    x.grad.add_(w.detach())  # the in-place path
    np.testing.assert_array_equal(x.grad.numpy(), before + ws)


@pytest.mark.parametrize("root", ["sum", "mean", "elementwise"])
def test_fused_backward_split_matches_numpy(root, three_chunks):
    n = SIZES[1]
    xs, ws = _uniform(n, np.float64), _uniform(n, np.float64, 1)
    x = jitgrad.tensor(xs, requires_grad=True)
    w = jitgrad.tensor(ws, requires_grad=True)
    before = fused_backward.stats()["fused"]
    with _fuse_threshold(1):
        y = (x * w).sigmoid() * x
        if root == "elementwise":
            y.backward(jitgrad.tensor(ws))
        else:
            getattr(y, root)().backward()
    assert fused_backward.stats()["fused"] == before + 1
    s = 1 / (1 + np.exp(-xs * ws))
    g = {"sum": 1.0, "mean": 1.0 / n, "elementwise": ws}[root]
    ds = s * (1 - s)
    np.testing.assert_allclose(x.grad.numpy(), g * (s + ds * ws * xs), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(w.grad.numpy(), g * ds * xs * xs, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a_order", ["C", "F"])
@pytest.mark.parametrize("n, chunks", [(97, 2), (64, 3), (5, 4)])
@pytest.mark.parametrize("b_order", ["C", "F"])
@pytest.mark.parametrize("by_cols", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_split_matmul(by_cols, with_bias, dtype, a_order, b_order, n, chunks):
    rng = np.random.default_rng(0)
    a = np.asarray(rng.standard_normal((n, 33)), dtype, order=a_order)
    b = np.asarray(rng.standard_normal((33, n if by_cols else 40)), dtype, order=b_order)
    bias = rng.standard_normal(b.shape[1]).astype(dtype) if with_bias else np.empty(0, dtype)
    out = np.full((n, b.shape[1]), np.nan, dtype)
    linalg_kernels.addmm_p(chunks, by_cols, a, b, out, bias)
    expected = a.astype(np.float64) @ b + (bias if with_bias else 0)
    np.testing.assert_allclose(out, expected, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("n, k, m", [(256, 192, 160), (64, 784, 256)])  # rows, columns split
def test_big_matmul_forward_backward_matches_numpy(n, k, m):
    rng = np.random.default_rng(0)
    a_np, b_np = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    a = jitgrad.tensor(a_np, requires_grad=True)
    b = jitgrad.tensor(b_np, requires_grad=True)
    y = a @ b
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), a_np @ b_np, rtol=1e-12, atol=1e-11)
    ones = np.ones((n, m))
    np.testing.assert_allclose(a.grad.numpy(), ones @ b_np.T, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(b.grad.numpy(), a_np.T @ ones, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks1, by_cols1, chunks2, by_cols2",
                         [(1, False, 1, False), (2, True, 3, False), (3, False, 1, True)])
def test_matmul_pair_kernel(dtype, chunks1, by_cols1, chunks2, by_cols2):
    rng = np.random.default_rng(0)
    a1 = rng.standard_normal((37, 20)).astype(dtype)
    b1 = rng.standard_normal((20, 41)).astype(dtype)
    a2 = np.asfortranarray(rng.standard_normal((23, 9))).astype(dtype)  # a transposed operand
    b2 = rng.standard_normal((9, 30)).astype(dtype)
    out1, out2 = np.full((37, 41), np.nan, dtype), np.full((23, 30), np.nan, dtype)
    linalg_kernels.mm_pair_p(chunks1, by_cols1, a1, b1, out1, chunks2, by_cols2, a2, b2, out2)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out1, a1.astype(np.float64) @ b1, rtol=tol, atol=tol)
    np.testing.assert_allclose(out2, a2.astype(np.float64) @ b2, rtol=tol, atol=tol)


@pytest.fixture
def pair_calls(monkeypatch):
    """Counts calls of the pair kernel, which runs when two threads are usable."""
    from jitgrad.ops import linalg

    monkeypatch.setattr(threads, "usable", lambda: 2)
    calls = []
    kernel = linalg._KERNELS.cpu.mm_pair_p
    monkeypatch.setattr(linalg._KERNELS.cpu, "mm_pair_p",
                        lambda *args: calls.append(args[0]) or kernel(*args))
    return calls


@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_gradients_computed_as_a_pair(pair_calls, transposed):
    rng = np.random.default_rng(1)
    a_np, b_np = rng.standard_normal((48, 64)), rng.standard_normal((64, 40))
    a = jitgrad.tensor(a_np, requires_grad=True)
    b = jitgrad.tensor(b_np.T.copy(), requires_grad=True) if transposed else \
        jitgrad.tensor(b_np, requires_grad=True)
    g_np = rng.standard_normal((48, 40))
    (a @ (b.t() if transposed else b)).backward(jitgrad.tensor(g_np))
    assert pair_calls == [1]
    np.testing.assert_allclose(a.grad.numpy(), g_np @ b_np.T, rtol=1e-12, atol=1e-12)
    gb = a_np.T @ g_np
    np.testing.assert_allclose(b.grad.numpy(), gb.T if transposed else gb, rtol=1e-12,
                               atol=1e-12)


def test_linear_gradients_computed_as_a_pair(pair_calls):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x_np, w_np = rng.standard_normal((64, 96)), rng.standard_normal((80, 96))
    b_np, g_np = rng.standard_normal(80), rng.standard_normal((64, 80))
    grads = []
    for lib in (jitgrad, torch):
        x, w, b = (lib.tensor(v, requires_grad=True) for v in (x_np, w_np, b_np))
        lib.nn.functional.linear(x, w, b).backward(lib.tensor(g_np))
        grads.append([t.grad.numpy() for t in (x, w, b)])
    assert pair_calls == [1]
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_set_num_threads():
    before = jitgrad.get_num_threads()
    try:
        jitgrad.set_num_threads(1)
        assert jitgrad.get_num_threads() == 1
        assert threads.chunks(10 ** 7) == 1
    finally:
        jitgrad.set_num_threads(before)
    assert jitgrad.get_num_threads() == before
    with pytest.raises(RuntimeError, match="positive integer"):
        jitgrad.set_num_threads(0)
    with pytest.raises(RuntimeError, match="expects an int, but got float"):
        jitgrad.set_num_threads(1.5)


def test_no_split_without_a_thread_safe_layer(monkeypatch):
    """numba's 'workqueue' fallback aborts on concurrent launches: jitgrad must stay serial."""
    monkeypatch.setitem(threads._state, "layer_ok", False)
    monkeypatch.setitem(threads._state, "threads", 4)
    assert threads.chunks(10 ** 7) == 1
    assert threads.usable() == 1


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="fork")
def test_forked_child_runs_single_threaded():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        os.write(write, str(jitgrad.get_num_threads()).encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 16) == b"1"
    os.waitpid(pid, 0)
    os.close(read)


@pytest.mark.parametrize("op", ["sum", "mean", "prod"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_full_reduction(op, dtype, three_chunks):
    n = SIZES[1]
    rng = np.random.default_rng(0)
    data = (rng.uniform(0.9999, 1.0001, n) if op == "prod" else rng.uniform(-1, 1, n)).astype(dtype)
    x = jitgrad.tensor(data.reshape(5, -1), requires_grad=True)  # a 2-D full reduction
    got = getattr(x, op)()
    expected = getattr(np, op)(data.astype(np.float64))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert got.dtype == x.dtype


def test_split_sum_propagates_nan(three_chunks):
    data = np.ones(SIZES[1], np.float32)
    data[-5] = np.nan
    assert np.isnan(jitgrad.tensor(data).sum().item())


@pytest.mark.parametrize("op", ["sum0", "mean0", "prod0", "bias_grad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_sum_over_leading_dims(op, dtype, three_chunks, monkeypatch):
    """A sum over leading dims (one outer row) splits the summed dim over threads, a float64
    partial per slice; products too."""
    calls = []
    split = reduce_kernels.sum_reduced_p
    monkeypatch.setattr(reduce_kernels, "sum_reduced_p",
                        lambda chunks, *args: calls.append(chunks) or split(chunks, *args))
    rows = 4 * MIN_SPLIT // 1000 + 3  # > 4 * MIN_SPLIT elements, rows not a multiple of 3 or 4
    rng = np.random.default_rng(0)
    lo, hi = (0.999, 1.001) if op == "prod0" else (-1, 1)
    data = rng.uniform(lo, hi, (rows, 1000)).astype(dtype)
    x = jitgrad.tensor(data, requires_grad=True)
    if op == "bias_grad":
        bias = jitgrad.zeros(1000, dtype=x.dtype, requires_grad=True)
        (x + bias).backward(jitgrad.tensor(data))
        got, expected = bias.grad.numpy(), data.astype(np.float64).sum(0)
    else:
        got = getattr(x, op[:-1])(0).detach().numpy()
        expected = getattr(np, op[:-1])(data.astype(np.float64), 0)
    assert calls == [3]  # the split ran
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kernel, make", [
    ("sgd_step", lambda ps: jitgrad.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01,
                                              nesterov=True)),
    ("sgd_step", lambda ps: jitgrad.optim.SGD(ps, lr=0.1)),
    ("adam_step", lambda ps: jitgrad.optim.Adam(ps, lr=0.01, amsgrad=True)),
    ("adam_step", lambda ps: jitgrad.optim.AdamW(ps, lr=0.01)),
    ("rmsprop_step", lambda ps: jitgrad.optim.RMSprop(ps, lr=0.01, momentum=0.5, centered=True)),
], ids=["sgd-nesterov", "sgd", "adam-amsgrad", "adamw", "rmsprop-centered"])
def test_split_optimizer_steps_equal_serial_steps(kernel, make, monkeypatch):
    """Two steps with every buffer cut into three slices equal two steps run whole."""
    start = _uniform(SIZES[1], np.float32)
    grads = [_uniform(SIZES[1], np.float32, seed) for seed in (1, 2)]
    results = []
    for split in (False, True):
        if split:
            _split_in_three(monkeypatch)
        p = jitgrad.nn.Parameter(jitgrad.tensor(start.copy()))
        opt = make([p])
        for g in grads:
            p.grad = jitgrad.tensor(g)
            opt.step()
        results.append(p.detach().numpy())
    assert getattr(optimizer._SPLIT.split, kernel + "_p").signatures  # the split ran
    assert not np.array_equal(results[0], start)
    np.testing.assert_array_equal(results[1], results[0])


@pytest.mark.parametrize("kernel, op", [
    ("sum_3d", lambda x: x.sum(1)), ("sum_3d", lambda x: x.mean(-1)),
    ("argextreme_3d", lambda x: x.amax(1)), ("argextreme_3d", lambda x: x.argmin(1)),
    ("softmax_3d", lambda x: x.softmax(1)), ("softmax_3d", lambda x: x.log_softmax(-1)),
    ("logsumexp_3d", lambda x: x.logsumexp(1)), ("cumsum_3d", lambda x: x.cumsum(1)),
    ("sort_3d", lambda x: x.sort(1, descending=True)[0]),
    ("sort_3d", lambda x: x.argsort(1).float()),
], ids=["sum", "mean", "amax", "argmin", "softmax", "log_softmax", "logsumexp", "cumsum",
        "sort", "argsort"])
def test_row_split_reductions_equal_serial(kernel, op, monkeypatch):
    """Rows of a dim reduction, softmax and their backward split over threads give the serial
    results bit for bit (each row is computed the same way)."""
    data = _uniform(3 * MIN_SPLIT, np.float32).reshape(-1, 4096)  # 48 rows
    weights = _uniform(data.shape[0], np.float32, 1)
    results = []
    for split in (False, True):
        if split:
            _split_in_three(monkeypatch)
        x = jitgrad.tensor(data, requires_grad=True)
        y = op(x)
        if y.requires_grad:
            w = jitgrad.tensor(weights)
            (y * (w if y.ndim == 1 else w[:, None])).sum().backward()
        results.append((y.detach().numpy(), None if x.grad is None else x.grad.numpy()))
    assert getattr(reduce._ROWS.split, kernel + "_p").signatures  # the split ran
    np.testing.assert_array_equal(results[1][0], results[0][0])
    if results[0][1] is not None:
        np.testing.assert_array_equal(results[1][1], results[0][1])


@pytest.mark.parametrize("spec, op, reference", [
    ("add", lambda x, b: x + b, lambda x, b: x + b),
    ("mul", lambda x, b: b * x, lambda x, b: b * x),
    ("sub", lambda x, b: (x - b).tanh(), lambda x, b: np.tanh(x - b)),
    ("mul", lambda x, b: x[:, :3000] * b[:3000], lambda x, b: x[:, :3000] * b[:3000]),
], ids=["add-bias", "mul-bias", "tanh-sub", "strided-rows"])
def test_broadcast_rows_split_equal_numpy(spec, op, reference, three_chunks):
    """Broadcast ('r' kernel) ops on big tensors split their rows over threads ('rp')."""
    x_np = _uniform(49 * 4096, np.float32).reshape(49, 4096)
    b_np = _uniform(4096, np.float32, 1)
    x = jitgrad.tensor(x_np, requires_grad=True)
    b = jitgrad.tensor(b_np, requires_grad=True)
    y = op(x, b)
    assert SPECS[spec].kernel("float32", "aa", "rp").signatures  # the split ran
    expected = reference(x_np.astype(np.float64), b_np.astype(np.float64))
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=2e-6, atol=2e-7)
    with jitgrad.no_grad():
        x.add_(b)  # the in-place broadcast path
    np.testing.assert_array_equal(x.detach().numpy(), x_np + b_np)


@pytest.mark.parametrize("shape, perm", [((512, 384), (1, 0)), ((6, 200, 160), (2, 0, 1)),
                                         ((3, 4, 90, 100), (0, 3, 1, 2))])
def test_strided_split_equals_numpy(shape, perm, three_chunks):
    """Strided ('nd') ops and copies of big permuted tensors split an outer dim ('ndp')."""
    x_np = _uniform(int(np.prod(shape)), np.float32).reshape(shape)
    y_np = _uniform(int(np.prod(shape)), np.float32, 1).reshape(shape).transpose(perm)
    x = jitgrad.tensor(x_np).permute(*perm)
    y = jitgrad.tensor(np.ascontiguousarray(y_np))
    np.testing.assert_array_equal((x * y).numpy(), x_np.transpose(perm) * y_np)
    np.testing.assert_array_equal(x.contiguous().numpy(), x_np.transpose(perm))
    assert SPECS["mul"].kernel("float32", "aa", "ndp").signatures  # the split ran


@pytest.mark.parametrize("policy, expected", [("passive", 1 << 20), ("active", MIN_SPLIT)])
def test_sleeping_openmp_threads_raise_the_split_threshold(policy, expected):
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    out = subprocess.run([sys.executable, "-c", "from jitgrad.backends.cpu import threads; "
                          "print(threads.MIN_SPLIT)"], env=env, capture_output=True, text=True,
                         check=True)
    assert int(out.stdout) == expected


def test_concurrent_split_ops_from_python_threads(three_chunks):
    """Split kernels release the GIL: ops on big tensors may run in several Python threads at
    once (numba's OpenMP and TBB layers are thread-safe), each getting its own results."""
    import concurrent.futures

    arrays = [_uniform(SIZES[1], np.float32, seed) for seed in range(4)]

    def work(a):
        x = jitgrad.tensor(a, requires_grad=True)
        y = (x * 2.0 + 1.0).tanh()
        y.sum().backward()
        return y.detach().numpy(), x.grad.numpy()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, arrays * 3))
    for a, (y, g) in zip(arrays * 3, results):
        t = np.tanh(a.astype(np.float64) * 2 + 1)
        np.testing.assert_allclose(y, t, rtol=2e-6, atol=2e-7)
        np.testing.assert_allclose(g, 2 * (1 - t * t), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("padding, groups", [(0, 1), (1, 2)])
def test_conv2d_samples_split_equal_serial(padding, groups, monkeypatch):
    """im2col, the convolution's products and both gradients split the batch over threads;
    the weight gradient sums one partial per slice, so it may round differently."""
    x_np = _uniform(9 * 4 * 48 * 48, np.float32).reshape(9, 4, 48, 48)
    w_np = _uniform(6 * (4 // groups) * 9, np.float32, 1).reshape(6, 4 // groups, 3, 3)
    results = []
    for split in (False, True):
        if split:
            _split_in_three(monkeypatch)
        x = jitgrad.tensor(x_np, requires_grad=True)
        w = jitgrad.tensor(w_np, requires_grad=True)
        b = jitgrad.tensor(_uniform(6, np.float32, 2), requires_grad=True)
        y = jitgrad.nn.functional.max_pool2d(
            jitgrad.nn.functional.conv2d(x, w, b, padding=padding, groups=groups), 2)
        (y * y).sum().backward()
        results.append([t.numpy() for t in (y.detach(), x.grad, w.grad, b.grad)])
    assert nn_functional._SAMPLES.split.conv2d_forward_p.signatures  # the splits ran
    assert nn_functional._SAMPLES.split.max_pool2d_forward_p.signatures
    assert nn_kernels.conv2d_backward_input_p.signatures
    assert nn_kernels.conv2d_backward_weight_p.signatures
    (y1, gx1, gw1, gb1), (y0, gx0, gw0, gb0) = results[1], results[0]
    for got, expected in ((y1, y0), (gx1, gx0), (gb1, gb0)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(gw1, gw0, rtol=1e-5, atol=1e-4)
    assert not np.array_equal(gw1, np.zeros_like(gw1))


def test_chunks_bounds(monkeypatch):
    """Slices: none below the threshold, one per half-threshold of work, at most one per thread
    and at most ``most`` (the rows there are)."""
    monkeypatch.setitem(threads._state, "layer_ok", True)
    monkeypatch.setitem(threads._state, "threads", 4)
    monkeypatch.setattr(threads, "MIN_SPLIT", MIN_SPLIT)
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 4)
    assert threads.chunks(MIN_SPLIT - 1) == 1
    assert threads.chunks(MIN_SPLIT) == 2
    assert threads.chunks(10 * MIN_SPLIT) == 4
    assert threads.chunks(10 * MIN_SPLIT, 3) == 3
    assert threads.chunks(MIN_SPLIT - 1, 3) == 1
