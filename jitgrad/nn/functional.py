"""Neural-network functions with PyTorch's signatures (``torch.nn.functional``).

Activations and losses that are pointwise formulas are ``Elementwise`` specs (generated kernels,
differentiable backward formulas); convolution, pooling, embedding, dropout and the class losses
run dedicated kernels from the ``nn_kernels`` family (``backends/cpu`` or ``backends/cuda``, picked
by where the data lives). Every backward is written with jitgrad ops or recorded nodes, so
``create_graph=True`` differentiates it again.

On CUDA nothing is read back to the host: results are allocated beside the input
(``ops._storage``), loss scales stay 1-element device arrays, and checks that would need device
values (target / index bounds, binary_cross_entropy's input range) are skipped, as PyTorch
leaves them to device-side asserts. Only dropout's mask copies host random numbers over.
"""

import warnings

import numpy as np

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import node_class, record
from jitgrad.backends import Family
from jitgrad.backends.cpu import codegen, threads
from jitgrad.ops import _storage
from jitgrad.ops import elementwise as ew
from jitgrad.ops import pointwise as pw
from jitgrad.ops import reduce as rd
from jitgrad.ops.creation import generator
from jitgrad.ops.linalg import cpu_addmm, cpu_matrices, cpu_mm_pair, matmul
from jitgrad.ops.shape import embed
from jitgrad.tensor import Tensor

_NN = Family("nn_kernels")
# CPU kernels whose first dim (samples, or maps for pooling) splits over threads when big
_SAMPLES = codegen.SplitKernels(_NN, {"im2col": ("x", "cols"),
                                          "conv2d_forward": ("cols", "out"),
                                          "max_pool2d_forward": ("x", "out", "idx")}, rows=True)
_REDUCE = Family("reduce_kernels")
_empty, _zeros, _on_cpu, _same_device = (_storage.empty, _storage.zeros, _storage.on_cpu,
                                         _storage.check_same_device)

__all__ = ["adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "conv2d", "cross_entropy", "dropout", "embedding",
           "gelu", "l1_loss", "layer_norm", "leaky_relu", "linear", "log_softmax", "max_pool2d",
           "mse_loss", "nll_loss", "pad", "relu", "sigmoid", "softmax", "tanh"]


def _spec(name, inputs, formula, grads):
    return ew.Elementwise(name, inputs, formula, "float", grads)


# NOTE: softplus(-x) = max(-x, 0) + log(1 + exp(-|x|)) never overflows.
_SOFTPLUS_NEG = "(maximum(-x, 0) + log(1 + exp(-where(x < 0, -x, x))))"
_TANH_ARG = "0.7978845608028654 * (x + 0.044715 * x * x * x)"
_SPECS = {
    # NOTE: the subgradient at 0 is the negative slope's side, as in PyTorch.
    "leaky_relu": _spec("leaky_relu", ("x", "s"), "where(x > 0, x, x * s)",
                        {"x": "where(x > 0, g, g * s)"}),
    "gelu": _spec("gelu", ("x",), f"0.5 * x * (1 + tanh({_TANH_ARG}))", {
        "x": f"g * (0.5 * (1 + tanh({_TANH_ARG})) + 0.5 * x * (1 - tanh({_TANH_ARG}) * "
             f"tanh({_TANH_ARG})) * 0.7978845608028654 * (1 + 0.134145 * x * x))"}),
    # NOTE: log is clamped at -100 and the x-gradient's denominator at 1e-12, as in PyTorch.
    "binary_cross_entropy": _spec(
        "binary_cross_entropy", ("x", "t"),
        "-(t * maximum(log(x), -100) + (1 - t) * maximum(log(1 - x), -100))",
        {"x": "g * (x - t) / maximum((1 - x) * x, 1e-12)", "t": "g * (log(1 - x) - log(x))"}),
    "binary_cross_entropy_with_logits": _spec(
        "binary_cross_entropy_with_logits", ("x", "t", "p"),
        f"(1 - t) * x + ((p - 1) * t + 1) * {_SOFTPLUS_NEG}",
        {"x": "g * (((p - 1) * t + 1) * sigmoid(x) - p * t)",
         "t": f"g * ((p - 1) * {_SOFTPLUS_NEG} - x)",
         "p": f"g * t * {_SOFTPLUS_NEG}"}),
}


# --- activations --------------------------------------------------------------------------------

def relu(input, inplace=False):
    """Applies the rectified linear unit function element-wise."""
    return pw.relu_(input) if inplace else pw.relu(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """Applies ``max(0, x) + negative_slope * min(0, x)`` element-wise."""
    spec = _SPECS["leaky_relu"]
    slope = float(negative_slope)
    return ew.apply_(spec, input, (input, slope)) if inplace else ew.apply(spec, (input, slope))


def sigmoid(input):
    """Applies the element-wise function ``1 / (1 + exp(-x))``."""
    return pw.sigmoid(input)


def tanh(input):
    """Applies the element-wise hyperbolic tangent."""
    return pw.tanh(input)


def _erf_backward(node, g):
    (x,) = node.saved_values()
    # NOTE: d erf(x)/dx = 2 / sqrt(pi) * exp(-x^2)
    return (g * 1.1283791670955126 * (x * x * -1.0).exp(),)


ErfBackward0 = node_class("ErfBackward0", _erf_backward)


def _erf(x):
    data = ew.contiguous(x._data)
    out = _empty(data.shape, data.dtype, data)
    _NN(data).erf(data.reshape(-1), out.reshape(-1))
    return record(Tensor._wrap(out), ErfBackward0, (x,), (x,), check=(x,))


def _gelu_backward(node, g):
    (x,) = node.saved_values()
    if grad_mode.is_grad_enabled():  # create_graph: the same formula in differentiable ops
        cdf = _erf(x * 0.7071067811865476) * 0.5 + 0.5
        pdf = (x * x * -0.5).exp() * 0.3989422804014327
        return (g * (cdf + x * pdf),)
    xd, gd = ew.contiguous(x._data), ew.contiguous(g._data)
    out = _empty(xd.shape, xd.dtype, xd)
    _NN(xd).gelu_backward(gd.reshape(-1), xd.reshape(-1), out.reshape(-1))
    return (Tensor._wrap(out),)


GeluBackward0 = node_class("GeluBackward0", _gelu_backward)


def gelu(input, approximate="none"):
    """Applies the Gaussian Error Linear Unit ``x * Phi(x)`` (``approximate='tanh'`` for tanh)."""
    if approximate == "tanh":
        return ew.apply(_SPECS["gelu"], (input,))
    if approximate != "none":
        raise RuntimeError("approximate argument must be either none or tanh.")
    x = input if input._data.dtype.kind == "f" else input.float()
    data = ew.contiguous(x._data)
    out = _empty(data.shape, data.dtype, data)
    _NN(data).gelu_forward(data.reshape(-1), out.reshape(-1))
    return record(Tensor._wrap(out), GeluBackward0, (x,), (x,), check=(x,))


def _softmax_dim(ndim):
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call to "
                  "include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Applies a softmax function along ``dim``."""
    dim = _softmax_dim(input.ndim) if dim is None else dim
    return rd.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Applies a softmax followed by a logarithm along ``dim``."""
    dim = _softmax_dim(input.ndim) if dim is None else dim
    return rd.log_softmax(input, dim, dtype=dtype)


# --- linear and dropout ---------------------------------------------------------------------------

def _addmm_backward(node, g):
    bias, input, weight_t = node.saved_values()
    edges = [e for e, _ in node.next_functions]
    gb = rd._grad_sum_to_shape(g, bias._data.shape) if edges[0] is not None else None
    fresh = not grad_mode.is_grad_enabled()  # new buffers: weight.grad takes them without a copy
    arrays = cpu_matrices(g, input, weight_t) if (
        fresh and edges[1] is not None and edges[2] is not None) else None
    if arrays is not None:  # both products at once on the threads
        gd, xd, wd = arrays
        gx, gw = (Tensor._wrap(x) for x in cpu_mm_pair(gd, wd.T, gd.T, xd))
        gx._fresh = gw._fresh = True
        return gb, gx, gw.t()
    gw = None
    if edges[2] is not None:
        gw = matmul(g.t(), input)  # dW in weight's own (out, in) layout, returned as dW^T's view
        gw._fresh = fresh
        gw = gw.t()
    return gb, matmul(g, weight_t.t()) if edges[1] is not None else None, gw


AddmmBackward0 = node_class("AddmmBackward0", _addmm_backward)


def linear(input, weight, bias=None):
    """Applies the affine transformation ``y = x A^T + b``."""
    weight_t = weight.t() if weight.ndim == 2 else weight
    if bias is None or input.ndim != 2 or weight.ndim != 2:
        out = matmul(input, weight_t)
        return out if bias is None else out + bias
    # one recorded node (PyTorch's addmm) instead of a matmul and a broadcast add
    arrays, b = cpu_matrices(input, weight_t), bias._data
    if (arrays is not None and type(b) is np.ndarray and b.dtype == arrays[0].dtype
            and arrays[0].shape[1] == arrays[1].shape[0] and b.shape == (arrays[1].shape[1],)
            and b.flags.c_contiguous):
        out = Tensor._wrap(cpu_addmm(*arrays, b))  # the bias enters BLAS's sum (beta = 1)
    else:
        with grad_mode.no_grad():
            out = matmul(input, weight_t).add_(bias)
    return record(out, AddmmBackward0, (bias, input, weight_t), (bias, input, weight_t),
                  check=(input, weight_t))


def _dropout_backward(node, g):
    (mask,) = node.saved_values()
    return (g * Tensor._wrap(mask),)


NativeDropoutBackward0 = node_class("NativeDropoutBackward0", _dropout_backward)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes elements with probability ``p`` and scales the rest by ``1 / (1 - p)``."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    data = ew.contiguous(input._data)
    u = generator().random(data.shape, dtype=np.float32 if data.dtype == np.float32
                           else np.float64)
    if not _on_cpu(data):
        # NOTE: the uniforms come from jitgrad's host generator (the same stream as on the CPU,
        # so seeded runs agree); this host -> device copy is the op's only transfer.
        u = _storage.move(u, _storage.CUDA0)
    mask = _empty(data.shape, data.dtype, data)
    out = _empty(data.shape, data.dtype, data)
    scale = data.dtype.type(0.0 if p == 1.0 else 1.0 / (1.0 - p))
    _NN(data).dropout_forward(data.reshape(-1), u.reshape(-1), u.dtype.type(p), scale,
                              out.reshape(-1), mask.reshape(-1))
    if inplace:
        return pw.mul_(input, Tensor._wrap(mask))
    return record(Tensor._wrap(out), NativeDropoutBackward0, (input,), (mask,))


# --- convolution ---------------------------------------------------------------------------------

def _pair(value, name="kernel_size"):
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return (int(value[0]),) * 2
        if len(value) != 2:
            raise RuntimeError(f"{name} must be an int or a tuple of two ints, got {value}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


class _ConvGeometry:
    """Kernel/stride/padding/dilation as the kernels' int tuple, output size and groups."""

    __slots__ = ("p", "out_hw", "groups")

    def __init__(self, p, out_hw, groups):
        self.p, self.out_hw, self.groups = p, out_hw, groups


def _batch_chunks(data):
    """How many slices of its batch (first) dim a big CPU array's convolution kernel runs as."""
    return threads.chunks(data.size, data.shape[0]) if _on_cpu(data) else 1


def _conv_cols(xd, geom):
    """im2col of xd (N, C, H, W): (N, C*kh*kw, OH*OW)."""
    kh, kw, sh, sw, ph, pw_, dh, dw = geom.p
    oh, ow = geom.out_hw
    n, c, h, w = xd.shape
    padded = ph or pw_ or (oh - 1) * sh + (kh - 1) * dh + 1 < h or (ow - 1) * sw + \
        (kw - 1) * dw + 1 < w or (oh - 1) * sh + (kh - 1) * dh + 1 > h or \
        (ow - 1) * sw + (kw - 1) * dw + 1 > w
    cols = (_zeros if padded else _empty)((n, c * kh * kw, oh * ow), xd.dtype, xd)
    _SAMPLES("im2col", xd, geom.p, oh, ow, cols)
    return cols


def _conv(x, w, bias, geom, cols=None):
    """conv2d of 4-D ``x`` by ``w`` (+ ``bias``), recording ConvolutionBackward0."""
    if bias is None:
        _same_device(x._data, w._data)
    else:
        _same_device(x._data, w._data, bias._data)
    xd, wd = ew.contiguous(x._data), ew.contiguous(w._data)
    if cols is None:
        cols = _conv_cols(xd, geom)
    n = xd.shape[0]
    o, g = wd.shape[0], geom.groups
    oh, ow = geom.out_hw
    out = _empty((n, o, oh, ow), xd.dtype, xd)
    has_bias = bias is not None
    bd = ew.contiguous(bias._data).reshape(g, o // g) if has_bias else _empty((g, 0), xd.dtype, xd)
    _SAMPLES("conv2d_forward", cols, wd.reshape(g, o // g, -1), bd, has_bias,
             out.reshape(n, g, o // g, -1))
    inputs = (x, w, bias) if has_bias else (x, w)
    return record(Tensor._wrap(out), ConvolutionBackward0, inputs,
                  (x, w, cols, geom, has_bias), check=(x, w))


def _conv_input_grad(grad, w, in_shape, geom):
    """d conv / d input applied to ``grad``: col2im of w^T grad (recorded, differentiable)."""
    gd, wd = ew.contiguous(grad._data), ew.contiguous(w._data)
    n, o = gd.shape[:2]
    g = geom.groups
    kh, kw = geom.p[:2]
    buf_shape = (in_shape[1] * kh * kw, gd.shape[2] * gd.shape[3])
    if _on_cpu(gd) or n == 1:
        buf = _empty(buf_shape, gd.dtype, gd)
    else:  # the CUDA kernel makes its own batch-sized scratch for N > 1 and reads buf's shape only
        buf = _empty((1,), gd.dtype, gd).broadcast_to(buf_shape)
    dx = _zeros(in_shape, gd.dtype, gd)
    args = (gd.reshape(n, g, o // g, -1), wd.reshape(g, o // g, -1), geom.p, geom.out_hw[0],
            geom.out_hw[1], buf, dx)
    chunks = _batch_chunks(gd)
    if chunks > 1:
        _NN.cpu.conv2d_backward_input_p(chunks, *args)
    else:
        _NN(gd).conv2d_backward_input(*args)
    return record(Tensor._wrap(dx), ConvolutionBackwardInput, (grad, w), (grad, w, geom),
                  check=(grad, w))


def _conv_weight_grad(x, grad, w_shape, geom, cols=None):
    """d conv / d weight applied to ``grad``: sum over the batch of grad @ cols^T."""
    xd, gd = ew.contiguous(x._data), ew.contiguous(grad._data)
    if cols is None:
        cols = _conv_cols(xd, geom)
    n, o = gd.shape[:2]
    g = geom.groups
    dw = _empty(w_shape, gd.dtype, gd)
    dw3 = dw.reshape(g, o // g, -1)
    # the CUDA kernel sums the batch in its product and ignores the per-sample scratch
    tmp = np.empty(dw3.shape[1:], gd.dtype) if _on_cpu(gd) else dw3[0]
    chunks = _batch_chunks(cols)
    if chunks > 1:
        _NN.cpu.conv2d_backward_weight_p(chunks, gd.reshape(n, g, o // g, -1), cols, tmp, dw3)
    else:
        _NN(gd).conv2d_backward_weight(gd.reshape(n, g, o // g, -1), cols, tmp, dw3)
    return record(Tensor._wrap(dw), ConvolutionBackwardWeight, (x, grad), (x, grad, w_shape, geom),
                  check=(x, grad))


def _conv_backward(node, grad):
    x, w, cols, geom, has_bias = node.saved_values()
    edges = node.next_functions
    gx = _conv_input_grad(grad, w, x._data.shape, geom) if edges[0][0] is not None else None
    gw = _conv_weight_grad(x, grad, w._data.shape, geom, cols) if edges[1][0] is not None \
        else None
    gb = rd.sum(grad, (0, 2, 3)) if has_bias and edges[2][0] is not None else None
    fresh = not grad_mode.is_grad_enabled()
    for t in (gx, gw, gb):  # new buffers only the engine holds: .grad may take them uncopied
        if t is not None:
            t._fresh = fresh
    return (gx, gw, gb) if has_bias else (gx, gw)


def _conv_input_grad_backward(node, gg):
    # Both backward ops are bilinear; their derivatives are the other two ops of the triangle.
    grad, w, geom = node.saved_values()
    edges = node.next_functions
    d_grad = _conv(gg, w, None, geom) if edges[0][0] is not None else None
    d_w = _conv_weight_grad(gg, grad, w._data.shape, geom) if edges[1][0] is not None else None
    return d_grad, d_w


def _conv_weight_grad_backward(node, gg):
    x, grad, _, geom = node.saved_values()
    edges = node.next_functions
    d_x = _conv_input_grad(grad, gg, x._data.shape, geom) if edges[0][0] is not None else None
    d_grad = _conv(x, gg, None, geom) if edges[1][0] is not None else None
    return d_x, d_grad


ConvolutionBackward0 = node_class("ConvolutionBackward0", _conv_backward)
ConvolutionBackwardInput = node_class("ConvolutionBackwardBackward0", _conv_input_grad_backward)
ConvolutionBackwardWeight = node_class("ConvolutionBackwardBackward0", _conv_weight_grad_backward)


def _conv_padding(padding, kernel, stride, dilation):
    """(top, left, total_h, total_w); 'same' puts the odd extra pixel bottom/right as PyTorch."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise RuntimeError(f"Invalid padding string: '{padding}'")
        if stride != (1, 1):
            raise RuntimeError("padding='same' is not supported for strided convolutions")
        th, tw = (d * (k - 1) for d, k in zip(dilation, kernel))
        return th // 2, tw // 2, th, tw
    ph, pw_ = _pair(padding, "padding")
    if ph < 0 or pw_ < 0:
        raise RuntimeError("negative padding is not supported")
    return ph, pw_, 2 * ph, 2 * pw_


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Applies a 2D convolution over an input image composed of several input planes."""
    if input.ndim not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got "
                           f"input of size: {list(input.shape)}")
    x = input if input.ndim == 4 else input.unsqueeze(0)
    if weight.ndim != 4:
        raise RuntimeError(f"weight should have 4 dimensions for conv2d, but got weight of size "
                           f"{list(weight.shape)}")
    n, c, h, w = x._data.shape
    o, cg, kh, kw = weight._data.shape
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if o % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} "
                           f"at dimension 0, but got weight of size {[list(weight.shape)]} "
                           "instead")
    if c != cg * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected "
                           f"input{list(x.shape)} to have {cg * groups} channels, but got {c} "
                           "channels instead")
    if bias is not None and (bias.ndim != 1 or bias._data.shape[0] != o):
        raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be "
                           f"1-dimensional with {o} elements, but got bias of size "
                           f"{list(bias.shape)} instead")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t._data.dtype != x._data.dtype:
            raise RuntimeError(f"Input type (torch.{x.dtype.tensor_type}) and {name} type "
                               f"(torch.{t.dtype.tensor_type}) should be the same")
    if x._data.dtype.kind != "f":
        raise RuntimeError(f'"slow_conv2d_cpu" not implemented for '
                           f"'{x.dtype.scalar_name}'")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation) <= 0:
        raise RuntimeError("dilation should be greater than zero")
    ph, pw_, th, tw = _conv_padding(padding, (kh, kw), stride, dilation)
    eh, ew_ = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if h + th < eh or w + tw < ew_:
        raise RuntimeError(f"Calculated padded input size per channel: ({h + th} x {w + tw}). "
                           f"Kernel size: ({eh} x {ew_}). Kernel size can't be greater than "
                           "actual input size")
    out_hw = ((h + th - eh) // stride[0] + 1, (w + tw - ew_) // stride[1] + 1)
    geom = _ConvGeometry((kh, kw, *stride, ph, pw_, *dilation), out_hw, groups)
    out = _conv(x, weight, bias, geom)
    return out if input.ndim == 4 else out.squeeze(0)


# --- pooling ------------------------------------------------------------------------------------

def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size: a last window must start inside the input or left pad."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_setup(input, kernel_size, stride, padding, dilation, ceil_mode, effective):
    """Validated (k, s, p, d, (oh, ow)) of a 2-D pooling over the last two dims."""
    if input.ndim not in (3, 4) or input._data.size == 0:
        raise RuntimeError("non-empty 3D or 4D (batch mode) tensor expected for input")
    k = _pair(kernel_size)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(k) <= 0:
        raise RuntimeError(f"kernel size should be greater than zero, but got kH: {k[0]} kW: "
                           f"{k[1]}")
    if min(s) <= 0:
        raise RuntimeError(f"stride should be greater than zero, but got dH: {s[0]} dW: {s[1]}")
    for ki, pi, di in zip(k, p, d):
        if pi < 0 or pi > ((ki - 1) * di + 1) // 2:
            what = "effective kernel size" if effective else "kernel size"
            raise RuntimeError(f"pad should be at most half of {what}, but got pad={pi}, "
                               f"kernel_size={ki}" + (f" and dilation={di}" if effective else ""))
    h, w = input._data.shape[-2:]
    oh = _pool_out(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _pool_out(w, k[1], s[1], p[1], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        c = input._data.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: "
                           f"({c}x{oh}x{ow}). Output size is too small")
    return k, s, p, d, (oh, ow)


def _maps(data):
    """A pooling input as a contiguous (maps, H, W) array."""
    return ew.contiguous(data).reshape(-1, *data.shape[-2:])


def _scatter_backward(node, gg):
    # gg read at the pooling's argmax positions: the max pool's forward again, so its backward
    # is MaxPool2DWithIndicesBackward0. The gather kernel is called directly: the indices came
    # from the pooling kernel, and rd.gather's bounds check would read them on the host.
    idx, out_shape = node.saved_values()
    id3 = idx._data.reshape(*idx._data.shape, 1)
    gd = ew.contiguous(gg._data)
    _same_device(gd, id3)
    out = _empty(id3.shape, gd.dtype, gd)
    _REDUCE(gd).gather_3d(gd.reshape(id3.shape[0], -1, 1), id3, out)
    return (record(Tensor._wrap(out.reshape(out_shape)), MaxPool2DWithIndicesBackward0, (gg,),
                   (idx, gd.shape)),)


MaxPool2DWithIndicesBackwardBackward0 = node_class("MaxPool2DWithIndicesBackwardBackward0",
                                                   _scatter_backward)


def _index_scatter(grad, idx, in_shape):
    """Zeros of ``in_shape`` with ``grad`` added at the flat per-map positions ``idx``."""
    gd = ew.contiguous(grad._data)
    m = idx._data.shape[0]
    dx = _zeros(in_shape, gd.dtype, gd)
    _NN(gd).index_scatter_add(gd.reshape(m, -1), idx._data, dx.reshape(m, -1))
    return record(Tensor._wrap(dx), MaxPool2DWithIndicesBackwardBackward0, (grad,),
                  (idx, grad._data.shape))


def _max_pool_backward(node, grad):
    idx, in_shape = node.saved_values()
    return (_index_scatter(grad, idx, in_shape),)


MaxPool2DWithIndicesBackward0 = node_class("MaxPool2DWithIndicesBackward0", _max_pool_backward)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Applies a 2D max pooling; ``return_indices`` also returns flat argmax indices."""
    k, s, p, d, (oh, ow) = _pool_setup(input, kernel_size, stride, padding, dilation, ceil_mode,
                                       True)
    x = _maps(input._data)
    out = _empty((x.shape[0], oh, ow), x.dtype, x)
    idx = _empty((x.shape[0], oh, ow), np.int64, x)
    _SAMPLES("max_pool2d_forward", x, (*k, *s, *p, *d), out, idx)
    shape = input._data.shape[:-2] + (oh, ow)
    flat_idx = Tensor._wrap(idx.reshape(x.shape[0], -1))
    result = record(Tensor._wrap(out.reshape(shape)), MaxPool2DWithIndicesBackward0, (input,),
                    (flat_idx, input._data.shape))
    return (result, Tensor._wrap(idx.reshape(shape))) if return_indices else result


def _window_mean_backward_backward(node, gg):
    windows, _ = node.saved_values()
    return (_window_mean(gg, windows, AvgPool2DBackward0),)


WindowMeanBackwardBackward = node_class("AvgPool2DBackwardBackward0",
                                        _window_mean_backward_backward)


def _window_mean_grad(grad, windows, in_shape):
    gd = ew.contiguous(grad._data)
    dx = _zeros(in_shape, gd.dtype, gd)
    _NN(gd).window_mean_backward(gd.reshape(-1, *gd.shape[-2:]), *windows, dx.reshape(
        -1, *in_shape[-2:]))
    return record(Tensor._wrap(dx), WindowMeanBackwardBackward, (grad,), (windows, in_shape))


def _window_mean_backward(node, grad):
    windows, in_shape = node.saved_values()
    return (_window_mean_grad(grad, windows, in_shape),)


AvgPool2DBackward0 = node_class("AvgPool2DBackward0", _window_mean_backward)
AdaptiveAvgPool2DBackward0 = node_class("AdaptiveAvgPool2DBackward0", _window_mean_backward)


_DEVICE_WINDOWS = {}


def _device_windows(windows):
    """The avg pools' host window bounds as device arrays, copied once per distinct geometry."""
    if not _on_cpu(windows[0]):
        return windows
    key = tuple(a.tobytes() for a in windows) + (windows[-1].shape, windows[-1].dtype.char)
    found = _DEVICE_WINDOWS.get(key)
    if found is None:
        found = tuple(_storage.move(np.ascontiguousarray(a), _storage.CUDA0) for a in windows)
        if len(_DEVICE_WINDOWS) < 256:
            _DEVICE_WINDOWS[key] = found
    return found


def _window_mean(input, windows, node_cls):
    """Mean of each (hs:he, ws:we) window divided by ``div``: the avg pools' shared kernel."""
    x = _maps(input._data)
    if not _on_cpu(x):
        windows = _device_windows(windows)
    oh, ow = windows[-1].shape
    out = _empty((x.shape[0], oh, ow), x.dtype, x)
    _NN(x).window_mean_forward(x, *windows, out)
    return record(Tensor._wrap(out.reshape(input._data.shape[:-2] + (oh, ow))), node_cls,
                  (input,), (windows, input._data.shape))


def _avg_bounds(size, n_out, k, s, p):
    """Clipped window starts/ends and PyTorch's per-window divisor (with and without padding)."""
    start = np.arange(n_out, dtype=np.int64) * s - p
    end = np.minimum(start + k, size + p)
    padded = end - start
    start, end = np.maximum(start, 0), np.minimum(end, size)
    return start, end, padded


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Applies a 2D average pooling over ``kernel_size`` windows."""
    k, s, p, _, (oh, ow) = _pool_setup(input, kernel_size, stride, padding, 1, ceil_mode, False)
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    h, w = input._data.shape[-2:]
    hs, he, hp = _avg_bounds(h, oh, k[0], s[0], p[0])
    ws, we, wp = _avg_bounds(w, ow, k[1], s[1], p[1])
    if divisor_override is not None:
        div = np.full((oh, ow), divisor_override)
    elif count_include_pad:
        div = np.outer(hp, wp)
    else:
        div = np.outer(he - hs, we - ws)
    div = np.where(div == 0, 1, div).astype(input._data.dtype)  # empty windows give 0, not nan
    return _window_mean(input, (hs, he, ws, we, div), AvgPool2DBackward0)


def adaptive_avg_pool2d(input, output_size):
    """Applies a 2D adaptive average pooling to ``output_size`` (None keeps a size)."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got "
                           f"{list(input.shape)}")
    h, w = input._data.shape[-2:]
    size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    oh, ow = (h if size[0] is None else int(size[0])), (w if size[1] is None else int(size[1]))
    if oh <= 0 or ow <= 0 or h == 0 or w == 0:
        raise RuntimeError(f"adaptive_avg_pool2d(): output_size must be positive and the input "
                           f"non-empty, got output_size {(oh, ow)} for input {list(input.shape)}")
    i, j = np.arange(oh, dtype=np.int64), np.arange(ow, dtype=np.int64)
    hs, he = i * h // oh, ((i + 1) * h + oh - 1) // oh
    ws, we = j * w // ow, ((j + 1) * w + ow - 1) // ow
    div = np.outer(he - hs, we - ws).astype(input._data.dtype)
    return _window_mean(input, (hs, he, ws, we, div), AdaptiveAvgPool2DBackward0)


# --- normalization --------------------------------------------------------------------------------

def _check_param(t, name, n):
    if t is not None and t.numel() != n:
        raise RuntimeError(f"{name} should contain {n} elements not {t.numel()}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-05):
    """Applies Batch Normalization over the channel dim (dim 1) of a batch."""
    if input.ndim < 2:
        raise ValueError(f"expected 2D or more input (got {input.ndim}D input)")
    c = input._data.shape[1]
    for t, name in ((running_mean, "running_mean"), (running_var, "running_var"),
                    (weight, "weight"), (bias, "bias")):
        _check_param(t, name, c)
    dims = (0,) + tuple(range(2, input.ndim))
    count = input.numel() // c if c else 0
    if training and count <= 1:
        raise ValueError("Expected more than 1 value per channel when training, got input size "
                         f"{input.shape}")
    shape = (1, c) + (1,) * (input.ndim - 2)
    if training or running_mean is None or running_var is None:
        mean = rd.mean(input, dims, keepdim=True)
        centered = input - mean
        var = rd.mean(centered * centered, dims, keepdim=True)
        if training:
            with grad_mode.no_grad():
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean.reshape(c).detach() * momentum)
                if running_var is not None:
                    # NOTE: the running variance is unbiased (n / (n - 1)), as in PyTorch.
                    running_var.mul_(1 - momentum).add_(
                        var.reshape(c).detach() * (momentum * count / (count - 1)))
    else:
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
        centered = input - mean
    out = centered * pw.rsqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    return out if bias is None else out + bias.reshape(shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """Applies Layer Normalization over the trailing ``normalized_shape`` dims."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or input._data.shape[input.ndim - len(ns):] != ns or len(ns) > input.ndim:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape "
                           f"[*, {', '.join(map(str, ns))}], but got input of size"
                           f"{list(input.shape)}")
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is not None and tuple(t.shape) != ns:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got "
                               f"{name} of shape {list(t.shape)} and normalized_shape = {list(ns)}")
    dims = tuple(range(input.ndim - len(ns), input.ndim))
    centered = input - rd.mean(input, dims, keepdim=True)
    out = centered * pw.rsqrt(rd.mean(centered * centered, dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    return out if bias is None else out + bias


# --- embedding and padding ------------------------------------------------------------------------

def _embedding_rows(weight, idx, zero_pad, pad, by_freq):
    """Rows ``weight[idx]`` (zeros where idx == zero_pad); the backward skips ``pad``."""
    wd = ew.contiguous(weight._data)
    _same_device(idx, wd)
    out = _empty((idx.size, wd.shape[1]), wd.dtype, wd)
    _NN(wd).embedding_forward(idx.reshape(-1), wd, zero_pad, out)
    return record(Tensor._wrap(out.reshape(idx.shape + (wd.shape[1],))), EmbeddingBackward0,
                  (weight,), (idx, pad, wd.shape[0], by_freq))


def _embedding_grad(grad, idx, pad, n_rows, by_freq):
    gd = ew.contiguous(grad._data)
    dim = gd.shape[-1]
    dw = _zeros((n_rows, dim), gd.dtype, gd)
    counts = _zeros((n_rows if by_freq else 0,), np.int64, gd)
    _NN(gd).embedding_backward(idx.reshape(-1), gd.reshape(-1, dim), pad, by_freq, counts, dw)
    return record(Tensor._wrap(dw), EmbeddingBackwardBackward0, (grad,), (idx, pad, by_freq))


def _embedding_backward(node, grad):
    idx, pad, n_rows, by_freq = node.saved_values()
    return (_embedding_grad(grad, idx, pad, n_rows, by_freq),)


def _embedding_backward_backward(node, gg):
    idx, pad, by_freq = node.saved_values()
    if by_freq:
        raise RuntimeError("double backward of embedding with scale_grad_by_freq is not "
                           "supported")
    return (_embedding_rows(gg, idx, pad, pad, False),)


EmbeddingBackward0 = node_class("EmbeddingBackward0", _embedding_backward)
EmbeddingBackwardBackward0 = node_class("EmbeddingBackwardBackward0", _embedding_backward_backward)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Looks up rows of ``weight`` by the integer indices in ``input``."""
    if input._data.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the "
                           "following scalar types: Long, Int; but got "
                           f"torch.{input.dtype.tensor_type} instead "
                           "(while checking arguments for embedding)")
    if weight.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    n_rows = weight._data.shape[0]
    if padding_idx is not None:
        if not -n_rows <= padding_idx < n_rows:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx %= n_rows
    _same_device(input._data, weight._data)
    if _on_cpu(input._data):
        idx = np.ascontiguousarray(input._data, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
            raise IndexError("index out of range in self")
    else:  # NOTE: no bounds check on CUDA: it would read the indices back to the host
        idx = input._data
        idx = ew.contiguous(idx) if idx.dtype == np.int64 else ew.cast(idx, np.int64)
    if sparse:
        raise NotImplementedError("sparse gradients are not supported by jitgrad")
    if max_norm is not None:
        with grad_mode.no_grad():
            _NN(idx).embedding_renorm(idx.reshape(-1), weight._data, float(max_norm),
                                      float(norm_type))
            weight._version[0] += 1
    return _embedding_rows(weight, idx, -1, -1 if padding_idx is None else padding_idx,
                           bool(scale_grad_by_freq))


def _constant_pad_backward(node, grad):
    src, dst, in_shape = node.saved_values()
    g = grad[dst]
    return (g if g._data.shape == in_shape else embed(g, in_shape, src),)


ConstantPadNdBackward0 = node_class("ConstantPadNdBackward0", _constant_pad_backward)

_NON_CONSTANT_DIMS = {1: (2, 3), 2: (3, 4), 3: (4, 5)}


def _source_positions(size, before, after, mode):
    j = np.arange(-before, size + after, dtype=np.int64)
    if mode == "reflect":
        j = np.abs(j)
        return np.where(j >= size, 2 * (size - 1) - j, j)
    if mode == "replicate":
        return np.clip(j, 0, size - 1)
    return j % size  # circular


def pad(input, pad, mode="constant", value=None):
    """Pads the trailing dims of ``input``; ``pad`` lists (left, right) pairs from the last dim."""
    pad = tuple(int(v) for v in pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    n_dims = len(pad) // 2
    shape = input._data.shape
    if n_dims > input.ndim:
        raise RuntimeError("Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(pad)} and input of dimension "
                           f"{input.ndim}")
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(n_dims)]  # from the last dim backwards
    if mode != "constant":
        if mode not in ("reflect", "replicate", "circular"):
            raise NotImplementedError(f"Unrecognised padding mode {mode}")
        if input.ndim not in _NON_CONSTANT_DIMS.get(n_dims, ()):
            raise NotImplementedError(f"Padding size {len(pad)} is not supported for "
                                      f"{input.ndim}D input tensor.")
        index = []
        for k, (before, after) in enumerate(reversed(pairs)):
            d = input.ndim - n_dims + k
            if mode == "reflect" and (before >= shape[d] or after >= shape[d]):
                raise RuntimeError(f"Argument #4: Padding size should be less than the "
                                   f"corresponding input dimension, but got: padding ({before}, "
                                   f"{after}) at dimension {d} of input {list(shape)}")
            index.append(_source_positions(shape[d], before, after, mode))
        return input[(Ellipsis,) + np.ix_(*index)]
    src, dst, out_shape = [slice(None)] * input.ndim, [slice(None)] * input.ndim, list(shape)
    for i, (before, after) in enumerate(pairs):
        d = input.ndim - 1 - i
        size = shape[d] + before + after
        if size < 0:
            raise RuntimeError(f"The input size {shape[d]}, plus negative padding {before} and "
                               f"{after} resulted in a negative output size, which is invalid. "
                               f"Check dimension {d} of your input.")
        out_shape[d] = size
        src[d] = slice(max(-before, 0), shape[d] - max(-after, 0))
        dst[d] = slice(max(before, 0), size - max(after, 0))
    out = _storage.full(out_shape, 0 if value is None else value, input._data.dtype, input._data)
    src, dst = tuple(src), tuple(dst)
    if out[dst].size:
        ew.copy_into(out[dst], input._data[src])
    return record(Tensor._wrap(out), ConstantPadNdBackward0, (input,), (src, dst, shape))


# --- losses ---------------------------------------------------------------------------------------

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def _reduction(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:  # PyTorch's legacy arguments
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss, reduction):
    if reduction == "mean":
        return rd.mean(loss)
    return rd.sum(loss) if reduction == "sum" else loss


def _warn_broadcast(input, target):
    if input.shape != target.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=3)


def _mse_backward(node, g):
    input, target, reduction = node.saved_values()
    diff = input - target
    scale = 2.0 / diff._data.size if reduction == "mean" else 2.0
    grad = diff * (g * scale)
    edges = [e for e, _ in node.next_functions]
    return (rd.sum_to_shape(grad, input._data.shape) if edges[0] is not None else None,
            rd.sum_to_shape(-grad, target._data.shape) if edges[1] is not None else None)


MseLossBackward0 = node_class("MseLossBackward0", _mse_backward)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error between ``input`` and ``target``."""
    reduction = _reduction(size_average, reduce, reduction)
    _warn_broadcast(input, target)
    if weight is not None:
        diff = input - target
        return _reduce(diff * diff * weight, reduction)
    with grad_mode.no_grad():
        diff = input - target
        loss = _reduce(diff * diff, reduction)
    return record(loss, MseLossBackward0, (input, target), (input, target, reduction),
                  check=(input, target))


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error between ``input`` and ``target``."""
    reduction = _reduction(size_average, reduce, reduction)
    _warn_broadcast(input, target)
    loss = pw.abs(input - target)
    return _reduce(loss if weight is None else loss * weight, reduction)


class _ClassTarget:
    """Class-index loss bookkeeping: (N, C, D) view of the input, (N, D) targets, weights."""

    __slots__ = ("x", "target", "weight", "weight_data", "ignore", "reduction", "out_shape",
                 "in_shape")

    def __init__(self, input, target, weight, ignore_index, reduction):
        nd = input.ndim
        if nd < 1:
            raise ValueError(f"Expected 1 or more dimensions (got {nd})")
        if target._data.dtype.kind not in "iu":
            raise RuntimeError("expected target dtype to be Long or Byte, but got "
                               f"{target.dtype.scalar_name}")
        if weight is None:
            _same_device(input._data, target._data)
        else:
            _same_device(input._data, target._data, weight._data)
        shape, tshape = input._data.shape, target._data.shape
        if nd == 1:
            if target.ndim != 0:
                raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
            n, c, rest = 1, shape[0], ()
        else:
            if nd == 2 and target.ndim != 1:
                raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
            if tshape[:1] != shape[:1]:
                raise ValueError(f"Expected input batch_size ({shape[0]}) to match target "
                                 f"batch_size ({tshape[0] if tshape else 1}).")
            n, c, rest = shape[0], shape[1], shape[2:]
            if tshape != (n,) + rest:
                raise RuntimeError(f"Expected target size {[n, *rest]}, got {list(tshape)}")
        if weight is not None and (weight.ndim != 1 or weight._data.shape[0] != c):
            raise RuntimeError(f"weight tensor should be defined either for all {c} classes or "
                               f"no classes but got weight tensor of shape: {list(weight.shape)}")
        dx = input._data.dtype
        if dx.kind != "f":
            raise RuntimeError(f'"nll_loss" not implemented for '
                               f"'{input.dtype.scalar_name}'")
        td = target._data
        if _on_cpu(td):
            t = np.ascontiguousarray(td, dtype=np.int64).reshape(n, -1)
            bad = t[(t != ignore_index) & ((t < 0) | (t >= c))]
            if bad.size:
                raise IndexError(f"Target {bad[0]} is out of bounds.")
        else:  # NOTE: no bounds check on CUDA: it would read the targets back to the host
            t = (ew.contiguous(td) if td.dtype == np.int64 else ew.cast(td, np.int64)).reshape(
                n, -1)
        self.x = ew.contiguous(input._data).reshape(n, c, -1)
        self.target = t
        self.weight = weight
        self.weight_data = _storage.full((c,), 1, dx, td) if weight is None else \
            ew.cast(weight._data, dx)
        self.ignore = int(ignore_index)
        self.reduction = _REDUCTIONS[reduction]
        self.out_shape = (n,) + rest if nd > 1 else ()
        self.in_shape = shape


def _finish_loss(ctx, losses, result, node_cls, input, total):
    out = losses.reshape(ctx.out_shape) if ctx.reduction == 0 else result.reshape(())
    return record(Tensor._wrap(out), node_cls, (input,), (ctx, total, input))


def _device_op(fn, *arrays):
    """``fn`` of Tensors wrapping ``arrays`` (no graph): device arithmetic on loss scales."""
    with grad_mode.no_grad():
        return fn(*[Tensor._wrap(a) for a in arrays])._data


def _weight_total(weight):
    """The sum of a 1-D weight array as a float64 (1,) array on its device."""
    out = _empty((1, 1), np.float64, weight)
    _REDUCE(weight).sum_3d(weight.reshape(1, -1, 1), False, 1.0, out)
    return out.reshape(1)


def _grad_2d(ctx, grad, total):
    """(grad as (N, D) or (1, 1), whether it is per-element, scale) for the backward kernels.

    The mean's 1 / total_weight is a host float on the CPU; on CUDA total_weight stays on the
    device and the gradient is divided by it there (scale 1).
    """
    gd = ew.contiguous(grad._data)
    if ctx.reduction == 0:
        return gd.reshape(ctx.target.shape), True, 1.0
    if ctx.reduction == 2:
        return gd.reshape(1, 1), False, 1.0
    if _on_cpu(gd):
        return gd.reshape(1, 1), False, 1.0 / float(total[0])
    return _device_op(lambda g, t: g / t, gd, total).reshape(1, 1), False, 1.0


def _nll(input, ctx):
    x = ctx.x
    losses = _empty(ctx.target.shape, x.dtype, x)
    result = _empty((1,), x.dtype, x)
    total = _empty((1,), np.float64, x)
    _NN(x).nll_forward(x, ctx.target, ctx.weight_data, ctx.ignore, ctx.reduction, losses, result,
                       total)
    return _finish_loss(ctx, losses, result, NllLossBackward0, input, total)


def _nll_grad(grad, ctx, total):
    _same_device(grad._data, ctx.x)
    g2, full, scale = _grad_2d(ctx, grad, total)
    dx = _zeros(ctx.x.shape, ctx.x.dtype, ctx.x)
    _NN(dx).nll_backward(g2, full, scale, ctx.target, ctx.weight_data, ctx.ignore, dx)
    return record(Tensor._wrap(dx.reshape(ctx.in_shape)), NllLossBackwardBackward0, (grad,),
                  (ctx,))


def _nll_backward(node, grad):
    ctx, total, _ = node.saved_values()
    return (_nll_grad(grad, ctx, total),)


def _nll_backward_backward(node, gg):
    # nll is linear in its input: the backward's adjoint is nll itself
    (ctx,) = node.saved_values()
    gctx = object.__new__(_ClassTarget)
    for name in _ClassTarget.__slots__:
        setattr(gctx, name, getattr(ctx, name))
    gctx.x = ew.contiguous(gg._data).reshape(ctx.x.shape)
    return (_nll(gg, gctx),)


NllLossBackward0 = node_class("NllLossBackward0", _nll_backward)
NllLossBackwardBackward0 = node_class("NllLossBackwardBackward0", _nll_backward_backward)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """The negative log likelihood loss of log-probabilities ``input`` at class ``target``."""
    reduction = _reduction(size_average, reduce, reduction)
    return _nll(input, _ClassTarget(input, target, weight, ignore_index, reduction))


def _cross_entropy_backward(node, grad):
    ctx, (total, logp, smoothing), input = node.saved_values()
    if grad_mode.is_grad_enabled():
        return (_cross_entropy_grad_graph(ctx, grad, total, smoothing, input),)
    g2, full, scale = _grad_2d(ctx, grad, total)
    weight = ctx.weight_data
    if not smoothing:
        weight_sum = 0.0  # the kernel multiplies it by smoothing / C
    elif ctx.weight is None:
        weight_sum = float(weight.shape[0])
    elif _on_cpu(weight):
        weight_sum = float(weight.sum(dtype=np.float64))
    else:
        # The sum of the weights stays on the device: dx is linear in (weight, weight_sum) for
        # a fixed gradient, so weights / W with weight_sum 1 and the gradient times W give the
        # same dx. (All-zero weights, W = 0, make this nan where the CPU gives 0.)
        w_total = _weight_total(weight)
        weight = _device_op(lambda w, t: w / t, weight, w_total)
        g2 = _device_op(lambda g, t: g * t, ew.contiguous(grad._data), w_total).reshape(1, 1) \
            if ctx.reduction == 2 else _device_op(lambda g, t: g * t, g2, w_total)
        weight_sum = 1.0
    dx = _empty(ctx.x.shape, ctx.x.dtype, ctx.x)
    _NN(dx).cross_entropy_backward(g2, full, scale, logp, ctx.target, weight, weight_sum,
                                   ctx.ignore, smoothing, dx)
    return (Tensor._wrap(dx.reshape(ctx.in_shape)),)


def _cross_entropy_grad_graph(ctx, grad, total, smoothing, input):
    """The fused backward as differentiable jitgrad ops (``create_graph=True``).

    The target bookkeeping (valid rows, their class weights, the one-hot) is built by the nn
    kernels on the input's device.
    """
    n, c, d = ctx.x.shape
    dtype, like = ctx.x.dtype, ctx.x
    kernels = _NN(like)
    x = input.reshape(n, c, d)
    p = rd.softmax(x, 1)
    flat_t = ctx.target.reshape(-1)
    ones = _storage.full((c, 1), 1, dtype, like)
    valid = _empty((n * d, 1), dtype, like)  # 1 where the target is not ignored, else 0
    kernels.embedding_forward(flat_t, ones, ctx.ignore, valid)
    wt = _empty((n * d, 1), dtype, like)  # weight[target] where not ignored, else 0
    kernels.embedding_forward(flat_t, ctx.weight_data.reshape(c, 1), ctx.ignore, wt)
    onehot = _zeros((n, c, d), dtype, like)
    kernels.nll_backward(_storage.full((1, 1), -1, dtype, like), False, 1.0, ctx.target,
                         ones.reshape(c), ctx.ignore, onehot)
    w = Tensor._wrap(ctx.weight_data)
    w_total = Tensor._wrap(ew.cast(_weight_total(ctx.weight_data), dtype))
    if ctx.reduction == 0:
        g = grad.reshape(n, 1, d)
    elif ctx.reduction == 1:
        g = grad / Tensor._wrap(ew.cast(total, dtype).reshape(()))
    else:
        g = grad
    smooth = Tensor._wrap(valid.reshape(n, 1, d)) * (smoothing / c)
    a = Tensor._wrap(wt.reshape(n, 1, d)) * (1 - smoothing)
    dx = g * ((a + smooth * w_total) * p - smooth * w.reshape(1, c, 1)
              - a * Tensor._wrap(onehot))
    return dx.reshape(ctx.in_shape)


CrossEntropyBackward = node_class("NllLossBackward0", _cross_entropy_backward)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross entropy between logits ``input`` and class indices or class probabilities."""
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if target._data.dtype.kind == "f" and target.shape == input.shape:
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    ctx = _ClassTarget(input, target, weight, ignore_index, reduction)
    x = ctx.x
    logp = _empty(x.shape, x.dtype, x)
    losses = _empty(ctx.target.shape, x.dtype, x)
    result = _empty((1,), x.dtype, x)
    total = _empty((1,), np.float64, x)
    smoothing = float(label_smoothing)
    _NN(x).cross_entropy_forward(x, ctx.target, ctx.weight_data, ctx.ignore, smoothing,
                                 ctx.reduction, logp, losses, result, total)
    out = losses.reshape(ctx.out_shape) if ctx.reduction == 0 else result.reshape(())
    return record(Tensor._wrap(out), CrossEntropyBackward, (input,),
                  (ctx, (total, logp, smoothing), input), check=(input,))


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing):
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    dim = 0 if input.ndim == 1 else 1
    c = input._data.shape[dim]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / c
    prod = rd.log_softmax(input, dim) * target
    if weight is not None:
        if weight.ndim != 1 or weight._data.shape[0] != c:
            raise RuntimeError(f"weight tensor should be defined either for all {c} classes or no "
                               f"classes but got weight tensor of shape: {list(weight.shape)}")
        prod = prod * weight.reshape((c,) + (1,) * (input.ndim - dim - 1))
    loss = -rd.sum(prod, dim)
    return _reduce(loss, reduction)


def _no_grad_arguments(name, **tensors):
    if grad_mode.is_grad_enabled():
        for arg, t in tensors.items():
            if t is not None and t._requires_grad:
                raise RuntimeError(f"The function '{name}' is not differentiable with respect to "
                                   f"argument '{arg}'. This input cannot have requires_grad True.")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """Binary cross entropy between probabilities ``input`` and ``target``."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input "
                         f"size ({input.shape}) is deprecated. Please ensure they have the same "
                         "size.")
    _no_grad_arguments("binary_cross_entropy", weight=weight)
    # NOTE: the range check reads values on the host, so CUDA inputs skip it (as PyTorch's
    # device-side assert would only stop the program)
    if input.numel() and _on_cpu(input._data) and (rd.amin(input).item() < 0
                                                   or rd.amax(input).item() > 1):
        raise RuntimeError("all elements of input should be between 0 and 1")
    loss = ew.apply(_SPECS["binary_cross_entropy"], (input, target))
    return _reduce(loss if weight is None else loss * weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross entropy in one numerically stable formula."""
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    _no_grad_arguments("binary_cross_entropy_with_logits", weight=weight, pos_weight=pos_weight)
    loss = ew.apply(_SPECS["binary_cross_entropy_with_logits"],
                    (input, target, 1.0 if pos_weight is None else pos_weight))
    return _reduce(loss if weight is None else loss * weight, reduction)

