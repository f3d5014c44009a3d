"""`gate`: x * body(x), the body's output broadcast over x (squeeze-excitation)."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from netspec.constructs.registry import Chain, Construct, register


@register("gate")
class Gate(Construct):
    """y = x * body(x), the body's output broadcast over x: squeeze-excitation's channel gate."""

    body: list[Any] = Field(min_length=1, description="Computes the gate, e.g. global avgpool, 1x1 conv, relu, 1x1 conv, sigmoid.")

    @classmethod
    def infer(cls, node, a, m, shape):
        gate = a.chain(m, "body", node.slots["body"], shape)
        if len(gate) != len(shape) or any(g not in (1, s) for g, s in zip(gate, shape)):
            raise a.fail(node, m.path, f"gate output {list(gate)} does not broadcast over its input {list(shape)}")
        return shape

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        p.chain(m.slots["body"], False)  # the body's first layer reads x, which the product reads too

    @classmethod
    def autograd(cls, m, f, x):
        return f.mul(x, f.chain(m.slots["body"], x))

    @classmethod
    def receptive(cls, m, f, x):
        return f.join([x, f.chain(m.slots["body"], x)])   # an SE body's global pool makes it global

    @classmethod
    def build(cls, m, b, owner):
        return GateStep(Chain(b.chain(m.slots["body"], owner)))


class GateStep:
    __slots__ = ("body",)

    def __init__(self, body):
        self.body = body

    def __call__(self, owner, x):
        return x * self.body(owner, x)
