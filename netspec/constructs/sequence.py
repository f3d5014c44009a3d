"""`sequence`: items applied in order, as one nested module (nn.Sequential)."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from netspec.constructs.registry import Chain, Construct, register


@register("sequence", aliases=("Sequential",))
class Sequence(Construct):
    """An explicitly nested sequential module (e.g. torchvision's `features`)."""

    title = "Sequential"

    body: list[Any] = Field(description="Items applied in order.")

    @classmethod
    def infer(cls, node, a, m, shape):
        return a.chain(m, "body", node.slots["body"], shape)

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        p.chain(m.slots["body"], fresh)

    @classmethod
    def fresh_output(cls, m, p) -> bool:
        body = m.slots["body"]
        return bool(body) and p.fresh(body[-1])  # an empty sequence passes its input through

    @classmethod
    def autograd(cls, m, f, x):
        return f.chain(m.slots["body"], x)

    @classmethod
    def build(cls, m, b, owner):
        return Chain(b.chain(m.slots["body"], owner))
