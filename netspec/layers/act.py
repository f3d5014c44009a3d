"""Activation functions: parameter-free, shape-preserving, one torch module each."""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.layers.registry import Autograd, Layer, Shape, register


class Activation(Layer):
    torch_name: ClassVar[str] = ""  # the torch.nn class this tag builds
    keeps: ClassVar[str] = "input"  # what its backward reads: "input" or "output"

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        if inplace and self.keeps == "output":  # ReLU(inplace=True) keeps its result, the input's storage
            return Autograd(output=True, result="same")
        if inplace:  # a backward that reads the input: autograd keeps a copy of it before it is overwritten
            return Autograd(extra=((prod(shape), 0, "act"),), result="same")
        return Autograd(input=self.keeps == "input", output=self.keeps == "output")

    def build(self, shape: Shape):
        from torch import nn
        return getattr(nn, self.torch_name)(**self.model_dump(exclude={"name", "frozen"}))


@register("relu", aliases=("ReLU",))
class ReLU(Activation):
    """max(0, x) (torch.nn.ReLU)."""
    torch_name: ClassVar[str] = "ReLU"
    runs_inplace: ClassVar[bool] = True
    keeps: ClassVar[str] = "output"


@register("relu6", aliases=("ReLU6",))
class ReLU6(Activation):
    """min(max(0, x), 6) (torch.nn.ReLU6), as in MobileNetV2."""
    torch_name: ClassVar[str] = "ReLU6"
    runs_inplace: ClassVar[bool] = True


@register("leaky_relu", shorthand="negative_slope", aliases=("LeakyReLU",))
class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x (torch.nn.LeakyReLU)."""
    torch_name: ClassVar[str] = "LeakyReLU"
    negative_slope: float = Field(0.01, description="Slope for negative inputs.")


@register("sigmoid", aliases=("Sigmoid",))
class Sigmoid(Activation):
    """1 / (1 + exp(-x)) (torch.nn.Sigmoid)."""
    torch_name: ClassVar[str] = "Sigmoid"
    keeps: ClassVar[str] = "output"


@register("tanh", aliases=("Tanh",))
class Tanh(Activation):
    """Hyperbolic tangent (torch.nn.Tanh)."""
    torch_name: ClassVar[str] = "Tanh"
    keeps: ClassVar[str] = "output"


@register("gelu", shorthand="approximate", aliases=("GELU",))
class GELU(Activation):
    """Gaussian error linear unit (torch.nn.GELU)."""
    torch_name: ClassVar[str] = "GELU"
    approximate: Literal["none", "tanh"] = Field("none", description="'tanh' uses the tanh approximation.")


@register("silu", aliases=("SiLU", "Swish"))
class SiLU(Activation):
    """x * sigmoid(x), a.k.a. swish (torch.nn.SiLU)."""
    torch_name: ClassVar[str] = "SiLU"


@register("hardswish", aliases=("Hardswish",))
class Hardswish(Activation):
    """x * relu6(x + 3) / 6 (torch.nn.Hardswish), as in MobileNetV3."""
    torch_name: ClassVar[str] = "Hardswish"


@register("hardsigmoid", aliases=("Hardsigmoid",))
class Hardsigmoid(Activation):
    """relu6(x + 3) / 6 (torch.nn.Hardsigmoid), as in MobileNetV3's squeeze-excitation."""
    torch_name: ClassVar[str] = "Hardsigmoid"
