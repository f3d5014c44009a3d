"""Attention over tokens: `self_attention` (torch.nn.MultiheadAttention called on x, x, x, as
torchvision's ViT EncoderBlock calls it), and attention as the parts the field writes it in:

    linear (qkv) -> split_heads -> attend -> merge_heads -> linear (proj)

- the projections are `linear` layers named as a family names them (timm's `qkv`/`proj`,
  torchvision Swin's `qkv`/`proj`, MaxViT's `to_qkv`/`merge`); separate q, k, v projections are
  three linears in a graph, each split into heads and concatenated along the parts dim;
- `split_heads` turns [..., N, parts*H*Dh] into [..., parts, H, N, Dh] (a view);
- `attend` is the scaled dot-product over the last two dims: softmax(q k^T * scale + bias +
  mask) v, with a learned relative position bias (Swin, MaxViT: a table gathered by an index
  buffer; Swin-v2: an MLP over log-spaced coordinates), cosine attention with a learned logit
  scale (Swin-v2), Swin's shifted-window mask, dropout on the weights; its tensors belong to
  its enclosing module, under torchvision's names (`Layer.owns_tensors`);
- `merge_heads` turns [..., H, N, Dh] back into [..., N, H*Dh].
Leading dims ([G, N, D]: the groups of a `partition`) are batch dims to every part.
"""
from __future__ import annotations

from math import prod
from typing import ClassVar, Literal

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import (Autograd, Layer, NonNegPair, Pair, PosInt, Receptive, Shape, need_tokens, pair,
                                     register)


@register("self_attention", shorthand="heads", aliases=("MultiheadAttention",))
class SelfAttention(Layer):
    """Multi-head self-attention of tokens [N, D] (torch.nn.MultiheadAttention with
    batch_first, called as attn(x, x, x, need_weights=False), torchvision's ViT
    `self_attention`; keys in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias).
    MACs: the q/k/v and output projections (4 N D^2) and the two matmuls QK^T and AV
    (N^2 D each, summed over the heads)."""
    fresh_output: ClassVar[bool] = True

    heads: PosInt = Field(description="Number of heads (num_heads); must divide the token width D.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention weights while training (dropout; torchvision's attention_dropout).")
    bias: bool = Field(True, description="Learn biases of the input and output projections (bias).")

    def infer(self, shape: Shape) -> Shape:
        need_tokens(shape, "self_attention")
        if shape[1] % self.heads:
            raise LayerError("heads", f"{self.heads} heads do not divide the token width {shape[1]}")
        return shape

    def param_count(self, shape: Shape) -> int:
        d = shape[1]
        return 4 * d * d + (4 * d if self.bias else 0)

    def macs(self, shape: Shape, out: Shape) -> int:
        n, d = shape
        return 4 * n * d * d + 2 * n * n * d

    contiguous_as: ClassVar[tuple] = (1, 0, 2)

    def autograd(self, shape, out, *, input_grad, weight_grad, contiguous, inplace):
        # nn.MultiheadAttention's training path (F.multi_head_attention_forward, batch first):
        # in_proj runs on x transposed to [N, B, D], a copy, kept for in_proj's weight
        # gradient; q, k, v are one new [3, N, B, D] tensor; scaled_dot_product_attention's
        # fused CPU kernel keeps q, k, v, its output (which is out_proj's input too) and a
        # log-sum-exp per head and token (fp32); in_proj's weight is kept for x's gradient,
        # out_proj's for the attention's. Measured against saved_tensors_hooks on the CPU
        # (tests/test_zoo_vit.py); dropout > 0 takes SDPA's math kernel, which keeps the
        # attention weights, the dropout's noise and q, k scaled, in fp32 under bf16 autocast
        # (what it keeps depends on the precision, which a rule does not see), and CUDA's
        # fused kernels keep other tensors (RNG state, padded statistics): neither is
        # modelled, so neither is guessed.
        if self.dropout > 0:
            raise NotImplementedError("the memory model has no rule for self_attention with dropout > 0 "
                                      "(scaled_dot_product_attention's math kernel)")
        # `contiguous` (contiguous_as): x.transpose(0, 1) is contiguous, as attention's own
        # transposed output is, so in_proj keeps x itself rather than a copy
        n, d = shape
        kept = ((n * d, 0, "act"),) if weight_grad and not contiguous else ()
        kept += ((3 * n * d, 0, "act"), (n * d, 0, "act"), (self.heads * n, 0, "fp32"))
        return Autograd(input=weight_grad and contiguous, extra=kept, weight=(3 * d * d if input_grad else 0) + d * d,
                        layout="tokens_first", lower=True)

    def backward_macs(self, shape, out, *, input_grad, weight_grad):
        # the projections' input and weight gradients, and both operands' gradients of QK^T and
        # AV (q, k, v need theirs whenever anything does), as FlopCounterMode counts the math kernel
        n, d = shape
        return (3 * n * d * d * input_grad + 4 * n * d * d * weight_grad + n * d * d + 4 * n * n * d
                if input_grad or weight_grad else 0)

    def param_tensors(self, shape: Shape) -> int:
        return 4 if self.bias else 2

    def receptive(self, shape, out):
        return Receptive(mix=(0,))   # every token attends to every token

    def build(self, shape: Shape):
        from netspec.modules import SelfAttention
        return SelfAttention(shape[1], self.heads, dropout=self.dropout, bias=self.bias)


# -- attention in parts --------------------------------------------------------------------
def _unbatched(size: int, dtype: str):
    """The memory model's tensor of `size` elements with no batch dim (the bias, the logit scale)."""
    from netspec.autograd import Storage, View
    return View(Storage(0, size, dtype), (size,), (0, 1), False)


def _need_heads(shape: Shape, what: str) -> None:
    if len(shape) < 3:
        raise LayerError(None, f"{what} needs heads [..., heads, tokens, head width], got {list(shape)} "
                               f"(split tokens into heads first: split_heads)")


class _Replayed(Layer):
    """A part whose training step the memory model replays op by op (`replay`)."""
    replays: ClassVar[bool] = True

    @staticmethod
    def finish(f, m, out, grad: bool, input_grad: bool, weight_grad: bool):
        """The output's requires-grad and the backward's MACs, as netspec.autograd does for a leaf."""
        out.grad = grad
        if grad:
            f.backward[m.path] = m.node.layer.backward_macs(m.input, m.output, input_grad=input_grad,
                                                            weight_grad=weight_grad)
        return out


@register("split_heads", shorthand="heads")
class SplitHeads(_Replayed):
    """Tokens [..., N, parts * heads * Dh] as heads [..., parts, heads, N, Dh]: the last dim
    read as [parts][heads][Dh] (a fused q/k/v projection: parts 3, as torchvision's Swin,
    MaxViT and timm lay it out), then the token dim moved next to Dh. A view of the input:
    x.reshape(..., N, parts, heads, Dh).permute(..., parts, heads, N, Dh)."""

    heads: PosInt = Field(description="Number of heads H.")
    parts: PosInt = Field(1, description="How many tensors the last dim holds side by side (3: a fused q/k/v projection, whose output attend takes).")

    def infer(self, shape: Shape) -> Shape:
        if len(shape) < 2:
            raise LayerError(None, f"split_heads needs tokens [..., tokens, width], got {list(shape)}")
        *lead, n, width = shape
        if width % (self.parts * self.heads):
            raise LayerError("heads", f"{self.parts} part{'s' if self.parts > 1 else ''} of {self.heads} heads do not "
                                      f"divide the token width {width}")
        return (*lead, self.parts, self.heads, n, width // (self.parts * self.heads))

    def replay(self, f, m, x):
        *lead, n, width = m.input
        r = len(lead)
        y = f.reshaped(x, (*lead, n, self.parts, self.heads, width // (self.parts * self.heads)))
        y = f.permuted(y, (*range(r), r + 1, r + 2, r, r + 3))
        return self.finish(f, m, y, x.grad and not f.frozen, x.grad, False)

    def receptive(self, shape, out):
        # parts, heads and Dh come from the last dim, the tokens from the token dim
        r = len(shape) - 2
        return Receptive(dims=(*range(r), r + 1, r + 1, r, r + 1), lost=(r, r + 1, r + 3))

    def build(self, shape: Shape):
        from netspec.modules import SplitHeads
        return SplitHeads(self.parts, self.heads)


@register("merge_heads")
class MergeHeads(_Replayed):
    """Heads [..., H, N, Dh] back to tokens [..., N, H * Dh]: x.transpose(-3, -2).reshape(...,
    N, H * Dh) (a copy unless the heads' layout allows a view: after `attend`'s fused kernel)."""

    def infer(self, shape: Shape) -> Shape:
        _need_heads(shape, "merge_heads")
        *lead, h, n, d = shape
        return (*lead, n, h * d)

    def replay(self, f, m, x):
        r = len(m.input) - 3
        y = f.permuted(x, (*range(r), r + 1, r, r + 2))
        y = f.reshaped(y, tuple(m.output))
        return self.finish(f, m, y, x.grad and not f.frozen, x.grad, False)

    def receptive(self, shape, out):
        r = len(shape) - 3
        return Receptive(dims=(*range(r), r + 1, r, r + 2), reshape=True)   # the transpose, then H and Dh merged

    def build(self, shape: Shape):
        from netspec.modules import MergeHeads
        return MergeHeads()


@register("attend")
class Attend(_Replayed):
    """Scaled dot-product attention of fused q, k, v [..., 3, H, N, Dh] (split_heads with parts
    3) to [..., H, N, Dh]: softmax(q k^T * scale + bias + mask) v, per head, leading dims as
    batch. As torchvision's Swin and MaxViT compute it (matmul, softmax, matmul), or, without
    bias, mask, cosine or dropout, torch's fused scaled_dot_product_attention (timm's path).
    Its tensors register on its enclosing module under torchvision's names: the position
    bias' `relative_position_bias_table` and `relative_position_index` (`position_bias: table`),
    Swin-v2's `relative_coords_table`, `relative_position_index` and `cpb_mlp` (`mlp`), the
    cosine attention's `logit_scale`. The shifted-window mask is made each step, as torchvision
    makes it (torchvision's state_dict has no buffer for it). MACs: QK^T and AV (2 N^2 Dh per head), and the bias MLP (it runs
    once per batch: counted per sample, as at batch 1)."""
    fresh_output: ClassVar[bool] = False
    owns_tensors: ClassVar[bool] = True

    scale: float | None = Field(None, gt=0, description="Multiplies the logits: q * scale (or k * scale) before q k^T. Default head width ** -0.5; MaxViT uses the token width's: ${dim ** -0.5}.")
    scaled: Literal["q", "k"] = Field("q", description="Which operand the scale multiplies (torchvision's Swin: q; MaxViT: k): the same logits, rounded as that code rounds them.")
    cosine: bool = Field(False, description="Cosine attention (Swin-v2): normalized q and k, times a learned per-head scale exp(min(logit_scale, log 100)), logit_scale [H, 1, 1] initialised to log 10; takes no scale.")
    position_bias: Literal["none", "table", "mlp"] = Field("none", description="A learned relative position bias over the `window` token grid, added to the logits: 'table' one value per relative offset and head (Swin, MaxViT), 'mlp' an MLP of log-spaced offsets, 16 * sigmoid of it (Swin-v2's continuous position bias).")
    window: Pair | None = Field(None, description="The token grid [h, w] of one sequence (N = h * w): what position_bias and the mask are over. Filled in by an enclosing partition (its group size).")
    index: Literal["flat", "square"] = Field("flat", description="Shape of relative_position_index: [N * N] ('flat', torchvision's Swin) or [N, N] ('square', MaxViT).")
    mlp: PosInt = Field(512, description="Hidden width of the position-bias MLP (position_bias: mlp; Swin-v2's cpb_mlp: 512).")
    shift: NonNegPair | None = Field(None, description="Swin's shifted-window mask: the cyclic shift [h, w] of windows laid out `groups`; token pairs the shift brought together from different regions get -100. Filled in by an enclosing shifted partition.")
    groups: Pair | None = Field(None, description="With shift: the windows' grid [rows, columns] (their number is the first leading dim). Filled in by an enclosing partition.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention weights while training.")

    # -- shapes and counts ------------------------------------------------------------
    def infer(self, shape: Shape) -> Shape:
        if len(shape) < 4 or shape[-4] != 3:
            raise LayerError(None, f"attend takes fused q, k, v [..., 3, heads, tokens, head width], got {list(shape)} "
                                   f"(split_heads with parts: 3 after a fused projection)")
        *lead, _, h, n, d = shape
        if self.cosine and self.scale is not None:
            raise LayerError("scale", "cosine attention learns its scale (logit_scale): give no scale")
        if self.position_bias != "none" or self.shift is not None:
            if self.window is None:
                raise LayerError("window", "a position bias or mask is over a token grid: give window [h, w] "
                                           "(inside a partition, its group size)")
            wh, ww = pair(self.window)
            if wh * ww != n:
                raise LayerError("window", f"window {wh}x{ww} has {wh * ww} tokens, the input {n}")
        if self.shift is not None:
            if self.groups is None:
                raise LayerError("groups", "a shifted-window mask needs the windows' grid: groups [rows, columns]")
            g = prod(pair(self.groups))
            if not lead or lead[-1] != g:
                raise LayerError("groups", f"the mask is for {g} windows, one per sequence of the dim before the "
                                           f"3 q/k/v; the input is {list(shape)}")
        elif self.groups is not None:
            raise LayerError("groups", "groups is the layout of shifted windows: give shift too")
        return (*lead, h, n, d)

    def _sizes(self, shape: Shape):
        *lead, _, h, n, d = shape
        return prod(lead), h, n, d

    def _table(self) -> int:
        wh, ww = pair(self.window)
        return (2 * wh - 1) * (2 * ww - 1)

    def owned(self, shape: Shape) -> dict:
        h = self._sizes(shape)[1]
        out = {"logit_scale": ("parameter", h)} if self.cosine else {}
        if self.position_bias == "table":
            out.update(relative_position_bias_table=("parameter", self._table() * h), relative_position_index=("buffer", 0))
        elif self.position_bias == "mlp":
            out.update(relative_coords_table=("buffer", 0), relative_position_index=("buffer", 0),
                       cpb_mlp=("module", 3 * self.mlp + self.mlp * h))
        return out

    def param_count(self, shape: Shape) -> int:
        return sum(params for _, params in self.owned(shape).values())

    def param_tensors(self, shape: Shape) -> int:
        return self.cosine + (self.position_bias == "table") + 3 * (self.position_bias == "mlp")

    def buffers(self, shape: Shape) -> tuple:
        _, _, n, _ = self._sizes(shape)
        out = ((n * n, "int64"),) if self.position_bias != "none" else ()
        if self.position_bias == "mlp":
            out += ((self._table() * 2, "fp32"),)
        return out

    def _mlp_macs(self, shape: Shape) -> int:
        return self._table() * (2 + self._sizes(shape)[1]) * self.mlp if self.position_bias == "mlp" else 0

    def macs(self, shape: Shape, out: Shape) -> int:
        rows, h, n, d = self._sizes(shape)
        return 2 * rows * h * n * n * d + self._mlp_macs(shape)

    @property
    def fused(self) -> bool:
        """Runs torch's fused scaled_dot_product_attention (nothing to add to the logits)."""
        return self.position_bias == "none" and not self.cosine and self.shift is None and self.dropout == 0 \
            and self.scaled == "q"

    def fixed_macs(self, shape: Shape, *, weight_grad: bool) -> tuple[int, int]:
        if self.position_bias != "mlp":
            return (0, 0)
        return (self._mlp_macs(shape), self._table() * self.mlp * (2 + 2 * self._sizes(shape)[1]) if weight_grad else 0)

    def backward_macs(self, shape, out, *, input_grad, weight_grad):
        # each matmul's operands that need a gradient (q, k, v: when the input does; the weights
        # when anything before the softmax trains); the bias MLP's weight gradients and its
        # hidden layer's input gradient
        rows, h, n, d = self._sizes(shape)
        per = rows * h * n * n * d
        weights = input_grad or (weight_grad and not self.fused)
        return per * (3 * input_grad + weights) + self.fixed_macs(shape, weight_grad=weight_grad)[1]

    def receptive(self, shape, out):
        r = len(shape) - 4
        return Receptive(mix=(r, r + 2, r + 3), dims=(*range(r), r + 1, r + 2, r + 3))   # every token reads every token

    # -- the training step, op by op -------------------------------------------------------
    def replay(self, f, m, x):
        _, h, n, _ = self._sizes(m.input)
        weight_grad = m.trainable_params > 0 and not f.frozen
        grad = (x.grad or weight_grad) and not f.frozen
        path, r = m.path, len(m.input) - 4
        q, k, v = (f.selected(x, r, i) for i in range(3))
        if self.fused:
            return self.finish(f, m, self._fused_replay(f, path, q, k, v, grad), grad, x.grad, weight_grad)
        if self.cosine:
            qn, kn = self._normalized(f, path, q), self._normalized(f, path, k)
            logits = f.matmul(path, qn, f.permuted(kn, (*range(r + 1), r + 2, r + 1)))
            scale = _unbatched(h, "fp32")   # clamp(logit_scale).exp(): exp keeps its result, the product each factor
            if weight_grad or logits.grad:
                f.save(path, scale.storage)
            if weight_grad:
                f.save(path, logits.storage)
            logits = f.new(logits.shape, f.promote(logits, scale), grad, like=logits, layout="like")
        else:
            if self.scaled == "q":
                q = f.new(q.shape, q.dtype, q.grad, like=q, layout="like")
            else:
                k = f.new(k.shape, k.dtype, k.grad, like=k, layout="like")
            logits = f.matmul(path, q, f.permuted(k, (*range(r + 1), r + 2, r + 1)))
        if self.position_bias != "none":
            bias = self._bias_replay(f, path, h, n, weight_grad)
            logits = f.new(logits.shape, f.promote(logits, bias), grad, like=logits, layout="like")
        if self.shift is not None:   # + the mask (made in the logits' dtype)
            logits = f.new(logits.shape, logits.dtype, grad, like=logits, layout="like")
        weights = f.new(logits.shape, logits.dtype, grad)   # softmax keeps its result
        if grad:
            f.save(path, weights.storage)
        if self.dropout > 0 and grad:   # x * noise keeps the noise
            noise = f.new(weights.shape, weights.dtype, False)
            f.save(path, noise.storage)
            weights = f.new(weights.shape, weights.dtype, grad)
        return self.finish(f, m, f.matmul(path, weights, v), grad, x.grad, weight_grad)

    def _normalized(self, f, path, t):
        """F.normalize(t, dim=-1) = t / t.norm(dim=-1, keepdim=True).clamp_min(eps): the norm keeps
        its input and result, clamp_min its input, the quotient both its operands."""
        shape = t.shape[:-1] + (1,)
        norm = f.new(shape, t.dtype, t.grad)
        clamped = f.new(shape, t.dtype, t.grad)
        if t.grad:
            for kept in (t.storage, norm.storage, clamped.storage):
                f.save(path, kept)
        return f.new(t.shape, t.dtype, t.grad, like=t, layout="like")

    def _bias_replay(self, f, path, h, n, weight_grad: bool):
        """The bias [1, H, N, N] made from the table each step: a gather by the index buffer
        (which autograd keeps: a buffer), a contiguous copy; for the MLP, its linears (under
        autocast in the low precision: the coordinates' and weights' copies kept), the ReLU's
        output and the sigmoid's result."""
        t = self._table()
        if self.position_bias == "mlp":
            from netspec.autograd import Storage
            low = f.low or "fp32"
            if weight_grad and f.low:
                f.save(path, Storage(0, t * 2, low))                        # the coordinates, cast
            hidden = _unbatched(t * self.mlp, low)                         # ReLU(inplace) keeps it
            if weight_grad:
                f.save(path, hidden.storage)
                if f.low:
                    f.save(path, Storage(0, self.mlp * h, low), "weight copy")
            sigmoid = _unbatched(h * n * n, low)
            if weight_grad:
                f.save(path, sigmoid.storage)
            return sigmoid
        return _unbatched(h * n * n, "fp32")

    def _fused_replay(self, f, path, q, k, v, grad):
        """scaled_dot_product_attention's fused CPU kernel on [rows, H, N, Dh]: under autocast on
        q, k, v cast to the low precision; it keeps q, k, v, its output (a [rows, N, H, Dh]
        tensor seen as [rows, H, N, Dh]) and a log-sum-exp per row, head and token (fp32)."""
        from netspec.autograd import Storage, View, dense_strides
        rows_shape = q.shape[:-2]
        q, k, v = (f.cast(f.folded(t, 3)) for t in (q, k, v))
        sizes = (f.batch, *q.shape)
        r = len(q.shape) - 3                                   # dims before H
        order = (*range(r + 1), r + 2, r + 1, r + 3)           # batch, lead..., N, H, Dh
        out = View(Storage(prod(q.shape), 0, q.dtype), q.shape, dense_strides(sizes, order), grad)
        f.largest = max(f.largest, out.storage.bytes(f.batch))
        if grad:
            for t in (q, k, v):
                f.save(path, t.storage)
            f.save(path, out.storage)
            f.save(path, Storage(prod(rows_shape) * q.shape[-2], 0, "fp32"))
        return out

    def build(self, shape: Shape):
        from netspec.modules import Attend
        _, h, _, d = self._sizes(shape)
        return Attend(h, d, scale=self.scale if self.scale is not None else d ** -0.5, scaled=self.scaled,
                      cosine=self.cosine, position_bias=self.position_bias,
                      window=pair(self.window) if self.window is not None else None, index=self.index, mlp=self.mlp,
                      shift=pair(self.shift) if self.shift is not None else None,
                      groups=pair(self.groups) if self.groups is not None else None, dropout=self.dropout,
                      fused=self.fused)
