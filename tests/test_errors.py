"""Bad input raises PyTorch's exception type with a clear message, before any kernel runs."""

import numpy as np
import pytest

import jitgrad


def _inputs(m):
    """Fresh inputs: float leaves with a .grad already set, an int tensor, a non-leaf."""
    rng = np.random.default_rng(0)
    x = m.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    y = m.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    x.grad = m.ones(2, 3, dtype=m.float64)
    y.grad = m.ones(4, 5, dtype=m.float64)
    return {"m": m, "x": x, "y": y, "i": m.tensor([[1, 2, 3], [4, 5, 6]]),
            "f": m.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), "np": np}


def _second_backward(env):
    z = (env["x"] * env["x"]).sum()
    z.backward()
    env["x"].grad = env["m"].ones(2, 3, dtype=env["m"].float64)  # the snapshot value again
    z.backward()


# name: (statement on _inputs(), exception type, message pattern naming what was wrong)
CASES = {
    "add_broadcast": ("x + y", RuntimeError, (r"size of tensor a \(3\) must match the size of "
                      r"tensor b \(5\) at non-singleton dimension 1")),
    "mul_broadcast": ("x * y", RuntimeError, r"\(3\).*\(5\).*dimension 1"),
    "matmul_shape": ("x @ y", RuntimeError, r"2x3 and 4x5"),
    "matmul_vec_shape": ("x @ m.ones(4, dtype=m.float64)", RuntimeError, r"\(2x3\).*\(4\)"),
    "matmul_dtype": ("x @ f.t()", RuntimeError, r"same dtype.*double.*float|float.*double"),
    "bmm_batch": ("m.ones(2, 3, 4) @ m.ones(3, 4, 2)", RuntimeError, r"\(2\).*\(3\)"),
    "cat_sizes": ("m.cat([x, y])", RuntimeError, (r"Sizes of tensors must match except in "
                  r"dimension 0. Expected size 3 but got size 5 for tensor number 1")),
    "cat_ndim": ("m.cat([x, x[0]])", RuntimeError, r"same number of dimensions: got 2 and 1"),
    "view_shape": ("x.view(4, 2)", RuntimeError, (r"shape '\[4, 2\]' is invalid for input of "
                   r"size 6")),
    "reshape_shape": ("x.reshape(-1, 4)", RuntimeError, (r"'\[-1, 4\]' is invalid for input of "
                      r"size 6")),
    "reshape_two_unknown": ("x.reshape(-1, -1)", RuntimeError, r"only one dimension"),
    "view_noncontiguous": ("x.t().view(6)", RuntimeError, r"view size is not compatible"),
    "expand_size": ("x.expand(4, 3)", RuntimeError, (r"expanded size of the tensor \(4\) must "
                    r"match the existing size \(2\)")),
    "sum_dim": ("x.sum(2)", IndexError, (r"Dimension out of range \(expected to be in range of "
                r"\[-2, 1\], but got 2\)")),
    "sum_dims": ("x.sum((0, -3))", IndexError, r"got -3"),
    "softmax_dim": ("x.softmax(-3)", IndexError, r"range of \[-2, 1\], but got -3"),
    "transpose_dim": ("x.transpose(0, 5)", IndexError, r"but got 5"),
    "squeeze_dim": ("x.squeeze(2)", IndexError, r"but got 2"),
    "unsqueeze_dim": ("x.unsqueeze(4)", IndexError, r"\[-3, 2\], but got 4"),
    "max_dim": ("x.max(2)", IndexError, r"but got 2"),
    "narrow_past_end": ("x.narrow(1, 2, 2)", RuntimeError, (r"start \(2\) \+ length \(2\) "
                        r"exceeds dimension size \(3\)")),
    "index_int": ("x[2]", IndexError, r"index 2 is out of bounds for dimension 0 with size 2"),
    "index_int_dim1": ("x[0, -4]", IndexError, (r"index -4 is out of bounds for dimension 1 with "
                       r"size 3")),
    "index_too_many": ("x[0, 0, 0]", IndexError, r"too many indices for tensor of dimension 2"),
    "index_tensor": ("x[m.tensor([0, 2])]", IndexError, (r"index 2 is out of bounds for "
                     r"dimension 0 with size 2")),
    "index_list_dim1": ("x[:, [0, 3]]", IndexError, (r"index 3 is out of bounds for dimension 1 "
                        r"with size 3|out of bounds for dimension 0 with size 3")),
    "index_float_tensor": ("x[m.tensor([0.0, 1.0])]", IndexError, (r"tensors used as indices "
                           r"must be long, int, byte or bool tensors")),
    "index_mask_shape": ("x[m.tensor([True, False, True])]", IndexError, r"mask \[3\].*\[2, 3\]"),
    "setitem_index": ("x.detach()[5] = 1.0", IndexError, r"index 5 is out of bounds"),
    "setitem_value_shape": ("x.detach()[[0, 1]] = m.ones(3, 3, dtype=m.float64)", RuntimeError,
                            (r"shape mismatch: value tensor of shape \[3, 3\] cannot be broadcast "
                            r"to indexing result of shape \[2, 3\]")),
    "gather_index": ("x.gather(1, m.tensor([[0, 3]]))", RuntimeError,
                     r"index 3 is out of bounds for dimension 1 with size 3"),
    "int_requires_grad": ("i.requires_grad_()", RuntimeError, (r"(?i)only Tensors of floating "
                          r"point")),
    "int_tensor_requires_grad": ("m.tensor([1, 2], requires_grad=True)", RuntimeError,
                                 r"(?i)only Tensors of floating point"),
    "backward_nonscalar": ("(x * 2).backward()", RuntimeError, (r"grad can be implicitly created "
                           r"only for scalar outputs")),
    "backward_twice": ("_second_backward(locals())", RuntimeError, (r"Trying to backward through "
                       r"the graph a second time")),
    "backward_no_grad": ("f.sum().backward()", RuntimeError, r"does not require grad"),
    "inplace_leaf": ("x.add_(1.0)", RuntimeError, (r"a leaf Variable that requires grad is being "
                     r"used in an in-place operation")),
    "inplace_leaf_mul": ("x.mul_(2.0)", RuntimeError, r"leaf Variable that requires grad"),
    "inplace_leaf_setitem": ("x.__setitem__(0, 1.0)", RuntimeError, r"leaf Variable"),
    "inplace_broadcast": ("f.add_(m.ones(2, 2, 3))", RuntimeError, (r"output with shape \[2, 3\] "
                          r"doesn't match the broadcast shape \[2, 2, 3\]")),
    "int_iadd_float": ("i.__iadd__(1.5)", RuntimeError, (r"result type Float can't be cast to the "
                       r"desired output type Long")),
    "int_iadd_float_tensor": ("i.add_(f)", RuntimeError, (r"Float can't be cast to the desired "
                              r"output type Long")),
    "operand_str": ("x + 'a'", TypeError, r"unsupported operand|str"),
    # Python falls back to list * int, which calls __index__: torch raises the same TypeError
    "operand_list_mul": ("x * [1, 2]", TypeError, r"converted to an index"),
    "operand_none_matmul": ("x @ None", TypeError, r"unsupported operand|NoneType"),
}


def _run(m, stmt):
    env = _inputs(m)
    env["_second_backward"] = _second_backward
    before = {k: (v.detach().numpy().copy(), None if v.grad is None else v.grad.numpy().copy())
              for k, v in env.items() if isinstance(v, m.Tensor)}
    try:
        exec(stmt, env)  # noqa: S102 - the statement under test
    except Exception as err:  # noqa: BLE001 - the caller checks the type
        caught = err
    else:
        caught = None
    for k, (value, grad) in before.items():
        t = env[k]
        np.testing.assert_array_equal(t.detach().numpy(), value, err_msg=f"{k} changed")
        if grad is None:
            assert t.grad is None, f"{k}.grad appeared"
        else:
            np.testing.assert_array_equal(t.grad.numpy(), grad, err_msg=f"{k}.grad changed")
    return caught


# PyTorch compares sizes from the last dim; jitgrad.ops._checks.broadcast_shapes from the first
@pytest.mark.parametrize("name", CASES)
def test_error(name):
    stmt, exc_type, pattern = CASES[name]
    err = _run(jitgrad, stmt)
    assert err is not None, f"{stmt} did not raise"
    assert "numba" not in type(err).__module__, f"a numba error reached the user: {err!r}"
    assert type(err) is exc_type or isinstance(err, exc_type), repr(err)
    import re

    assert re.search(pattern, str(err)), f"{str(err)!r} does not match {pattern!r}"


@pytest.mark.parametrize("name", CASES)
def test_error_type_matches_torch(name):
    torch = pytest.importorskip("torch")
    stmt, exc_type, _ = CASES[name]
    err = _run(torch, stmt)
    assert err is not None, f"torch does not raise on {stmt}"
    assert isinstance(err, exc_type), f"torch raises {err!r}"


def test_unchanged_after_error_in_backward_with_create_graph():
    x = jitgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        y.backward(jitgrad.ones(3))
    assert x.grad is None
    y.backward(jitgrad.ones(2))  # the graph is intact after the failed call
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])
