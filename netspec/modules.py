"""The torch modules of layer types that torch and torchvision have no module for.

Imported only from the layer types' `build()` (the static path never imports torch).
Each forward is written so that torch.compile (fullgraph) and torch.export trace it
without graph breaks.
"""
from __future__ import annotations

import math

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


# -- attention in parts (netspec.layers.attention) ---------------------------------------------
class SplitHeads(nn.Module):
    """[B, ..., N, parts * heads * Dh] -> [B, ..., parts, heads, N, Dh], a view (the last dim
    read as [parts][heads][Dh], as torchvision's Swin and timm reshape qkv)."""

    def __init__(self, parts: int, heads: int):
        super().__init__()
        self.parts, self.heads = parts, heads

    def forward(self, x):
        *lead, n, width = x.shape
        r = len(lead)
        x = x.reshape(*lead, n, self.parts, self.heads, width // (self.parts * self.heads))
        return x.permute(*range(r), r + 1, r + 2, r, r + 3)

    def extra_repr(self) -> str:
        return f"parts={self.parts}, heads={self.heads}"


class MergeHeads(nn.Module):
    """[B, ..., H, N, Dh] -> [B, ..., N, H * Dh] (transpose, reshape)."""

    def forward(self, x):
        *lead, h, n, d = x.shape
        return x.transpose(-3, -2).reshape(*lead, n, h * d)


def relative_position_index(h: int, w: int) -> torch.Tensor:
    """[N, N] index of each token pair's offset in a (2h-1)(2w-1) table, tokens of an h x w grid
    in row-major order (torchvision's Swin `define_relative_position_index`, MaxViT's
    `_get_relative_position_index`)."""
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += h - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1)


def relative_coords_table(h: int, w: int) -> torch.Tensor:
    """[1, 2h-1, 2w-1, 2]: each offset, scaled to [-8, 8] and log-spaced (Swin-v2's
    `relative_coords_table`; an axis of one token keeps 0 where torchvision divides by 0)."""
    axes = [torch.arange(-(n - 1), n, dtype=torch.float32) for n in (h, w)]
    table = torch.stack(torch.meshgrid(axes, indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
    for i, n in enumerate((h, w)):
        if n > 1:
            table[:, :, :, i] /= n - 1
    table *= 8
    return torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0


def shifted_window_mask(groups, window, shift, like: torch.Tensor) -> torch.Tensor:
    """[G, 1, N, N] in like's dtype and device: -100 for the token pairs of a window that the
    cyclic shift brought together from different regions, else 0 — torchvision's
    shifted_window_attention's attn_mask, made as it makes it, at run time (a buffer would not
    be in torchvision's state_dict, so a model built on the meta device could not load it)."""
    (gh, gw), (wh, ww), (sh, sw) = groups, window, shift
    mask = like.new_zeros((gh * wh, gw * ww))
    count = 0
    for h in ((0, -wh), (-wh, -sh), (-sh, None)):
        for w in ((0, -ww), (-ww, -sw), (-sw, None)):
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    mask = mask.view(gh, wh, gw, ww).permute(0, 2, 1, 3).reshape(gh * gw, wh * ww)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0).unsqueeze(1)


class Attend(nn.Module):
    """softmax(q k^T * scale + bias + mask) v of fused q, k, v [B, ..., 3, H, N, Dh]
    (netspec.layers.attention.Attend). Its tensors are registered on the enclosing module by the
    builder, and `functional(x, owner)` reads them there; alone, it is its own owner."""

    def __init__(self, heads: int, head_dim: int, *, scale: float, scaled: str, cosine: bool, position_bias: str,
                 window, index: str, mlp: int, shift, groups, dropout: float, fused: bool):
        super().__init__()
        self.heads, self.scale, self.scaled, self.cosine = heads, scale, scaled, cosine
        self.position_bias, self.window, self.dropout, self.fused = position_bias, window, dropout, fused
        self.shift, self.groups = shift, groups
        if cosine:
            self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((heads, 1, 1))))
        if position_bias != "none":
            h, w = window
            position = relative_position_index(h, w)
            if position_bias == "table":
                self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * h - 1) * (2 * w - 1), heads))
                nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            else:
                self.register_buffer("relative_coords_table", relative_coords_table(h, w))
            self.register_buffer("relative_position_index", position.flatten() if index == "flat" else position)
            if position_bias == "mlp":
                self.cpb_mlp = nn.Sequential(nn.Linear(2, mlp, bias=True), nn.ReLU(inplace=True),
                                             nn.Linear(mlp, heads, bias=False))

    def forward(self, x):
        return self.functional(x, self)

    def functional(self, x, owner):
        q, k, v = x.unbind(-4)   # one node: its backward stacks the three gradients, in no order of arrival
        if self.fused:
            shape = q.shape
            if q.dim() > 4:   # the kernel takes [batch, heads, tokens, width]
                q, k, v = (t.reshape(-1, *shape[-3:]) for t in (q, k, v))
            return nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scale).view(shape)
        if self.cosine:
            attn = nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(k, dim=-1).transpose(-2, -1)
            attn = attn * torch.clamp(owner.logit_scale, max=math.log(100.0)).exp()
        elif self.scaled == "q":
            attn = (q * self.scale).matmul(k.transpose(-2, -1))
        else:
            attn = q.matmul((k * self.scale).transpose(-2, -1))
        if self.position_bias != "none":
            attn = attn + self.bias(owner)
        if self.shift is not None:
            attn = attn + shifted_window_mask(self.groups, self.window, self.shift, attn)
        attn = nn.functional.softmax(attn, dim=-1)
        if self.dropout:
            attn = nn.functional.dropout(attn, p=self.dropout, training=owner.training)
        return attn.matmul(v)

    def bias(self, owner):
        """[1, H, N, N]: the table gathered by the index (from the MLP, for Swin-v2: 16 * sigmoid)."""
        n = self.window[0] * self.window[1]
        if self.position_bias == "table":
            table = owner.relative_position_bias_table
        else:
            table = owner.cpb_mlp(owner.relative_coords_table).view(-1, self.heads)
        bias = table[owner.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return 16 * torch.sigmoid(bias) if self.position_bias == "mlp" else bias

    def extra_repr(self) -> str:
        return (f"heads={self.heads}" + (", cosine" if self.cosine else f", scale={self.scale:.4g}")
                + (f", position_bias={self.position_bias}" if self.position_bias != "none" else "")
                + (f", shift={list(self.shift)}" if self.shift is not None else ""))


class LinearZeroedBias(nn.Linear):
    """nn.Linear whose bias elements start..stop-1 are zeroed in every forward (a copy of the
    bias: the parameter keeps its values), as torchvision's Swin-v2 treats its qkv bias' key part."""

    def __init__(self, *args, zeroed: tuple[int, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.zeroed = tuple(zeroed)

    def forward(self, x):
        bias = self.bias.clone()
        bias[self.zeroed[0]:self.zeroed[1]].zero_()
        return nn.functional.linear(x, self.weight, bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", zeroed={list(self.zeroed)}"


class SpaceToDepth(nn.Module):
    """[B, H, W, C] -> [B, H/k, W/k, k*k*C]: each k x k block's pixels side by side in the last
    dim, the row offset varying fastest (torchvision's Swin `_patch_merging_pad`: odd sizes
    padded with zeros at the bottom and right; x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], ...)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        k = self.k
        h, w = x.shape[-3], x.shape[-2]
        if h % k or w % k:
            x = nn.functional.pad(x, (0, 0, 0, -w % k, 0, -h % k))
        return torch.cat([x[..., i::k, j::k, :] for j in range(k) for i in range(k)], -1)

    def extra_repr(self) -> str:
        return f"k={self.k}"
