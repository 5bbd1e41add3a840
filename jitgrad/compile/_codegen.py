"""Source of the fused kernels of one region: a forward loop and a backward loop per grad mask.

The forward composes the table's scalar formulas by substitution (one local per op); the backward
recomputes those locals from the region inputs, then walks the ops in reverse, substituting each
derivative formula (``g``, ``result``, inputs) and summing the adjoints where values meet. A region
ending in a full sum/mean also gets ``forward_grad``: the sum and its gradients in one pass.

A region ending in a partial sum/mean (``region.dims``: the reduced dims) reads its output through
an index map like a broadcast input's: the region's shape is coalesced into alternating kept
("k") and reduced ("r") groups of dims (``region.groups``, e.g. "kr" for ``sum(-1)``), and the
kernels get one (stride, size, stride) triple of ints per group, so one kernel serves every
shape with that grouping. On the CPU the loop over the region's elements runs in chunks that
never cross the last group: when it is reduced a chunk adds its elements in blocked float32
partial sums into one float64 accumulator per output element, when it is kept the chunk adds
into a contiguous run of them (both loops vectorize). Its backward reads the incoming gradient
through the same map: broadcast over the reduced dims inside the kernel.

A region on CUDA (``region.cuda``) gets the same body lines in ``@cuda.jit`` kernels: grid-stride
loops instead of plain ones, and for a sum a block tree reduction in place of the blocked loop
(see ``_cuda_sum_tail``); a partial reduction runs one thread per output element.
"""


from jitgrad.backends.cpu import codegen

__all__ = ["forward_source", "backward_source", "forward_grad_source", "broadcast_pattern"]

_NP_TYPE = {"float32": "np.float32", "float64": "np.float64"}
_HEADER = ["import numpy as np", "from numba import njit",
           "from jitgrad.backends.cpu.scalar import *  # noqa: F403", codegen.VMATH_IMPORT,
           "from jitgrad.backends.cpu.simd import prefer_wide_vectors  # noqa: F401", ""]
_JIT = '@njit(cache=True, error_model="numpy")'
# NOTE: reassoc/contract only on the reduction loop; the elementwise part lives in its own
# function without fast-math, so vmath's range reductions keep their exact rounding.
_BLOCK = 2048
_JIT_SUM = '@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})'


def _substitute(formula, names, dtype_name, cpu):
    """``formula`` with its names replaced; on the CPU ``**`` is vmath's (x*x for ``** 2``)."""
    return codegen.substitute(formula, names, dtype_name, vector_pow=cpu)


def broadcast_pattern(in_shape, shape):
    """How a region input of shape ``in_shape`` is read at flat index ``i`` of ``shape``.

    Returns (code, ints): "f" the region's own layout (``a[i]``); "1" one element (``a[0]``,
    read once); for inputs whose non-1 dims (right-aligned) form one block of dims [p, q) of
    the region: "r" a trailing block (``a[i % m]``, e.g. a bias row), "c" a leading block
    (``a[i // d]``, e.g. a column), "b" one in the middle (``a[(i // d) % m]``), where
    d = prod(shape[q:]) and m = prod(shape[p:q]) are passed to the kernel as ints; "x" any other
    pattern, expanded to the region's shape by a copy before the kernel and read as "f".
    """
    size = 1
    for n in in_shape:
        size *= n
    total = 1
    for n in shape:
        total *= n
    if size == total:
        return "f", ()
    if size == 1:
        return "1", ()
    aligned = (1,) * (len(shape) - len(in_shape)) + tuple(in_shape)
    kept = [k for k, (a, n) in enumerate(zip(aligned, shape)) if a == n and n != 1]
    p, q = kept[0], kept[-1] + 1
    if any(aligned[k] == 1 and shape[k] != 1 for k in range(p, q)):
        return "x", ()
    div = 1
    for n in shape[q:]:
        div *= n
    if div == 1:
        return "r", (size,)
    if total == div * size:  # nothing broadcast before the block: i // d < m
        return "c", (div,)
    return "b", (div, size)


_READ = {"f": "i", "x": "i", "r": "i % m{j}_", "c": "i // d{j}_", "b": "(i // d{j}_) % m{j}_"}


def _patterns(region):
    return getattr(region, "patterns", None) or ("f",) * region.n_arrays


def _broadcasts(region):
    return any(p not in "fx" for p in _patterns(region))


def _partial(region):
    """True for a region ending in a sum/mean over some dims (not the full one)."""
    return getattr(region, "dims", None) is not None


def _chunked(region):
    """CPU kernels of a region with "r", "c" or "b" inputs or a partial reduction loop over
    chunks of ``inner_`` elements (the gcd of those inputs' d and m, and of the size of the
    reduction's last group): within a chunk each such input is read at ``base + c_`` ("r") or
    is one value read per chunk ("c", "b"), and the output is one element or a contiguous run,
    so the inner loop has no integer division and vectorizes like the full-size case."""
    return _target(region) is _CPU and (any(code in "rcb" for code in _patterns(region))
                                        or _partial(region))


def _read(region, j):
    """The expression of array input ``j``'s element for the flat index ``i``."""
    code = _patterns(region)[j]
    if code == "1" or (code in "cb" and _chunked(region)):
        return f"a{j}"  # read once in the prologue, or once per chunk
    if code in "fxr" and _chunked(region):
        return f"a{j}_c[c_]"  # the chunk's view
    return f"a{j}_[{_READ[code].format(j=j)}]"


def _loop_reads(region, pad="        "):
    return [f"{pad}a{j} = {_read(region, j)}" for j, code in enumerate(_patterns(region))
            if _read(region, j) != f"a{j}"]


def _views(region, pad, flat, lo, hi):
    """Views over elements [lo, hi) of the chunk of the full-size arrays (``flat`` and inputs)
    and of "r" inputs: indices from 0, so numba knows they are not negative, and vectorizes."""
    lines = [f"{pad}{name}c = {name}[i0_{lo}:i0_ + {hi}]" for name in flat]
    for j, code in enumerate(_patterns(region)):
        if code in "fx":
            lines.append(f"{pad}a{j}_c = a{j}_[i0_{lo}:i0_ + {hi}]")
        elif code == "r":
            lines.append(f"{pad}a{j}_c = a{j}_[base{j}_{lo}:base{j}_ + {hi}]")
    return lines


def _chunk_head(region, pad):
    """Per chunk: its start, each "r" input's offset, each "c"/"b" input's one value, and for a
    partial reduction the index ``ob_`` of its (first) output element."""
    lines = [f"{pad}i0_ = o_ * inner_"]
    if _partial(region):
        lines.append(f"{pad}ob_ = {_out_index(region, 'i0_')}")
    for j, code in enumerate(_patterns(region)):
        if code == "r":
            lines.append(f"{pad}base{j}_ = i0_ % m{j}_")
        elif code == "c":
            lines.append(f"{pad}a{j} = a{j}_[i0_ // d{j}_]")
        elif code == "b":
            lines.append(f"{pad}a{j} = a{j}_[(i0_ // d{j}_) % m{j}_]")
    return lines


def _in_chunk(body, flat):
    """``body`` with ``name[i]`` of the full-size arrays ``flat`` read through chunk views."""
    out = []
    for s in body:
        for name in flat:
            s = s.replace(f"{name}[i]", f"{name}c[c_]")
        out.append(s)
    return out


def _element_loop(region, n, body, flat=(), head=()):
    """The loop over the flat index ``i`` with the inputs read, then ``body`` (unindented),
    which indexes the full-size arrays ``flat`` with ``[i]``; chunked, ``head`` (unindented)
    runs once per chunk."""
    if _chunked(region):
        return [f"    for o_ in range({n} // inner_):", *_chunk_head(region, " " * 8),
                *(f"        {s}" for s in head),
                *_views(region, " " * 8, flat, "", "inner_"), "        for c_ in range(inner_):",
                *_loop_reads(region, " " * 12),
                *(f"            {s}" for s in _in_chunk(body, flat))]
    return ["    " + _target(region).loop.format(n=n), *_loop_reads(region),
            *(f"        {s}" for s in body)]


def _chunked_blocks(region, body, flat=(), before=(), after=()):
    """Chunked CPU loops in blocks of at most _BLOCK elements: per block the lines ``before``,
    the element loop running ``body`` (all unindented), the lines ``after``."""
    return ["    for o_ in range(size_ // inner_):", *_chunk_head(region, " " * 8),
            f"        for k_ in range(0, inner_, {_BLOCK}):",
            f"            e_ = min(k_ + {_BLOCK}, inner_)",
            *_views(region, " " * 12, flat, " + k_", "e_"),
            *(f"            {s}" for s in before),
            "            for c_ in range(e_ - k_):",
            *(f"                {s}" for s in _in_chunk(body, flat)),
            *(f"            {s}" for s in after)]


def _chunked_sum(region, body, flat=(), acc="acc"):
    """A chunked CPU sum: ``body`` (unindented) adds each element into the float32 ``part``
    of a block of at most _BLOCK elements; blocks add into the float64 ``acc``."""
    return _chunked_blocks(region, body, flat, [f"part = {_NP_TYPE[region.dtype]}(0)"],
                           [f"{acc} += part"])


def _size(region):
    """The element count inside a kernel: a full input's size, or the ``size_`` argument."""
    return "size_" if _broadcasts(region) or _partial(region) else "a0_.size"


def _ref_name(ref):
    return f"{ref[0]}{ref[1]}"  # a0 array element, s0 scalar, v0 an earlier op's value


def _input_names(region, spec, refs):
    """An op's formula names -> kernel names; a scalar in ``region.baked`` is its literal."""
    baked = getattr(region, "baked", None) or {}
    return {n: repr(float(baked[r[1]])) if r[0] == "s" and r[1] in baked else _ref_name(r)
            for n, r in zip(spec.inputs, refs)}


def _forward_lines(region):
    lines = []
    cpu = _target(region) is _CPU
    for k, (spec, refs) in enumerate(region.ops):
        names = _input_names(region, spec, refs)
        lines.append(f"v{k} = {_substitute(spec.formula, names, region.dtype, cpu)}")
    return lines


class _Target:
    """What the CPU and CUDA kernels of a region differ in: decorators and the element loop."""

    __slots__ = ("jit", "device_jit", "loop")

    def __init__(self, jit, device_jit, loop):
        self.jit, self.device_jit, self.loop = jit, device_jit, loop


_CPU = _Target(_JIT, _JIT, "for i in range({n}):")
_CUDA = _Target("@cuda.jit(cache=True)", '@cuda.jit(device=True, inline="always")',
                "for i in range(cuda.grid(1), {n}, cuda.gridsize(1)):")
_CUDA_HEADER = ["import math  # noqa: F401", "import numpy as np",
                "from numba import cuda, float64",
                "from jitgrad.backends.cuda.scalar import *  # noqa: F403", ""]


def _target(region):
    return _CUDA if getattr(region, "cuda", False) else _CPU


def _cuda_scalar_hash():
    """Hash of ``backends/cuda/scalar.py``: numba's cache does not track inlined functions."""
    import hashlib
    import os

    from jitgrad.backends import cuda

    with open(os.path.join(os.path.dirname(cuda.__file__), "scalar.py"), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def _header(region):
    if _target(region) is _CUDA:
        return [f"# jitgrad fused CUDA region; scalar functions {_cuda_scalar_hash()}",
                *_CUDA_HEADER]
    lib = getattr(codegen, "_SCALAR_HASH", "")
    return [f"# jitgrad fused region; scalar functions {lib}", *_HEADER]


def index_params(region):
    """The int parameters of a broadcasting or partially reducing region's kernels (values:
    ``Region.index_args``), then a partial reduction's ``reduce_params``."""
    partial = _partial(region)
    if not _broadcasts(region) and not partial:
        return []
    params = ["size_"]
    if partial or any(code in "rcb" for code in _patterns(region)):
        params.append("inner_")
    for j, code in enumerate(_patterns(region)):
        params += [f"d{j}_"] if code in "cb" else []
        params += [f"m{j}_"] if code in "rb" else []
    return params + (reduce_params(region) if partial else [])


def reduce_params(region):
    """Per group of ``region.groups``: kept ``kd, kn, ks`` (its stride in the region, size, stride
    in the output), reduced ``rd, rn, rs`` (stride in the region, size, stride among the
    reduced elements); then ``nred_`` (reduced elements per output) and ``scale_`` (1 or
    1 / nred_ for a mean). Values: ``Region.index_args``."""
    params = []
    counts = {"k": 0, "r": 0}
    for kind in region.groups:
        q = counts[kind]
        counts[kind] += 1
        params += [f"{kind}d{q}_", f"{kind}n{q}_", f"{kind}s{q}_"]
    return params + ["nred_", "scale_"]


def _group_sum(region, kind, index, div, mod, mul):
    """Sum over the groups of ``kind`` of ((index // div) % mod) * mul, with the names of
    ``reduce_params`` ("d", "n", "s" for ``div``, ``mod``, ``mul``)."""
    terms = [f"(({index} // {kind}{div}{q}_) % {kind}{mod}{q}_) * {kind}{mul}{q}_"
             for q in range(region.groups.count(kind))]
    return " + ".join(terms) or "0"


def _out_index(region, i):
    """The output element of the region's flat index ``i``."""
    return _group_sum(region, "k", i, "d", "n", "s")


def _params(region):
    return ([f"a{j}_" for j in range(region.n_arrays)] +
            [f"s{j}_" for j in range(region.n_scalars)] + index_params(region))


def _prologue(region):
    np_type = _NP_TYPE[region.dtype]
    return ((codegen.WIDE_VECTORS if _target(region) is _CPU else []) +
            [f"    s{j} = {np_type}(s{j}_)" for j in range(region.n_scalars)] +
            [f"    a{j} = a{j}_[0]" for j, code in enumerate(_patterns(region)) if code == "1"])


def _cuda_sum_tail(element, n="a0_.size"):
    """A CUDA sum kernel's loop and reduction: each thread adds ``total += ...`` (``element``
    lines) over its grid-stride share in float64, the block sums the threads' totals with a
    halving tree in shared memory, and thread 0 adds the block's sum to ``acc[0]``."""
    from jitgrad.backends.cuda import runtime

    threads = runtime.THREADS
    return [f"    part = cuda.shared.array({threads}, float64)", "    t = cuda.threadIdx.x",
            "    total = 0.0", "    " + _CUDA.loop.format(n=n),
            *(f"        {s}" for s in element), "    part[t] = total", "    cuda.syncthreads()",
            f"    step = {threads // 2}", "    while step > 0:", "        if t < step:",
            "            part[t] += part[t + step]", "        cuda.syncthreads()",
            "        step //= 2", "    if t == 0:", "        cuda.atomic.add(acc, 0, part[0])", ""]


def forward_source(region):
    """``forward(*arrays, *scalars, out)`` writes the region's output (flat arrays of one size;
    for a partial sum/mean ``out`` has the output's size and ``scalars`` end with
    ``reduce_params``); a region ending in a full sum has ``forward(*arrays, *scalars)`` return
    the float64 sum (on CUDA ``forward(*arrays, *scalars, acc)`` adds it to the float64
    ``acc[0]``)."""
    target = _target(region)
    body = _forward_lines(region)
    last = f"v{len(region.ops) - 1}"
    params = _params(region)
    lines = _header(region)
    if _partial(region) and target is _CPU and region.groups[-1] == "k":
        # NOTE: a block's values go to a float32 scratch row, then add into a contiguous run
        # of float64 accumulators: two loops that vectorize (one loop adding into the
        # accumulators ran 1.6x slower). No horizontal sum, so no fast-math flags.
        return "\n".join(lines + [
            _JIT, f"def forward({', '.join(params + ['out'])}):", *_prologue(region),
            "    acc = np.zeros(out.size)",
            f"    tmp_ = np.empty(min(inner_, {_BLOCK}), {_NP_TYPE[region.dtype]})",
            *_chunked_blocks(region, [*_loop_reads(region, ""), *body, f"tmp_[c_] = {last}"],
                             after=["acc_c = acc[ob_ + k_:ob_ + e_]",
                                    "for c_ in range(e_ - k_):", "    acc_c[c_] += tmp_[c_]"]),
            *_partial_finish(region)]) + "\n"
    if region.reduce:
        args = [f"a{j}" for j in range(region.n_arrays)] + [f"s{j}" for j in
                                                            range(region.n_scalars)]
        call = ("element(" + ", ".join([_read(region, j) for j in range(region.n_arrays)] +
                                       [f"s{j}" for j in range(region.n_scalars)]) + ")")
        lines += [target.device_jit, f"def element({', '.join(args)}):",
                  *(f"    {s}" for s in body), f"    return {last}", ""]
        if _partial(region) and target is _CUDA:
            # one thread per output element, walking its reduced elements in a float64 total
            return "\n".join(lines + [
                _CUDA.jit, f"def forward({', '.join(params + ['out'])}):", *_prologue(region),
                "    for o in range(cuda.grid(1), out.size, cuda.gridsize(1)):",
                f"        b_ = {_group_sum(region, 'k', 'o', 's', 'n', 'd')}",
                "        total = 0.0", "        for r_ in range(nred_):",
                f"            i = b_ + {_group_sum(region, 'r', 'r_', 's', 'n', 'd')}",
                f"            total += {call}",
                f"        out[o] = {_NP_TYPE[region.dtype]}(total * scale_)", ""]) + "\n"
        if _partial(region):  # the last group is reduced: each chunk adds into one element
            return "\n".join(lines + [
                _JIT_SUM, f"def forward({', '.join(params + ['out'])}):", *_prologue(region),
                "    acc = np.zeros(out.size)",
                *_chunked_sum(region, [f"part += {call}"], acc="acc[ob_]"),
                *_partial_finish(region)]) + "\n"
        if target is _CUDA:
            return "\n".join(lines + [_CUDA.jit, f"def forward({', '.join(params + ['acc'])}):",
                                      *_prologue(region),
                                      *_cuda_sum_tail([f"total += {call}"], _size(region))])
        # NOTE: float32 partial sums over fixed blocks (vectorized, several lanes) added into a
        # float64 total: as fast as a plain float32 loop, about as accurate as pairwise summation.
        if _chunked(region):
            return "\n".join(lines + [_JIT_SUM, f"def forward({', '.join(params)}):",
                                      *_prologue(region), "    acc = 0.0",
                                      *_chunked_sum(region, [f"part += {call}"]),
                                      "    return acc", ""]) + "\n"
        lines += [_JIT_SUM, f"def forward({', '.join(params)}):",
                  *_prologue(region), "    acc = 0.0", f"    n = {_size(region)}",
                  f"    blocks = n // {_BLOCK}", "    for b in range(blocks):",
                  f"        part = {_NP_TYPE[region.dtype]}(0)",
                  f"        for i in range(b * {_BLOCK}, b * {_BLOCK} + {_BLOCK}):",
                  f"            part += {call}", "        acc += part",
                  f"    for i in range(blocks * {_BLOCK}, n):", f"        acc += {call}",
                  "    return acc", ""]
    else:
        lines += [target.jit, f"def forward({', '.join(params + ['out'])}):", *_prologue(region),
                  *_element_loop(region, "out.size", [*body, f"out[i] = {last}"], ["out"]), ""]
    return "\n".join(lines) + "\n"


def _partial_finish(region):
    """The CPU partial reduction's output: its float64 accumulators times ``scale_``."""
    return ["    for q_ in range(out.size):",
            f"        out[q_] = {_NP_TYPE[region.dtype]}(acc[q_] * scale_)", ""]


def _backward_lines(region, mask):
    """Reverse-mode statements: adjoint ``gv{k}`` per op value, ``ga{j}`` per masked array."""
    lines = []
    defined = set()
    last = len(region.ops) - 1
    lines.append(f"gv{last} = g")
    defined.add(f"gv{last}")
    for k in range(last, -1, -1):
        gk = f"gv{k}"
        if gk not in defined:
            continue
        spec, refs = region.ops[k]
        names = _input_names(region, spec, refs)
        names.update(g=gk, result=f"v{k}")
        for name, ref in zip(spec.inputs, refs):
            formula = spec.grads.get(name)
            if ref[0] == "s" or formula is None or (ref[0] == "a" and not mask[ref[1]]):
                continue
            target = f"g{_ref_name(ref)}"
            expr = _substitute(formula, names, region.dtype, _target(region) is _CPU)
            lines.append(f"{target} = {target} + ({expr})" if target in defined else
                         f"{target} = {expr}")
            defined.add(target)
    return lines, defined


def backward_source(region, mask):
    """``backward(*arrays, *scalars, g, *grads)``: one flat grad array per True in ``mask``;
    ``g`` is the incoming gradient (flat array, of the output's size for a partial sum/mean,
    or a number for a region ending in a full sum).
    On CUDA a sum's ``g`` is the 0-d device gradient followed by its divisor ``n_``
    (1 for a sum, the size for a mean), so the kernel reads it without a host copy."""
    target = _target(region)
    lines, defined = _backward_lines(region, mask)
    outs = [j for j, m in enumerate(mask) if m]
    np_type = _NP_TYPE[region.dtype]
    g_params = ["g_"]
    g_read = [] if region.reduce else ["g = g_[i]"]
    g_pro = [f"    g = {np_type}(g_)"] if region.reduce else []
    head = []
    if _partial(region):  # g_ has the output's size: read through the output's index map
        g_pro = [f"    sc_ = {np_type}(scale_)"]
        if target is _CUDA:
            g_read = [f"g = g_[{_out_index(region, 'i')}] * sc_"]
        elif region.groups[-1] == "r":
            head = ["g = g_[ob_] * sc_"]
        else:
            head, g_read = ["g_c = g_[ob_:ob_ + inner_]"], ["g = g_c[c_] * sc_"]
    elif region.reduce and target is _CUDA:
        g_params.append("n_")
        g_pro = [f"    g = {np_type}(g_[()] / n_)"]
    src = _header(region) + [
        target.jit,
        f"def backward({', '.join(_params(region) + g_params + [f'ga{j}_' for j in outs])}):",
        *_prologue(region), *g_pro,
        *_element_loop(region, f"ga{outs[0]}_.size", [
            *g_read, *_forward_lines(region), *lines,
            *(f"ga{j}_[i] = {f'ga{j}' if f'ga{j}' in defined else f'{np_type}(0)'}"
              for j in outs)], [*(["g_"] if g_read == ["g = g_[i]"] else []),
                                *(f"ga{j}_" for j in outs)], head), ""]
    return "\n".join(src) + "\n"


def forward_grad_source(region, mask):
    """For a region ending in a full sum/mean: ``forward_grad(*arrays, *scalars, g, *grads)``
    returns the float64 sum and writes the gradients for an incoming gradient ``g``, in one pass
    (the loss-like case: backward then only rescales). On CUDA the sum goes to a last argument
    ``acc`` as in ``forward``."""
    target = _target(region)
    lines, defined = _backward_lines(region, mask)
    outs = [j for j, m in enumerate(mask) if m]
    np_type = _NP_TYPE[region.dtype]
    args = ([f"a{j}" for j in range(region.n_arrays)] +
            [f"s{j}" for j in range(region.n_scalars)] + ["g"])
    call = ("element_grad(" + ", ".join([_read(region, j) for j in range(region.n_arrays)] +
                                        [f"s{j}" for j in range(region.n_scalars)] + ["g"]) + ")")
    results = [f"v{len(region.ops) - 1}"] + [f"ga{j}" if f"ga{j}" in defined else f"{np_type}(0)"
                                              for j in outs]
    store = [f"ga{j}_[i] = r[{n + 1}]" for n, j in enumerate(outs)]
    params = _params(region) + ["g_"] + [f"ga{j}_" for j in outs]
    src = _header(region) + [
        target.device_jit, f"def element_grad({', '.join(args)}):",
        *(f"    {s}" for s in _forward_lines(region)), *(f"    {s}" for s in lines),
        f"    return ({', '.join(results)},)", ""]
    if target is _CUDA:
        return "\n".join(src + [
            _CUDA.jit, f"def forward_grad({', '.join(params + ['acc'])}):", *_prologue(region),
            f"    g = {np_type}(g_)",
            *_cuda_sum_tail([f"r = {call}", "total += r[0]", *store], _size(region))])
    if _chunked(region):
        return "\n".join(src + [
            _JIT_SUM, f"def forward_grad({', '.join(params)}):", *_prologue(region),
            f"    g = {np_type}(g_)", "    acc = 0.0",
            *_chunked_sum(region, [f"r = {call}", "part += r[0]", *store],
                          [f"ga{j}_" for j in outs]), "    return acc", ""]) + "\n"
    src += [
        _JIT_SUM,
        f"def forward_grad({', '.join(params)}):",
        *_prologue(region), f"    g = {np_type}(g_)", "    acc = 0.0",
        f"    n = {_size(region)}",
        f"    blocks = n // {_BLOCK}", "    for b in range(blocks):",
        f"        part = {np_type}(0)",
        f"        for i in range(b * {_BLOCK}, b * {_BLOCK} + {_BLOCK}):",
        f"            r = {call}", "            part += r[0]", *(f"            {s}" for s in store),
        "        acc += part", f"    for i in range(blocks * {_BLOCK}, n):", f"        r = {call}",
        "        acc += r[0]", *(f"        {s}" for s in store), "    return acc", ""]
    return "\n".join(src) + "\n"
