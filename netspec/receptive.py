"""Analysis -> the receptive field and effective stride of every module, statically.

For a spec whose input is a [C, H, W] map, along each spatial axis (H and W separately, so
non-square kernels and strides work), each module's output gets an `Axis`:
- `r`: the receptive field, the extent in input pixels (first to last, holes included, as a
  dilated kernel leaves them) of the pixels that can affect one output position, any channel;
- `stride`: the effective stride, input pixels between the fields of adjacent outputs
  (0: every output sees the same pixels, as after global pooling or a linear layer);
- `start`: the first input pixel of output 0's field (negative: it reaches into padding),
  so output i's field is pixels start + i*stride .. start + i*stride + r - 1;
- `n`: the outputs along the axis.
For a window of size k, stride s, left padding p, dilation d on an input whose field is
(r, j, start): r' = r + (k-1)*d*j, j' = j*s, start' = start - p*j (equivalently the centre
moves by ((k-1)/2*d - p)*j, the usual recurrence). A dimension read whole (global pooling,
an adaptive pool to 1, linear over it, layer/group norm statistics) gives every output the
union of all positions' fields: r' = r + (n-1)*j, stride 0. Where fields meet (residual
add, concat, split, dense block, gate) the result is their union for each output; since
joined maps have equal sizes their strides are normally equal, and an SE gate's field (its
global pool: stride 0) contains the rest. An axis is `global` when every output's field
covers the whole input along it.

Each leaf's rule is its layer type's (`Layer.receptive`: the windows it slides, the dims it
reads whole, permutes and reshapes); each construct's is its own (`Construct.receptive`:
how it joins its children). Fields are those of the model in eval mode (batch norm then
reads one position; in training its batch statistics read every pixel of every sample).

Not tracked exactly, and then reported as an upper bound (`Axis.bound` says why; `r` is
the union of all positions' fields): upsampling (`upsample`, `conv_transpose` with a
stride), adaptive pools whose output size does not divide the input's, reshapes that
split a spatial dimension or merge it with another and are then windowed, and fields of
unequal strides that meet. tests/test_receptive.py checks every exact figure against the
nonzero extent of a measured input gradient.

Must not import torch (the analysis path stays torch-free).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from netspec.analysis import Analysis, Module
from netspec.ir import Leaf

MERGED = "*"    # in a dim's axes: the dim holds several dims' positions (a reshape merged them)


@dataclass(frozen=True)
class Axis:
    r: int
    stride: int
    start: int
    n: int
    reads: tuple[int, int]  # first and last input pixel that any output reads
    bound: str = ""         # why r is only an upper bound ("": exact)

    def extent(self, i: int) -> tuple[int, int]:
        """First and last pixel of output i's field, padding included."""
        lo = self.start + i * self.stride
        return lo, lo + self.r - 1

    def pixels(self, i: int) -> tuple[int, int]:
        """First and last input pixel that output i reads (its extent within `reads`)."""
        lo, hi = self.extent(i)
        return max(lo, self.reads[0]), min(hi, self.reads[1])

    @property
    def is_global(self) -> bool:
        """Does every output read every pixel that any output reads? (The first and last do,
        then every one between.)"""
        return self.pixels(0) == self.pixels(self.n - 1) == self.reads

    def window(self, k: int, s: int, p: int, d: int, n_in: int, n: int) -> "Axis":
        """A window sliding along the axis: n outputs from n_in positions."""
        first, last = _taps(k, s, p, d, n_in, n)
        reads = (max(self.reads[0], self.start + first * self.stride),
                 min(self.reads[1], self.start + last * self.stride + self.r - 1))
        return replace(self, r=self.r + (k - 1) * d * self.stride, stride=self.stride * s,
                       start=self.start - p * self.stride, n=n, reads=reads)

    def whole(self, n: int = 1, bound: str = "") -> "Axis":
        """Every output reads every position: the union of all positions' fields."""
        return Axis(self.r + (self.n - 1) * self.stride, 0, self.start, n, self.reads, self.bound or bound)


@dataclass(frozen=True)
class Field:
    """The receptive field of one module's output, per input axis, and which of the output's
    sample dims holds each axis' positions ('h', 'w'; '' none; with '*' several dims merged)."""
    h: Axis
    w: Axis
    dims: tuple[str, ...] = ("", "h", "w")

    @property
    def is_global(self) -> bool:
        """Every output reads every input pixel that any output reads."""
        return self.h.is_global and self.w.is_global

    @property
    def exact(self) -> bool:
        return not (self.h.bound or self.w.bound)

    def __str__(self) -> str:
        """One line for a table: 'r 99x99 s 32'; 'global' (every output sees the same, whole
        input), 'r 543x543 s 16, global' (each sees all of it); '≤ ...': an upper bound."""
        mark = "" if self.exact else "≤ "
        fixed = [a.is_global and a.stride == 0 for a in (self.h, self.w)]
        if all(fixed):
            return f"{mark}global"
        size = "x".join("all" if f else str(a.r) for a, f in zip((self.h, self.w), fixed))
        stride = str(self.h.stride) if self.h.stride == self.w.stride else f"{self.h.stride}x{self.w.stride}"
        return f"{mark}r {size} s {stride}{', global' if self.is_global else ''}"


@dataclass(frozen=True)
class Reach:
    """One tensor of the walk: the field of each input axis (the union over the channels),
    which axes each sample dim holds the position of (a [C, H, W] map: nothing, h, w), and
    whether every channel has that same field (not after a concat of different fields)."""
    axes: dict
    dims: tuple
    uniform: bool = True


def fields(analysis: Analysis) -> dict[str, Field]:
    """The receptive field of every module (leaves and non-flat constructs, by path; the root
    is ''), or {} when the input is not a [C, H, W] map."""
    if len(analysis.input) != 3:
        return {}
    _, h, w = analysis.input
    walk = _Walk()
    walk.module(analysis.tree, Reach({"h": Axis(1, 1, 0, h, (0, h - 1)), "w": Axis(1, 1, 0, w, (0, w - 1))},
                                     (frozenset(), frozenset("h"), frozenset("w"))))
    return walk.fields


class _Walk:
    """The walk's face towards constructs (their `receptive` sees it as `f`)."""

    def __init__(self):
        self.fields: dict[str, Field] = {}

    def chain(self, modules: list[Module], x: Reach) -> Reach:
        for m in modules:
            x = self.module(m, x)
        return x

    def module(self, m: Module, x):
        if isinstance(m.node, Leaf):
            y = self.leaf(m, x)
        else:
            y = m.node.construct.receptive(m, self, x)
        if isinstance(m.node, Leaf) or not m.node.flat:   # a flat construct's path is its parent's
            self.seen(m, y)
        return y

    def seen(self, m: Module, y) -> None:
        """Record m's field (a value that is a record, as a graph's outputs, has none of its own)."""
        if isinstance(y, Reach):
            self.fields[m.path] = Field(y.axes["h"], y.axes["w"], tuple("".join(sorted(d)) for d in y.dims))

    def join(self, reaches: list[Reach], along: int | None = None) -> Reach:
        """Tensors added or multiplied (broadcast), or concatenated `along` a dim: each output
        sees the union. Positions along the concatenated dim come from different tensors:
        an axis held there (moved into the channels by a reshape) is not tracked."""
        if len(reaches) == 1:
            return reaches[0]
        dims = tuple(frozenset().union(*column) for column in zip(*(x.dims for x in reaches)))
        axes = {}
        for name in reaches[0].axes:
            held = {tuple(i for i, d in enumerate(x.dims) if name in d) for x in reaches} - {()}
            axes[name] = _union([x.axes[name] for x in reaches], "" if len(held) <= 1 else "joined in other dims")
        uniform = all(x.uniform for x in reaches) and (along is None or all(x.axes == reaches[0].axes for x in reaches))
        if along is not None:
            for name in dims[along] - {MERGED}:
                axes[name] = axes[name].whole(axes[name].n, "concatenated along the dim holding it")
        return Reach(axes, dims, uniform)

    def part(self, x: Reach) -> Reach:
        """Some channels of x (a split): their field is x's only if every channel has it."""
        axes = dict(x.axes)
        for name in axes:
            if name in x.dims[0]:
                axes[name] = axes[name].whole(axes[name].n, "split along the dim holding it")
            elif not x.uniform:
                axes[name] = replace(axes[name], bound=axes[name].bound or "a split of channels with unequal fields")
        return Reach(axes, x.dims, x.uniform)

    def leaf(self, m: Module, x) -> Reach:
        layer = m.node.layer
        rule = layer.receptive(m.input, m.output)
        shape = m.input
        if isinstance(x, list):   # several inputs: a reference gives only sizes, a merge joins them
            x = x[0] if layer.refs else self.join(x, along=rule.along)
            shape = m.input[0]
        axes, dims = dict(x.axes), list(x.dims)
        for dim in rule.mix:   # before any new order of the dims: a reduction's go away after
            for name in dims[dim] - {MERGED}:
                axes[name] = axes[name].whole()
            dims[dim] = frozenset()
        if rule.dims:
            dims = [dims[d] for d in rule.dims]
            shape = tuple(shape[d] for d in rule.dims)   # a reshape after it regroups the new order
        if rule.reshape:
            dims = _regroup(axes, dims, shape, m.output, m.path)
        for dim, k, s, p, d in rule.windows:
            for name in dims[dim] - {MERGED}:
                axes[name] = (axes[name].window(k, s, p, d, shape[dim], m.output[dim]) if len(dims[dim]) == 1 else
                              axes[name].whole(m.output[dim], f"{m.path} slides over merged dims"))
        for dim in rule.lost:
            for name in dims[dim] - {MERGED}:
                axes[name] = axes[name].whole(m.output[dim], f"{m.path} ({m.type}) is not tracked")
        # reading every channel (the dims without positions) whole gives each the same field
        plain = [d for d, held in enumerate(dims) if not held and m.output[d] > 1]
        return Reach(axes, tuple(dims), x.uniform or all(d in rule.mix for d in plain))


def _taps(k: int, s: int, p: int, d: int, n_in: int, n: int) -> tuple[int, int]:
    """The first and last input position (not padding) that a window reads: output o reads
    o*s - p + t*d for t < k. Only outputs that start in the padding need a look."""
    first, last = n_in, -1
    for o in range(n):
        base = o * s - p
        t = max(0, -(base // d))                      # the first tap at or after position 0
        if t < k and base + t * d < n_in:
            first = min(first, base + t * d)
        if base >= 0:
            break
    for o in range(n - 1, -1, -1):
        base = o * s - p
        t = min(k - 1, (n_in - 1 - base) // d)        # the last tap before the end
        if t >= 0 and base + t * d >= 0:
            last = max(last, base + t * d)
        if base + (k - 1) * d <= n_in - 1:
            break
    return first, last


def _union(axes: list[Axis], bound: str) -> Axis:
    """Per output, the union of fields that meet; exact when one contains the others at the
    first and last output (then at every output between), or when their strides are equal."""
    n = max(a.n for a in axes)
    bound = bound or next((a.bound for a in axes if a.bound), "")
    firsts, lasts = [a.extent(0) for a in axes], [a.extent(a.n - 1) for a in axes]
    reads = (min(a.reads[0] for a in axes), max(a.reads[1] for a in axes))
    for a, (lo0, hi0), (lo1, hi1) in zip(axes, firsts, lasts):
        if all(lo0 <= f[0] and f[1] <= hi0 and lo1 <= l[0] and l[1] <= hi1 for f, l in zip(firsts, lasts)):
            return replace(a, n=n, reads=reads, bound=bound)
    strides = {a.stride if a.n > 1 else 0 for a in axes}   # a broadcast field stays put
    lo = min(f[0] for f in firsts)
    if n == 1 or len(strides) == 1:
        return Axis(max(f[1] for f in firsts) - lo + 1, max(a.stride for a in axes), lo, n, reads, bound)
    lo, hi = min(lo, *(l[0] for l in lasts)), max(f[1] for f in firsts + lasts)
    return Axis(hi - lo + 1, 0, lo, n, reads, bound or f"fields of strides {sorted(strides)} meet")


def _groups(old: tuple, new: tuple) -> list[tuple[list, list]]:
    """A reshape's dims in groups (old dims, new dims) whose sizes have equal products, in order."""
    groups, i, j = [], 0, 0
    while i < len(old) or j < len(new):
        gi, gj, pi, pj = [], [], 1, 1
        if i < len(old):
            gi, pi, i = [i], old[i], i + 1
        if j < len(new):
            gj, pj, j = [j], new[j], j + 1
        while pi != pj:  # the smaller side takes its next dim (the totals are equal)
            if pi < pj:
                gi, pi, i = gi + [i], pi * old[i], i + 1
            else:
                gj, pj, j = gj + [j], pj * new[j], j + 1
        groups.append((gi, gj))
    return groups


def _regroup(axes: dict, dims: list, old: tuple, new: tuple, path: str) -> list:
    """The axes each new dim holds after a reshape. Size-1 dims hold no position; a group of
    one dim each way keeps its axes; a merge holds them all (MERGED: a later window over it
    is not tracked, reading it whole is); a split is not tracked (an upper bound)."""
    out = [frozenset()] * len(new)
    for gi, gj in _groups(old, new):
        big_old, big_new = [d for d in gi if old[d] > 1], [d for d in gj if new[d] > 1]
        held = frozenset().union(*(dims[d] for d in big_old)) | ({MERGED} if len(big_old) > 1 else set())
        if len(big_new) > 1:
            for name in held - {MERGED}:
                axes[name] = axes[name].whole(axes[name].n, f"{path} splits a spatial dim")
            held |= {MERGED}
        for d in big_new:
            out[d] = held
    return out
