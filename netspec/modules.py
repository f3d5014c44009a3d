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
    bare parameters: `layer_scale`, `pos_embedding`) and calls `functional(x, that)`."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return self.functional(x, self.weight)

    def functional(self, x, weight):
        raise NotImplementedError


class Scale(LearnedTensor):
    """x * weight (ConvNeXt's layer_scale)."""

    def functional(self, x, weight):
        return x * weight


class Add(LearnedTensor):
    """x + weight (ViT's pos_embedding)."""

    def functional(self, x, weight):
        return x + weight


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
