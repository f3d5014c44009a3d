"""`partition`: tokens in groups — windows or a grid of a map, or runs of a token sequence —
the body run on every group at once, the groups merged back after: Swin's (shifted) window
attention, MaxViT's block and grid attention.

The input is a channels-last map [H, W, C] (Swin's layout), a map [C, H, W] with
`channels: first` (MaxViT's), or tokens [N, D] (grouped along N). The body sees [G, N, C]:
G groups of N tokens each, the groups a leading dim that every layer treats as batch (a
linear, a layer norm, attention over the last two dims), so per-sample operations such as
stochastic depth still draw per sample, as in torchvision's MaxViT. Its output [G, N, C']
goes back to the input's layout (C' may differ from C).

- `kind: window`: each group is a `size` block of neighbouring tokens; H and W that `size`
  does not divide are padded with zeros at the bottom and right, and cropped after
  (torchvision's Swin). `shift` rolls the map by -shift before grouping and back after
  (torchvision's cyclic shift; 0 along an axis where one window covers it, as torchvision
  does), and every `attend` in the body then masks the token pairs that the roll brought
  together from different regions (Swin's attn_mask, made each step as torchvision makes it: no buffer).
- `kind: grid`: each group is `size` tokens spread evenly over the map (token i of a group
  every H / size rows: MaxViT's grid attention); H and W must be multiples of size.
The groups and tokens are ordered as torchvision orders them, so a position bias over a
group's tokens lines up with theirs: `attend`s in the body get the group's `window` (and,
shifted, the mask's `shift` and `groups`) unless they give their own.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod
from typing import Any, Literal

from pydantic import Field

from netspec.constructs.registry import Chain, Construct, register
from netspec.errors import LayerError
from netspec.ir import Leaf
from netspec.layers.registry import NonNegInt, NonNegPair, Pair, PosInt, pair


@dataclass(frozen=True)
class Geometry:
    """How a partition groups one input shape. Axes are (rows, columns); tokens [N, D] are one
    row of N."""
    layout: str          # "hwc", "chw" or "tokens"
    size: tuple          # the input's (H, W)
    window: tuple        # tokens of a group along each axis
    groups: tuple        # groups along each axis
    shift: tuple         # the cyclic shift actually applied
    grid: bool
    channels: int

    @property
    def padded(self) -> tuple:
        return tuple(g * w for g, w in zip(self.groups, self.window))

    @property
    def padding(self) -> bool:
        return self.padded != self.size

    @property
    def inner(self) -> tuple:
        """The body's input: [G, N, C]."""
        return (prod(self.groups), prod(self.window), self.channels)

    def outer(self, c: int, size: tuple | None = None) -> tuple:
        """The partition's output for a body output of c channels (of `size`, default the input's)."""
        (h, w) = size or self.size
        return {"hwc": (h, w, c), "chw": (c, h, w), "tokens": (w, c)}[self.layout]

    @property
    def axes(self) -> tuple:
        """The sample dims of (rows, columns): None for the one row of tokens."""
        return {"hwc": (0, 1), "chw": (1, 2), "tokens": (None, 0)}[self.layout]

    def to_groups(self) -> tuple:
        """The reshapes and permutes of sample dims, (("reshape", shape) | ("permute", dims), ...),
        that turn the padded, shifted input into [G, N, C]. Both the built module and the memory
        model run them."""
        (wh, ww), (gh, gw), c = self.window, self.groups, self.channels
        n, groups = wh * ww, gh * gw
        # a window's tokens are neighbours (the group index outer); a grid's are spread (inner)
        rows, cols = ((wh, gh), (ww, gw)) if self.grid else ((gh, wh), (gw, ww))
        ops = {"hwc": (("reshape", (*rows, *cols, c)), ("permute", (0, 2, 1, 3, 4))),
               "chw": (("reshape", (c, *rows, *cols)), ("permute", (1, 3, 2, 4, 0))), "tokens": ()}[self.layout]
        if self.grid:
            return ops + (("reshape", (n, groups, c)), ("permute", (1, 0, 2)))
        return ops + (("reshape", (groups, n, c)),)

    def from_groups(self, c: int) -> tuple:
        """The reshapes and permutes that turn the body's [G, N, c] back into the padded layout."""
        ops = (("permute", (1, 0, 2)),) if self.grid else ()
        first, second = (self.window, self.groups) if self.grid else (self.groups, self.window)
        if self.layout != "tokens":
            ops += (("reshape", (*first, *second, c)),
                    ("permute", (0, 2, 1, 3, 4) if self.layout == "hwc" else (4, 0, 2, 1, 3)))
        return ops + (("reshape", self.outer(c, self.padded)),)


def geometry(settings: dict, shape: tuple) -> Geometry:
    """The grouping of `shape`, or LayerError (field, why) when it cannot be grouped."""
    grid, channels = settings["kind"] == "grid", settings["channels"]
    if len(shape) == 2:
        if channels == "first":
            raise LayerError("channels", "tokens [N, D] have their channels last; channels: first is for maps [C, H, W]")
        if not all(isinstance(v, int) for v in (settings["size"], settings["shift"])):
            raise LayerError("size", "tokens [N, D] are grouped along N: give size and shift as numbers")
        layout, size, c = "tokens", (1, shape[0]), shape[1]
        window, shift = (1, settings["size"]), (0, settings["shift"])
    elif len(shape) == 3:
        layout = "hwc" if channels == "last" else "chw"
        size, c = (shape[:2], shape[2]) if layout == "hwc" else (shape[1:], shape[0])
        window, shift = pair(settings["size"]), pair(settings["shift"])
    else:
        raise LayerError(None, "partition groups a map [H, W, C] ([C, H, W] with channels: first) or tokens [N, D]")
    if grid and any(shift):
        raise LayerError("shift", "a grid is not shifted (shift is for windows)")
    if any(s >= w for s, w in zip(shift, window) if s):
        raise LayerError("shift", f"shift {list(shift)} must be smaller than the window {list(window)}")
    if grid and any(n % w for n, w in zip(size, window)):
        raise LayerError("size", f"a grid of {list(window)} tokens needs sizes that are multiples of it, not {list(size)}")
    groups = tuple(-(-n // w) for n, w in zip(size, window))
    # torchvision's Swin: no shift along an axis that one window covers
    shift = tuple(0 if w >= g * w else s for s, w, g in zip(shift, window, groups))
    return Geometry(layout, tuple(size), tuple(window), groups, shift, grid, c)


def _in_groups(item, g: Geometry):
    """The body item with every `attend` inside told the group's token grid and, when shifted,
    the mask's shift and layout (fields it gives itself are kept; a nested partition tells its own)."""
    if isinstance(item, Leaf):
        layer = item.layer
        if layer.tag != "attend":
            return item
        update = {"window": list(g.window)} if layer.window is None else {}
        if any(g.shift) and layer.shift is None:
            update.update(shift=list(g.shift), groups=list(g.groups))
        return replace(item, layer=layer.model_copy(update=update)) if update else item
    if item.kind == "partition":
        return item
    return replace(item, slots={slot: [_in_groups(child, g) for child in children] for slot, children in item.slots.items()})


@register("partition")
class Partition(Construct):
    """Tokens in groups (windows or a grid of a map, runs of tokens), the body run on all groups
    at once ([G, N, C]: groups as a batch dim), merged back (Swin's shifted windows, MaxViT)."""

    title = "Partition"

    size: PosInt | Pair = Field(description="Tokens of a group along each axis: a number or [rows, columns] (one number for tokens [N, D]). Swin: 7, MaxViT: 7.")
    kind: Literal["window", "grid"] = Field("window", description="'window': each group a block of neighbouring tokens (padded to multiples of size); 'grid': `size` tokens spread evenly over the map (MaxViT's grid attention).")
    shift: NonNegInt | NonNegPair = Field(0, description="Window only: roll by -shift before grouping and back after, attention masked across the seams (Swin's shifted windows: size // 2 every other block).")
    channels: Literal["last", "first"] = Field("last", description="'last': [H, W, C] maps and [N, D] tokens; 'first': [C, H, W] maps (MaxViT).")
    body: list[Any] = Field(min_length=1, description="Run on [G, N, C] (groups, tokens, channels); must keep G and N.")

    # -- analysis -------------------------------------------------------------------------
    @classmethod
    def grouping(cls, m) -> Geometry:
        return geometry(m.node.settings, m.input)

    @classmethod
    def infer(cls, node, a, m, shape):
        try:
            g = geometry(node.settings, shape)
        except LayerError as e:
            raise a.fail(node, m.path, f"{e.message}; input is {list(shape)}", e.field) from None
        body = [_in_groups(item, g) for item in node.slots["body"]]
        out = a.chain(m, "body", body, g.inner)
        if len(out) != 3 or out[:2] != g.inner[:2]:
            raise a.fail(node, m.path, f"the body must keep the groups and tokens: it turns {list(g.inner)} "
                                       f"(G groups, N tokens, C) into {list(out)}", "body")
        return g.outer(out[2])

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        p.chain(m.slots["body"], False)   # the groups may be a view of the input

    @classmethod
    def fresh_output(cls, m, p) -> bool:
        return False

    # -- the memory model: the same ops over views -----------------------------------------------
    @classmethod
    def autograd(cls, m, f, x):
        g = cls.grouping(m)
        grad = x.grad and not f.frozen
        if g.padding:
            x = f.new(g.outer(g.channels, g.padded), x.dtype, grad, like=x, layout="suggest")
        if any(g.shift):
            x = f.new(x.shape, x.dtype, grad)
        y = f.chain(m.slots["body"], _replayed(f, x, g.to_groups()))
        c = y.shape[-1]
        y = _replayed(f, y, g.from_groups(c))
        if any(g.shift):
            y = f.new(y.shape, y.dtype, y.grad)
        if g.padding:
            from netspec.autograd import View
            y = f.contiguous_copy(View(y.storage, g.outer(c), y.strides, y.grad))
        return y

    # -- receptive fields -------------------------------------------------------------------
    @classmethod
    def receptive(cls, m, f, x):
        """An upper bound: each output reads the positions of its group (a window: those within
        `size` - 1 of it, the seams' masked pairs, exp(-100), not counted; a grid: the whole
        axis). Inside, positions are not tracked."""
        from netspec.receptive import MERGED, Reach
        g = cls.grouping(m)
        dims = g.axes
        axes = dict(x.axes)
        for dim, size, n in zip(dims, g.window, g.size):
            if dim is None or size == 1:
                continue
            for name in x.dims[dim] - {MERGED}:
                axis = axes[name]
                if g.grid or len(x.dims[dim]) > 1:
                    axes[name] = axis.whole(n, f"{m.path} groups a {g.layout} map into a grid" if g.grid
                                            else f"{m.path} groups merged dims")
                else:
                    axes[name] = replace(axis.window(2 * size - 1, 1, size - 1, 1, n, n),
                                      bound=axis.bound or f"{m.path} groups tokens into windows")
        # inside, G and N each hold the positions of every grouped axis, mixed: not tracked
        merged = frozenset({MERGED}).union(*(x.dims[d] for d in dims if d is not None))
        inner = Reach(axes, (merged, merged, frozenset()), x.uniform)
        y = f.chain(m.slots["body"], inner)
        return Reach(y.axes, x.dims, y.uniform)

    # -- build -------------------------------------------------------------------------------
    @classmethod
    def build(cls, m, b, owner):
        import torch
        g = cls.grouping(m)
        return PartitionStep(Chain(b.chain(m.slots["body"], owner)), g, torch.nn.functional.pad,
                             m.output[0 if g.layout == "chw" else -1])


def _replayed(f, x, ops):
    """`ops` (Geometry.to_groups, from_groups) over the memory model's views."""
    for op, arg in ops:
        x = f.reshaped(x, arg) if op == "reshape" else f.permuted(x, arg)
    return x


class PartitionStep:
    """Group, run the body, merge back: the operations of torchvision's Swin
    (shifted_window_attention) and MaxViT (WindowPartition, SwapAxes, WindowDepartition)."""
    __slots__ = ("body", "g", "pad", "padding", "shifts", "shift_dims", "crop", "to_groups", "from_groups")

    def __init__(self, body, g: Geometry, pad, c: int):
        self.body, self.g, self.pad = body, g, pad
        (h, w), (ph, pw) = g.size, g.padded
        # F.pad's amounts, from the last dim back to the first padded one
        self.padding = {"tokens": (0, 0, 0, pw - w), "hwc": (0, 0, 0, pw - w, 0, ph - h),
                        "chw": (0, pw - w, 0, ph - h)}[g.layout]
        rolled = [(s, d + 1) for s, d in zip(g.shift, g.axes) if d is not None]
        self.shifts, self.shift_dims = tuple(s for s, _ in rolled), tuple(d for _, d in rolled)
        self.crop = (slice(None),) + tuple(slice(None, n) for n in g.outer(c))   # the body's c channels
        self.to_groups, self.from_groups = g.to_groups(), g.from_groups(c)

    def __call__(self, owner, x):
        return self.merge(self.body(owner, self.split(x)))

    @staticmethod
    def run(x, ops):
        b = x.shape[0]
        for op, arg in ops:
            x = x.reshape(b, *arg) if op == "reshape" else x.permute(0, *(d + 1 for d in arg))
        return x

    def split(self, x):
        if self.g.padding:
            x = self.pad(x, self.padding)
        if any(self.g.shift):
            x = x.roll(tuple(-s for s in self.shifts), self.shift_dims)
        return self.run(x, self.to_groups)

    def merge(self, y):
        y = self.run(y, self.from_groups)
        if any(self.g.shift):
            y = y.roll(self.shifts, self.shift_dims)
        return y[self.crop].contiguous() if self.g.padding else y
