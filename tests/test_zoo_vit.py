"""The ViT family beyond tests/test_zoo.py's table (keys, published counts, outputs at 64x64):
attention's MACs against FlopCounterMode, dropout drawn in torchvision's order, a broken
spec caught, the pos_embedding's declared resolution, other published resolutions, the
memory model of attention, and `netspec train` on specs/vit_tiny_cifar.yaml."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.vision_transformer import VisionTransformer

import netspec
from netspec.autograd import training_step
from zoo import SPECS, TORCHVISION, fill_zeros, natural_batch, relative, shapes

VIT = SPECS / "vit_b_16.yaml"
TOLERANCE = 1e-5
# a small member of the family, for the tests that run it: 32x32 input, 8x8 patches (17 tokens), width 64
SMALL = {"image": 32, "patch": 8, "dim": 64, "depth": 2, "heads": 4, "mlp_dim": 128, "classes": 10}


def small(**extra) -> tuple[list[str], dict]:
    """--set overrides for the small member, and torchvision's VisionTransformer arguments for it."""
    v = {**SMALL, **extra}
    sets = ["input=[3,32,32]", *(f"vars.{k}={x}" for k, x in v.items())]
    kwargs = dict(image_size=v["image"], patch_size=v["patch"], num_layers=v["depth"], num_heads=v["heads"],
                  hidden_dim=v["dim"], mlp_dim=v["mlp_dim"], num_classes=v["classes"],
                  dropout=v.get("dropout", 0.0), attention_dropout=v.get("attention_dropout", 0.0))
    return sets, kwargs


def reference(**kwargs) -> VisionTransformer:
    torch.manual_seed(0)
    return fill_zeros(VisionTransformer(**kwargs))   # torchvision zero-initialises heads.head and class_token


def loaded(sets, ref) -> torch.nn.Module:
    model = netspec.build(VIT, overrides=sets, device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())
    model.load_state_dict(ref.state_dict(), strict=True, assign=True)
    return model


def test_attention_matmuls_are_counted_as_flop_counter_counts_them():
    """vit_b_16: QK^T and AV are 2 N^2 D MACs per layer (0.715 G of 17.56 G), FlopCounterMode's bmm."""
    analysis = netspec.analyze(VIT)
    attention = [r for r in analysis.layers if r.type == "self_attention"]
    n, d = 197, 768
    assert len(attention) == 12 and all(r.macs == 4 * n * d * d + 2 * n * n * d for r in attention)
    model = netspec.build(analysis, device="meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, *analysis.input, device="meta"))
    flops = {str(op): count for op, count in counter.get_flop_counts()["Global"].items()}
    assert flops["aten.bmm"] // 2 == 12 * 2 * n * n * d == 715_327_488
    assert counter.get_total_flops() == 2 * analysis.macs


@pytest.mark.parametrize("dropout, attention_dropout", [(0.1, 0.0), (0.1, 0.2)])
def test_outputs_and_dropout_draws_match_torchvision(dropout, attention_dropout):
    """Seeded training mode: every dropout (encoder, block, MLP, attention weights) draws in torchvision's order."""
    sets, kwargs = small(dropout=dropout, attention_dropout=attention_dropout)
    ref = reference(**kwargs)
    model = loaded(sets, ref)
    x = natural_batch(4, (3, 32, 32), seed=2)
    with torch.no_grad():
        want_eval = ref.eval()(x)
        assert relative(model.eval()(x), want_eval) < TOLERANCE
        torch.manual_seed(3)
        want = ref.train()(x)
        torch.manual_seed(3)
        assert relative(model.train()(x), want) < TOLERANCE
        assert relative(want, want_eval) > 1e-2, "dropout really drew"


def test_a_deliberately_broken_spec_fails_parity():
    """The MLP's GELU as tanh-approximated GELU (same keys, close values): caught relative to scale."""
    sets, kwargs = small()
    ref = reference(**kwargs)
    x = natural_batch(2, (3, 32, 32), seed=2)
    broken = [*sets, "blocks.encoder_block.body.1.residual.body.1.sequence.body.1={gelu: tanh}"]
    with torch.no_grad():
        assert relative(loaded(sets, ref).eval()(x), ref.eval()(x)) < TOLERANCE
        assert relative(loaded(broken, ref).eval()(x), ref.eval()(x)) > 1e-4


def test_another_resolution_without_its_vars_is_a_located_error(cli):
    """The pos_embedding is declared for (image // patch)^2 + 1 tokens: an input of another size
    names both token counts, at the field in the file."""
    r = cli("compile", VIT, "--input", "3,384,384")
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and "Traceback" not in r.err
    assert "declared for 197 tokens" in lines[0] and "gives 577 tokens" in lines[0]
    assert "vit_b_16.yaml:" in lines[0] and "pos_embedding.tokens" in lines[0]
    r = cli("check", VIT, "--set", "vars.image=384")   # the vars without the input
    assert r.code == 2 and "declared for 577 tokens, but the input gives 197 tokens" in r.err
    assert r.err.startswith(f"{VIT}:") or "vit_b_16.yaml:" in r.err.split(": error:")[0]


@pytest.mark.parametrize("name, size, weights", [
    ("vit_b_16", 384, "IMAGENET1K_SWAG_E2E_V1"),
    ("vit_l_16", 512, "IMAGENET1K_SWAG_E2E_V1"),
    ("vit_h_14", 518, "IMAGENET1K_SWAG_E2E_V1"),
])
def test_changing_resolution_gives_the_published_counts(name, size, weights):
    """README's way to change resolution (input and vars.image together) gives the counts torchvision
    publishes for its weights at that size."""
    import torchvision.models as tvm
    meta = getattr(getattr(tvm, TORCHVISION[name][2].partition(".")[0]), weights).meta
    assert meta["min_size"] == (size, size)
    a = netspec.analyze(SPECS / f"{name}.yaml", overrides=[f"input=[3,{size},{size}]", f"vars.image={size}"])
    assert a.params == meta["num_params"]
    assert round(a.macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("frozen", [False, True])
def test_memory_model_of_attention_is_exact_on_cpu(precision, frozen):
    """What autograd keeps in a training step (saved_tensors_hooks, once per storage) equals the
    static memory model, for the small member (dropout 0) and for attention on the raw input."""
    sets, _ = small()
    specs = [netspec.analyze(VIT, overrides=[*sets, f"blocks.encoder_block.body.0.residual.body.1.self_attention.frozen={str(frozen).lower()}"]),
             netspec.analyze({"netspec": 1, "name": "t", "input": [10, 32],
                              "layers": [{"self_attention": {"heads": 4, "frozen": frozen}}, {"linear": 8}]})]
    for analysis in specs:
        model = netspec.build(analysis).train()
        x = torch.randn(3, *analysis.input)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        kept = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                kept[s.data_ptr()] = s.nbytes()
            return t
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            model(x)
        assert sum(kept.values()) == training_step(analysis, batch=3, precision=precision).saved_bytes


@pytest.mark.parametrize("frozen, input_grad", [(False, True), (False, False), (True, True)])
def test_backward_macs_of_attention_equal_flop_counter(frozen, input_grad):
    """Forward and backward MACs of a training step vs FlopCounterMode through SDPA's math kernel
    (it does not count the fused CPU kernels)."""
    from test_layers import counted_attention
    layer = {"self_attention": {"heads": 4, "frozen": frozen}}
    analysis = netspec.analyze({"netspec": 1, "name": "t", "input": [10, 32], "layers": [layer]})
    model = netspec.build(analysis).train()
    x = torch.randn(2, 10, 32, requires_grad=input_grad)
    with counted_attention(), FlopCounterMode(display=False) as fwd:
        y = model(x)
    with counted_attention(), FlopCounterMode(display=False) as bwd:
        y.sum().backward()
    m = next(analysis.tree_leaves())
    static = m.node.layer.backward_macs(m.input, m.output, input_grad=input_grad, weight_grad=not frozen)
    assert (fwd.get_total_flops() // 4, bwd.get_total_flops() // 4) == (analysis.macs, static)


def test_memory_model_refuses_attention_dropout(cli):
    analysis = netspec.analyze(VIT, overrides=["vars.attention_dropout=0.1"])
    with pytest.raises(NotImplementedError, match="dropout > 0"):
        training_step(analysis)
    # `compile --memory` said so with a traceback (exit 3): one line naming the spec and the option
    r = cli("compile", VIT, "--memory", "--set", "vars.attention_dropout=0.1")
    assert r.code == 2 and r.out == "" and r.err.strip().splitlines() == [
        f"{VIT}: error: --memory: the memory model has no rule for self_attention with dropout > 0 "
        f"(scaled_dot_product_attention's math kernel); compile without --memory for the rest of the table"]


def test_vit_tiny_cifar_trains_on_cpu(cli, tmp_path):
    """specs/vit_tiny_cifar.yaml's own train: section (AdamW, warmup + cosine, clipping) on synthetic 32x32 data."""
    spec = SPECS / "vit_tiny_cifar.yaml"
    analysis = netspec.analyze(spec)
    assert analysis.input == [3, 32, 32] and analysis.output == [10] and analysis.params == 1_806_538
    out = tmp_path / "run"
    r = cli("train", spec, "--out", out, "--quiet", "--device", "cpu",
            "--set", "train.dataset={name: synthetic, train_size: 64, test_size: 16, classes: 10, seed: 1}",
            "--set", "train.epochs=1", "--set", "train.batch_size=16", "--set", "train.precision=fp32",
            "--set", "train.compile=false", "--set", "train.schedule.warmup_epochs=0.5")
    assert r.code == 0, r.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_images"] == 64 and summary["params"] == 1_806_538
    assert torch.isfinite(torch.tensor(summary["final_train_loss"]))
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "4", "4 steps of 16"
    state = torch.load(out / "last.pt", weights_only=True)["model"]
    netspec.build(analysis).load_state_dict(state, strict=True)
    assert state["class_token"].abs().sum() > 0, "the class token (zeros at first) was trained"
