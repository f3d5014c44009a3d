"""Normalization layers: `bn` (BatchNorm1d or BatchNorm2d, chosen by the input's rank),
`frozen_bn` (torchvision's FrozenBatchNorm2d), `layernorm` (over the last dimension or the
channels), `groupnorm`, `normalize` (each vector to unit p-norm, F.normalize)."""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Autograd, Layer, PosInt, Receptive, Shape, need_rank, register, sample_dim


@register("bn", aliases=("BatchNorm2d", "BatchNorm1d", "BatchNorm"))
class BatchNorm(Layer):
    """Batch normalization over channels: BatchNorm1d for [features] or [channels, length]
    inputs, BatchNorm2d for [channels, height, width]."""
    fresh_output: ClassVar[bool] = True

    eps: float = Field(1e-5, gt=0, description="Added to the variance for numerical stability.")
    momentum: float = Field(0.1, ge=0, le=1, description="Running-statistics update factor.")
    affine: bool = Field(True, description="Learn a per-channel scale and shift (2 x channels parameters).")

    def infer(self, shape: Shape) -> Shape:
        if len(shape) not in (1, 2, 3):
            raise LayerError(None, f"bn needs a [features], [channels, length] or [channels, height, width] input, got {list(shape)}")
        return shape

    def param_count(self, shape: Shape) -> int:
        return 2 * shape[0] if self.affine else 0

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # the input, and the batch's mean and inverse std per channel (fp32)
        return Autograd(input=True, extra=((0, shape[0], "fp32"), (0, shape[0], "fp32")), layout="suggest")

    def param_tensors(self, shape: Shape) -> int:
        return 2 if self.affine else 0

    def buffers(self, shape: Shape) -> tuple:
        return ((shape[0], "fp32"), (shape[0], "fp32"), (1, "int64"))   # running_mean, running_var, num_batches_tracked

    def build(self, shape: Shape):
        from torch import nn
        cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return cls(shape[0], eps=self.eps, momentum=self.momentum, affine=self.affine)


@register("frozen_bn", aliases=("FrozenBatchNorm2d",))
class FrozenBatchNorm(Layer):
    """Batch normalization with fixed statistics and affine terms, all buffers (no
    parameters, no num_batches_tracked): torchvision.ops.FrozenBatchNorm2d, which
    detection backbones use and whose weights load only into it."""
    fresh_output: ClassVar[bool] = True

    eps: float = Field(1e-5, gt=0, description="Added to the running variance (eps).")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, "frozen_bn")
        return shape

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # x * scale + shift with scale, shift [1, C, 1, 1] made from the buffers each call: the
        # product keeps scale for x's gradient; fp32 buffers make the result fp32 under autocast
        return Autograd(extra=((0, shape[0], "fp32"),) if input_grad else (), promote=True, layout="like")

    def buffers(self, shape: Shape) -> tuple:
        return ((shape[0], "fp32"),) * 4   # weight, bias, running_mean, running_var

    def build(self, shape: Shape):
        from torchvision.ops import FrozenBatchNorm2d
        return FrozenBatchNorm2d(shape[0], eps=self.eps)


@register("layernorm", aliases=("LayerNorm", "LayerNorm2d"))
class LayerNorm(Layer):
    """Layer normalization over the last dimension (torch.nn.LayerNorm; any rank: [F],
    tokens [N, D], channels-last [H, W, C]) or over the channels of a [C, H, W] map
    (torchvision's ConvNeXt LayerNorm2d: NHWC layer_norm, back to NCHW)."""
    fresh_output: ClassVar[bool] = True

    over: Literal["last", "channels"] = Field("last", description="'last': normalize the last dimension (normalized_shape = its size); 'channels': the C of [C, H, W] (torchvision.models.convnext.LayerNorm2d).")
    eps: float = Field(1e-5, gt=0, description="Added to the variance for numerical stability (eps; ConvNeXt uses 1e-6).")
    elementwise_affine: bool = Field(True, description="Learn a per-element scale (elementwise_affine).")
    bias: bool = Field(True, description="With elementwise_affine, also learn a shift (bias).")

    def infer(self, shape: Shape) -> Shape:
        if self.over == "channels":
            need_rank(shape, 3, "layernorm over channels")
        return shape

    def param_count(self, shape: Shape) -> int:
        size = shape[0] if self.over == "channels" else shape[-1]
        return size * (1 + self.bias) if self.elementwise_affine else 0

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # the input (for `channels` its NHWC view), and a mean and rstd per normalised vector
        vectors = prod(shape) // (shape[0] if self.over == "channels" else shape[-1])
        dtype = "fp32" if self.elementwise_affine else "act"   # fp32 next to an fp32 weight, else the input's
        stats = ((vectors, 0, dtype), (vectors, 0, dtype))
        if self.over == "channels":  # LayerNorm2d: permute, layer_norm (a new NHWC tensor), permute back
            return Autograd(input=True, extra=stats, layout="channels_last")
        return Autograd(input=True, extra=stats, layout="contiguous")

    def receptive(self, shape, out):
        return Receptive(mix=(0 if self.over == "channels" else len(shape) - 1,))   # statistics over that dim

    def param_tensors(self, shape: Shape) -> int:
        return (1 + self.bias) if self.elementwise_affine else 0

    def build(self, shape: Shape):
        if self.over == "channels":
            from torchvision.models.convnext import LayerNorm2d as cls
            size = shape[0]
        else:
            from torch.nn import LayerNorm as cls
            size = shape[-1]
        return cls(size, eps=self.eps, elementwise_affine=self.elementwise_affine, bias=self.bias)


@register("groupnorm", shorthand="groups", aliases=("GroupNorm",))
class GroupNorm(Layer):
    """Group normalization: channels split into groups, each normalized over its channels
    and positions (torch.nn.GroupNorm); [C], [C, L] or [C, H, W] input."""
    fresh_output: ClassVar[bool] = True

    groups: PosInt = Field(description="Number of groups (num_groups); must divide the channels.")
    eps: float = Field(1e-5, gt=0, description="Added to the variance for numerical stability (eps).")
    affine: bool = Field(True, description="Learn a per-channel scale and shift (affine; 2 x channels parameters).")

    def infer(self, shape: Shape) -> Shape:
        if shape[0] % self.groups:
            raise LayerError("groups", f"{self.groups} does not divide channels {shape[0]}")
        if shape[0] // self.groups * prod(shape[1:]) == 1:  # x - mean(x) of one value is 0
            raise LayerError("groups", f"{self.groups} groups of {shape[0]} channels at {list(shape[1:]) or 'no positions'} "
                             "normalize one value each, which is always 0 (torch refuses it); use fewer groups")
        return shape

    def param_count(self, shape: Shape) -> int:
        return 2 * shape[0] if self.affine else 0

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # the input, and a mean and rstd per group of each sample: fp32 next to an fp32 weight, else the input's
        dtype = "fp32" if self.affine else "act"
        return Autograd(input=True, extra=((self.groups, 0, dtype), (self.groups, 0, dtype)), layout="suggest")

    def param_tensors(self, shape: Shape) -> int:
        return 2 if self.affine else 0

    def receptive(self, shape, out):
        return Receptive(mix=tuple(range(len(shape))))   # statistics over the group's channels and positions

    def build(self, shape: Shape):
        from torch import nn
        return nn.GroupNorm(self.groups, shape[0], eps=self.eps, affine=self.affine)


@register("normalize")
class Normalize(Layer):
    """Each vector along `dim` divided by its p-norm, at least eps (F.normalize: x /
    max(||x||_p, eps)); by default the channels of each position, as SSD's L2 normalisation
    of conv4_3 (then a learned per-channel `scale`). No parameters."""
    fresh_output: ClassVar[bool] = True

    p: float = Field(2.0, gt=0, description="The order p of the norm (F.normalize's p).")
    dim: int = Field(0, description="The sample dim whose vectors are normalised (0: the channels of [C, H, W]; negative from the end).")
    eps: float = Field(1e-12, gt=0, description="Lower bound of the norm, against division by zero (F.normalize's eps).")

    def infer(self, shape: Shape) -> Shape:
        sample_dim(self.dim, len(shape), "dim")
        return shape

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # x / norm.clamp_min(eps).expand_as(x): the division keeps x and the clamped norm, the
        # clamp its input (the norm), the norm x again; each norm has one value per vector
        vectors = prod(shape) // shape[sample_dim(self.dim, len(shape), "dim")]
        return Autograd(input=True, extra=((vectors, 0, "act"), (vectors, 0, "act")), layout="like")

    def receptive(self, shape, out):
        return Receptive(mix=(sample_dim(self.dim, len(shape), "dim"),))   # the norm reads the whole vector

    def build(self, shape: Shape):
        from netspec.modules import Normalize
        return Normalize(self.p, sample_dim(self.dim, len(shape), "dim") + 1, self.eps)
