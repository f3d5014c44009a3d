"""Spatial resampling: pooling (`maxpool`, `avgpool` (windowed, or `global`),
`adaptive_maxpool`, `adaptive_avgpool`) and `upsample`."""
from __future__ import annotations

from math import floor
from math import prod
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import (Autograd, Layer, NonNegInt, NonNegPair, Pair, PosInt, Receptive, Shape,
                                     need_rank, pair, register, window_out)


class WindowPool(Layer):
    torch_name: ClassVar[str] = ""
    k: PosInt | Pair | Literal["global"] = Field(description="Window size (kernel_size): an int, [height, width], or 'global' (pool each channel to 1x1).")
    stride: PosInt | Pair | None = Field(None, description="Stride; default: the window size (as in torch).")
    padding: NonNegInt | NonNegPair = Field(0, description="Implicit padding on both sides; at most half the window.")
    ceil_mode: bool = Field(False, description="Use ceil instead of floor to compute the output size.")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, self.tag)
        c, h, w = shape
        if self.k == "global":
            return (c, 1, 1)
        (kh, kw), (ph, pw) = pair(self.k), pair(self.padding)
        sh, sw = pair(self.stride, self.k)
        if ph > kh // 2 or pw > kw // 2:
            raise LayerError("padding", f"padding {list(pair(self.padding))} is more than half the window {list(pair(self.k))}")
        return (c, window_out(h, kh, sh, ph, ceil_mode=self.ceil_mode),
                window_out(w, kw, sw, pw, ceil_mode=self.ceil_mode))

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        if self.tag == "maxpool":   # the input and the argmax indices (int64), global or windowed
            return Autograd(input=True, extra=((prod(out), 0, "int64"),), layout="suggest")
        if self.k == "global":      # AdaptiveAvgPool2d(1) is a mean: its backward needs only sizes
            return Autograd(layout="suggest")
        return Autograd(input=True, layout="suggest")

    def receptive(self, shape, out):
        if self.k == "global":
            return Receptive(mix=(1, 2))
        (kh, kw), (sh, sw), (ph, pw) = pair(self.k), pair(self.stride, self.k), pair(self.padding)
        return Receptive(windows=((1, kh, sh, ph, 1), (2, kw, sw, pw, 1)))

    def build(self, shape: Shape):
        from torch import nn
        if self.k == "global":
            return getattr(nn, f"Adaptive{self.torch_name}")(1)
        return getattr(nn, self.torch_name)(pair(self.k), stride=pair(self.stride, self.k),
                                            padding=pair(self.padding), ceil_mode=self.ceil_mode)


@register("maxpool", shorthand="k", aliases=("MaxPool2d",))
class MaxPool(WindowPool):
    """Max pooling (torch.nn.MaxPool2d; AdaptiveMaxPool2d(1) for k: global)."""
    torch_name: ClassVar[str] = "MaxPool2d"


@register("avgpool", shorthand="k", aliases=("AvgPool2d",))
class AvgPool(WindowPool):
    """Average pooling (torch.nn.AvgPool2d; AdaptiveAvgPool2d(1) for k: global)."""
    torch_name: ClassVar[str] = "AvgPool2d"
    count_include_pad: bool = Field(True, description="Count the implicit zero padding in each average (count_include_pad); false: average the real inputs only (PoolFormer's pooling).")

    def build(self, shape: Shape):
        module = super().build(shape)
        if self.k != "global":
            module.count_include_pad = self.count_include_pad
        return module


class AdaptivePool(Layer):
    torch_name: ClassVar[str] = ""
    size: PosInt | Pair = Field(description="Output size (output_size): an int or [height, width].")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, self.tag)
        return (shape[0], *pair(self.size))

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        if self.tag == "adaptive_maxpool":
            return Autograd(input=True, extra=((prod(out), 0, "int64"),), layout="suggest")
        return Autograd(input=tuple(out[1:]) != (1, 1), layout="suggest")   # to 1x1 it is a mean

    def receptive(self, shape, out):
        # torch's bins are [floor(i*n/o), ceil((i+1)*n/o)): a plain window when o divides n,
        # else of unequal sizes and spacing (not tracked)
        windows, mix, lost = [], [], []
        for dim in (1, 2):
            n, o = shape[dim], out[dim]
            if o == 1:
                mix.append(dim)
            elif n % o == 0:
                windows.append((dim, n // o, n // o, 0, 1))
            else:
                lost.append(dim)
        return Receptive(windows=tuple(windows), mix=tuple(mix), lost=tuple(lost))

    def build(self, shape: Shape):
        from torch import nn
        return getattr(nn, self.torch_name)(pair(self.size))


@register("adaptive_maxpool", shorthand="size", aliases=("AdaptiveMaxPool2d",))
class AdaptiveMaxPool(AdaptivePool):
    """Max pooling to a fixed output size (torch.nn.AdaptiveMaxPool2d)."""
    torch_name: ClassVar[str] = "AdaptiveMaxPool2d"


@register("adaptive_avgpool", shorthand="size", aliases=("AdaptiveAvgPool2d",))
class AdaptiveAvgPool(AdaptivePool):
    """Average pooling to a fixed output size (torch.nn.AdaptiveAvgPool2d)."""
    torch_name: ClassVar[str] = "AdaptiveAvgPool2d"


PosFloat = Annotated[float, Field(gt=0)]


@register("upsample", shorthand="scale", aliases=("Upsample",))
class Upsample(Layer):
    """Resize a [C, H, W] map by a scale factor or to a size (torch.nn.Upsample)."""
    fresh_output: ClassVar[bool] = True

    scale: PosFloat | Annotated[list[PosFloat], Field(min_length=2, max_length=2)] | None = Field(None, description="Scale factor (scale_factor): a number or [height, width]; the output is floor(size * scale), as in torch.")
    size: PosInt | Pair | None = Field(None, description="Output size (size): an int or [height, width]; give scale or size.")
    mode: Literal["nearest", "bilinear", "bicubic"] = Field("nearest", description="Interpolation (mode).")
    align_corners: bool | None = Field(None, description="bilinear and bicubic only: align the corner pixels of input and output (align_corners); default torch's (false).")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, "upsample")
        if (self.scale is None) == (self.size is None):
            raise LayerError("scale" if self.scale is not None else None, "give either scale or size")
        if self.align_corners is not None and self.mode == "nearest":
            raise LayerError("align_corners", "only bilinear and bicubic take align_corners")
        if self.size is not None:
            return (shape[0], *pair(self.size))
        # torch: floor of the (double) product, with the scale kept for the interpolation
        out = tuple(floor(float(n) * s) for n, s in zip(shape[1:], pair(self.scale)))
        if min(out) <= 0:
            raise LayerError("scale", f"scale {self.scale} leaves no output ({list(out)} from {list(shape[1:])})")
        return (shape[0], *out)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(layout="suggest")   # its backward needs only sizes

    def receptive(self, shape, out):
        # unchanged at scale 1; otherwise outputs read unevenly spaced inputs (not tracked)
        scale = (1, 1) if self.scale is None else pair(self.scale)
        return Receptive(lost=tuple(d for d in (1, 2) if out[d] != shape[d] or scale[d - 1] != 1))

    def build(self, shape: Shape):
        from torch import nn
        scale = None if self.scale is None else tuple(float(s) for s in pair(self.scale))
        size = None if self.size is None else pair(self.size)
        return nn.Upsample(size=size, scale_factor=scale, mode=self.mode, align_corners=self.align_corners)
