"""``gradcheck`` and ``gradgradcheck``: analytical gradients against float64 finite differences.

Both follow ``torch.autograd.gradcheck`` (slow mode): the numerical Jacobian comes from central
differences of the function with each input element perturbed in place, the analytical one from
one ``autograd.grad`` call per output element with a unit ``grad_outputs``.
"""

import warnings

import numpy as np

from jitgrad.autograd.backward import grad as _grad
from jitgrad.ops import _storage
from jitgrad.size import CPU

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(RuntimeError):
    """Raised by ``gradcheck`` and ``gradgradcheck`` when a check fails."""


def _tensor_cls():
    from jitgrad.tensor import Tensor

    return Tensor


def _as_tuple(x):
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _differentiable_outputs(out):
    Tensor = _tensor_cls()
    return tuple(o for o in _as_tuple(out) if isinstance(o, Tensor) and o.requires_grad)


def _float_outputs(out):
    """The floating-point tensors among ``out``: those a numerical Jacobian is taken of."""
    Tensor = _tensor_cls()
    return tuple(o for o in _as_tuple(out) if isinstance(o, Tensor) and o.is_floating_point())


def _check_inputs(inputs):
    Tensor = _tensor_cls()
    any_grad = False
    for idx, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        any_grad = True
        if t._data.dtype != np.float64:
            warnings.warn(
                f"Input #{idx} requires gradient and is not a double precision floating point. "
                "This check will likely fail if all the inputs are not of double precision "
                "floating point.", UserWarning, stacklevel=3)
        if any(s == 0 and n > 1 for s, n in zip(t._data.strides, t._data.shape)):
            raise RuntimeError(
                f"The {idx}th input has a dimension with stride 0. gradcheck only supports inputs "
                "that are non-overlapping to be able to compute the numerical gradients correctly. "
                "You should call .contiguous on the input before passing it to gradcheck.")
    if not any_grad:
        raise ValueError(
            "gradcheck expects at least one input tensor to require gradient, but none of the "
            "them have requires_grad=True.")


def _host(out):
    """float64 host copies of the floating-point outputs of one evaluation."""
    return [np.array(_storage.move(o._data, CPU), dtype=np.float64, copy=True)
            for o in _float_outputs(out)]


def _beside(host, data):
    """The host array ``host`` on the device of ``data`` (CUDA inputs are checked on CUDA)."""
    return _storage.move(host, _storage.device_of(data))


def _set(data, idx, value):
    """Write one element in place, on whichever device ``data`` lives."""
    if _storage.on_cpu(data):
        data[idx] = value
    else:
        from jitgrad.ops.elementwise import fill

        fill(data[idx], value)


def _numerical_jacobian(func, inputs, diff_idx, eps):
    """Per input requiring grad, per float output: a (input numel, output numel) float64 array."""
    # NOTE: the perturbation writes the numpy buffer directly, outside autograd (no version
    # bump); ``func`` runs with grad mode as the caller has it, since gradgradcheck's ``func``
    # differentiates inside.
    jacobians = []
    base = _host(func(*inputs))
    for i in diff_idx:
        data = inputs[i]._data
        cols = [np.zeros((data.size, o.size)) for o in base]
        for k, idx in enumerate(np.ndindex(*data.shape)):
            orig = _storage.move(data[idx + (...,)], CPU).item()  # Ellipsis: a 0-d array
            _set(data, idx, orig - eps)
            lo = _host(func(*inputs))
            _set(data, idx, orig + eps)
            hi = _host(func(*inputs))
            _set(data, idx, orig)
            for col, a, b in zip(cols, lo, hi):
                col[k] = ((b - a) / (2 * eps)).reshape(-1)
        jacobians.append(cols)
    return jacobians


def _analytical_jacobian(outputs, inputs, diff_idx, check_grad_dtypes):
    """Same layout as the numerical Jacobian, one ``autograd.grad`` per output element."""
    Tensor = _tensor_cls()
    diff_inputs = tuple(inputs[i] for i in diff_idx)
    jacobians = [[np.zeros((t._data.size, o._data.size)) for o in outputs] for t in diff_inputs]
    for j, out in enumerate(outputs):
        for k in range(out._data.size):
            unit = np.zeros(out._data.size, out._data.dtype)
            unit[k] = 1
            grads = _grad(out, diff_inputs,
                          Tensor._wrap(_beside(unit.reshape(out._data.shape), out._data)),
                          retain_graph=True, allow_unused=True)
            for n, (g, t) in enumerate(zip(grads, diff_inputs)):
                if g is None:
                    continue
                if g._data.shape != t._data.shape:
                    raise GradcheckError("Analytical gradient has incorrect size")
                if check_grad_dtypes and g._data.dtype != t._data.dtype:
                    raise GradcheckError("Gradient has dtype mismatch")
                jacobians[n][j][:, k] = np.asarray(_storage.move(g._data, CPU),
                                                   dtype=np.float64).reshape(-1)
    return jacobians


def _show(a):
    return repr(_tensor_cls()._wrap(a))


def _check_undefined_grad(outputs, inputs, diff_idx):
    """Backward with all-zero ``grad_outputs`` (jitgrad's undefined gradients) must give zeros."""
    from jitgrad.ops.creation import zeros_like

    diff_inputs = tuple(inputs[i] for i in diff_idx)
    grads = _grad(outputs, diff_inputs, tuple(zeros_like(o) for o in outputs),
                  retain_graph=True, allow_unused=True)
    for g in grads:
        if g is not None and np.any(_storage.move(g._data, CPU) != 0):
            raise GradcheckError(
                "Expected backward function to handle undefined output grads: zero grad_outputs "
                "gave a nonzero gradient.")


def _slow_gradcheck(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                    check_grad_dtypes):
    Tensor = _tensor_cls()
    diff_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    func_out = func(*inputs)
    outputs = _differentiable_outputs(func_out)
    if not outputs:
        for per_input in _numerical_jacobian(func, inputs, diff_idx, eps):
            for n in per_input:
                if np.any(np.abs(n) > 0):
                    raise GradcheckError("Numerical gradient for function expected to be zero")
        return True
    diff_positions = [k for k, o in enumerate(_float_outputs(func_out)) if o.requires_grad]
    numerical = _numerical_jacobian(func, inputs, diff_idx, eps)
    analytical = _analytical_jacobian(outputs, inputs, diff_idx, check_grad_dtypes)
    for j, pos in enumerate(diff_positions):
        for i, (num_i, ana_i) in enumerate(zip(numerical, analytical)):
            n, a = num_i[pos], ana_i[j]
            if not np.all(np.abs(a - n) <= atol + rtol * np.abs(n)):
                raise GradcheckError(
                    f"Jacobian mismatch for output {j:d} with respect to input {i:d},\n"
                    f"numerical:{_show(n)}\nanalytical:{_show(a)}\n")
    again = _analytical_jacobian(outputs, inputs, diff_idx, check_grad_dtypes)
    for first, second in zip(analytical, again):
        for a, b in zip(first, second):
            if not np.all(np.abs(a - b) <= nondet_tol):
                raise GradcheckError(
                    "Backward is not reentrant, i.e., running backward with same input and "
                    "grad_output multiple times gives different values, although analytical "
                    "gradient matches numerical gradient. The tolerance for nondeterminism was "
                    f"{nondet_tol}.")
    if check_undefined_grad:
        _check_undefined_grad(outputs, inputs, diff_idx)
    return True


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, check_batched_forward_grad=False, check_forward_ad=False,
              check_backward_ad=True, fast_mode=False, masked=None):
    """Check the gradients of ``func`` at ``inputs`` against float64 central differences.

    An analytical Jacobian entry ``a`` passes against its numerical estimate ``n`` when
    ``|a - n| <= atol + rtol * |n|``. ``fast_mode`` runs the same (slow, exact) check; forward-mode
    and batched checks are not available in jitgrad.

    Args:
        func: takes the inputs, returns a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of arguments; Tensors with ``requires_grad`` are checked.
        eps: the finite-difference step.
        atol, rtol: tolerances of the comparison.
        raise_exception: raise ``GradcheckError`` on failure (else return False).
        nondet_tol: how far two backward passes with the same inputs may differ.
        check_undefined_grad: check that zero ``grad_outputs`` give zero gradients.

    Returns:
        True when every check passes.

    Example::

        >>> import jitgrad
        >>> from jitgrad.autograd.gradcheck import gradcheck
        >>> x = jitgrad.tensor([0.3, -0.7], dtype=jitgrad.float64, requires_grad=True)
        >>> gradcheck(jitgrad.tanh, (x,))
        True
    """
    if check_forward_ad or check_batched_grad or check_batched_forward_grad:
        raise NotImplementedError(
            "jitgrad's gradcheck supports only backward-mode checks (check_forward_ad, "
            "check_batched_grad and check_batched_forward_grad must be False)")
    if not check_backward_ad:
        raise ValueError("Expected at least one of check_forward_ad or check_backward_ad to be "
                         "True")
    inputs = _as_tuple(inputs)
    _check_inputs(inputs)
    try:
        return _slow_gradcheck(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                               check_grad_dtypes)
    except GradcheckError:
        if raise_exception:
            raise
        return False


def _random_grad_output(o, non_contiguous):
    from jitgrad.ops.creation import generator

    Tensor = _tensor_cls()
    dtype = o._data.dtype if o._data.dtype.kind == "f" else np.float64
    values = generator().uniform(-1.0, 1.0, o._data.shape)
    if non_contiguous:
        holder = np.zeros(o._data.shape + (2,), dtype)
        holder[..., 0] = values
        data = _beside(holder, o._data)[..., 0]
    else:
        data = _beside(values.astype(dtype), o._data)
    return Tensor._wrap(data).requires_grad_()


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False,
                  masked=False):
    """Check the second derivatives of ``func``: ``gradcheck`` of its first-order gradients.

    The gradients of ``func`` with respect to its inputs (weighted by ``grad_outputs``, random in
    [-1, 1) when omitted) are checked with respect to the inputs and to ``grad_outputs``.

    Example::

        >>> import jitgrad
        >>> from jitgrad.autograd.gradcheck import gradgradcheck
        >>> x = jitgrad.tensor([0.3, -0.7], dtype=jitgrad.float64, requires_grad=True)
        >>> gradgradcheck(jitgrad.tanh, (x,))
        True
    """
    if check_fwd_over_rev:
        raise NotImplementedError("jitgrad has no forward-mode AD: check_fwd_over_rev must be "
                                  "False")
    if not check_rev_over_rev:
        return True
    inputs = _as_tuple(inputs)
    if grad_outputs is None:
        outputs = _differentiable_outputs(func(*inputs))
        grad_outputs = tuple(_random_grad_output(o, gen_non_contig_grad_outputs)
                             for o in outputs)
    else:
        grad_outputs = _as_tuple(grad_outputs)
    n_out = len(grad_outputs)
    Tensor = _tensor_cls()
    diff_input_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]

    def first_order(*args):
        input_args = args[:len(args) - n_out]
        outputs = _differentiable_outputs(func(*input_args))
        diff_inputs = tuple(input_args[i] for i in diff_input_idx)
        grads = _grad(outputs, diff_inputs, args[len(args) - n_out:], create_graph=True,
                      allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_order, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad,
                     check_grad_dtypes=check_grad_dtypes, fast_mode=fast_mode)
