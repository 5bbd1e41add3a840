"""Shape, indexing, reduction and in-place programs on CUDA against the same on the CPU.

Each entry is a small program over one (2, 3, 4) float64 leaf: values and gradients must match.
"""

import numpy as np
import pytest

import jitgrad as jg

_BASE = np.random.default_rng(0).standard_normal((2, 3, 4))
_GATHER_INDEX = np.random.default_rng(1).integers(0, 4, (2, 3, 2))

OPS = {
    "cat": lambda x: jg.cat([x, x * 2], 1),
    "stack": lambda x: jg.stack([x, x], 0),
    "split": lambda x: x.split(2, 2)[1] * 3,
    "chunk": lambda x: x.chunk(3, 1)[2],
    "squeeze": lambda x: x[:, :1].squeeze(1),
    "unsqueeze": lambda x: x.unsqueeze(0) * 2,
    "permute": lambda x: x.permute(2, 0, 1) * 1,
    "flatten": lambda x: x.flatten(1),
    "narrow": lambda x: x.narrow(2, 1, 2),
    "unbind": lambda x: x.unbind(1)[1] + 1,
    "reshape_t": lambda x: x.transpose(0, 2).reshape(4, 6),
    "expand": lambda x: x[:, :1].expand(2, 3, 4) * x,
    "where": lambda x: jg.where(x > 0, x, x * 0.1),
    "clamp": lambda x: x.clamp(-0.5, 0.5),
    "norm": lambda x: x.norm(),
    "std": lambda x: x.std(1),
    "max_dim": lambda x: x.max(1)[0],
    "amax": lambda x: x.amax((0, 2)),
    "logsumexp": lambda x: x.logsumexp(2),
    "softmax": lambda x: x.softmax(-1),
    "log_softmax": lambda x: x.log_softmax(0),
    "prod": lambda x: x.prod(2),
    "index_tensor": lambda x: x[jg.tensor([1, 0, 1])],
    "index_mask": lambda x: x[x > 0.5],
    "index_mixed": lambda x: x[:, jg.tensor([2, 0]), 1:],
    "index_select": lambda x: x.index_select(2, jg.tensor([3, 0], device=x.device)),
    "gather": lambda x: x.gather(2, jg.tensor(_GATHER_INDEX, device=x.device)),
    "masked_fill": lambda x: x.masked_fill(x < 0, 0.0),
    "matmul": lambda x: x @ x.transpose(1, 2),
    "mean_keep": lambda x: x.mean((1, 2), keepdim=True) - x,
    "var": lambda x: x.var(),
    "pow": lambda x: (x * x + 1) ** 1.5,
    "abs_sign": lambda x: x.abs() * x.sign(),
    "log1p_expm1_erf": lambda x: (x * x).log1p() * x.erf() + (x * 0.5).expm1(),
    "remainder_rounding": lambda x: (x % 0.7) * x.floor() + (x * 3).round() + (x // 0.3) * x,
    "cumsum_flip": lambda x: x.cumsum(1) * x.flip((0, 2)) + x.cumsum(-1).flip(1),
    "sort_topk": lambda x: x.sort(2).values * x.sort(1, True).values + x.topk(2, 2).values.sum(2,
                                                                                         True),
    "lerp_repeat": lambda x: x.lerp(x.flip((0,)) * 2, 0.3) * x.repeat(1, 1, 2)[..., 1:5]
    + jg.lerp(x, x * x, x.detach()),
    "clone_inplace": lambda x: x.clone().mul_(2).add_(1),
    "view_inplace": lambda x: _view_inplace(x),
    "setitem": lambda x: _setitem(x),
    "sum_dtype": lambda x: (x > 0).sum() + x.sum(),
    "argmax": lambda x: x + x.argmax(2, keepdim=True),
    "linear": lambda x: jg.nn.functional.linear(x, x[0, :2], x[1, 0, :2]),
    "layer_norm": lambda x: jg.nn.functional.layer_norm(x, (4,)),
    "mse": lambda x: jg.nn.functional.mse_loss(x, x.detach() * 0.5),
    "dropout_eval": lambda x: jg.nn.functional.dropout(x, 0.5, training=False),
}
def _view_inplace(x):
    y = x * 1
    y[0, 1] += 3
    y[:, :, 0].mul_(2)
    return y
def _setitem(x):
    y = x * 1
    y[jg.tensor([0]), 1] = 7.0
    y[y > 1] = 0.0
    return y


@pytest.mark.parametrize("name", sorted(OPS))
def test_program_matches_cpu(name):
    x_cpu = jg.tensor(_BASE, dtype=jg.float64, requires_grad=True)
    x_cuda = jg.tensor(_BASE, dtype=jg.float64, device="cuda", requires_grad=True)
    out_cpu, out_cuda = OPS[name](x_cpu), OPS[name](x_cuda)
    assert out_cuda.is_cuda
    np.testing.assert_allclose(out_cuda.detach().cpu().numpy(), out_cpu.detach().numpy(),
                               atol=1e-9)
    if out_cpu.requires_grad:
        g = jg.tensor(np.random.default_rng(3).standard_normal(tuple(out_cpu.shape)))
        out_cpu.backward(g)
        out_cuda.backward(g.cuda())
        assert x_cuda.grad.is_cuda
        np.testing.assert_allclose(x_cuda.grad.cpu().numpy(), x_cpu.grad.numpy(), atol=1e-9)


def test_cpu_index_tensors_for_index_select_are_refused_as_in_pytorch():
    x = jg.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match="same device"):
        x.index_select(1, jg.tensor([0]))
