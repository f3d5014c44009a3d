"""Branch constructs: `concat` (every branch sees the input, outputs joined along channels,
as Inception) and `split` (the channels are split into parts, one branch per part, then
joined, as ShuffleNetV2's unit).

A branch written as `key: [items]` is a module named `key` (one item: that item, renamed;
several: a sequence); a branch in list form is named by its position, unless the
construct is `flat`, where an unnamed branch adds no level either (Fire's and Inception's
convs are siblings on the enclosing module).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from netspec.constructs.registry import Chain, Construct, register


class _Branches(Construct):
    slots = ("branches",)
    numbered = ("branches",)

    branches: dict[str, list[Any]] | list[list[Any]] = Field(min_length=1, description="Named branches (name -> items) or a list of branches.")

    @classmethod
    def slot_type(cls, slot, item):
        return Annotated[dict[str, list[item]], Field(min_length=1)] | Annotated[list[list[item]], Field(min_length=1)]

    @classmethod
    def resolve(cls, f, r, path):
        flat = r.flat(f, path)
        named = isinstance(f.branches, dict)
        pairs = f.branches.items() if named else enumerate(f.branches)
        branches = []
        for key, items in pairs:
            where = path + ("branches", key)
            nodes = r.items(items, where)
            if named:
                branches.append(r.group(nodes, r.name(key, where, on_key=True), where))
            elif flat:
                branches.append(r.sequence(None, nodes, where, flat=True))
            else:
                branches.append(r.group(nodes, str(key), where))
        return r.node(cls, f, path, {"branches": branches}, cls.evaluate(f, r, path))

    @classmethod
    def joined(cls, node, a, m, outs) -> tuple:
        """The branches' outputs concatenated along channels (equal sizes otherwise)."""
        first = outs[0]
        for other in outs[1:]:
            if len(other.output) != len(first.output) or other.output[1:] != first.output[1:]:
                raise a.fail(node, m.path, f"{cls.tag} needs equal sizes apart from channels: branch {cls.label(first)} "
                                           f"gives {list(first.output)}, branch {cls.label(other)} gives {list(other.output)}")
        return (sum(o.output[0] for o in outs), *first.output[1:])

    # plan: the default (branches share the input, or are views of it: none in place)

    @staticmethod
    def label(m) -> str:
        return repr(m.node.name) if m.node.name is not None else f"at {m.node.src[-1]}"


@register("concat")
class Concat(_Branches):
    """Branches applied to the same input, joined along channels (Inception)."""

    title = "Concat"
    branches: dict[str, list[Any]] | list[list[Any]] = Field(min_length=1, description="Named branches (name -> items) or a list of branches; each gets the same input.")

    @classmethod
    def infer(cls, node, a, m, shape):
        return cls.joined(node, a, m, [a.adopt(m, "branches", a.module(b, m.path, shape)) for b in node.slots["branches"]])

    @classmethod
    def autograd(cls, m, f, x):
        return f.cat([f.module(branch, x) for branch in m.slots["branches"]])

    @classmethod
    def receptive(cls, m, f, x):
        return f.join([f.module(branch, x) for branch in m.slots["branches"]], along=0)

    @classmethod
    def build(cls, m, b, owner):
        import torch
        return ConcatStep([b.step(branch, owner) for branch in m.slots["branches"]], torch.cat)


@register("split")
class Split(_Branches):
    """Split the channels into parts (equal, or `sizes`), one branch per part in order (an
    empty branch passes its part through), then join the outputs along channels:
    ShuffleNetV2's stride-1 unit (`x.chunk(2, 1)`, branch2 on the second half)."""

    title = "Split"
    branches: dict[str, list[Any]] | list[list[Any]] = Field(min_length=1, description="One branch per part, in channel order: name -> items, or a list; [] passes the part through.")
    sizes: list[Annotated[int, Field(gt=0)]] | None = Field(None, description="Channels of each part (must add up to the input's); default: equal parts, one per branch.")

    @staticmethod
    def parts(node, channels: int) -> list[int]:
        sizes = node.settings.get("sizes")
        n = len(node.slots["branches"])
        return list(sizes) if sizes is not None else [channels // n] * n

    @classmethod
    def infer(cls, node, a, m, shape):
        n, sizes = len(node.slots["branches"]), node.settings.get("sizes")
        if len(shape) < 2:
            raise a.fail(node, m.path, f"split needs a [channels, ...] input, got {list(shape)}")
        if sizes is None and shape[0] % n:
            raise a.fail(node, m.path, f"split: {shape[0]} channels do not split into {n} equal parts", "branches")
        if sizes is not None and (len(sizes) != n or sum(sizes) != shape[0]):
            raise a.fail(node, m.path, f"split: sizes {sizes} must give one part per branch ({n}) and add up to "
                                       f"the input's {shape[0]} channels", "sizes")
        outs = [a.adopt(m, "branches", a.module(b, m.path, (size, *shape[1:])))
                for b, size in zip(node.slots["branches"], cls.parts(node, shape[0]))]
        return cls.joined(node, a, m, outs)

    @classmethod
    def autograd(cls, m, f, x):
        parts = f.parts(x, cls.parts(m.node, x.shape[0]))
        return f.cat([f.module(branch, part) for branch, part in zip(m.slots["branches"], parts)])

    @classmethod
    def receptive(cls, m, f, x):
        part = f.part(x)
        return f.join([f.module(branch, part) for branch in m.slots["branches"]], along=0)

    @classmethod
    def build(cls, m, b, owner):
        import torch
        branches = [b.step(branch, owner) for branch in m.slots["branches"]]
        return SplitStep(branches, cls.parts(m.node, m.input[0]), torch.cat)


class ConcatStep:
    __slots__ = ("branches", "cat")

    def __init__(self, branches, cat):
        self.branches, self.cat = tuple(branches), cat

    def __call__(self, owner, x):
        return self.cat([branch(owner, x) for branch in self.branches], 1)


class SplitStep:
    __slots__ = ("branches", "sizes", "cat")

    def __init__(self, branches, sizes, cat):
        self.branches, self.sizes, self.cat = tuple(branches), list(sizes), cat

    def __call__(self, owner, x):
        parts = x.split(self.sizes, 1)
        return self.cat([branch(owner, part) for branch, part in zip(self.branches, parts)], 1)
