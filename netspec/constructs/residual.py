"""`residual`: y = post(body(x) + shortcut(x)), torchvision's BasicBlock/Bottleneck shape."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from netspec.constructs.registry import Chain, Construct, register
from netspec.constructs.sequence import Sequence
from netspec.ir import Leaf, Node


@register("residual")
class Residual(Construct):
    """y = post(body(x) + shortcut(x))."""

    slots = ("body", "shortcut", "post")
    numbered = ("body", "post")
    title = "Residual"

    body: list[Any] = Field(min_length=1, description="The residual branch.")
    shortcut: Literal["auto", "identity"] | list[Any] = Field("auto", description="'auto': identity when the body keeps the shape, else 1x1 conv (stride to match) + bn; 'identity'; or a list of items (a projection).")
    shortcut_name: str = Field("shortcut", description="Module name of the shortcut (torchvision: downsample; RegNet: proj).")
    shortcut_first: bool = Field(False, description="Register the shortcut before the body (state_dict key order; RegNet's proj before f).")
    post: list[Any] = Field(default_factory=list, description="Items applied after the addition (e.g. relu).")

    @model_validator(mode="before")
    @classmethod
    def _post_as_list(cls, value):
        if isinstance(value, dict) and "post" in value and not isinstance(value["post"], list):
            value = {**value, "post": [value["post"]]}
        return value

    @classmethod
    def slot_type(cls, slot, item):
        return Literal["auto", "identity"] | list[item] if slot == "shortcut" else list[item]

    @classmethod
    def resolve(cls, f, r, path):
        shortcut_name = r.name(f.shortcut_name, path + ("shortcut_name",))
        shortcut = []
        if not isinstance(f.shortcut, str):
            shortcut = [r.group(r.items(f.shortcut, path + ("shortcut",)), shortcut_name, path + ("shortcut",))]
        slots = {"body": r.items(f.body, path + ("body",)), "shortcut": shortcut, "post": r.items(f.post, path + ("post",))}
        first = r.validated(cls._adapter("shortcut_first"), r.value(f.shortcut_first, path + ("shortcut_first",)),
                            path + ("shortcut_first",))
        settings = {"shortcut": f.shortcut if isinstance(f.shortcut, str) else "given",
                    "shortcut_name": shortcut_name, "shortcut_first": first}
        return r.node(cls, f, path, slots, settings)

    @classmethod
    def claimed_names(cls, node):
        # a residual of its own may project under shortcut_name; in a flat one, two residuals
        # may both be identity, so only the analysis (which decides) can tell a real clash
        return [node.settings["shortcut_name"]] if node.settings["shortcut"] == "auto" and not node.flat else []

    @classmethod
    def registration(cls, node):
        return ("shortcut", "body", "post") if node.settings["shortcut_first"] else cls.slots

    @classmethod
    def describe(cls, node):
        out = super().describe(node)
        out["shortcut"] = node.settings["shortcut"]
        return out

    # -- analysis -------------------------------------------------------------------------
    @classmethod
    def infer(cls, node, a, m, shape):
        out = a.chain(m, "body", node.slots["body"], shape)
        m.slots["shortcut"] = []
        kind = node.settings["shortcut"]
        if kind == "auto":
            kind = "identity" if out == shape else "projection"
        if kind == "identity":
            if out != shape:
                raise a.fail(node, m.path, f"residual body turns {list(shape)} into {list(out)}, which cannot be added "
                                           f"to the identity shortcut (use shortcut: auto, or a projection)", "shortcut")
        else:
            given = node.slots["shortcut"][0] if node.slots["shortcut"] else cls.projection(node, a, m.path, shape, out)
            projection = a.adopt(m, "shortcut", a.module(given, m.path, shape))
            if projection.output != out:
                raise a.fail(node, m.path, f"residual branches cannot be added: body gives {list(out)}, "
                                           f"shortcut gives {list(projection.output)}", "shortcut")
        return a.chain(m, "post", node.slots["post"], out)

    @classmethod
    def projection(cls, node, a, path, shape, out) -> Node:
        """The `auto` shortcut for a shape change: 1x1 conv with the matching stride, then bn
        (torchvision's `downsample`)."""
        from netspec.layers import REGISTRY
        if len(shape) != 3 or len(out) != 3:
            raise a.fail(node, path, f"shortcut: auto projects only [C, H, W] maps; body turns {list(shape)} into {list(out)}", "shortcut")
        stride = max(1, round(shape[1] / out[1])), max(1, round(shape[2] / out[2]))
        # one number when square, as a spec would write it (and as settings, diff and draw show it)
        conv = REGISTRY["conv"](out=out[0], k=1, stride=stride[0] if stride[0] == stride[1] else list(stride), bias=False)
        if conv.infer(shape) != out:
            raise a.fail(node, path, f"shortcut: auto cannot map {list(shape)} to {list(out)} with a strided 1x1 conv; "
                                     f"give an explicit projection", "shortcut")
        return Node("sequence", node.settings["shortcut_name"],
                    {"body": [Leaf("0", conv, node.src), Leaf("1", REGISTRY["bn"](), node.src)]}, node.src, Sequence)

    # -- build ------------------------------------------------------------------------------
    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        body = m.slots["body"]
        p.chain(body, False)                      # the body's input is shared with the shortcut
        p.chain(m.slots["shortcut"], False)
        p.chain(m.slots["post"], True)            # post's is the new sum
        m.inplace = bool(body) and p.fresh(body[-1])  # torchvision's `out += identity`, into a fresh tensor

    @classmethod
    def fresh_output(cls, m, p) -> bool:
        return p.fresh(m.slots["post"][-1]) if m.slots["post"] else True  # the sum is a new tensor

    @classmethod
    def autograd(cls, m, f, x):
        y = f.chain(m.slots["body"], x)
        s = f.chain(m.slots["shortcut"], x)
        return f.chain(m.slots["post"], f.add(y, s, inplace=f.runs_inplace(m)))

    @classmethod
    def receptive(cls, m, f, x):
        y = f.chain(m.slots["body"], x)
        return f.chain(m.slots["post"], f.join([y, f.chain(m.slots["shortcut"], x)]))

    @classmethod
    def build(cls, m, b, owner):
        steps = {}
        for slot in cls.registration(m.node):  # the order modules register in
            if slot == "shortcut":
                steps[slot] = b.step(m.slots[slot][0], owner) if m.slots[slot] else None
            else:
                steps[slot] = Chain(b.chain(m.slots[slot], owner))
        return ResidualStep(steps["body"], steps["shortcut"], steps["post"], b.runs_inplace(m))


class ResidualStep:
    __slots__ = ("body", "shortcut", "post", "add_inplace")

    def __init__(self, body, shortcut, post, add_inplace: bool):
        self.body, self.shortcut, self.post, self.add_inplace = body, shortcut, post, add_inplace

    def __call__(self, owner, x):
        y = self.body(owner, x)
        s = self.shortcut(owner, x) if self.shortcut is not None else x
        # same dtype only: under autocast an in-place add would round an fp32 shortcut to bf16
        y = y.add_(s) if self.add_inplace and y.dtype == s.dtype else y + s
        return self.post(owner, y)
