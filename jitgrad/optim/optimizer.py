"""``Optimizer``: parameter groups, per-parameter state, zero_grad and state dicts."""

import inspect
from collections import defaultdict

import numpy as np

import jitgrad
from jitgrad.backends import Family
from jitgrad.backends.cpu import codegen, optim_kernels
from jitgrad.ops._storage import check_same_device
from jitgrad.tensor import Tensor

_KERNELS = Family("optim_kernels")

__all__ = ["Optimizer", "required"]


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with a ``"params"`` key
            and per-group option overrides.
        defaults: option values used by groups that do not set them.
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``"params"``) with its own options."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            param_group["params"] = list(params)
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in param_group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all optimized parameters (to None by default)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    p.grad.zero_()

    def step(self, closure=None):
        raise NotImplementedError

    @staticmethod
    def _update(kernel, data, *args):
        """``optim_kernels.<kernel>(data, *args)`` on ``data``'s device; a long CPU update runs
        on threads, every buffer cut into the same slices (``_SPLIT``)."""
        _SPLIT(kernel, data, *args)

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with jitgrad.enable_grad():
            return closure()

    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Parameters are replaced by their index in the order of the groups, as PyTorch does.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and state from ``state_dict`` (tensors are copied)."""
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        id_map = {}
        for g, s in zip(groups, saved_groups):
            id_map.update(zip(s["params"], g["params"]))
        self.state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                self.state[param] = {k: _cast_state(k, v, param) for k, v in value.items()}
        self.param_groups = [{**s, "params": g["params"]} for g, s in zip(groups, saved_groups)]


def _cast_state(key, value, param):
    """A copy of a state value on the parameter's device, floating tensors in its dtype.

    As PyTorch, ``"step"`` is copied as it is (it stays on its device: a host counter).
    """
    if not isinstance(value, Tensor):
        return value
    value = value.detach()
    if key == "step":
        return value.clone()
    dtype = param.dtype if param.is_floating_point() and value.is_floating_point() else None
    return value.to(dtype=dtype, device=param.device, copy=True)


def _buffer_params(name, n_arrays):
    """A kernel's buffer parameters, the param itself last: its length is the loop's (a state
    buffer may be empty)."""
    params = list(inspect.signature(getattr(optim_kernels, name).py_func).parameters)
    return params[1:n_arrays] + params[:1]


_SPLIT = codegen.SplitKernels(_KERNELS, {
    name: _buffer_params(name, n) for name, n in optim_kernels.ARRAYS.items()})


def _buffer(t):
    """The flat buffer (numpy or CUDA DeviceArray) a kernel updates in place: the tensor's own
    memory, on the tensor's device."""
    return t._data.reshape(-1)


def _empty(data):
    """A size-0 stand-in for a state buffer a kernel leaves unused (valid on either device)."""
    return np.empty(0, data.dtype)


def _grads_and_params(group):
    """``(param, grad)`` for the group's parameters that have a gradient; checks layouts and
    devices before any kernel runs."""
    pairs = []
    for p in group["params"]:
        if p.grad is None:
            continue
        if not p.is_contiguous():
            raise RuntimeError("jitgrad optimizers need contiguous parameters")
        check_same_device(p._data, p.grad._data)
        pairs.append((p, p.grad.contiguous()))
    return pairs


def _check_state(p, *buffers):
    """State buffers must live beside their parameter (``load_state_dict`` moves them there)."""
    check_same_device(p._data, *[b._data for b in buffers if b is not None])
