"""Convolution layers: `conv` (torch.nn.Conv2d)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import (Layer, NonNegInt, NonNegPair, Pair, PosInt, Shape, need_rank,
                                     pair, register, window_out)


@register("conv")
class Conv(Layer):
    """2-D convolution (torch.nn.Conv2d); in_channels is inferred from the input."""
    fresh_output: ClassVar[bool] = True

    out: PosInt = Field(description="Output channels (out_channels).")
    k: PosInt | Pair = Field(description="Kernel size (kernel_size): an int or [height, width].")
    stride: PosInt | Pair = Field(1, description="Stride: an int or [height, width].")
    padding: NonNegInt | NonNegPair | Literal["same", "valid"] = Field(0, description="Zero padding: an int, [height, width], 'same' (stride 1 only) or 'valid' (= 0).")
    dilation: PosInt | Pair = Field(1, description="Spacing between kernel elements.")
    groups: PosInt = Field(1, description="Grouped convolution (cardinality): one conv whose channels split into this many groups; must divide in and out channels.")
    bias: bool = Field(True, description="Add a learnable bias.")

    def _padding(self) -> tuple[int, int]:
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            # torch pads (d*(k-1))//2 on the left; output size equals input size at stride 1
            (kh, kw), (dh, dw) = pair(self.k), pair(self.dilation)
            return (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        return pair(self.padding)

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, "conv")
        c, h, w = shape
        if c % self.groups:
            raise LayerError("groups", f"{self.groups} does not divide in_channels {c}")
        if self.out % self.groups:
            raise LayerError("groups", f"{self.groups} does not divide out channels {self.out}")
        (kh, kw), (sh, sw), (dh, dw) = pair(self.k), pair(self.stride), pair(self.dilation)
        if self.padding == "same":
            if (sh, sw) != (1, 1):
                raise LayerError("padding", "'same' padding needs stride 1 (torch refuses it otherwise)")
            window_out(h, kh, 1, 0, dh, field="k"), window_out(w, kw, 1, 0, dw, field="k")
            return (self.out, h, w)
        ph, pw = self._padding()
        return (self.out, window_out(h, kh, sh, ph, dh), window_out(w, kw, sw, pw, dw))

    def param_count(self, shape: Shape) -> int:
        kh, kw = pair(self.k)
        return self.out * (shape[0] // self.groups) * kh * kw + (self.out if self.bias else 0)

    def macs(self, shape: Shape, out: Shape) -> int:
        kh, kw = pair(self.k)
        return out[0] * out[1] * out[2] * (shape[0] // self.groups) * kh * kw

    def build(self, shape: Shape):
        from torch import nn
        padding = self.padding if isinstance(self.padding, str) else pair(self.padding)
        return nn.Conv2d(shape[0], self.out, pair(self.k), stride=pair(self.stride), padding=padding,
                         dilation=pair(self.dilation), groups=self.groups, bias=self.bias)
