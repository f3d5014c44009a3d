"""Learned tensors: applied elementwise, `scale` (x * t, ConvNeXt's layer_scale) and `add`
(x + t), whose shape follows the input (`per`; kept as a vector with `vector`, as SSD's
scale_weight [C]); and on tokens [N, D], `class_token` (a
learned token prepended, ViT's class_token) and `pos_embedding` (x + a learned [1, N, D],
ViT's encoder.pos_embedding, N checked against a declared token count).

All are bare parameters (see `Layer.bare_parameter`): the builder registers the tensor on
the enclosing module under the layer's name, so its state_dict key is e.g.
`features.1.0.layer_scale`, as torchvision's plain nn.Parameter attributes.
"""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Autograd, Layer, PosInt, Receptive, Shape, need_tokens, register


class Learned(Layer):
    fresh_output: ClassVar[bool] = True  # x * t, x + t: a new tensor; backward reads x and t
    bare_parameter: ClassVar[bool] = True
    module_name: ClassVar[str] = ""  # the netspec.modules class built

    per: Literal["channels", "last", "sample"] = Field("channels", description="Shape of the tensor: 'channels' one value per channel ([C, 1, 1] for [C, H, W], as ConvNeXt's layer_scale), 'last' per element of the last dimension ([D] for tokens [N, D]), 'sample' the whole sample shape.")
    batch_dim: bool = Field(False, description="Give the tensor a leading dimension of size 1 (ViT's pos_embedding is [1, N, D]).")
    vector: bool = Field(False, description="Keep the tensor as a vector of its values ([C] for per channels, as SSD's scale_weight), viewed to the shape `per` gives when applied.")
    # `init` (the fill value) is declared by each subclass, with its own default

    def infer(self, shape: Shape) -> Shape:
        if self.vector and self.batch_dim:
            raise LayerError("vector", "a vector has no leading dimension; give vector or batch_dim, not both")
        return shape

    def applied_shape(self, shape: Shape) -> Shape:
        """The shape the tensor has where it meets x."""
        own = {"channels": (shape[0], *(1,) * (len(shape) - 1)), "last": (shape[-1],), "sample": shape}[self.per]
        return (1, *own) if self.batch_dim else own

    def tensor_shape(self, shape: Shape) -> Shape:
        own = self.applied_shape(shape)
        return (prod(own),) if self.vector else own

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
        return getattr(modules, self.module_name)(self.initial(shape), self.applied_shape(shape) if self.vector else None)


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


@register("class_token")
class ClassToken(Layer):
    """Prepend one learned token to tokens [N, D], giving [N + 1, D] (torchvision's ViT
    `class_token`, a [1, 1, D] tensor of zeros: expanded over the batch, torch.cat first)."""
    fresh_output: ClassVar[bool] = True   # torch.cat: a new tensor; its backward keeps nothing
    bare_parameter: ClassVar[bool] = True

    def infer(self, shape: Shape) -> Shape:
        need_tokens(shape, "class_token")
        return (shape[0] + 1, shape[1])

    def param_count(self, shape: Shape) -> int:
        return shape[1]

    def param_tensors(self, shape: Shape) -> int:
        return 1

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(layout="contiguous", promote=True)   # autocast runs cat in the widest dtype

    def receptive(self, shape, out):
        return Receptive(lost=(0,))  # a token prepended: positions shift by one

    def build(self, shape: Shape):
        import torch
        from netspec.modules import ClassToken
        return ClassToken(torch.zeros(1, 1, shape[1]))


@register("pos_embedding", shorthand="tokens")
class PosEmbedding(Layer):
    """x + a learned positional embedding [1, N, D] of tokens [N, D] (torchvision's ViT
    `encoder.pos_embedding`, normal with std 0.02). N comes from the input; `tokens`, when
    given, declares it, and an input that gives another number of tokens is an error
    (the embedding was made for one resolution: see README, "Changing resolution")."""
    fresh_output: ClassVar[bool] = True
    bare_parameter: ClassVar[bool] = True

    tokens: PosInt | None = Field(None, description="The number of tokens N the embedding is declared for (with a class token, patches + 1); checked against the input. Default: the input's.")
    std: float = Field(0.02, gt=0, description="Standard deviation of the normal initialisation (Tensor.normal_'s std; torchvision's ViT uses 0.02).")

    def infer(self, shape: Shape) -> Shape:
        need_tokens(shape, "pos_embedding")
        if self.tokens is not None and self.tokens != shape[0]:
            raise LayerError("tokens", f"the embedding is declared for {self.tokens} tokens, but the input gives "
                                       f"{shape[0]} tokens (another resolution: change the variables that set "
                                       f"`tokens` together with the input)")
        return shape

    def param_count(self, shape: Shape) -> int:
        return shape[0] * shape[1]

    def param_tensors(self, shape: Shape) -> int:
        return 1

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(promote=True)   # x + t keeps nothing; the fp32 tensor makes the sum fp32

    def build(self, shape: Shape):
        import torch
        from netspec.modules import Add
        return Add(torch.empty(1, *shape).normal_(std=self.std))
