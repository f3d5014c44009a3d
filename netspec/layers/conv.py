"""Convolution layers: `conv` (torch.nn.Conv2d), `conv_transpose` (torch.nn.ConvTranspose2d)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import (Autograd, Layer, NonNegInt, NonNegPair, Pair, PosInt, Receptive, Shape,
                                     need_rank, pair, register, window_out)


def _check_groups(c: int, out: int, groups: int) -> None:
    if c % groups:
        raise LayerError("groups", f"{groups} does not divide in_channels {c}")
    if out % groups:
        raise LayerError("groups", f"{groups} does not divide out channels {out}")


@register("conv", aliases=("Conv2d",))
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
        _check_groups(c, self.out, self.groups)
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

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # convolution_backward reads the input and the weight, whichever gradient is asked
        (kh, kw), (dh, dw) = pair(self.k), pair(self.dilation)
        weight = self.out * (shape[0] // self.groups) * kh * kw
        odd = (dh * (kh - 1) % 2, dw * (kw - 1) % 2)
        if self.padding == "same" and any(odd):  # torch pads the odd pixel first: it keeps that copy
            padded = ((shape[0] * (shape[1] + odd[0]) * (shape[2] + odd[1]), 0, "act"),)
            return Autograd(extra=padded, weight=weight, layout="suggest", lower=True)
        return Autograd(input=True, weight=weight, layout="suggest", lower=True)

    def param_tensors(self, shape: Shape) -> int:
        return 1 + self.bias

    def backward_macs(self, shape, out, *, input_grad, weight_grad):
        return self.macs(shape, out) * (input_grad + weight_grad)

    def receptive(self, shape, out):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(self.k), pair(self.stride), self._padding(), pair(self.dilation)
        channels = {"mix": (0,)} if self.groups == 1 else {"lost": (0,)}   # a group reads its own channels
        return Receptive(windows=((1, kh, sh, ph, dh), (2, kw, sw, pw, dw)), **channels)

    def build(self, shape: Shape):
        from torch import nn
        padding = self.padding if isinstance(self.padding, str) else pair(self.padding)
        return nn.Conv2d(shape[0], self.out, pair(self.k), stride=pair(self.stride), padding=padding,
                         dilation=pair(self.dilation), groups=self.groups, bias=self.bias)


@register("conv_transpose", aliases=("ConvTranspose2d",))
class ConvTranspose(Layer):
    """2-D transposed convolution (torch.nn.ConvTranspose2d), e.g. learned upsampling;
    in_channels is inferred from the input."""
    fresh_output: ClassVar[bool] = True

    out: PosInt = Field(description="Output channels (out_channels).")
    k: PosInt | Pair = Field(description="Kernel size (kernel_size): an int or [height, width].")
    stride: PosInt | Pair = Field(1, description="Stride: an int or [height, width].")
    padding: NonNegInt | NonNegPair = Field(0, description="Removed from both sides of the output (padding): an int or [height, width].")
    output_padding: NonNegInt | NonNegPair = Field(0, description="Added to one side of the output (output_padding); smaller than stride or dilation.")
    dilation: PosInt | Pair = Field(1, description="Spacing between kernel elements (dilation).")
    groups: PosInt = Field(1, description="Grouped transposed convolution (groups); must divide in and out channels.")
    bias: bool = Field(True, description="Add a learnable bias (bias).")

    def infer(self, shape: Shape) -> Shape:
        need_rank(shape, 3, "conv_transpose")
        _check_groups(shape[0], self.out, self.groups)
        out = [self.out]
        for n, k, s, p, op, d in zip(shape[1:], pair(self.k), pair(self.stride), pair(self.padding),
                                     pair(self.output_padding), pair(self.dilation)):
            if op >= s and op >= d:
                raise LayerError("output_padding", f"{op} must be smaller than the stride {s} or the dilation {d}")
            size = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            if size <= 0:
                raise LayerError("padding", f"padding {p} leaves no output ({size} from input size {n})")
            out.append(size)
        return tuple(out)

    def param_count(self, shape: Shape) -> int:
        kh, kw = pair(self.k)
        return shape[0] * (self.out // self.groups) * kh * kw + (self.out if self.bias else 0)

    def macs(self, shape: Shape, out: Shape) -> int:
        # FlopCounterMode counts a transposed conv per *input* position
        kh, kw = pair(self.k)
        return shape[1] * shape[2] * kh * kw * shape[0] * (self.out // self.groups)

    def receptive(self, shape, out):
        # at stride 1 output o reads inputs o + p - t*d: a conv with left padding (k-1)*d - p;
        # at a larger stride neighbouring outputs read different numbers of inputs (not tracked)
        windows, lost = [], [] if self.groups == 1 else [0]
        for dim, k, s, p, d in zip((1, 2), pair(self.k), pair(self.stride), pair(self.padding), pair(self.dilation)):
            if s == 1:
                windows.append((dim, k, 1, (k - 1) * d - p, d))
            else:
                lost.append(dim)
        return Receptive(windows=tuple(windows), mix=(0,) if self.groups == 1 else (), lost=tuple(lost))

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        kh, kw = pair(self.k)
        return Autograd(input=True, weight=shape[0] * (self.out // self.groups) * kh * kw, layout="suggest", lower=True)

    def param_tensors(self, shape: Shape) -> int:
        return 1 + self.bias

    def backward_macs(self, shape, out, *, input_grad, weight_grad):
        return self.macs(shape, out) * (input_grad + weight_grad)

    def build(self, shape: Shape):
        from torch import nn
        return nn.ConvTranspose2d(shape[0], self.out, pair(self.k), stride=pair(self.stride),
                                  padding=pair(self.padding), output_padding=pair(self.output_padding),
                                  groups=self.groups, bias=self.bias, dilation=pair(self.dilation))
