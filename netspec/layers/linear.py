"""Fully connected layers: `linear` (torch.nn.Linear over the last dimension)."""
from __future__ import annotations

from math import prod
from typing import ClassVar

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Autograd, Layer, NonNegPair, PosInt, Receptive, Shape, register


@register("linear", shorthand="out", aliases=("Linear",))
class Linear(Layer):
    """y = x W^T + b over the last dimension (torch.nn.Linear); in_features is inferred."""
    fresh_output: ClassVar[bool] = True

    out: PosInt = Field(description="Output features (out_features).")
    bias: bool = Field(True, description="Add a learnable bias.")
    bias_zeroed: NonNegPair | None = Field(None, description="[start, stop]: bias elements start..stop-1 act as zeros in every forward (a copy of the bias is zeroed; the parameter keeps its values), as torchvision's Swin-v2 treats its qkv bias' key part: [dim, 2 * dim].")

    def infer(self, shape: Shape) -> Shape:
        if self.bias_zeroed is not None:
            start, stop = self.bias_zeroed
            if not self.bias:
                raise LayerError("bias_zeroed", "zeroes part of the bias: give bias: true")
            if not start < stop <= self.out:
                raise LayerError("bias_zeroed", f"[{start}, {stop}] is not a range of the {self.out} bias elements")
        return (*shape[:-1], self.out)

    def param_count(self, shape: Shape) -> int:
        return shape[-1] * self.out + (self.out if self.bias else 0)

    def macs(self, shape: Shape, out: Shape) -> int:
        return prod(shape[:-1]) * shape[-1] * self.out

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # mm keeps the input for the weight's gradient and the weight for the input's; a
        # non-contiguous input of several dims is reshaped to a matrix by a copy, which is kept
        weight = shape[-1] * self.out if input_grad else 0
        if contiguous or len(shape) == 1:
            return Autograd(input=weight_grad, weight=weight, layout="contiguous", lower=True)
        copy = ((prod(shape), 0, "act"),) if weight_grad else ()
        return Autograd(extra=copy, weight=weight, layout="contiguous", lower=True)

    def receptive(self, shape, out):
        return Receptive(mix=(len(shape) - 1,))

    def param_tensors(self, shape: Shape) -> int:
        return 1 + self.bias

    def backward_macs(self, shape, out, *, input_grad, weight_grad):
        return self.macs(shape, out) * (input_grad + weight_grad)

    def build(self, shape: Shape):
        from torch import nn
        if self.bias_zeroed is not None:
            from netspec.modules import LinearZeroedBias
            return LinearZeroedBias(shape[-1], self.out, zeroed=tuple(self.bias_zeroed))
        return nn.Linear(shape[-1], self.out, bias=self.bias)
