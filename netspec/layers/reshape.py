"""Layers that only move or pass data: `flatten`, `reshape`, `permute`, `channel_shuffle`,
`space_to_depth`, `select_token`, `identity`, `dropout`, `stochastic_depth`."""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import (Autograd, Layer, NonNegInt, PosInt, Receptive, Shape, need_rank, need_tokens,
                                     register, sample_dim)


@register("flatten", aliases=("Flatten",))
class Flatten(Layer):
    """Flatten sample dimensions start..end into one (torch.nn.Flatten); by default the
    whole sample. Dimensions exclude the batch: `start: 1` turns [C, H, W] into [C, H*W]."""

    start: int = Field(0, description="First sample dimension to flatten (start_dim, minus 1 for the batch); negative counts from the end.")
    end: int = Field(-1, description="Last sample dimension to flatten (end_dim, minus 1 for the batch); negative counts from the end.")

    def infer(self, shape: Shape) -> Shape:
        start, end = sample_dim(self.start, len(shape), "start"), sample_dim(self.end, len(shape), "end")
        if start > end:
            raise LayerError("end", f"end {self.end} comes before start {self.start}")
        return (*shape[:start], prod(shape[start:end + 1]), *shape[end + 1:])

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="reshape")   # a view where the strides allow, else a copy

    def receptive(self, shape, out):
        return Receptive(reshape=True)

    def build(self, shape: Shape):
        from torch import nn
        # sample dim d is batched dim d + 1; negative dims are the same in both; the
        # defaults give nn.Flatten() itself
        return nn.Flatten(*(d + 1 if d >= 0 else d for d in (self.start, self.end)))


@register("reshape", shorthand="shape")
class Reshape(Layer):
    """Reshape each sample (torch.reshape with the batch dimension kept); one size may
    be -1 (inferred from the element count)."""

    shape: list[int] = Field(min_length=1, description="Sample shape (torch.reshape's shape without the batch): positive sizes, at most one -1.")

    def infer(self, shape: Shape) -> Shape:
        if any(s == 0 or s < -1 for s in self.shape):
            raise LayerError("shape", f"sizes are positive or -1, got {self.shape}")
        if self.shape.count(-1) > 1:
            raise LayerError("shape", f"at most one size may be -1, got {self.shape}")
        n, known = prod(shape), prod(s for s in self.shape if s != -1)
        missing = n // known if -1 in self.shape else 1
        if known * missing != n:
            raise LayerError("shape", f"cannot reshape {n} elements to {self.shape}")
        return tuple(missing if s == -1 else s for s in self.shape)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="reshape")

    def receptive(self, shape, out):
        return Receptive(reshape=True)

    def build(self, shape: Shape):
        from netspec.modules import Reshape
        return Reshape(self.infer(shape))


@register("permute", shorthand="dims", aliases=("Permute",))
class Permute(Layer):
    """Reorder the sample dimensions (torch.permute; torchvision.ops.misc.Permute). The
    batch is excluded: `[1, 2, 0]` turns [C, H, W] into [H, W, C] and is torchvision's
    Permute([0, 2, 3, 1])."""

    dims: list[NonNegInt] = Field(min_length=1, description="New order of the sample dimensions (Permute's dims without the batch's 0, each minus 1).")

    def infer(self, shape: Shape) -> Shape:
        if sorted(self.dims) != list(range(len(shape))):
            raise LayerError("dims", f"{self.dims} is not a permutation of the sample's {len(shape)} dimensions 0..{len(shape) - 1}")
        return tuple(shape[d] for d in self.dims)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="permute", dims=tuple(self.dims))

    def receptive(self, shape, out):
        return Receptive(dims=tuple(self.dims))

    def build(self, shape: Shape):
        from torchvision.ops.misc import Permute
        return Permute([0, *(d + 1 for d in self.dims)])


@register("channel_shuffle", shorthand="groups", aliases=("ChannelShuffle",))
class ChannelShuffle(Layer):
    """ShuffleNet's channel shuffle of a [C, H, W] map: channels as [groups, C/groups],
    transposed (torchvision.models.shufflenetv2.channel_shuffle)."""

    groups: PosInt = Field(description="Number of groups (channel_shuffle's groups); must divide the channels.")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, "channel_shuffle")
        if shape[0] % self.groups:
            raise LayerError("groups", f"{self.groups} does not divide channels {shape[0]}")
        return shape

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # view, transpose, contiguous(): a copy, unless one of the two group dims is 1
        trivial = self.groups in (1, shape[0]) and contiguous
        return Autograd(result="same" if trivial else "new", layout="contiguous")

    def receptive(self, shape, out):
        return Receptive(lost=(0,))   # reorders channels (tracked only if a permute put an axis there)

    def build(self, shape: Shape):
        from netspec.modules import ChannelShuffle
        return ChannelShuffle(self.groups)


@register("space_to_depth", shorthand="k")
class SpaceToDepth(Layer):
    """A channels-last map [H, W, C] to [H/k, W/k, k*k*C]: each k x k block's pixels side by side
    in the last dim, the row offset varying fastest, as torchvision's Swin PatchMerging gathers
    them (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2], concatenated); H and W
    that k does not divide are padded with zeros at the bottom and right first."""
    fresh_output: ClassVar[bool] = True   # torch.cat: a new tensor; its backward keeps nothing

    k: PosInt = Field(2, description="Block size (Swin's patch merging: 2).")

    def infer(self, shape: Shape) -> Shape:
        if len(shape) != 3:
            raise LayerError(None, f"space_to_depth needs a channels-last map [height, width, channels], got {list(shape)}")
        h, w, c = shape
        return (-(-h // self.k), -(-w // self.k), self.k * self.k * c)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(layout="contiguous")

    def receptive(self, shape, out):
        # the channels hold the block's k*k pixels: positions along them are not tracked
        return Receptive(windows=((0, self.k, self.k, 0, 1), (1, self.k, self.k, 0, 1)), lost=(2,))

    def build(self, shape: Shape):
        from netspec.modules import SpaceToDepth
        return SpaceToDepth(self.k)


@register("select_token", shorthand="index")
class SelectToken(Layer):
    """One token of tokens [N, D], giving [D]: x[:, index] (torchvision's ViT passes its
    class token x[:, 0] to the heads). A view of the input."""

    index: int = Field(0, description="Which token (negative counts from the end).")

    def infer(self, shape: Shape) -> Shape:
        need_tokens(shape, "select_token")
        if not -shape[0] <= self.index < shape[0]:
            raise LayerError("index", f"token {self.index} is out of range for {shape[0]} tokens")
        return (shape[1],)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="select", dims=(0, self.index % shape[0]))

    def receptive(self, shape, out):
        return Receptive(dims=(1,))  # one token: the token dim is gone, its field stays

    def build(self, shape: Shape):
        from netspec.modules import SelectToken
        return SelectToken(self.index)


@register("identity", aliases=("Identity",))
class Identity(Layer):
    """Pass the input through (torch.nn.Identity)."""
    passes_input: ClassVar[bool] = True

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="same")

    def build(self, shape: Shape):
        from torch import nn
        return nn.Identity()


@register("dropout", shorthand="p", aliases=("Dropout",))
class Dropout(Layer):
    """Zero elements with probability p while training (torch.nn.Dropout)."""
    passes_input: ClassVar[bool] = True

    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing an element.")

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        if self.p == 0:   # torch returns the input itself
            return Autograd(result="same")
        return Autograd(extra=((prod(shape), 0, "act"),))   # the scaled mask

    def build(self, shape: Shape):
        from torch import nn
        return nn.Dropout(self.p)


@register("stochastic_depth", shorthand="p", aliases=("StochasticDepth",))
class StochasticDepth(Layer):
    """Drop whole samples (row) or the whole batch with probability p while training,
    scaling survivors by 1/(1-p); identity in eval (torchvision.ops.StochasticDepth)."""
    passes_input: ClassVar[bool] = True   # x * noise (backward reads x, noise) or x itself

    p: float = Field(ge=0, le=1, description="Probability of zeroing (p).")
    mode: Literal["row", "batch"] = Field("row", description="'row': each sample independently; 'batch': the whole batch at once (mode).")

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        if self.p == 0:   # torchvision returns the input itself
            return Autograd(result="same")
        noise = (1, 0, "act") if self.mode == "row" else (0, 1, "act")   # [N, 1, ...] or [1, 1, ...]
        return Autograd(extra=(noise,))

    def build(self, shape: Shape):
        from torchvision.ops import StochasticDepth
        return StochasticDepth(self.p, self.mode)
