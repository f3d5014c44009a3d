"""Learned tensors applied elementwise: `scale` (x * t, ConvNeXt's layer_scale) and `add`
(x + t, ViT's pos_embedding). The tensor's shape follows the input (`per`).

Both are bare parameters (see `Layer.bare_parameter`): the builder registers the tensor on
the enclosing module under the layer's name, so its state_dict key is e.g.
`features.1.0.layer_scale`, as torchvision's plain nn.Parameter attributes.
"""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.registry import Autograd, Layer, Shape, register


class Learned(Layer):
    fresh_output: ClassVar[bool] = True  # x * t, x + t: a new tensor; backward reads x and t
    bare_parameter: ClassVar[bool] = True
    module_name: ClassVar[str] = ""  # the netspec.modules class built

    per: Literal["channels", "last", "sample"] = Field("channels", description="Shape of the tensor: 'channels' one value per channel ([C, 1, 1] for [C, H, W], as ConvNeXt's layer_scale), 'last' per element of the last dimension ([D] for tokens [N, D]), 'sample' the whole sample shape.")
    batch_dim: bool = Field(False, description="Give the tensor a leading dimension of size 1 (ViT's pos_embedding is [1, N, D]).")
    # `init` (the fill value) is declared by each subclass, with its own default

    def tensor_shape(self, shape: Shape) -> Shape:
        own = {"channels": (shape[0], *(1,) * (len(shape) - 1)), "last": (shape[-1],), "sample": shape}[self.per]
        return (1, *own) if self.batch_dim else own

    def param_count(self, shape: Shape) -> int:
        return prod(self.tensor_shape(shape))

    def param_tensors(self, shape: Shape) -> int:
        return 1

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # x * t keeps x for t's gradient (t is a parameter); x + t keeps nothing; the fp32
        # tensor makes the result fp32 under autocast
        return Autograd(input=self.tag == "scale" and weight_grad, promote=True)

    def initial(self, shape: Shape):
        import torch
        return torch.full(self.tensor_shape(shape), self.init)

    def build(self, shape: Shape):
        from netspec import modules
        return getattr(modules, self.module_name)(self.initial(shape))


@register("scale")
class Scale(Learned):
    """x * t with a learned tensor t (ConvNeXt's layer_scale: per channels, init 1e-6)."""
    module_name: ClassVar[str] = "Scale"

    init: float = Field(1.0, description="Initial value of every element (torch.full's fill_value; ConvNeXt's layer_scale uses 1e-6).")


@register("add")
class Add(Learned):
    """x + t with a learned tensor t (ViT's pos_embedding: per sample, batch_dim, std 0.02)."""
    module_name: ClassVar[str] = "Add"

    init: float = Field(0.0, description="Initial value of every element (torch.full's fill_value), or the mean when std is given.")
    std: float | None = Field(None, gt=0, description="Initialize from a normal distribution with this standard deviation instead (Tensor.normal_'s std; ViT's pos_embedding uses 0.02).")

    def initial(self, shape: Shape):
        if self.std is None:
            return super().initial(shape)
        import torch
        return torch.empty(self.tensor_shape(shape)).normal_(mean=self.init, std=self.std)
