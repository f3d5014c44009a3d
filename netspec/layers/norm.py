"""Normalization layers: `bn` (BatchNorm1d or BatchNorm2d, chosen by the input's rank)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Layer, Shape, register


@register("bn")
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

    def build(self, shape: Shape):
        from torch import nn
        cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return cls(shape[0], eps=self.eps, momentum=self.momentum, affine=self.affine)
