"""Layers that only move or pass data: `flatten`, `identity`, `dropout`."""
from __future__ import annotations

from math import prod

from pydantic import Field

from netspec.layers.registry import Layer, Shape, register


@register("flatten")
class Flatten(Layer):
    """Flatten everything but the batch dimension (torch.nn.Flatten)."""

    def infer(self, shape: Shape) -> Shape:
        return (prod(shape),)

    def build(self, shape: Shape):
        from torch import nn
        return nn.Flatten()


@register("identity")
class Identity(Layer):
    """Pass the input through (torch.nn.Identity)."""

    def build(self, shape: Shape):
        from torch import nn
        return nn.Identity()


@register("dropout", shorthand="p")
class Dropout(Layer):
    """Zero elements with probability p while training (torch.nn.Dropout)."""

    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing an element.")

    def build(self, shape: Shape):
        from torch import nn
        return nn.Dropout(self.p)
