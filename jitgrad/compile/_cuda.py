"""Fused regions on CUDA: the generated kernels launched on device arrays, nothing read back.

A region ending in a partial sum/mean launches one thread per output element. A region ending
in a full sum/mean adds each block's partial sum into a one-element float64
accumulator (zeroed by a kernel first); ``finish`` writes ``acc * scale`` into the 0-d output in
the region's dtype. The backward reads the incoming 0-d gradient on the device: it rescales the
gradients the forward precomputed (for g == 1) with ``scale_by``, or passes it to the backward
kernel. Imported only once a traced region lives on CUDA.
"""

import numpy as np
from numba import cuda

from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import record
from jitgrad.backends.cuda import array, runtime
from jitgrad.compile._fuse import Region
from jitgrad.compile._trace import Divergence
from jitgrad.ops import elementwise
from jitgrad.tensor import Tensor

__all__ = ["CudaRegion"]


@cuda.jit(cache=True)
def zero(acc):
    if cuda.grid(1) == 0:
        acc[0] = 0.0


@cuda.jit(cache=True)
def finish(acc, scale, out):
    """``out`` (0-d, any float dtype) = ``acc[0] * scale``."""
    if cuda.grid(1) == 0:
        out[()] = acc[0] * scale


@cuda.jit(cache=True)
def scale_by(grad, g):
    """``grad *= g`` for the 0-d ``g``, in ``grad``'s dtype."""
    f = g[()]
    for i in range(cuda.grid(1), grad.size, cuda.gridsize(1)):
        grad[i] = grad[i] * f


class CudaRegion(Region):
    """A fused region whose tensors are ``DeviceArray``s: the same plan, CUDA kernels."""

    cuda = True

    def run(self, tensors, scalars):
        arrays = []
        for t, shape, code in zip(tensors, self.in_shapes, self.patterns):
            d = t._data
            if (d.shape != shape or d.dtype != self.np_dtype
                    or type(d) is not array.DeviceArray):
                raise Divergence("region input changed shape, dtype or device")
            if code == "x":  # a broadcast the index maps do not cover: expanded by a copy
                d = elementwise.cast(d.broadcast_to(self.shape), self.np_dtype)
            arrays.append(elementwise.contiguous(d).ravel())
        scalars = scalars + self.index_args
        launch = runtime.grid(self.size)
        devs = [a.dev for a in arrays]
        grads = None
        if self.dims is not None:  # one thread per output element
            out = array.empty(self.out_shape, self.np_dtype)
            self.forward[runtime.grid(out.size)](*devs, *scalars, out.ravel().dev)
        elif self.reduce:
            scale = 1.0 / self.size if self.reduce == "mean" else 1.0
            mask = tuple(t._requires_grad for t in tensors)
            acc = runtime.cuda().device_array(1, np.float64)
            zero[1, 1](acc)
            if grad_mode.is_grad_enabled() and any(mask):
                # NOTE: as on the CPU the gradients for g == 1 come out of the forward pass
                grads = [array.empty(self.shape, self.np_dtype) for m in mask if m]
                self.forward_grad_kernel(mask)[launch](
                    *devs, *scalars, scale, *[o.ravel().dev for o in grads], acc)
            else:
                self.forward[launch](*devs, *scalars, acc)
            out = array.empty((), self.np_dtype)
            finish[1, 1](acc, scale, out.dev)
        else:
            out = array.empty(self.shape, self.np_dtype)
            self.forward[launch](*devs, *scalars, out.ravel().dev)
        return record(Tensor._wrap(out), self.node_cls, tensors,
                      [tensors, arrays, scalars, grads], check=tensors)

    def fast_backward(self, saved, g, mask):
        _, arrays, scalars, grads = saved
        launch = runtime.grid(self.size)
        if grads is not None and len(grads) == sum(mask):
            saved[3] = None  # handed over: a retained graph's next backward recomputes
            it = iter(grads)
            outs = self._reduced([next(it) if m else None for m in mask])
            for o in outs:
                if o is not None:
                    scale_by[runtime.grid(o._data.size)](o._data.ravel().dev, g.dev)
            return outs
        if self.reduce and self.dims is None:
            g_args = (g.dev, float(self.size) if self.reduce == "mean" else 1.0)
        else:  # a partial reduction's g has the output's shape: the kernel broadcasts it
            shape = self.shape if self.dims is None else self.out_shape
            if g.shape != shape or g.dtype != self.np_dtype or not g.flags.c_contiguous:
                g = elementwise.cast(g if g.shape == shape else g.broadcast_to(shape),
                                     self.np_dtype)
            g_args = (g.ravel().dev,)
        outs = [array.empty(self.shape, self.np_dtype) for m in mask if m]
        self.backward_kernel(mask)[launch](*[a.dev for a in arrays], *scalars, *g_args,
                                           *[o.ravel().dev for o in outs])
        it = iter(outs)
        return self._reduced([next(it) if m else None for m in mask])
