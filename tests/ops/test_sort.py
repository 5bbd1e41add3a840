import numpy as np
import pytest
from helpers import check_op

import jitgrad


@pytest.mark.parametrize("shape,dim", [((7,), 0), ((3, 5), 1), ((3, 5), 0), ((2, 3, 4), -2),
                                       ((), 0)])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_values_and_gradients(shape, dim, descending):
    def ref(x):
        if not x.ndim:
            return x
        s = np.sort(x, axis=dim)
        return np.flip(s, dim) if descending else s

    check_op(lambda m, x: x.sort(dim, descending).values, ref, [shape])


def test_sort_is_stable_and_puts_nan_last_or_first():
    x = jitgrad.tensor([3.0, np.nan, 1.0, 3.0, -np.inf, 1.0])
    ascending = x.sort()
    assert ascending.indices.tolist() == [4, 2, 5, 0, 3, 1]
    assert np.isnan(ascending.values.numpy()[-1])
    descending = x.sort(descending=True)
    assert descending.indices.tolist() == [1, 0, 3, 2, 5, 4]
    assert x.argsort(descending=True).tolist() == descending.indices.tolist()
    ints = jitgrad.tensor([[5, -2, 5, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(ints.argsort(dim=1).numpy(),
                                  np.argsort(ints.numpy(), axis=1, kind="stable"))
    assert ints.sort(0).values.dtype == jitgrad.int64
    assert jitgrad.tensor([True, False, True]).sort().indices.tolist() == [1, 0, 2]
    assert repr(jitgrad.tensor(3.0).sort()).startswith("jitgrad.return_types.sort(")


@pytest.mark.parametrize("k,dim,largest", [(2, 1, True), (1, 0, True), (3, -1, False),
                                           (0, 1, True), (5, 1, False)])
def test_topk(k, dim, largest):
    def ref(x):
        s = np.sort(x, axis=dim)
        s = np.flip(s, dim) if largest else s
        return np.take(s, np.arange(k), axis=dim)

    check_op(lambda m, x: x.topk(k, dim, largest).values, ref, [(4, 5)])
    x = jitgrad.tensor(np.random.default_rng(3).permutation(20).reshape(4, 5).astype(float))
    top = x.topk(k, dim, largest)
    np.testing.assert_array_equal(x.gather(dim % 2, top.indices).numpy(), top.values.numpy())


def test_topk_and_sort_errors():
    x = jitgrad.ones(2, 3)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        x.topk(4)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        x.topk(-1)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sort(dim=2)


def test_sort_double_backward():
    t = jitgrad.tensor(np.random.default_rng(0).uniform(-1, 1, (3, 5)), requires_grad=True)
    assert t.sort(1).values.grad_fn.name() == "SortBackward0"
    assert t.topk(2).values.grad_fn.name() == "TopkBackward0"
    assert jitgrad.autograd.gradgradcheck(lambda u: u.sort(1, True).values ** 2, (t,))
    assert jitgrad.autograd.gradgradcheck(lambda u: u.topk(2, 0).values ** 3, (t,))
