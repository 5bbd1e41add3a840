"""``Tensor``: a numpy buffer plus dtype, device and autograd fields.

Operators and methods are the functions of ``jitgrad.ops`` bound at the bottom of this module,
so each is written once and serves both ``x.exp()`` and ``jitgrad.exp(x)``.
"""

from weakref import ref as _weak_ref

import numpy as np

from jitgrad import dtypes
from jitgrad._tensor_str import format_tensor
from jitgrad.autograd import grad_mode
from jitgrad.autograd.node import AccumulateGrad
from jitgrad.size import CPU, Size

__all__ = ["Tensor"]


class Tensor:
    """A multi-dimensional array that records operations for automatic differentiation.

    Example::

        >>> import jitgrad
        >>> x = jitgrad.ones(2, 2, requires_grad=True)
        >>> (x * 3).sum().backward()
        >>> x.grad
        tensor([[3., 3.],
                [3., 3.]])
    """

    __slots__ = ("_data", "_requires_grad", "grad", "grad_fn", "_output_nr", "_version", "_base",
                 "_grad_acc", "_retains_grad", "_fresh", "_views", "__weakref__")

    def __init__(self, *args, requires_grad=False):
        """Legacy constructor: ``Tensor(2, 3)`` is uninitialised, ``Tensor([1, 2])`` is float32."""
        from jitgrad.ops.creation import empty, tensor

        if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            src = empty(*args) if args else tensor([])
        elif len(args) == 1:
            src = tensor(args[0], dtype=dtypes.float32)
        else:
            raise TypeError("Tensor() takes a size (ints) or one sequence of data")
        for name in Tensor.__slots__[:-1]:
            setattr(self, name, getattr(src, name))
        self.requires_grad_(requires_grad)

    @staticmethod
    def _wrap(data, grad_fn=None):
        """A tensor around an existing numpy array (no copy), as ops build their results.

        Every field is set here, inline: this runs for each op's result, and on tiny tensors a
        further method call is a noticeable share of the op (a classmethod's binding too).
        """
        t = object.__new__(Tensor)
        t._data = data
        t._requires_grad = grad_fn is not None
        t.grad = None
        t.grad_fn = grad_fn
        t._output_nr = 0
        t._version = [0]
        t._base = None
        t._grad_acc = None
        t._retains_grad = False
        t._fresh = False  # made by the backward pass and held by nothing else: may become .grad
        t._views = None  # weak references to views of this (root) tensor; see ops.shape._view_of
        return t

    def _set_fields(self, data, grad_fn):
        """Every field of a tensor around ``data``, as ``_wrap`` sets them (for subclasses)."""
        src = Tensor._wrap(data, grad_fn)
        for name in Tensor.__slots__[:-1]:
            setattr(self, name, getattr(src, name))

    # --- metadata -------------------------------------------------------------------------
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        if dim is None:
            return Size(self._data.shape)
        from jitgrad.ops._checks import normalize_dim

        return self._data.shape[normalize_dim(dim, self._data.ndim)]

    @property
    def dtype(self):
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return CPU if type(self._data) is np.ndarray else _storage.CUDA0

    @property
    def is_cuda(self):
        return type(self._data) is not np.ndarray

    def cuda(self, device=None, non_blocking=False):
        """A copy on the GPU (``self`` if already there)."""
        return self.to("cuda" if device is None else device)

    def cpu(self):
        """A copy in host memory (``self`` if already there)."""
        return self.to("cpu")

    @property
    def __cuda_array_interface__(self):
        """CUDA memory shared with numba, CuPy or PyTorch without a copy (CUDA tensors only)."""
        if type(self._data) is np.ndarray:
            raise AttributeError("Can't get __cuda_array_interface__ on non-CUDA tensor type: "
                                 f"{self.type()} If CUDA data is required use tensor.cuda() to "
                                 "copy tensor to device memory.")
        if self._requires_grad:
            raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires "
                               "grad. If gradients aren't required, use var.detach() to get "
                               "Variable that doesn't require grad.")
        return self._data.__cuda_array_interface__

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return self._data.size

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    def is_contiguous(self):
        return self._data.flags.c_contiguous

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def stride(self, dim=None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[dim]

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # --- autograd fields --------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        if self.grad_fn is not None and not requires_grad:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach().")
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(
                "only Tensors of floating point dtype can require gradients "
                f"(got {self.dtype})")
        self._requires_grad = bool(requires_grad) or self.grad_fn is not None
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def data(self):
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        self._data = value._data

    def detach(self):
        t = Tensor._wrap(self._data)
        t._version = self._version  # a detached tensor shares storage, so shares the version
        return t

    def detach_(self):
        if self._base is not None and self._base._requires_grad:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def retain_grad(self):
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None and not self._retains_grad:
            self._retains_grad = True
            self.grad_fn.retained = self

    @property
    def retains_grad(self):
        return self._retains_grad

    def _grad_edge(self):
        """The graph edge that gradients for this tensor flow into, as ``(node, 0)``."""
        if self.grad_fn is not None:
            return (self.grad_fn, self._output_nr)
        if not self._requires_grad:
            return (None, 0)
        acc = self._grad_acc
        if acc is not None and type(acc) is not AccumulateGrad:
            acc = acc()
        if acc is None:
            # NOTE: held weakly, as PyTorch holds it: the node holds this leaf, so a strong
            # reference would make a cycle, and a leaf used in a graph would outlive ``del``
            # until the cyclic GC ran (its buffers with it)
            acc = AccumulateGrad(self)
            self._grad_acc = _weak_ref(acc)
        return (acc, 0)

    def register_hook(self, hook):
        """``hook(grad)`` runs when this tensor's gradient is computed; it may return a new one.

        Returns a handle whose ``remove()`` unregisters the hook.
        """
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node = self._grad_edge()[0]
        if self.grad_fn is None:  # a leaf's hooks live on its node: hold it (a cycle, kept)
            self._grad_acc = node
        return node._hook_list().tensor.add(hook)

    def _accumulate_grad(self, grad):
        if grad_mode.is_grad_enabled():  # create_graph: keep the gradient's own graph
            self.grad = grad if self.grad is None else self.grad + grad
        elif self.grad is None:
            data = grad._data
            if grad._fresh and data.base is None and data.flags.c_contiguous:
                grad._fresh = False  # taken: anyone else this object reaches gets a copy
                self.grad = grad
                return
            root = grad._base  # a view (reshape, t()) of a fresh buffer may take that buffer
            if (root is not None and root._fresh and root._data.base is None
                    and data.flags.c_contiguous and data.size == root._data.size
                    and data.dtype == root._data.dtype):
                # NOTE: every tensor sharing root's buffer is root or a view whose _base is root,
                # so clearing root's flag leaves one taker; the others copy.
                root._fresh = False
                self.grad = Tensor._wrap(data)
            else:  # the buffer may be shared with other tensors
                self.grad = Tensor._wrap(_elementwise.cast(data, data.dtype))
        else:
            self.grad.add_(grad)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Args:
            gradient: d(loss)/d(self); may be omitted only for a one-element tensor.
            retain_graph: keep saved values for another backward (defaults to create_graph).
            create_graph: record the backward pass so it can be differentiated again.
        """
        _autograd_backward.backward(self, gradient, retain_graph, create_graph, inputs)

    @property
    def output_nr(self):
        return self._output_nr

    # --- host access --------------------------------------------------------------------------
    def _host(self):
        """The data as a numpy array: itself on the CPU, a copy from the GPU."""
        d = self._data
        return d if type(d) is np.ndarray else _storage.move(d, CPU)

    def item(self):
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._host().reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def numpy(self):
        if type(self._data) is not np.ndarray:
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() "
                            "to copy the tensor to host memory first.")
        if self._requires_grad:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        if type(self._data) is not np.ndarray:
            self.numpy()  # raises the TypeError PyTorch raises
        return self._data if dtype is None else self._data.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(
                "Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    __hash__ = object.__hash__

    def __deepcopy__(self, memo):
        """A leaf with copied data (on the same device) and a copied ``.grad``, as in PyTorch."""
        if self.grad_fn is not None:
            raise RuntimeError(
                "Only Tensors created explicitly by the user (graph leaves) support the deepcopy "
                "protocol at the moment.  If you were attempting to deepcopy a module, this may "
                "be because of a torch.nn.utils.weight_norm usage, see "
                "https://github.com/pytorch/pytorch/pull/103001")
        if id(self) not in memo:
            result = self._copy_with(_elementwise.cast(self._data, self._data.dtype))
            memo[id(self)] = result
            if self.grad is not None:
                result.grad = self.grad.__deepcopy__(memo)
        return memo[id(self)]

    def __reduce_ex__(self, protocol):
        """Pickled as PyTorch pickles a tensor: values, dtype, device, ``requires_grad`` and class
        (``Parameter``), not ``.grad`` or the graph (a non-leaf comes back as a leaf)."""
        return _unpickle, (type(self), self._host(), self.is_cuda, self._requires_grad)

    def _copy_with(self, data):
        """A leaf like this one around ``data`` (Parameter keeps its class)."""
        return Tensor._wrap(data).requires_grad_(self._requires_grad)

    def __repr__(self):
        suffixes = []
        if self.grad_fn is not None:
            suffixes.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self._requires_grad:
            suffixes.append("requires_grad=True")
        return format_tensor(self._host(), self._data.dtype.name if self._data.dtype.kind != "b"
                             else "bool", suffixes,
                             device=None if type(self._data) is np.ndarray else str(self.device))

    __str__ = __repr__


def _unpickle(cls, data, on_cuda, requires_grad):
    """A leaf of class ``cls`` around ``data`` (a host array), as ``__reduce_ex__`` pickled it."""
    t = object.__new__(cls)
    t._set_fields(_storage.move(data, _storage.CUDA0) if on_cuda else data, None)
    return t.requires_grad_(True) if requires_grad else t


from jitgrad.autograd import backward as _autograd_backward  # noqa: E402  (imports ops)
from jitgrad.ops import _storage  # noqa: E402  (ops need Tensor defined)
from jitgrad.ops import elementwise as _elementwise  # noqa: E402
from jitgrad.ops import methods as _methods  # noqa: E402

_methods.bind(Tensor)
Tensor.__module__ = "jitgrad"  # prints as <class 'jitgrad.Tensor'>, like torch.Tensor
