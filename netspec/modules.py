"""The torch modules of layer types that torch and torchvision have no module for.

Imported only from the layer types' `build()` (the static path never imports torch).
Each forward is written so that torch.compile (fullgraph) and torch.export trace it
without graph breaks.
"""
from __future__ import annotations

import torch
from torch import nn


class Reshape(nn.Module):
    """Reshape each sample to `shape` (the batch dimension is kept)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle, the same operations as
    torchvision.models.shufflenetv2.channel_shuffle."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b, self.groups, c // self.groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class LearnedTensor(nn.Module):
    """One learned tensor `weight` combined elementwise with the input. The builder
    registers `weight` on the enclosing module under the layer's name (torchvision's
    bare parameters: `layer_scale`, `pos_embedding`) and calls `functional(x, that)`.
    `view`: the shape a tensor kept as a vector is viewed as when applied (SSD's
    scale_weight [C], applied as [C, 1, 1])."""

    def __init__(self, weight, view: tuple | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.view = view

    def forward(self, x):
        return self.functional(x, self.weight)

    def shaped(self, weight):
        return weight if self.view is None else weight.view(self.view)

    def functional(self, x, weight):
        raise NotImplementedError


class Scale(LearnedTensor):
    """x * weight (ConvNeXt's layer_scale)."""

    def functional(self, x, weight):
        return x * self.shaped(weight)


class Add(LearnedTensor):
    """x + weight (ViT's pos_embedding)."""

    def functional(self, x, weight):
        return x + self.shaped(weight)


class ClassToken(LearnedTensor):
    """Prepend the learned token `weight` [1, 1, D] to tokens [B, N, D] (torchvision's ViT:
    class_token.expand(n, -1, -1), then torch.cat on dim 1)."""

    def functional(self, x, weight):
        return torch.cat([weight.expand(x.shape[0], -1, -1), x], dim=1)


class SelectToken(nn.Module):
    """x[:, index]: one token of [B, N, D] (torchvision's ViT gives its heads x[:, 0])."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[:, self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch_first) called on one input, as torchvision's ViT
    EncoderBlock calls its `self_attention`: attn(x, x, x, need_weights=False)[0]. Same
    parameters and keys; the same code path (fast path in inference included)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(dim, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x):
        return super().forward(x, x, x, need_weights=False)[0]


class Normalize(nn.Module):
    """F.normalize(x, p, dim, eps) (netspec.layers.norm.Normalize)."""

    def __init__(self, p: float, dim: int, eps: float):
        super().__init__()
        self.p, self.dim, self.eps = p, dim, eps

    def forward(self, x):
        return nn.functional.normalize(x, p=self.p, dim=self.dim, eps=self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}, eps={self.eps}"


class Merge(nn.Module):
    """N tensors joined into one, folding left in the order given (netspec.layers.merge)."""

    def __init__(self, op: str, dim: int, eps: float):
        super().__init__()
        self.op, self.dim, self.eps = op, dim, eps

    def forward(self, *xs):
        if self.op == "concat":
            return torch.cat(xs, self.dim)
        y = xs[0]
        for x in xs[1:]:
            if self.op in ("sum", "mean"):
                y = y + x
            elif self.op == "product":
                y = y * x
            elif self.op == "difference":
                y = y - x
            elif self.op == "quotient":
                y = y / (x + self.eps) if self.eps else y / x
            else:
                y = torch.maximum(y, x)
        return y / len(xs) if self.op == "mean" else y

    def extra_repr(self) -> str:
        return f"op={self.op}" + (f", dim={self.dim}" if self.op == "concat" else "") + (f", eps={self.eps}" if self.eps else "")


class Reduce(nn.Module):
    """A reduction over batched dims `dims` (netspec.layers.merge.Reduce)."""

    def __init__(self, op: str, dims: tuple[int, ...], keepdim: bool, p: float):
        super().__init__()
        self.op, self.dims, self.keepdim, self.p = op, tuple(dims), keepdim, p

    def forward(self, x):
        if self.op == "mean":
            return x.mean(self.dims, keepdim=self.keepdim)
        if self.op == "sum":
            return x.sum(self.dims, keepdim=self.keepdim)
        if self.op == "max":
            return x.amax(self.dims, keepdim=self.keepdim)
        return torch.norm(x, p=self.p, dim=self.dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"op={self.op}, dims={list(self.dims)}, keepdim={self.keepdim}" + (f", p={self.p}" if self.op == "norm" else "")


class ResizeLike(nn.Module):
    """F.interpolate(x, size=like.shape[-2:]): the size is read at run time."""

    def __init__(self, mode: str, align_corners: bool | None):
        super().__init__()
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x, like):
        return nn.functional.interpolate(x, size=like.shape[-2:], mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"mode={self.mode}" + (f", align_corners={self.align_corners}" if self.align_corners is not None else "")


class PadLike(nn.Module):
    """F.pad of x up to like's height and width: centred (the smaller half before), or after."""

    def __init__(self, center: bool, value: float):
        super().__init__()
        self.center, self.value = center, value

    def forward(self, x, like):
        dy, dx = like.shape[-2] - x.shape[-2], like.shape[-1] - x.shape[-1]
        top, left = (dy // 2, dx // 2) if self.center else (0, 0)
        return nn.functional.pad(x, [left, dx - left, top, dy - top], value=self.value)

    def extra_repr(self) -> str:
        return f"center={self.center}" + (f", value={self.value}" if self.value else "")


class CropLike(nn.Module):
    """x cut down to like's height and width: the centre (the smaller half dropped before), or
    the top-left. A view."""

    def __init__(self, center: bool):
        super().__init__()
        self.center = center

    def forward(self, x, like):
        h, w = like.shape[-2], like.shape[-1]
        top, left = ((x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2) if self.center else (0, 0)
        return x[:, :, top:top + h, left:left + w]

    def extra_repr(self) -> str:
        return f"center={self.center}"
