"""Compare jitgrad's tensor formatting with torch's repr, character for character."""

import math

import numpy as np
import pytest

from jitgrad._tensor_str import format_tensor, set_printoptions

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
hnp = pytest.importorskip("hypothesis.extra.numpy")


def _grad_suffixes(t):
    """Return the suffixes torch prints after the dtype for ``t``."""
    if t.grad_fn is not None:
        return [f"grad_fn=<{type(t.grad_fn).__name__}>"]
    if t.requires_grad:
        return ["requires_grad=True"]
    return []


def _dtype_name(t):
    return str(t.dtype).removeprefix("torch.")


def assert_same_repr(t, device=None):
    """Assert format_tensor reproduces repr(t) with "torch." renamed."""
    expected = repr(t).replace("torch.", "jitgrad.")
    got = format_tensor(
        t.detach().numpy(), _dtype_name(t), _grad_suffixes(t), device=device
    )
    assert got == expected


@pytest.fixture(autouse=True)
def _default_printoptions():
    """Reset both libraries' print options around every test."""
    torch.set_printoptions(profile="default", sci_mode=None)
    set_printoptions(profile="default", sci_mode=None)
    yield
    torch.set_printoptions(profile="default", sci_mode=None)
    set_printoptions(profile="default", sci_mode=None)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- the 60-minute blitz autograd tutorial -------------------------------------------


def _blitz():
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    return x, y, z, out


def test_blitz_ones_requires_grad():
    x, *_ = _blitz()
    assert_same_repr(x)
    assert format_tensor(
        np.ones((2, 2), np.float32), "float32", ["requires_grad=True"]
    ) == ("tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)")


def test_blitz_add():
    _, y, _, _ = _blitz()
    assert_same_repr(y)


def test_blitz_mul():
    _, _, z, _ = _blitz()
    assert_same_repr(z)


def test_blitz_pow_expression():
    x = torch.ones(2, 2, requires_grad=True)
    assert_same_repr(3.0 * (x + 2) ** 2)


def test_blitz_mean_scalar():
    *_, out = _blitz()
    assert_same_repr(out)
    assert format_tensor(
        np.array(27.0, np.float32), "float32", ["grad_fn=<MeanBackward0>"]
    ) == ("tensor(27., grad_fn=<MeanBackward0>)")


def test_blitz_grad():
    x, *_ = _blitz()
    assert_same_repr(x.grad)
    assert format_tensor(np.full((2, 2), 4.5, np.float32), "float32", []) == (
        "tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])"
    )


def test_blitz_vector_jacobian_growth():
    x = torch.randn(3, generator=_gen(1), requires_grad=True)
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    assert_same_repr(y)


# --- plain values --------------------------------------------------------------------

_SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 4), (2, 2, 2, 3)]


@pytest.mark.parametrize("shape", _SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_randn(shape, dtype):
    assert_same_repr(torch.randn(shape, generator=_gen(len(shape)), dtype=dtype))


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]
)
def test_integers(dtype):
    low = 0 if dtype == torch.uint8 else -100
    assert_same_repr(torch.randint(low, 100, (4, 5), generator=_gen(2), dtype=dtype))


def test_large_integers():
    assert_same_repr(torch.tensor([[1, -123456789012], [3, 4]]))


def test_float16():
    assert_same_repr(torch.randn(3, 3, generator=_gen(3)).half())


def test_float_int_mode():
    assert_same_repr(torch.tensor([[1.0, -2.0, 300.0], [4.0, 5.0, 6.0]]))


@pytest.mark.parametrize(
    "values",
    [
        [1e-5, 1.0, 2.0],
        [1e9, 1.0],
        [1.0, 2000.0],
        [1e10, 2e10],
        [123456.0, 0.5],
        [1e-20, -3.5e12, 0.0],
    ],
    ids=str,
)
def test_sci_mode_triggers(values):
    assert_same_repr(torch.tensor(values))


def test_sci_mode_float64_extremes():
    assert_same_repr(torch.tensor([1e308, 1e-300, -2.5], dtype=torch.float64))


def test_nonfinite_and_negative_zero():
    assert_same_repr(torch.tensor([float("inf"), float("nan"), -0.0, 0.0]))
    assert_same_repr(torch.tensor([float("-inf"), 1.5, -0.0]))
    assert_same_repr(torch.tensor([float("nan"), 1e-8, 1.0]))
    assert_same_repr(torch.tensor([-0.0]))
    assert_same_repr(torch.tensor(float("nan")))


def test_all_zero():
    assert_same_repr(torch.zeros(2, 3))


def test_long_rows_wrap():
    assert_same_repr(torch.randn(50, generator=_gen(4)))
    assert_same_repr(torch.arange(100))
    assert_same_repr(torch.randn(3, 30, generator=_gen(5)) * 1e5)


def test_summarized_1d():
    assert_same_repr(torch.randn(2000, generator=_gen(6)))
    assert_same_repr(torch.arange(5000))


def test_summarized_nd():
    assert_same_repr(torch.randn(40, 40, generator=_gen(7)))
    assert_same_repr(torch.randn(12, 10, 11, generator=_gen(8)))
    # Only the displayed edges decide the format, so the huge middle value is ignored.
    t = torch.ones(2000)
    t[1000] = 1e20
    assert_same_repr(t)


def test_scalars():
    assert_same_repr(torch.tensor(27.0))
    assert_same_repr(torch.tensor(3.14159))
    assert_same_repr(torch.tensor(-7))
    assert_same_repr(torch.tensor(True))
    assert_same_repr(torch.tensor(1e-9, dtype=torch.float64))


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool]
)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0, 1)], ids=str)
def test_empty(shape, dtype):
    assert_same_repr(torch.zeros(shape, dtype=dtype))


def test_empty_literal():
    assert format_tensor(np.zeros((0, 3), np.float32), "float32", []) == (
        "tensor([], size=(0, 3))"
    )


def test_bool():
    assert_same_repr(torch.tensor([[True, False, True], [False, False, True]]))
    assert_same_repr(torch.tensor([True, True]))


def test_dtype_and_grad_suffixes():
    x = torch.randn(2, 3, generator=_gen(9), dtype=torch.float64, requires_grad=True)
    assert_same_repr(x)
    assert_same_repr(x * 2)


def test_suffix_forced_to_new_line():
    x = torch.randn(2, 5, generator=_gen(10), requires_grad=True)
    y = x * 1e5
    assert "\n       grad_fn" in repr(y)
    assert_same_repr(y)
    g = _gen(11)
    z = torch.randn(5, generator=g, dtype=torch.float64) * 1e5
    assert "\n       dtype" in repr(z)
    assert_same_repr(z)
    w = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True) * 1e5
    assert "\n       dtype=torch.float64, grad_fn" in repr(w)
    assert_same_repr(w)


def test_wrapping_measures_dtype_as_torch_does():
    # With "jitgrad." the dtype is 2 chars longer, yet breaks must stay where torch puts them.
    x = torch.randn(2, 3, generator=_gen(9), dtype=torch.float64, requires_grad=True)
    assert "float64, requires_grad" in repr(x)
    assert_same_repr(x)


def test_device_suffix(monkeypatch):
    # A CPU tensor prints its device when the default device differs; fake that.
    monkeypatch.setattr(torch._C, "_get_default_device", lambda: "cuda")
    assert_same_repr(torch.ones(2, 2, requires_grad=True), device="cpu")
    assert_same_repr(torch.zeros(0, 3, dtype=torch.int32), device="cpu")
    assert_same_repr(torch.arange(3, dtype=torch.float64) * 1e6, device="cpu")


def test_module_name():
    got = format_tensor(np.array([1, 2], np.int32), "int32", [], module="mylib")
    assert got == "tensor([1, 2], dtype=mylib.int32)"


# --- print options -------------------------------------------------------------------

_OPTION_CASES = [
    {"precision": 2},
    {"precision": 8},
    {"threshold": 5},
    {"edgeitems": 1, "threshold": 10},
    {"edgeitems": 0, "threshold": 10},
    {"linewidth": 40},
    {"sci_mode": True},
    {"sci_mode": False},
    {"profile": "short"},
    {"profile": "full"},
]


@pytest.mark.parametrize("options", _OPTION_CASES, ids=str)
def test_printoptions(options):
    torch.set_printoptions(**options)
    set_printoptions(**options)
    g = _gen(12)
    cases = [
        torch.randn(30, generator=g),
        torch.randn(20, 25, generator=g) * 1e3,
        torch.arange(30),
        torch.tensor([1.0, 2.0, 1e5]),
        torch.zeros(3, 4, dtype=torch.int32),
        torch.tensor(0.5),
        torch.randn(1200, generator=g),
    ]
    for t in cases:
        assert_same_repr(t)


# --- property test -------------------------------------------------------------------

_float_elements = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-1e4, max_value=1e4, width=32),
    st.integers(-1000, 1000).map(float),
    st.sampled_from([0.0, -0.0, 1e-5, 1e9, 0.5]),
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    values=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
        elements=_float_elements,
    )
)
def test_property_random_floats(values):
    t = torch.from_numpy(values.copy())
    assert_same_repr(t)


def test_no_torch_import():
    import jitgrad._tensor_str as mod

    with open(mod.__file__) as f:
        source = f.read()
    assert "import torch" not in source
    assert math.isfinite(mod.PRINT_OPTS.linewidth)
