"""Fully connected layers: `linear` (torch.nn.Linear over the last dimension)."""
from __future__ import annotations

from math import prod
from typing import ClassVar

from pydantic import Field

from netspec.layers.registry import Layer, PosInt, Shape, register


@register("linear", shorthand="out")
class Linear(Layer):
    """y = x W^T + b over the last dimension (torch.nn.Linear); in_features is inferred."""
    fresh_output: ClassVar[bool] = True

    out: PosInt = Field(description="Output features (out_features).")
    bias: bool = Field(True, description="Add a learnable bias.")

    def infer(self, shape: Shape) -> Shape:
        return (*shape[:-1], self.out)

    def param_count(self, shape: Shape) -> int:
        return shape[-1] * self.out + (self.out if self.bias else 0)

    def macs(self, shape: Shape, out: Shape) -> int:
        return prod(shape[:-1]) * shape[-1] * self.out

    def build(self, shape: Shape):
        from torch import nn
        return nn.Linear(shape[-1], self.out, bias=self.bias)
