"""Analysis -> what one training step holds and costs, statically: the tensors autograd keeps
for the backward (per module, counted once per storage as autograd holds them), the
low-precision weight copies autocast makes, parameter / gradient / optimizer-state bytes,
a peak estimate, and the backward multiply-accumulates (input and weight gradients).

It replays the forward pass over tensors that exist only as sizes: every value is a view
(shape, strides, requires-grad) of a storage (elements per sample and fixed, dtype). Each
leaf's rule (`Layer.autograd`: what its backward keeps, whether its output is a view or a
new tensor, its layout, whether autocast lowers it) and each construct's (`Construct.autograd`:
how it joins its children) is applied in order, with the builder's own in-place decisions
(Module.inplace). tests/test_autograd.py checks the figures byte for byte against
`torch.autograd.graph.saved_tensors_hooks` on the zoo and on random specs, fp32 and bf16.

Must not import torch (the analysis path stays torch-free).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from math import prod

from netspec.analysis import Analysis, Module
from netspec.ir import Leaf

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int64": 8}
OPTIMIZER_STATE = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}  # fp32 tensors per parameter


@dataclass(eq=False)
class Storage:
    per_sample: int      # elements per sample (times the batch)
    fixed: int           # elements independent of the batch
    dtype: str

    def bytes(self, batch: int) -> int:
        return (self.per_sample * batch + self.fixed) * BYTES[self.dtype]


@dataclass
class View:
    """A tensor of the replayed forward: a view of a storage."""
    storage: Storage
    shape: tuple            # sample shape (no batch)
    strides: tuple          # strides of (batch, *shape), in elements
    grad: bool              # requires grad

    @property
    def dtype(self) -> str:
        return self.storage.dtype


def dense_strides(sizes: tuple, order: tuple) -> tuple:
    """Strides of a dense tensor whose dims, outermost first, are `order`."""
    strides, step = [0] * len(sizes), 1
    for d in reversed(order):
        strides[d] = step
        step *= sizes[d]
    return tuple(strides)


def is_contiguous(sizes: tuple, strides: tuple) -> bool:
    """torch's rule: size-1 dims do not count."""
    expected = 1
    for size, stride in zip(reversed(sizes), reversed(strides)):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def order_of(sizes: tuple, strides: tuple) -> tuple:
    """Dims outermost first, as TensorIterator orders them (by stride; ties keep order)."""
    return tuple(sorted(range(len(sizes)), key=lambda d: (-strides[d], d)))


def view_strides(sizes: tuple, strides: tuple, new: tuple):
    """Strides of `new` as a view of (sizes, strides), or None when reshape must copy
    (ATen's computeStride)."""
    if prod(sizes) == 0:
        return dense_strides(new, tuple(range(len(new))))
    out = [0] * len(new)
    view_d = len(new) - 1
    chunk_base = strides[-1] if strides else 1
    tensor_numel, view_numel = 1, 1
    for d in range(len(sizes) - 1, -1, -1):
        tensor_numel *= sizes[d]
        if d == 0 or (sizes[d - 1] != 1 and strides[d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or new[view_d] == 1):
                out[view_d] = view_numel * chunk_base
                view_numel *= new[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                chunk_base = strides[d - 1]
                tensor_numel, view_numel = 1, 1
    return tuple(out) if view_d == -1 else None


@dataclass
class Kept:
    """One storage autograd keeps: the module that first saved it, and what it is."""
    path: str
    storage: Storage
    what: str           # "activation" | "weight copy"


@dataclass
class Memory:
    batch: int
    precision: str
    optimizer: str
    kept: list[Kept]
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    largest_activation_bytes: int
    backward_macs: int                        # per sample
    layer_backward_macs: dict[str, int] = field(default_factory=dict)
    buffers_bytes: int = 0                    # the model's buffers (running statistics, index tables)

    @property
    def saved_bytes(self) -> int:
        return sum(k.storage.bytes(self.batch) for k in self.kept)

    @property
    def activation_bytes(self) -> int:
        return sum(k.storage.bytes(self.batch) for k in self.kept if k.what == "activation")

    @property
    def weight_copy_bytes(self) -> int:
        return self.saved_bytes - self.activation_bytes

    @property
    def peak_bytes(self) -> int:
        """Estimate of a training step's peak: the model's state, everything autograd keeps,
        and the largest activation's gradient pair in flight during the backward."""
        return (self.params_bytes + self.buffers_bytes + self.grads_bytes + self.optimizer_bytes + self.saved_bytes
                + 2 * self.largest_activation_bytes)

    def by_module(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kept:
            out[k.path] = out.get(k.path, 0) + k.storage.bytes(self.batch)
        return out

    def as_dict(self) -> dict:
        return {"batch": self.batch, "precision": self.precision, "optimizer": self.optimizer,
                "params_bytes": self.params_bytes, "buffers_bytes": self.buffers_bytes, "grads_bytes": self.grads_bytes,
                "optimizer_bytes": self.optimizer_bytes, "saved_bytes": self.saved_bytes,
                "activation_bytes": self.activation_bytes, "weight_copy_bytes": self.weight_copy_bytes,
                "peak_bytes": self.peak_bytes, "backward_macs": self.backward_macs}


def training_step(analysis: Analysis, batch: int = 1, precision: str = "fp32", optimizer: str = "sgd_momentum",
                  inplace: bool = True) -> Memory:
    """The memory and backward cost of one training step at `batch`, in `precision`
    ('fp32', or 'bf16'/'fp16' autocast), with `optimizer`'s state; `inplace` as build's."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision is fp32, bf16 or fp16, not {precision!r}")
    if optimizer not in OPTIMIZER_STATE:
        raise ValueError(f"optimizer state is known for {', '.join(OPTIMIZER_STATE)}, not {optimizer!r}")
    flow = _Flow(batch, None if precision == "fp32" else precision, inplace)
    x = flow.new(tuple(analysis.input), "fp32", grad=False)
    flow.module(analysis.tree, x)
    trainable = analysis.trainable_params
    n_tensors = sum(m.node.layer.param_tensors(m.input) for m in analysis.tree_leaves() if not m.node.layer.frozen)
    state = OPTIMIZER_STATE[optimizer] * trainable * 4 + (4 * n_tensors if optimizer.startswith("adam") else 0)
    return Memory(batch, precision, optimizer, list(flow.kept.values()), analysis.params * 4, trainable * 4, state,
                  flow.largest, sum(flow.backward.values()), flow.backward, analysis.buffer_bytes)


class _Flow:
    """The replayed forward's face towards layers and constructs (their `autograd` sees `f`)."""

    def __init__(self, batch: int, low: str | None, inplace: bool):
        self.batch = batch
        self.low = low                      # autocast's precision, or None
        self.inplace = inplace
        self.kept: dict[int, Kept] = {}     # id(storage) -> Kept
        self.backward: dict[str, int] = {}  # leaf path -> backward MACs per sample
        self.largest = 0
        self.path = ""
        self.frozen = False                 # inside torch.no_grad(): nothing is kept, nothing runs backward

    @contextmanager
    def no_grad(self):
        """Run what follows as under torch.no_grad() (a graph node read only for its size)."""
        outer, self.frozen = self.frozen, True
        try:
            yield
        finally:
            self.frozen = outer

    # -- tensors ----------------------------------------------------------------------------
    def new(self, shape: tuple, dtype: str, grad: bool, like: View | None = None, layout: str = "contiguous") -> View:
        """A new tensor: contiguous, dense in `like`'s dim order ("like": TensorIterator's
        choice), or channels-last when `like` is ("suggest": conv, batch norm, pooling)."""
        sizes = (self.batch, *shape)
        order = tuple(range(len(sizes)))
        if like is not None and layout == "like":
            order = order_of((self.batch, *like.shape), like.strides) if len(like.shape) == len(shape) else order
        elif layout == "tokens_first":      # [B, N, D] stored as [N, B, D] (attention's transposed result)
            order = (1, 0, 2)
        elif layout == "channels_last" or (layout == "suggest" and like is not None and len(shape) == 3
                                           and self.channels_last(like)):
            order = (0, 2, 3, 1)
        storage = Storage(prod(shape), 0, dtype)
        self.largest = max(self.largest, storage.bytes(self.batch))
        return View(storage, tuple(shape), dense_strides(sizes, order), grad)

    def channels_last(self, v: View) -> bool:
        sizes = (self.batch, *v.shape)
        return len(v.shape) == 3 and not is_contiguous(sizes, v.strides) and \
            v.strides == dense_strides(sizes, (0, 2, 3, 1))

    def contiguous(self, v: View, order: tuple | None = None) -> bool:
        """Is v contiguous (seen with its dims in `order`, batch first = 0, when given)?"""
        sizes = (self.batch, *v.shape)
        if order is None:
            return is_contiguous(sizes, v.strides)
        return is_contiguous(tuple(sizes[d] for d in order), tuple(v.strides[d] for d in order))

    def reshaped(self, v: View, shape: tuple) -> View:
        """x.reshape(batch, *shape): a view where the strides allow, else a copy."""
        strides = view_strides((self.batch, *v.shape), v.strides, (self.batch, *shape))
        if strides is None:
            return self.new(shape, v.dtype, v.grad)
        return View(v.storage, tuple(shape), strides, v.grad)

    def promote(self, *views: View) -> str:
        dtypes = {v.dtype for v in views}
        return "fp32" if "fp32" in dtypes else dtypes.pop()

    def save(self, path: str, storage: Storage, what: str = "activation") -> None:
        if not self.frozen:
            self.kept.setdefault(id(storage), Kept(path, storage, what))

    # -- modules ----------------------------------------------------------------------------
    def chain(self, modules: list[Module], x: View) -> View:
        for m in modules:
            x = self.module(m, x)
        return x

    def module(self, m: Module, x: View) -> View:
        if isinstance(m.node, Leaf):
            return self.leaf(m, x)
        outer, self.path = self.path, m.path   # what a construct's own ops keep is its own
        try:
            return m.node.construct.autograd(m, self, x)
        finally:
            self.path = outer

    # -- how constructs join tensors (none of these ops keeps anything for the backward,
    # but a product, which keeps each factor for the other's gradient) ---------------------
    def add(self, y: View, s: View, inplace: bool) -> View:
        """y + s, or y.add_(s) (the builder's in-place residual add, same dtypes only)."""
        if inplace and y.dtype == s.dtype:
            return View(y.storage, y.shape, y.strides, y.grad or s.grad)
        return self.new(y.shape, self.promote(y, s), y.grad or s.grad, like=y, layout="like")

    def mul(self, x: View, g: View) -> View:
        """x * g, g broadcast (a gate)."""
        if g.grad:
            self.save(self.path, x.storage)
        if x.grad:
            self.save(self.path, g.storage)
        return self.new(x.shape, self.promote(x, g), x.grad or g.grad, like=x, layout="like")

    def cat(self, views: list[View]) -> View:
        """torch.cat along channels: a new tensor (channels-last if every input is)."""
        shape = (sum(v.shape[0] for v in views), *views[0].shape[1:])
        layout = "channels_last" if all(self.channels_last(v) for v in views) else "contiguous"
        return self.new(shape, self.promote(*views), any(v.grad for v in views), layout=layout)

    def parts(self, x: View, sizes: list[int]) -> list[View]:
        """x.split(sizes, 1): views of x's storage."""
        return [View(x.storage, (size, *x.shape[1:]), x.strides, x.grad) for size in sizes]

    def runs_inplace(self, m: Module) -> bool:
        return self.inplace and m.inplace

    def leaf(self, m: Module, x) -> View:
        """A layer's step. `x` is a View, or a list of them for a layer of several inputs (a
        merge; a resize *like* another tensor, whose second input gives only sizes)."""
        layer = m.node.layer
        if layer.replays:   # its ops one by one (attention's parts: what they keep depends on strides)
            return layer.replay(self, m, x)
        xs = x if isinstance(x, list) else [x]
        x = xs[0]
        data = xs[:len(xs) - len(layer.refs)]   # a `like` reference gives sizes, and no gradient flows to it
        weight_grad = m.trainable_params > 0
        input_grad = tuple(v.grad for v in data) if len(data) > 1 else x.grad
        grad = (any(v.grad for v in data) or weight_grad) and not self.frozen
        rule = layer.autograd(m.input, m.output, input_grad=input_grad, weight_grad=weight_grad,
                              contiguous=self.contiguous(x, layer.contiguous_as), inplace=self.runs_inplace(m))
        low = self.low if rule.lower else None
        # autocast casts the input of a low-precision op: a new tensor, strides preserved
        xin = x if low is None or x.dtype == low else View(Storage(prod(x.shape), 0, low), x.shape, x.strides, x.grad)
        # a merge's result takes the widest of its inputs' dtypes; a reference gives only sizes
        act = low or (self.promote(*xs) if len(xs) > 1 and not layer.refs else x.dtype)
        if rule.result == "same":
            out = View(x.storage, x.shape, x.strides, grad)
        elif rule.result == "reshape":
            out = self.reshaped(x, tuple(m.output))
        elif rule.result == "permute":
            dims = (0, *(d + 1 for d in rule.dims))
            out = View(x.storage, tuple(m.output), tuple(x.strides[d] for d in dims), grad)
        elif rule.result == "select":     # x.select(sample dim, index): a view without that dim
            d = rule.dims[0] + 1
            out = View(x.storage, tuple(m.output), x.strides[:d] + x.strides[d + 1:], grad)
        elif rule.result == "crop":       # a narrowed view: the same storage and strides
            out = View(x.storage, tuple(m.output), x.strides, grad)
        elif rule.layout == "cat":
            out = self.cat(xs)
        else:
            out = self.new(tuple(m.output), "fp32" if rule.promote and self.low else act, grad, like=xin, layout=rule.layout)
        out.grad = grad
        if not grad:  # no graph: nothing kept, nothing computed backward
            return out
        self.backward[m.path] = layer.backward_macs(m.input, m.output, input_grad=input_grad, weight_grad=weight_grad)
        if rule.input:
            self.save(m.path, xin.storage)
        for i in rule.inputs_kept:
            self.save(m.path, xs[i].storage)
        if rule.output:
            self.save(m.path, out.storage)
        if rule.weight and low is not None:
            self.save(m.path, Storage(0, rule.weight, low), "weight copy")
        for per_sample, fixed, dtype in rule.extra:
            self.save(m.path, Storage(per_sample, fixed, act if dtype == "act" else dtype))
        return out

    # -- single ops, for layers and constructs that replay theirs (Layer.replays, partition) ----
    def permuted(self, v: View, dims: tuple) -> View:
        """v.permute(0, *(d + 1 for d in dims)): a view (dims are sample dims)."""
        order = (0, *(d + 1 for d in dims))
        return View(v.storage, tuple(v.shape[d] for d in dims), tuple(v.strides[d] for d in order), v.grad)

    def selected(self, v: View, dim: int, index: int) -> View:
        """v.select(dim + 1, index): a view without sample dim `dim`."""
        return View(v.storage, v.shape[:dim] + v.shape[dim + 1:], v.strides[:dim + 1] + v.strides[dim + 2:], v.grad)

    def contiguous_copy(self, v: View) -> View:
        """v.contiguous(): v itself, or a contiguous copy."""
        return v if self.contiguous(v) else self.new(v.shape, v.dtype, v.grad)

    def cast(self, v: View) -> View:
        """What autocast hands a lower-precision op: v, or its copy in the low dtype (strides kept
        when v is dense, as Tensor.to keeps them; else contiguous)."""
        if self.low is None or v.dtype == self.low:
            return v
        sizes = (self.batch, *v.shape)
        dense = v.strides == dense_strides(sizes, order_of(sizes, v.strides))
        return View(Storage(prod(v.shape), 0, self.low), v.shape,
                    v.strides if dense else dense_strides(sizes, tuple(range(len(sizes)))), v.grad)

    def folded(self, v: View, keep: int = 2) -> View:
        """v.reshape(-1, *v.shape[-keep:]), the batch and the dims before the last `keep` folded
        into one (as matmul and attention fold them): v where the strides allow (ATen's
        computeStride), else a contiguous copy."""
        sizes = (self.batch, *v.shape)
        if view_strides(sizes, v.strides, (prod(sizes[:-keep]), *sizes[-keep:])) is not None:
            return v
        return self.new(v.shape, v.dtype, v.grad)

    def matmul(self, path: str, a: View, b: View) -> View:
        """a @ b over equal leading dims ([..., n, m] @ [..., m, p]), as at::matmul runs it under
        autocast: each operand folded to [batch * ..., rows, cols], bmm keeping each for the
        other's gradient, the result a view of bmm's new contiguous output."""
        a, b = self.cast(a), self.cast(b)
        fa, fb = self.folded(a), self.folded(b)
        if b.grad:
            self.save(path, fa.storage)
        if a.grad:
            self.save(path, fb.storage)
        return self.new((*a.shape[:-1], b.shape[-1]), a.dtype, a.grad or b.grad)
