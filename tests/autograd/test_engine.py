import gc
import threading
import weakref

import numpy as np
import pytest

import jitgrad


def test_long_chain_has_no_recursion_limit():
    x = jitgrad.ones(2, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0001 ** 20_000, rtol=1e-3)


def test_shared_subgraph_gradients_sum_once():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    z = y + y * 3
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 8 * np.array([1.0, 2.0]))


def test_gradients_accumulate_across_backward_calls():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_second_backward_through_freed_graph_raises():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_saved_values_are_freed_after_backward():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    node = y.grad_fn
    y.sum().backward()
    assert node.saved is None


@pytest.mark.parametrize("op", ["add", "sub", "mul", "tanh_of_sum", "matmul"])
def test_inputs_are_released_after_backward(op):
    # the graph keeps no input buffer once a backward freed it, read by the formula or not
    x = jitgrad.ones(100, 100, requires_grad=True)  # big enough that add's node lets go of it
    operands = [jitgrad.full((100, 100), 2.0)]
    alive = weakref.ref(operands[0])
    y = {"add": lambda o: x + o, "sub": lambda o: x - o, "mul": lambda o: x * o,
         "tanh_of_sum": lambda o: (x + o).tanh(), "matmul": lambda o: x @ o}[op](operands.pop())
    y.sum().backward()
    gc.collect()  # y keeps its graph alive: only unreachable cycles (a compile's) can go
    assert alive() is None


def test_graph_of_additions_backward_twice_with_broadcasting():
    # add/sub read no values, so (as in PyTorch) their freed graph runs again, shapes kept
    x = jitgrad.ones(5000, requires_grad=True)
    b = jitgrad.ones(2, 5000, requires_grad=True)
    z = (x + b) - b - b
    z.sum().backward()
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4.0)
    np.testing.assert_allclose(b.grad.numpy(), -2.0)


def test_non_scalar_backward_needs_gradient():
    x = jitgrad.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="implicitly created only for scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(jitgrad.tensor([1.0, 0.5, 0.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 1.0, 0.0])


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        jitgrad.ones(1).backward()


def test_retain_grad_on_non_leaf():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [4.0, 8.0])
    np.testing.assert_allclose(x.grad.numpy(), [8.0, 16.0])


def test_non_leaf_grad_is_none_without_retain():
    x = jitgrad.ones(2, requires_grad=True)
    y = x * 2
    y.sum().backward()
    assert y.grad is None and not y.is_leaf and x.is_leaf


def test_backward_from_leaf():
    x = jitgrad.tensor(3.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_create_graph_gives_second_derivative():
    x = jitgrad.tensor([0.5, -1.0, 2.0], requires_grad=True, dtype=jitgrad.float64)
    y = (x ** 3 + x.tanh()).sum()
    y.backward(create_graph=True)
    first = x.grad
    assert first.requires_grad
    np.testing.assert_allclose(first.detach().numpy(),
                               3 * x.detach().numpy() ** 2 + 1 - np.tanh(x.detach().numpy()) ** 2)
    x.grad = None
    first.sum().backward()
    t = np.tanh(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.detach().numpy() - 2 * t * (1 - t * t))


def test_unused_branch_does_not_block_scheduler():
    x = jitgrad.ones(2, requires_grad=True)
    w = jitgrad.ones(2)  # no grad: its branch contributes nothing
    y = (x * 2 + w * 3).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_no_grad_and_enable_grad():
    x = jitgrad.ones(2, requires_grad=True)
    with jitgrad.no_grad():
        assert not (x * 2).requires_grad
        with jitgrad.enable_grad():
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad


def test_grad_mode_decorators():
    x = jitgrad.ones(2, requires_grad=True)

    @jitgrad.no_grad()
    def f():
        return x * 2

    @jitgrad.set_grad_enabled(False)
    def g():
        return x * 2

    assert not f().requires_grad and not g().requires_grad
    assert jitgrad.is_grad_enabled()
    with jitgrad.set_grad_enabled(False):
        assert not jitgrad.is_grad_enabled()
    assert jitgrad.is_grad_enabled()


def test_grad_mode_is_thread_local():
    seen = []
    with jitgrad.no_grad():
        t = threading.Thread(target=lambda: seen.append(jitgrad.is_grad_enabled()))
        t.start()
        t.join()
        assert not jitgrad.is_grad_enabled()
    assert seen == [True]


def test_detach_shares_storage_and_stops_gradients():
    x = jitgrad.ones(2, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    with jitgrad.no_grad():
        d[0] = 7.0
    assert y[0].item() == 7.0
    y.detach_()
    assert y.grad_fn is None and not y.requires_grad


def test_requires_grad_rules():
    with pytest.raises(RuntimeError, match="floating point"):
        jitgrad.ones(2, dtype=jitgrad.int64, requires_grad=True)
    y = jitgrad.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)
    a = jitgrad.ones(2)
    assert a.requires_grad_() is a and a.requires_grad


def test_inplace_op_on_non_leaf_keeps_correct_gradient():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.mul_(y)  # y = (3x)^2
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 18 * np.array([1.0, 2.0]))


def test_next_functions_and_accumulate_grad():
    x = jitgrad.ones(2, requires_grad=True)
    y = x * 2 + 1
    (mul_node, _), (none, _) = y.grad_fn.next_functions
    assert y.grad_fn.name() == "AddBackward0" and mul_node.name() == "MulBackward0"
    assert none is None
    acc = mul_node.next_functions[0][0]
    assert acc.name() == "AccumulateGrad" and acc.variable is x


@pytest.mark.parametrize("make", [
    lambda x: (x * 1, lambda y: y.sin()),
    lambda x: (x * 1, lambda y: y.exp()),  # exp's backward reads its own output
    lambda x: (x.reshape(2, 2) * 1, lambda y: y @ y),
    lambda x: (x * 1, lambda y: y.softmax(0)),
    lambda x: (x * 1, lambda y: y.prod()),
])
def test_saved_tensor_modified_in_place_raises(make):
    x = jitgrad.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    y, op = make(x)
    z = op(y)
    target = z if z.grad_fn.name() in ("ExpBackward0", "SoftmaxBackward0") else y
    with jitgrad.no_grad():
        target.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_inplace_after_use_in_op_that_saves_nothing_is_fine():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    z = y + 1  # add's backward reads no values
    with jitgrad.no_grad():
        y.mul_(5)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_version_error_matches_torch_wording():
    torch = pytest.importorskip("torch")
    msgs = []
    for mod in (jitgrad, torch):
        x = mod.ones(2, requires_grad=True)
        y = x * 1
        z = y.sin()
        y.add_(1)
        with pytest.raises(RuntimeError) as err:
            z.sum().backward()
        msgs.append(str(err.value).split(":")[0])
    assert msgs[0] == msgs[1]


@pytest.mark.parametrize("program,raises", [
    ("x.sum()", False), ("(x + 1).sum()", False), ("x.mean()", False),
    ("x.reshape(3, 1).sum()", False), ("x[0]", False),
    ("(x * 2).sum()", True), ("(x * x).sum()", True), ("x.exp().sum()", True), ("x @ x", True),
])
def test_second_backward_raises_only_where_values_were_freed(program, raises):
    x = jitgrad.ones(3, requires_grad=True)  # noqa: F841  (used by eval)
    y = eval(program)
    y.backward()
    if raises:
        with pytest.raises(RuntimeError, match="second time"):
            y.backward()
    else:
        y.backward()
        np.testing.assert_allclose(x.grad.numpy().sum(), 2 * (x.grad.numpy().sum() / 2))


GRAPHS = {
    "identity_to_two_leaves": lambda x, w, v: ((x * v) + (w * v)).sum() + (x * 0 + w).sum(),
    "shared_sum_buffer": lambda x, w, v: (x * w + x * v + w).sum(),
    "add_of_leaves": lambda x, w, v: (x + w).exp().sum(),
    "same_leaf_twice": lambda x, w, v: (x + x + w).sum(),
    "retained_intermediate": lambda x, w, v: _retained(x, w),
    # views (reshape, t()) of one fresh gradient buffer reaching two leaves
    "views_of_one_buffer": lambda x, w, v: (
        (x.reshape(1, 3).t() + w.reshape(3, 1)) * v.reshape(3, 1)).sum(),
    "matmul_grad_to_two_leaves": lambda x, w, v: (v.reshape(1, 3) @ (x + w).reshape(3, 1)).sum(),
    "reduced_grad_to_two_leaves": lambda x, w, v: (
        (x + w).reshape(1, 3) * v.reshape(3, 1)).sum(),
}


def _retained(x, w):
    y = x * w + x
    y.retain_grad()
    return (y + w).sum()


@pytest.mark.parametrize("name", GRAPHS)
def test_leaf_gradients_never_share_memory(name):
    values = [np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.7, -1.1]), np.array([2.0, 1.0, 3.0])]
    x, w = (jitgrad.tensor(a, requires_grad=True) for a in values[:2])
    v = jitgrad.tensor(values[2])
    GRAPHS[name](x, w, v).backward()
    grads = [t.grad.numpy() for t in (x, w)]
    assert not np.shares_memory(grads[0], grads[1])
    before = grads[1].copy()
    x.grad.add_(100.0)  # an optimizer-style in-place update must not leak into w.grad
    np.testing.assert_array_equal(w.grad.numpy(), before)
    torch = pytest.importorskip("torch")
    tx, tw = (torch.tensor(a, requires_grad=True) for a in values[:2])
    GRAPHS[name](tx, tw, torch.tensor(values[2])).backward()
    np.testing.assert_allclose(x.grad.numpy() - 100.0, tx.grad.numpy())
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy())


@pytest.mark.parametrize("fuse", [True, False])
def test_a_leaf_used_in_a_graph_is_freed_by_del_without_the_cyclic_gc(fuse):
    """A leaf holds its AccumulateGrad node weakly, as PyTorch does: the node holds the leaf,
    so a strong reference both ways would keep a dropped leaf (and its buffers) until gc ran."""
    from jitgrad.ops import fused_backward

    before = fused_backward.threshold()
    fused_backward.set_threshold(1 if fuse else 0)
    enabled = gc.isenabled()
    gc.disable()
    try:
        x = jitgrad.ones(3, requires_grad=True)
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])
        alive = weakref.ref(x)
        del x
        assert alive() is None
    finally:
        fused_backward.set_threshold(before)
        if enabled:
            gc.enable()


def test_a_leaf_keeps_its_node_and_hooks_across_graphs():
    x = jitgrad.ones(2, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()))
    (x * 2).sum().backward()
    y = x * 3  # the first graph is gone: a hooked leaf's node must have been kept
    assert y.grad_fn.next_functions[0][0] is (x * 1).grad_fn.next_functions[0][0]
    y.sum().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(seen[1], [3.0, 3.0])
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])
