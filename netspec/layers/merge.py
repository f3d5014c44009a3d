"""Layers that join or compare tensors, for graph nodes: `merge` (N inputs into one: sum,
product, difference, quotient, mean, max, concat), `reduce` (over chosen sample dims:
mean, sum, max, p-norm), and the size alignment *like* another tensor of the graph:
`resize`, `pad`, `crop` (the reference's size is read at run time, as torchvision's FCN
does with `F.interpolate(x, size=input.shape[-2:])`, so the module works at any input
size; the analysis knows both shapes statically).

Merges fold left in `from:` order (`((a + b) + c)`, `a / (b + eps)`), the arithmetic of
the code they reproduce, so results are bit-equal to it. Elementwise merges broadcast as
torch does, with equal ranks: each dim equal, or 1 on one side ([C, 1, 1] gates a map).
"""
from __future__ import annotations

from math import prod
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Autograd, Layer, Receptive, Shape, register, sample_dim

ELEMENTWISE = ("sum", "product", "difference", "quotient", "mean", "max")


def broadcast(shapes: list[Shape], what: str) -> Shape:
    """The shape of an elementwise op over `shapes` (torch's broadcasting, equal ranks)."""
    first = shapes[0]
    out = list(first)
    for i, other in enumerate(shapes[1:], 1):
        if len(other) != len(first) or any(a != b and 1 not in (a, b) for a, b in zip(out, other)):
            raise LayerError(None, f"{what} needs equal shapes (or size 1 on one side, to broadcast): input 1 is "
                                   f"{list(first)}, input {i + 1} is {list(other)}"
                             + (f"; align the sizes with resize, pad or crop `like:` one of them"
                                if len(other) == len(first) == 3 and other[0] == first[0] else ""))
        out = [max(a, b) for a, b in zip(out, other)]
    return tuple(out)


def _map(shape: Shape, what: str) -> None:
    if len(shape) != 3:
        raise LayerError(None, f"{what} needs [channels, height, width] maps, got {list(shape)}")


@register("merge", shorthand="op")
class Merge(Layer):
    """Join N ≥ 2 tensors (a graph node's `from: [a, b, ...]`) into one, folding left in
    that order: `sum` a + b, `product` a * b, `difference` a - b, `quotient` a / (b + eps),
    `mean` (a + b + ...) / N, `max` torch.maximum, `concat` torch.cat along `dim`."""
    fresh_output: ClassVar[bool] = True   # a new tensor; no backward here reads its output
    inputs: ClassVar[tuple[int, int | None]] = (2, None)

    op: Literal["sum", "product", "difference", "quotient", "mean", "max", "concat"] = Field(description="How the inputs are joined (left fold in `from:` order).")
    dim: int = Field(0, description="concat only: the sample dimension to join along (0: channels of [C, H, W]; negative from the end).")
    eps: float = Field(0.0, ge=0, description="quotient only: added to each divisor (a / (b + eps), as GRN's Gx / (mean + 1e-6)).")

    def infer(self, shapes: list[Shape]) -> Shape:
        if self.op != "concat" and self.dim != 0:
            raise LayerError("dim", "only concat takes dim")
        if self.op != "quotient" and self.eps:
            raise LayerError("eps", "only quotient takes eps")
        if self.op in ELEMENTWISE:
            return broadcast(shapes, f"merge {self.op}")
        first = shapes[0]
        d = sample_dim(self.dim, len(first), "dim")
        for i, other in enumerate(shapes[1:], 1):
            if len(other) != len(first) or other[:d] + other[d + 1:] != first[:d] + first[d + 1:]:
                raise LayerError(None, f"merge concat along dim {self.dim} needs equal sizes elsewhere: input 1 is "
                                       f"{list(first)}, input {i + 1} is {list(other)}"
                                 + ("; align the sizes with resize, pad or crop `like:` one of them"
                                    if len(other) == len(first) == 3 and d == 0 else ""))
        return (*first[:d], sum(s[d] for s in shapes), *first[d + 1:])

    def autograd(self, shapes, out, *, input_grad, weight_grad, contiguous, inplace):
        """What each step of the fold keeps: a product its factors (each for the other's
        gradient), max both operands, a quotient its divisor (and the dividend, when the
        divisor needs a gradient); every intermediate kept counts as an extra tensor."""
        kept, extra = set(), []
        if self.op == "concat":
            return Autograd(layout="cat")
        acc, acc_grad = shapes[0], input_grad[0]
        for i in range(1, len(shapes)):
            b, b_grad = shapes[i], input_grad[i]
            keep_acc = keep_b = False
            if self.op == "product":
                keep_acc, keep_b = b_grad, acc_grad
            elif self.op == "max":
                keep_acc = keep_b = acc_grad or b_grad
            elif self.op == "quotient":
                keep_acc, keep_b = b_grad, acc_grad or b_grad
                if self.eps and keep_b:   # the divisor is b + eps, a new tensor
                    extra.append((prod(b), 0, "act"))
                    keep_b = False
            if keep_acc:
                if i == 1:
                    kept.add(0)
                else:   # the running result so far
                    extra.append((prod(acc), 0, "act"))
            if keep_b:
                kept.add(i)
            acc, acc_grad = broadcast([acc, b], "merge"), acc_grad or b_grad
        return Autograd(inputs_kept=tuple(sorted(kept)), extra=tuple(extra), layout="like")

    def receptive(self, shapes, out):
        return Receptive(along=sample_dim(self.dim, len(shapes[0]), "dim") if self.op == "concat" else None)

    def build(self, shapes):
        from netspec.modules import Merge
        return Merge(self.op, self.dim + 1 if self.dim >= 0 else self.dim, self.eps)


@register("reduce", shorthand="op")
class Reduce(Layer):
    """Reduce sample dims of one tensor: `mean`, `sum`, `max` (amax) or `norm` (the p-norm,
    torch.norm), keeping them as size 1 with `keepdim` (GRN's ||x|| over H and W)."""

    @property
    def fresh_output(self) -> bool:
        # amax's and norm's backward read their output: a ReLU after them must not overwrite it
        return self.op in ("mean", "sum")

    op: Literal["mean", "sum", "max", "norm"] = Field(description="The reduction (torch.mean, torch.sum, torch.amax, torch.norm).")
    dims: Annotated[list[int], Field(min_length=1)] = Field(description="Sample dims to reduce (0: channels of [C, H, W]; negative from the end).")
    keepdim: bool = Field(False, description="Keep each reduced dim as size 1 (keepdim).")
    p: float = Field(2.0, gt=0, description="norm only: the order p of the norm.")

    def _dims(self, shape: Shape) -> tuple[int, ...]:
        dims = tuple(sorted({sample_dim(d, len(shape), "dims") for d in self.dims}))
        if len(dims) != len(self.dims):
            raise LayerError("dims", f"dims {self.dims} name one dimension twice")
        return dims

    def infer(self, shape: Shape) -> Shape:
        if self.op != "norm" and self.p != 2.0:
            raise LayerError("p", "only norm takes p")
        dims = self._dims(shape)
        if self.keepdim:
            return tuple(1 if d in dims else n for d, n in enumerate(shape))
        out = tuple(n for d, n in enumerate(shape) if d not in dims)
        if not out:
            raise LayerError("dims", f"reducing every dim of {list(shape)} leaves no sample dims; keep one (keepdim: true)")
        return out

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # amax and norm keep their input and their result; mean and sum only sizes
        keeps = self.op in ("max", "norm")
        return Autograd(input=keeps, output=keeps, layout="contiguous")

    def receptive(self, shape, out):
        dims = self._dims(shape)
        kept = tuple(d for d in range(len(shape)) if d not in dims) if not self.keepdim else ()
        return Receptive(mix=dims, dims=kept)

    def build(self, shape: Shape):
        from netspec.modules import Reduce
        return Reduce(self.op, tuple(d + 1 for d in self._dims(shape)), self.keepdim, self.p)


class _Like(Layer):
    """A layer that sizes H and W of a [C, H, W] map like another map of the graph."""
    inputs: ClassVar[tuple[int, int | None]] = (2, 2)
    refs: ClassVar[tuple[str, ...]] = ("like",)

    like: str = Field(description="The graph value whose height and width to take: a node, `input`, or a graph input (`node.key` for a field of a record or a named child's output).")

    def sizes(self, shapes: list[Shape]) -> tuple[Shape, tuple[int, int]]:
        x, ref = shapes
        _map(x, self.tag)
        if len(ref) < 2:
            raise LayerError("like", f"{self.tag} takes height and width from a map, but `like` is {list(ref)}")
        return x, tuple(ref[-2:])


@register("resize")
class Resize(_Like):
    """Resize a [C, H, W] map to the H, W of the `like` value (F.interpolate(x,
    size=like.shape[-2:]), as FCN's head and FPN's top-down path)."""
    fresh_output: ClassVar[bool] = True

    mode: Literal["nearest", "bilinear", "bicubic"] = Field("nearest", description="Interpolation (mode).")
    align_corners: bool | None = Field(None, description="bilinear and bicubic only: align_corners (default torch's, false).")

    def infer(self, shapes: list[Shape]) -> Shape:
        x, (h, w) = self.sizes(shapes)
        if self.align_corners is not None and self.mode == "nearest":
            raise LayerError("align_corners", "only bilinear and bicubic take align_corners")
        return (x[0], h, w)

    def autograd(self, shapes, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(layout="suggest")   # its backward needs only sizes

    def receptive(self, shapes, out):
        return Receptive(lost=tuple(d for d in (1, 2) if out[d] != shapes[0][d]))

    def build(self, shapes):
        from netspec.modules import ResizeLike
        return ResizeLike(self.mode, self.align_corners)


def _split(total: int, align: str) -> tuple[int, int]:
    """Amounts before and after for `total` pixels: half (the smaller half first) or all after."""
    return (total // 2, total - total // 2) if align == "center" else (0, total)


@register("pad")
class Pad(_Like):
    """Pad a [C, H, W] map up to the H, W of the `like` value (U-Net's skip join at odd
    sizes: F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2]))."""
    fresh_output: ClassVar[bool] = True

    align: Literal["center", "start"] = Field("center", description="'center': half before (rounded down), the rest after; 'start': keep x at the top-left, pad after.")
    value: float = Field(0.0, description="The padding value (F.pad's value).")

    def infer(self, shapes: list[Shape]) -> Shape:
        x, (h, w) = self.sizes(shapes)
        if h < x[1] or w < x[2]:
            raise LayerError("like", f"pad grows {list(x)} to the size of `like`, but that is smaller ({h}x{w}); use crop")
        return (x[0], h, w)

    def amounts(self, shapes) -> tuple[tuple[int, int], tuple[int, int]]:
        x, (h, w) = self.sizes(shapes)
        return _split(h - x[1], self.align), _split(w - x[2], self.align)

    def autograd(self, shapes, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(layout="suggest")   # constant padding's backward is a slice

    def receptive(self, shapes, out):
        (top, _), (left, _) = self.amounts(shapes)
        return Receptive(windows=((1, 1, 1, top, 1), (2, 1, 1, left, 1)))

    def build(self, shapes):
        from netspec.modules import PadLike
        return PadLike(self.align == "center", self.value)


@register("crop")
class Crop(_Like):
    """Crop a [C, H, W] map down to the H, W of the `like` value (the original U-Net's
    skip join: the centre of the encoder's map). A view of the input."""

    align: Literal["center", "start"] = Field("center", description="'center': drop half before (rounded down), the rest after; 'start': keep the top-left.")

    def infer(self, shapes: list[Shape]) -> Shape:
        x, (h, w) = self.sizes(shapes)
        if h > x[1] or w > x[2]:
            raise LayerError("like", f"crop shrinks {list(x)} to the size of `like`, but that is larger ({h}x{w}); use pad")
        return (x[0], h, w)

    def offsets(self, shapes) -> tuple[int, int]:
        x, (h, w) = self.sizes(shapes)
        return _split(x[1] - h, self.align)[0], _split(x[2] - w, self.align)[0]

    def autograd(self, shapes, out, *, input_grad, weight_grad, contiguous, inplace):
        return Autograd(result="crop")

    def receptive(self, shapes, out):
        top, left = self.offsets(shapes)
        return Receptive(windows=((1, 1, 1, -top, 1), (2, 1, 1, -left, 1)))

    def build(self, shapes):
        from netspec.modules import CropLike
        return CropLike(self.align == "center")
