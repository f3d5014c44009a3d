"""Attention over tokens [N, D]: `self_attention` (torch.nn.MultiheadAttention called on
x, x, x, as torchvision's ViT EncoderBlock calls it)."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from netspec.errors import LayerError
from netspec.layers.registry import Autograd, Layer, PosInt, Receptive, Shape, need_tokens, register


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
