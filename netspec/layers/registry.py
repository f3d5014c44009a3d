"""The layer registry: the one base class every leaf layer type derives from.

A layer type is one pydantic model registered under a tag (`conv`, `bn`, ...). It owns
its fields (the schema), `infer` (shape rule), `param_count`, `macs` and `build`
(the only method that touches torch, imported lazily there). Nothing else in netspec
knows about individual layer types: the spec schema, JSON Schema, analysis, builder,
summary and the every-layer test all iterate over `REGISTRY`.

Shapes are tuples of ints without the batch dimension: (C, H, W), (features,) or
tokens (N, D). A layer that takes several tensors (a merge; a resize *like* another
tensor) says so in `inputs`; its rules then get a list of shapes, one per input, and its
module's forward the tensors in that order. Only a graph node can feed it several.
Must not import torch at module level, nor any later pipeline stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from netspec.errors import LayerError

Shape = tuple[int, ...]

REGISTRY: dict[str, type["Layer"]] = {}

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Pair = Annotated[list[PosInt], Field(min_length=2, max_length=2)]
NonNegPair = Annotated[list[NonNegInt], Field(min_length=2, max_length=2)]


@dataclass(frozen=True)
class Autograd:
    """What a layer's backward keeps, and what its output is, in a training step (read by
    netspec.autograd, which counts the bytes once per storage, as autograd holds them)."""

    input: bool = False         # the input tensor itself
    inputs_kept: tuple = ()     # a layer of several inputs: the indices of those it keeps
    output: bool = False        # the output tensor itself
    weight: int = 0             # elements of the weight it keeps: a parameter, counted only as
    #                             the low-precision copy autocast makes
    extra: tuple = ()           # other tensors it keeps: (elements per sample, fixed elements,
    #                             dtype: "act" (the computation's), "fp32" or "int64")
    result: str = "new"         # the output: "new", "same" (the input tensor: in place, or passed
    #                             through), "reshape" (a view where strides allow, else a copy),
    #                             "crop" (a view of the input narrowed to the output's sizes),
    #                             "permute" (a view with `dims` reordered), "select" (a view
    #                             without sample dim dims[0]: x.select(dims[0] + 1, dims[1]))
    dims: tuple = ()
    layout: str = "like"        # of a new output: "like" (TensorIterator: the input's dim order),
    #                             "suggest" (channels-last iff the input is: conv, batch norm, pools),
    #                             "contiguous", "channels_last" (an NHWC tensor seen as [C, H, W]),
    #                             "tokens_first" ([B, N, D] stored as [N, B, D]: attention's output),
    #                             "cat" (torch.cat: channels-last iff every input is, else contiguous)
    lower: bool = False         # autocast runs it in the low precision (conv, linear): input and weight are cast
    promote: bool = False       # x op (fp32 tensor): the output is fp32 under autocast (scale, add)


@dataclass(frozen=True)
class Receptive:
    """Which input positions one output position reads, per sample dimension (read by
    netspec.receptive, which turns it into receptive fields). The default: the same
    position (activations, eval-mode norms, dropout)."""

    windows: tuple = ()         # (dim, k, stride, left padding, dilation): a sliding window (conv, pools)
    mix: tuple = ()             # dims read whole: every output reads every position (a conv's
    #                             channels, linear's last dim, global pooling, group norm)
    lost: tuple = ()            # dims whose positions are not tracked (upsampling, uneven adaptive
    #                             pooling): the field along them becomes an upper bound
    dims: tuple = ()            # a new order of the sample dims (permute)
    reshape: bool = False       # the dims (in that new order) are regrouped (flatten, reshape)
    along: int | None = None    # a layer of several inputs: their fields meet elementwise (None), or
    #                             concatenated along this dim; a layer with a `like` reference
    #                             reads only its first input (the reference gives sizes)


class Layer(BaseModel):
    """Base of every leaf layer type."""

    # defer_build: a layer class's own validator is built when first used (the resolver
    # makes layers from validated specs); building all of them at import was a third of
    # `netspec check`'s start-up
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, defer_build=True)

    tag: ClassVar[str] = ""
    shorthand: ClassVar[str | None] = None  # `dropout: 0.5` means `dropout: {p: 0.5}`
    # other names people write for this type (PyTorch's class names): an item spelled so, in
    # any case, is pointed at the tag (`BatchNorm2d` -> `bn`), and no block may take one
    aliases: ClassVar[tuple[str, ...]] = ()
    # In-place execution, decided by the builder from the graph (netspec.builder):
    # `fresh_output`: the output is a new tensor that this layer's backward does not read,
    # so the next layer may overwrite it; `runs_inplace`: the built module has torch's
    # `inplace` switch and its backward needs only its own output (relu, relu6);
    # `passes_input`: the output is either such a new tensor or the input itself (dropout and
    # stochastic depth in eval), so it is fresh exactly when the input was.
    fresh_output: ClassVar[bool] = False
    # the dim order (batch = 0) whose contiguity `autograd`'s `contiguous` reports (None: as stored)
    contiguous_as: ClassVar[tuple | None] = None
    runs_inplace: ClassVar[bool] = False
    passes_input: ClassVar[bool] = False
    # A layer whose one learned tensor is registered on the enclosing module under the
    # layer's own name (ConvNeXt's `layer_scale`, ViT's `class_token`): `build` returns a
    # module with one parameter `weight` and a method `functional(x, weight)`; the builder
    # registers the tensor on the owner and calls functional with it.
    bare_parameter: ClassVar[bool] = False
    # A layer whose tensors belong to its enclosing module, beside its siblings (Swin's
    # `attn.relative_position_bias_table` next to `attn.qkv`): `build` returns a module whose
    # own parameters, buffers and children the builder registers on the enclosing module under
    # their own names (`owned` lists them), and whose `functional(x, owner)` runs it there.
    owns_tensors: ClassVar[bool] = False
    @property
    def own_module(self) -> bool:
        """Is the built layer a module at its own path (not a bare parameter, nor tensors of its
        enclosing module)?"""
        return not (self.bare_parameter or self.owns_tensors)

    # A layer whose training step the memory model replays op by op (`replay`, instead of the
    # `autograd` rule): attention's parts, whose saved tensors depend on their input's strides
    replays: ClassVar[bool] = False
    # How many tensors it takes, (fewest, most; None: any number): (1, 1) for all but merges
    # (2, None) and layers with a reference field. `refs` are fields that name another value
    # of the enclosing graph (`resize: {like: skip}`): its tensor is passed after the node's
    # `from:` inputs, so the module computes sizes from it at run time.
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    refs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def takes_several(cls) -> bool:
        """Called with a list of tensors (its `from:` inputs, then its references' values)."""
        return cls.inputs != (1, 1) or bool(cls.refs)

    name: str | None = Field(None, description="Module name in the built model (a state_dict key segment); default: position in its container.")
    frozen: bool = Field(False, description="Freeze this layer's parameters (requires_grad=False); they count in params but not trainable_params.")

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        if cls.shorthand is not None:
            return {cls.shorthand: value}
        raise ValueError(f"'{cls.tag}' takes a mapping of fields, not {type(value).__name__} {value!r}")

    # -- the four rules a layer type owns -------------------------------------------
    def infer(self, shape: Shape) -> Shape:
        """Output shape for an input shape; raise LayerError on impossible input."""
        return shape

    def param_count(self, shape: Shape) -> int:
        return 0

    def owned(self, shape: Shape) -> dict:
        """What an `owns_tensors` layer registers on its enclosing module: name -> (kind:
        "parameter", "buffer" or "module", parameters in it)."""
        return {}

    def buffers(self, shape: Shape) -> tuple:
        """The built module's buffers (state that is not trained: BatchNorm's running statistics,
        an index table), as (elements, dtype) each; dtype "fp32" or "int64"."""
        return ()

    def macs(self, shape: Shape, out: Shape) -> int:
        """Multiply-accumulates per sample (counted for conv and linear layers, as
        torch's FlopCounterMode does: its FLOPs / 2). A part that runs once per batch
        (Swin-v2's position-bias MLP) counts as at batch 1 (`fixed_macs` says how much)."""
        return 0

    def fixed_macs(self, shape: Shape, *, weight_grad: bool) -> tuple[int, int]:
        """(forward, backward) MACs of `macs` and `backward_macs` that run once per batch
        whatever its size (a position-bias MLP over offsets, not samples)."""
        return (0, 0)

    def build(self, shape: Shape):
        raise NotImplementedError(f"layer '{self.tag}' has no builder")

    # -- what a training step's backward keeps and costs (netspec.autograd) ----------------
    def autograd(self, shape: Shape, out: Shape, *, input_grad: bool, weight_grad: bool, contiguous: bool,
                 inplace: bool) -> Autograd:
        """What autograd saves when this layer runs in a graph that needs gradients.
        `input_grad`: its input needs a gradient; `weight_grad`: its parameters train;
        `contiguous`: its input is contiguous;
        `inplace`: the builder runs it in place. Default: nothing kept, a new output."""
        return Autograd()

    def replay(self, f, m, x):
        """A `replays` layer's training step over the memory model's tensors (netspec.autograd's
        _Flow `f`, its single ops; `m` the analysed module, `x` its input view): its output view."""
        raise NotImplementedError(f"layer '{self.tag}' has no replay")

    def param_tensors(self, shape: Shape) -> int:
        """How many parameter tensors it has (optimizers keep per-tensor state such as Adam's step)."""
        return 0

    def backward_macs(self, shape: Shape, out: Shape, *, input_grad: bool, weight_grad: bool) -> int:
        """Multiply-accumulates per sample of the backward: the input's gradient (when the
        input needs one) and the weight's (when it trains), as FlopCounterMode counts them."""
        return 0

    # -- which input positions an output position reads (netspec.receptive) ----------------
    def receptive(self, shape: Shape, out: Shape) -> Receptive:
        """Default: output position p reads input position p only (any channel)."""
        return Receptive()

    def settings(self) -> dict:
        """Fields that differ from their defaults (for summaries and diffs)."""
        return {k: v for k, v in self.model_dump(exclude={"name"}).items()
                if v != type(self).model_fields[k].default}


def register(tag: str, shorthand: str | None = None, aliases: tuple[str, ...] = ()):
    """Class decorator: add a layer type under `tag` (and its other names, `aliases`). A
    duplicate tag is a bug."""
    def add(cls: type[Layer]) -> type[Layer]:
        if tag in REGISTRY:
            raise RuntimeError(f"layer tag {tag!r} registered twice ({REGISTRY[tag].__name__}, {cls.__name__})")
        cls.tag = tag
        cls.shorthand = shorthand
        cls.aliases = aliases
        REGISTRY[tag] = cls
        return cls
    return add


# -- shape helpers shared by the spatial layer families -----------------------------
def need_rank(shape: Shape, rank: int, what: str) -> None:
    if len(shape) != rank:
        names = {1: "[features]", 2: "[channels, length]", 3: "[channels, height, width]"}
        raise LayerError(None, f"{what} needs input {names[rank]}, got {list(shape)}")


def sample_dim(dim: int, rank: int, field: str) -> int:
    """A sample dimension index (negative counts from the end) as 0..rank-1."""
    if not -rank <= dim < rank:
        raise LayerError(field, f"dimension {dim} is out of range for a sample of {rank} dimensions")
    return dim % rank


def need_tokens(shape: Shape, what: str) -> None:
    if len(shape) != 2:
        raise LayerError(None, f"{what} needs tokens [tokens, width], got {list(shape)}"
                               f"{' (a patch embedding: conv, then flatten: {start: 1} and permute: [1, 0])' if len(shape) == 3 else ''}")


def pair(value, default=None) -> tuple:
    if value is None:
        value = default
    return (value, value) if isinstance(value, (int, float)) else (value[0], value[1])


def window_out(size: int, k: int, stride: int, pad: int, dilation: int = 1,
               ceil_mode: bool = False, field: str = "k") -> int:
    """Output length of a sliding window, exactly as torch computes it."""
    span = dilation * (k - 1) + 1
    if size + 2 * pad < span:
        raise LayerError(field, f"kernel {k}{f' (dilated to {span})' if dilation > 1 else ''} "
                                f"is larger than the padded input {size + 2 * pad} ({size} + 2*{pad})")
    num = size + 2 * pad - span
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # torch: the last window must start inside the input or left padding
    return out
