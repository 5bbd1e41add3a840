import numpy as np
import pytest
import scipy.special
from helpers import check_op

import jitgrad

np_sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731

# name: (op on a module's tensors, numpy reference, input shapes, (low, high) domain)
UNARY = {
    "neg": (lambda m, x: -x, np.negative, None),
    "abs": (lambda m, x: m.abs(x), np.abs, None),
    "exp": (lambda m, x: x.exp(), np.exp, None),
    "log": (lambda m, x: m.log(x), np.log, (0.1, 3.0)),
    "log1p": (lambda m, x: x.log1p(), np.log1p, (-0.9, 3.0)),
    "expm1": (lambda m, x: m.expm1(x), np.expm1, None),
    "erf": (lambda m, x: m.erf(x), scipy.special.erf, None),
    "sqrt": (lambda m, x: x.sqrt(), np.sqrt, (0.1, 3.0)),
    "rsqrt": (lambda m, x: x.rsqrt(), lambda x: 1 / np.sqrt(x), (0.1, 3.0)),
    "sin": (lambda m, x: m.sin(x), np.sin, None),
    "cos": (lambda m, x: x.cos(), np.cos, None),
    "tanh": (lambda m, x: m.tanh(x), np.tanh, None),
    "sigmoid": (lambda m, x: x.sigmoid(), np_sigmoid, None),
    "relu": (lambda m, x: m.relu(x), lambda x: np.maximum(x, 0), None),
    "clamp": (lambda m, x: x.clamp(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), None),
    "clamp_min": (lambda m, x: m.clamp(x, min=-0.5), lambda x: np.maximum(x, -0.5), None),
    "pow_scalar": (lambda m, x: x ** 3, lambda x: x ** 3, None),
    "rpow": (lambda m, x: 2 ** x, lambda x: 2 ** x, None),
    "pow_frac": (lambda m, x: x ** 0.5, np.sqrt, (0.1, 3.0)),
    "scalar_arith": (lambda m, x: (2 - x) * 3 / (x + 5) - 1, lambda x: (2 - x) * 3 / (x + 5) - 1,
                     None),
    "rdiv": (lambda m, x: 1 / x, lambda x: 1 / x, (0.5, 2.0)),
    "floor": (lambda m, x: x.floor(), np.floor, None),
    "ceil": (lambda m, x: m.ceil(x), np.ceil, None),
    "trunc": (lambda m, x: x.trunc(), np.trunc, None),
    "round": (lambda m, x: m.round(x * 2), lambda x: np.rint(x * 2), None),
    "remainder_scalar": (lambda m, x: x % 0.75, lambda x: np.remainder(x, 0.75), None),
}

BINARY = {
    "add": (lambda m, x, y: x + y, np.add, None),
    "sub": (lambda m, x, y: m.sub(x, y), np.subtract, None),
    "mul": (lambda m, x, y: x * y, np.multiply, None),
    "div": (lambda m, x, y: x / y, np.divide, (0.5, 2.0)),
    "pow": (lambda m, x, y: x ** y, np.power, (0.5, 2.0)),
    "remainder": (lambda m, x, y: m.remainder(x, y), np.remainder, (0.3, 2.0)),
    "maximum": (lambda m, x, y: m.maximum(x, y), np.maximum, None),
    "minimum": (lambda m, x, y: m.minimum(x, y), np.minimum, None),
    "add_alpha": (lambda m, x, y: m.add(x, y, alpha=2), lambda x, y: x + 2 * y, None),
    "where": (lambda m, x, y: m.where(x > y, x, y * 2), lambda x, y: np.where(x > y, x, y * 2),
              None),
}

SHAPE_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)),
               ((2, 3, 1, 2, 1), (1, 3, 4, 1, 5))]


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (), (2, 3, 2, 2, 2)])
def test_unary(name, shape):
    fn, ref, domain = UNARY[name]
    low, high = domain or (-2.0, 2.0)
    check_op(fn, ref, [shape], low=low, high=high)


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", SHAPE_PAIRS)
def test_binary_broadcasting(name, shapes):
    fn, ref, domain = BINARY[name]
    low, high = domain or (-2.0, 2.0)
    check_op(fn, ref, list(shapes), low=low, high=high)


def test_noncontiguous_inputs():
    check_op(lambda m, x, y: (x.t() * y).tanh(), lambda x, y: np.tanh(x.T * y), [(4, 3), (3, 4)])
    check_op(lambda m, x: x[:, ::2].exp(), lambda x: np.exp(x[:, ::2]), [(3, 6)])


def test_row_layout_kernels_against_numpy():
    """Broadcast rows, sliced rows and writes into row-strided outputs take the 'r' kernels."""
    from jitgrad.ops import elementwise

    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (6, 8))
    bias = rng.uniform(-1, 1, 8)
    cond = a > 0
    cases = [  # (jitgrad result, numpy reference)
        (jitgrad.tensor(a) + jitgrad.tensor(bias), a + bias),
        (jitgrad.tensor(bias) * jitgrad.tensor(a[:, None].repeat(2, 1)),
         bias * a[:, None].repeat(2, 1)),
        (jitgrad.tensor(a)[::2, 1:7] - jitgrad.tensor(bias[1:7]), a[::2, 1:7] - bias[1:7]),
        (jitgrad.where(jitgrad.tensor(cond), jitgrad.tensor(a), jitgrad.tensor(bias)),
         np.where(cond, a, bias)),
    ]
    for got, expected in cases:
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-15)
    for _ in range(2):  # the second call takes apply's inline broadcast path (plan cached)
        np.testing.assert_allclose((jitgrad.tensor(a) * jitgrad.tensor(bias[None])).numpy(),
                                   a * bias, rtol=1e-15)
    t = jitgrad.tensor(a.copy())
    with jitgrad.no_grad():
        for _ in range(2):  # in place: general path, then the inline one
            t.add_(jitgrad.tensor(bias))
        t[:, 1:7].mul_(jitgrad.tensor(bias[1:7]))  # a strided target: the general path
    expected = a + 2 * bias
    expected[:, 1:7] *= bias[1:7]
    np.testing.assert_allclose(t.numpy(), expected, rtol=1e-15)
    assert t._version[0] == 3
    out = np.zeros((6, 10))
    elementwise.copy_into(out[:, 1:9], bias)  # a row-strided destination
    np.testing.assert_array_equal(out[:, 1:9], np.broadcast_to(bias, (6, 8)))
    assert not out[:, [0, 9]].any()
    rows = elementwise._rows([a[::2, 1:7], bias[1:7], np.empty((3, 6))], (3, 6))
    assert rows is not None and rows[3] == [16, 0, 6]


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons(op):
    a = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    b = np.array([3, 2, 1], np.float32)
    out = getattr(jitgrad, op)(jitgrad.tensor(a), jitgrad.tensor(b))
    assert out.dtype == jitgrad.bool
    assert not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), getattr(np, {"eq": "equal", "ne": "not_equal",
                                  "lt": "less", "le": "less_equal", "gt": "greater",
                                  "ge": "greater_equal"}[op])(a, b))


def test_all_any():
    t = jitgrad.tensor([[True, False], [True, True]])
    assert t.all().item() is False and t.any().item() is True
    np.testing.assert_array_equal(t.all(dim=1).numpy(), [False, True])
    np.testing.assert_array_equal(jitgrad.tensor([[0.0, 1.0], [2.0, 3.0]]).any(0).numpy(),
                                  [True, True])


@pytest.mark.parametrize("a_dtype,b,expected", [
    (jitgrad.float32, 2.5, jitgrad.float32),
    (jitgrad.int64, 2.5, jitgrad.float32),
    (jitgrad.int64, 2, jitgrad.int64),
    (jitgrad.int32, 2, jitgrad.int32),
    (jitgrad.bool, 2, jitgrad.int64),
    (jitgrad.float64, 2, jitgrad.float64),
])
def test_scalar_promotion(a_dtype, b, expected):
    a = jitgrad.ones(3, dtype=a_dtype)
    assert (a * b).dtype == expected
    assert (b + a).dtype == expected


def test_tensor_promotion():
    f32, f64, i64 = jitgrad.ones(2), jitgrad.ones(2, dtype=jitgrad.float64), jitgrad.ones(
        2, dtype=jitgrad.int64)
    assert (f32 + f64).dtype == jitgrad.float64
    assert (f32 + i64).dtype == jitgrad.float32
    assert (i64 / i64).dtype == jitgrad.float32
    assert (f32 + jitgrad.tensor(1.0, dtype=jitgrad.float64)).dtype == jitgrad.float32
    assert (i64 + jitgrad.tensor(1.5, dtype=jitgrad.float64)).dtype == jitgrad.float64


def test_mixed_precision_gradient_dtype():
    a = jitgrad.ones(3, requires_grad=True)
    b = jitgrad.ones(3, dtype=jitgrad.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == jitgrad.float32 and b.grad.dtype == jitgrad.float64


def test_integer_arithmetic_is_exact():
    a = jitgrad.tensor([2**40, 3, -7])
    np.testing.assert_array_equal((a * 3 + 1).numpy(), np.array([2**40, 3, -7]) * 3 + 1)
    np.testing.assert_array_equal(abs(a).numpy(), [2**40, 3, 7])


@pytest.mark.parametrize("program", [lambda a: a ** -1, lambda a: a.pow_(-2),
                                     lambda a: jitgrad.pow(a.bool(), -1)])
def test_integer_tensor_to_a_negative_integer_raises_like_torch(program):
    a = jitgrad.tensor([2, 3])
    with pytest.raises(RuntimeError, match="Integers to negative integer powers are not allowed"):
        program(a)
    assert a.tolist() == [2, 3]


def test_integer_powers_that_torch_computes():
    a = jitgrad.tensor([2, 3])
    # a tensor exponent is not checked (0 where the power is a fraction); a float one promotes
    assert (a ** jitgrad.tensor([-1, 1])).tolist() == [0, 3]
    assert (2 ** jitgrad.tensor([-1, 2])).tolist() == [0, 4]
    np.testing.assert_allclose((a ** -1.0).numpy(), [0.5, 1 / 3], rtol=1e-6)
    assert (a ** 3).tolist() == [8, 27]


@pytest.mark.parametrize("name", ["log1p", "expm1", "erf"])
def test_log1p_expm1_erf_double_backward_and_in_place(name):
    x = jitgrad.tensor([-0.75, -1e-3, 0.0, 2e-7, 1.5], dtype=jitgrad.float64, requires_grad=True)
    assert jitgrad.autograd.gradgradcheck(getattr(jitgrad, name), (x,))
    y = x.detach().clone()
    getattr(y, name + "_")()
    np.testing.assert_array_equal(y.numpy(), getattr(jitgrad, name)(x).detach().numpy())


# float and integer % and // with every sign: Python's results (the divisor's sign), as PyTorch
_SIGNED = ([-7.5, -7.0, -1.0, 0.0, 1.5, 5.0, 7.0], [2.0, -2.0, 3.0, -3.0, 0.5, 3.0, -0.75])


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_remainder_and_floor_divide_signs(dtype):
    a, b = (np.array(v, dtype) for v in _SIGNED)
    if dtype.startswith("int"):
        b = np.array([2, -2, 3, -3, 4, 3, -1], dtype)
    x, y = jitgrad.tensor(a), jitgrad.tensor(b)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal((x % y).numpy(), np.remainder(a, b))
        np.testing.assert_array_equal((x // y).numpy(), np.floor_divide(a, b))
        np.testing.assert_array_equal((7 % y).numpy(), np.remainder(a.dtype.type(7), b))
        np.testing.assert_array_equal((x // -2).numpy(), np.floor_divide(a, a.dtype.type(-2)))
    assert (x % y).dtype == x.dtype == (x // y).dtype


def test_float_division_by_zero_gives_inf_and_nan():
    x = jitgrad.tensor([1.0, -1.0, 0.0, 2.5])
    np.testing.assert_array_equal((x // 0.0).numpy(), [np.inf, -np.inf, np.nan, np.inf])
    assert np.isnan((x % 0.0).numpy()).all()


@pytest.mark.parametrize("program", [lambda a, z: a % z, lambda a, z: a // z,
                                     lambda a, z: a % 0, lambda a, z: a.floor_divide_(z),
                                     lambda a, z: 3 % z])
def test_integer_division_by_zero_raises_like_torch(program):
    a, z = jitgrad.tensor([5, 6]), jitgrad.tensor([1, 0])
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        program(a, z)
    assert a.tolist() == [5, 6]


def test_bool_remainder_is_not_implemented_like_torch():
    with pytest.raises(NotImplementedError, match="not implemented for 'Bool'"):
        jitgrad.tensor([True]) % jitgrad.tensor([True])
    assert (jitgrad.tensor([True, False]) % 2).tolist() == [1, 0]


def test_remainder_gradients_and_floor_divide_has_none():
    x = jitgrad.tensor([5.0, -3.0, 7.5], dtype=jitgrad.float64, requires_grad=True)
    y = jitgrad.tensor([2.0, 2.0, -2.0], dtype=jitgrad.float64, requires_grad=True)
    assert jitgrad.autograd.gradcheck(jitgrad.remainder, (x, y))
    assert jitgrad.autograd.gradcheck(lambda v: 2.5 % v, (y,))  # torch: not implemented
    assert (x % y).grad_fn.name() == "RemainderBackward1"
    assert (x % 2).grad_fn.name() == "RemainderBackward0"
    assert not (x // y).requires_grad
    np.testing.assert_array_equal((x // y).numpy(), [2, -2, -4])


def test_rounding_keeps_integers_and_rounds_half_to_even():
    i = jitgrad.tensor([-3, 4])
    for op in ("floor", "ceil", "trunc", "round"):
        out = getattr(i, op)()
        assert out.tolist() == [-3, 4] and out.dtype == jitgrad.int64 and out is not i
    assert jitgrad.round(jitgrad.tensor([0.5, 1.5, 2.5, -0.5, -2.5])).tolist() == [0, 2, 2, 0, -2]
    np.testing.assert_allclose(jitgrad.tensor([1.2345, -2.5551]).round(decimals=2).numpy(),
                               [1.23, -2.56], rtol=1e-6)
    y = jitgrad.tensor([1.7, -1.2])
    y.floor_()
    assert y.tolist() == [1.0, -2.0]
    x = jitgrad.tensor([np.inf, -np.inf, np.nan, -0.0, 2.0**60 + 1])
    for op in (np.floor, np.ceil, np.trunc, np.rint):
        ours = getattr(jitgrad, {np.rint: "round"}.get(op, op.__name__))(x).numpy()
        np.testing.assert_array_equal(ours, op(x.numpy()))
        assert np.signbit(ours[3])


def test_nan_propagates_through_maximum_and_relu():
    x = jitgrad.tensor([float("nan"), 1.0])
    assert np.isnan(jitgrad.maximum(x, jitgrad.tensor([0.0, 2.0])).numpy()[0])
    assert np.isnan(x.relu().numpy()[0])  # torch.relu(nan) is nan
    assert np.isnan(x.clamp(0, 1).numpy()[0])


def test_division_by_zero_gives_inf_not_error():
    out = jitgrad.tensor([1.0, -1.0, 0.0]) / 0
    assert out.numpy()[0] == np.inf and out.numpy()[1] == -np.inf and np.isnan(out.numpy()[2])


def test_large_tensor_matches_numpy():
    x = np.random.default_rng(0).standard_normal(1_000_003).astype(np.float32)
    out = (jitgrad.from_numpy(x) * 0.5 + 1).tanh().numpy()
    np.testing.assert_allclose(out, np.tanh(x * np.float32(0.5) + 1), rtol=1e-6, atol=1e-6)


def test_pow_gradient_at_a_zero_exponent_is_zero_like_torch():
    x = jitgrad.tensor([0.0, 1.5, -2.0], requires_grad=True)
    y = jitgrad.tensor([0.0, 0.0, 2.0], requires_grad=True)
    (x ** y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, -4.0])
    z = jitgrad.tensor([0.0, 1.5], requires_grad=True)
    (z ** 0).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [0.0, 0.0])  # not 0 * inf = nan at 0


def _operand_cases():
    rng = np.random.default_rng(3)

    def t(shape=(3, 4), dtype=np.float32, grad=True):
        return jitgrad.tensor(rng.uniform(0.5, 2, shape).astype(dtype), requires_grad=grad)

    shared = t()
    return {
        "int": (t(), 2), "float": (t(), 0.5), "bool": (t(), True),
        "tensor": (t(), t()), "same tensor": (shared, shared),
        "second needs grad": (t(grad=False), t()), "neither needs grad": (t(grad=False), 3),
        "int64 tensor": (t(), t(dtype=np.int64, grad=False)),
        "float64 tensor": (t(), t(dtype=np.float64)),
        "0-d": (t(()), t(())), "broadcast": (t(), t((4,))),
        "transposed": (jitgrad.from_numpy(t((4, 3)).detach().numpy().T).requires_grad_(), t()),
        "parameter": (t(), jitgrad.nn.Parameter(t())),
        "int tensors": (t(dtype=np.int64, grad=False), 3),
    }


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("case", list(_operand_cases()))
def test_operator_fast_path_matches_apply(op, case):
    """``x OP y`` (``apply_binary``'s shortcut) gives ``apply``'s values, bits, node and grads."""
    from jitgrad.ops import elementwise

    def run(use_operator):
        a, b = _operand_cases()[case]
        if use_operator:
            out = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
        else:
            out = elementwise.apply(elementwise.SPECS[op], (a, b))
        grads = []
        if out.requires_grad:
            out.sum().backward()
            grads = [x.grad for x in (a, b) if isinstance(x, jitgrad.Tensor) and x.requires_grad]
        return out, grads

    (fast, fast_grads), (ref, ref_grads) = run(True), run(False)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape
    np.testing.assert_array_equal(fast.detach().numpy(), ref.detach().numpy())
    assert type(fast.grad_fn) is type(ref.grad_fn)
    assert len(fast_grads) == len(ref_grads)
    for g, r in zip(fast_grads, ref_grads):
        np.testing.assert_array_equal(g.numpy(), r.numpy())
    if case == "same tensor" and op == "mul":  # y * y: d/dy = 2y
        a, _ = _operand_cases()[case]
        np.testing.assert_allclose(fast_grads[0].numpy(), 2 * a.detach().numpy(), rtol=1e-6)
