"""`dense`: DenseNet's connectivity, layer i sees cat(input, out_0, ..., out_{i-1})."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from netspec.constructs.registry import Construct, register


@register("dense")
class Dense(Construct):
    """Dense connectivity (DenseNet): copy i sees the concat of the input and all earlier outputs; the output is the concat of all."""

    title = "DenseBlock"

    repeat: Annotated[int, Field(ge=1)] = Field(description="Number of layers; each sees $i.")
    body: list[Any] = Field(min_length=1, description="One dense layer.")

    @classmethod
    def resolve(cls, f, r, path):
        n = r.value(f.repeat, path + ("repeat",))
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= r.max_layers:
            raise r.error(f"dense repeat needs an integer from 1 to {r.max_layers:,}, got {n!r}", path + ("repeat",))
        copies = [r.group(r.indexed(i).items(f.body, path + ("body",)), None, path) for i in range(n)]
        return r.node(cls, f, path, {"body": copies}, {"repeat": n})

    @classmethod
    def infer(cls, node, a, m, shape):
        channels = shape[0]
        for layer in node.slots["body"]:
            child = a.adopt(m, "body", a.module(layer, m.path, (channels, *shape[1:])))
            if child.output[1:] != shape[1:]:
                raise a.fail(node, m.path, f"a dense layer must keep the spatial size {list(shape[1:])} so outputs can be "
                                           f"concatenated; layer '{layer.name}' gives {list(child.output)}")
            channels += child.output[0]
        return (channels, *shape[1:])

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        for child in m.slots["body"]:
            p.visit(child, True)  # each layer's input is a new torch.cat that only it reads

    @classmethod
    def autograd(cls, m, f, x):
        features = [x]
        for layer in m.slots["body"]:
            features.append(f.module(layer, f.cat(features)))
        return f.cat(features)

    @classmethod
    def receptive(cls, m, f, x):
        seen = x   # cat(input, out_0, ..., out_i): joined one output at a time
        for layer in m.slots["body"]:
            seen = f.join([seen, f.module(layer, seen)], along=0)
        return seen

    @classmethod
    def build(cls, m, b, owner):
        import torch
        return DenseStep([b.step(child, owner) for child in m.slots["body"]], torch.cat)


class DenseStep:
    __slots__ = ("layers", "cat")

    def __init__(self, layers, cat):
        self.layers, self.cat = tuple(layers), cat

    def __call__(self, owner, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(owner, self.cat(features, 1)))
        return self.cat(features, 1)
