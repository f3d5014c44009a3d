"""Attention as the field writes it (netspec/layers/attention.py: split_heads, attend,
merge_heads; netspec/constructs/partition.py), beyond tests/test_zoo.py's table (keys, published
counts, outputs of swin_t, swin_v2_t and maxvit_t at 64x64):

- the specs' own attention blocks against torchvision's modules, with every parameter random
  (biases included: Swin-v2's unused key bias shows only then), padded and shifted windows,
  grids, stochastic depth drawn as torchvision draws it; a broken block caught;
- the shift torchvision drops where one window covers the map; the mask;
- timm's key layout of the vit_b_16 family (a committed key list of timm's vit_base_patch16_224);
- the memory model of every part and layout against saved_tensors_hooks, fp32 and bf16; forward
  and backward MACs against FlopCounterMode; buffers; ONNX export of roll and the mask; draw.
"""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import swin_transformer as tv_swin
from torchvision.models.maxvit import PartitionAttentionLayer

import netspec
from netspec.errors import SpecWarning
from netspec.autograd import training_step
from test_autograd import measured_vs_static
from test_layers import counted_attention
from zoo import SPECS, natural_batch, relative, shapes

TOLERANCE = 1e-5


def randomised(module: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    """Every parameter random (torchvision zero-initialises biases, which would hide a wrong bias path)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module


def block_of(write, base: str, call: dict, input_shape, variables: dict) -> torch.nn.Module:
    """The module of one block of a zoo spec, called alone (`extends:` the spec, its layers replaced)."""
    doc = {"extends": str(SPECS / f"{base}.yaml"), "name": "block", "input": list(input_shape), "vars": variables,
           "layers": [call]}
    with warnings.catch_warnings():   # one block leaves the spec's other variables (classes, patch, stem) unread
        warnings.filterwarnings("ignore", ".*variable '.*' is never used", SpecWarning)
        return netspec.build(write(json.dumps(doc), f"{base}_block.yaml"))   # JSON is YAML


def loaded(model, ref, prefix: str):
    state = {f"{prefix}{k}": v for k, v in ref.state_dict().items()}
    assert shapes(model.state_dict()) == shapes(state), "keys, order or shapes differ"
    model.load_state_dict(state, strict=True)
    return model


# -- the specs' blocks against torchvision's modules --------------------------------------------
@pytest.mark.parametrize("base, attention", [("swin_t", tv_swin.ShiftedWindowAttention),
                                             ("swin_v2_t", tv_swin.ShiftedWindowAttentionV2)])
@pytest.mark.parametrize("shift", [0, 1])
def test_window_attention_block_is_torchvisions(write, base, attention, shift):
    """The window_attention block of swin_t.yaml / swin_v2_t.yaml on a map of 7x8 (padded to 9x9 by
    3x3 windows), shifted or not, equals torchvision's ShiftedWindowAttention(V2)."""
    torch.manual_seed(0)
    ref = randomised(attention(8, [3, 3], [shift, shift], 2)).eval()
    model = loaded(block_of(write, base, {"window_attention": {"c": 8, "heads": 2, "shift": shift, "name": "attn"}},
                            (7, 8, 8), {"window": 3}), ref, "attn.").eval()
    x = torch.randn(2, 7, 8, 8)
    with torch.no_grad():
        assert relative(model(x), ref(x)) < TOLERANCE


def test_a_broken_window_attention_is_caught(write):
    """The same block without its mask (shift 1 in torchvision, none in the spec) differs."""
    torch.manual_seed(0)
    ref = randomised(tv_swin.ShiftedWindowAttention(8, [3, 3], [1, 1], 2)).eval()
    model = loaded(block_of(write, "swin_t", {"window_attention": {"c": 8, "heads": 2, "shift": 0, "name": "attn"}},
                            (9, 9, 8), {"window": 3}), ref, "attn.").eval()
    x = torch.randn(2, 9, 9, 8)
    with torch.no_grad():
        assert relative(model(x), ref(x)) > 1e-2


@pytest.mark.parametrize("kind", ["window", "grid"])
def test_maxvit_partition_attention_is_torchvisions(write, kind):
    """maxvit_t.yaml's partition_attention block on [8, 4, 4] in 2x2 groups equals torchvision's
    PartitionAttentionLayer in eval and, seeded, in training (stochastic depth p = 0.5 drawn per
    sample, as torchvision draws it)."""
    torch.manual_seed(0)
    ref = randomised(PartitionAttentionLayer(8, 4, 2, kind, (4, 4), 2, torch.nn.GELU, torch.nn.LayerNorm, 0.0, 0.0, 0.5))
    model = loaded(block_of(write, "maxvit_t", {"partition_attention": {"c": 8, "kind": kind, "p": 0.5, "name": "layer"}},
                            (8, 4, 4), {"partition": 2, "head_dim": 4, "mlp_ratio": 2}), ref, "layer.")
    x = torch.randn(4, 8, 4, 4)
    with torch.no_grad():
        assert relative(model.eval()(x), ref.eval()(x)) < TOLERANCE
        torch.manual_seed(3)
        want = ref.train()(x)
        torch.manual_seed(3)
        assert relative(model.train()(x), want) < TOLERANCE
        assert relative(want, ref.eval()(x)) > 1e-2, "stochastic depth really drew"


def test_swin_drops_the_shift_where_one_window_covers_the_map():
    """swin_t at 224: every other block of stages 1-3 is shifted by 3 and masked; stage 4 (7x7, one
    window) is not, as torchvision's shifted_window_attention decides at run time."""
    a = netspec.analyze(SPECS / "swin_t.yaml")
    shifts = {m.path: m.node.layer.shift for m in a.tree_leaves() if m.type == "attend"}
    assert shifts["features.1.1.attn.2"] == shifts["features.5.5.attn.2"] == [3, 3]
    assert shifts["features.1.0.attn.2"] is None and shifts["features.7.1.attn.2"] is None
    assert a.buffers == sum(b.numel() for b in tv_swin.swin_t().buffers())   # the index buffers; no mask buffer


# -- timm's key layout -------------------------------------------------------------------------
def test_vit_timm_layout_loads_timms_keys():
    """`vars.timm: true` lays vit_b_16 out as timm's vit_base_patch16_224 (a key list committed from
    timm 1.0.31): the same keys, order and shapes, and the same counts as torchvision's layout."""
    committed = json.loads((SPECS.parent / "tests" / "reference" / "timm_vit_base_patch16_224.json").read_text())
    analysis = netspec.analyze(SPECS / "vit_b_16.yaml", overrides=["vars.timm=true"])
    model = netspec.build(analysis, device="meta")
    assert shapes(model.state_dict()) == [(k, tuple(s)) for k, s in committed["keys"]]
    torchvision_layout = netspec.analyze(SPECS / "vit_b_16.yaml")
    assert (analysis.params, analysis.macs, analysis.output) == \
        (torchvision_layout.params, torchvision_layout.macs, torchvision_layout.output)


def test_vit_layouts_compute_the_same():
    """The small ViT in both layouts, weights carried over key by key: the same outputs (torch's
    fused attention in MultiheadAttention and in attend)."""
    small = ["input=[3,32,32]", "vars.image=32", "vars.patch=8", "vars.dim=32", "vars.depth=2", "vars.heads=4",
             "vars.mlp_dim=64", "vars.classes=10"]
    torch.manual_seed(0)
    tv = randomised(netspec.build(SPECS / "vit_b_16.yaml", overrides=small)).eval()
    timm = netspec.build(SPECS / "vit_b_16.yaml", overrides=[*small, "vars.timm=true"]).eval()
    state = tv.state_dict()
    timm.load_state_dict({k: v for k, v in zip(timm.state_dict(), (state[k] for k in _timm_order(state)))}, strict=True)
    x = natural_batch(2, (3, 32, 32), seed=2)
    with torch.no_grad():
        assert relative(timm(x), tv(x)) < TOLERANCE


def _timm_order(state) -> list[str]:
    """torchvision ViT keys in the order of timm's (class token, positions, patch embedding, blocks,
    norm, head): their tensors are the same, only names and places differ."""
    keys = list(state)
    first = ["class_token", "encoder.pos_embedding", "conv_proj.weight", "conv_proj.bias"]
    blocks = [k for k in keys if k.startswith("encoder.layers.")]
    return first + blocks + ["encoder.ln.weight", "encoder.ln.bias", "heads.head.weight", "heads.head.bias"]


# -- the memory model, MACs --------------------------------------------------------------------
def attention_spec(input_shape, partition: dict | None, **attend) -> dict:
    """linear, [partition of] qkv, split_heads, attend, merge_heads, proj, and a head."""
    parts = [{"linear": {"out": 24, "name": "qkv"}}, {"split_heads": {"heads": 2, "parts": 3}}, {"attend": attend},
             "merge_heads", {"linear": {"out": 5, "name": "proj"}}]
    body = [{"partition": {**partition, "body": parts}}] if partition is not None else parts
    if (partition or {}).get("channels") == "first":   # [C, H, W] in, the linears over the groups' channels
        return {"netspec": 1, "name": "t", "input": list(input_shape),
                "layers": [*body, {"avgpool": "global"}, "flatten", {"linear": 3}]}
    return {"netspec": 1, "name": "t", "input": list(input_shape), "layers": [{"linear": 5}, *body, {"linear": 3}]}


LAYOUTS = [
    ([6, 4], None, {}),                                                    # all tokens: torch's fused kernel
    ([6, 4], {"size": 4, "shift": 1}, {"position_bias": "table"}),         # runs of tokens, padded, shifted
    ([7, 6, 4], {"size": [3, 2], "shift": [1, 1]}, {"position_bias": "table", "dropout": 0.1}),   # Swin's
    ([6, 6, 4], {"size": 2, "kind": "grid"}, {"scale": 0.2, "scaled": "k", "position_bias": "table", "index": "square"}),
    ([4, 4, 4], {"size": 2, "shift": 1}, {"cosine": True, "position_bias": "mlp", "mlp": 8}),   # Swin-v2's
    ([5, 6, 6], {"size": 3, "channels": "first"}, {}),                     # MaxViT's layout
    ([5, 6, 6], {"size": 3, "kind": "grid", "channels": "first"}, {"position_bias": "table"}),
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("shape, partition, attend", LAYOUTS)
def test_memory_model_of_attention_parts_is_exact(shape, partition, attend, precision):
    """What autograd keeps (saved_tensors_hooks, once per storage) equals the static model, for each
    layout and attention option (tokens; padded, shifted windows; grids; cosine with the bias MLP)."""
    measured, static = measured_vs_static(netspec.analyze(attention_spec(shape, partition, **attend)), precision)
    assert static == measured, f"static {static:,} vs measured {measured:,} ({static - measured:+,})"


@pytest.mark.parametrize("attend", [{}, {"position_bias": "table", "shift": [0, 1], "groups": [1, 2], "window": [1, 3]},
                                    {"cosine": True, "position_bias": "mlp", "window": [1, 3], "mlp": 4}])
@pytest.mark.parametrize("frozen", [False, True])
def test_attend_macs_equal_flop_counter(attend, frozen):
    """Forward and backward MACs of a training step vs FlopCounterMode (SDPA on its math kernel,
    the one it counts); the bias MLP runs once per batch (fixed_macs)."""
    lead = [2] if "groups" in attend else []
    spec = {"netspec": 1, "name": "t", "input": [*lead, 3, 8],
            "layers": [{"linear": 12}, {"split_heads": {"heads": 2, "parts": 3}}, {"attend": {**attend, "frozen": frozen}}]}
    a = netspec.analyze(spec)
    model = netspec.build(a).train()
    batch = 2
    with counted_attention(), FlopCounterMode(display=False) as fwd:
        y = model(torch.randn(batch, *a.input))
    with counted_attention(), FlopCounterMode(display=False) as bwd:
        y.sum().backward()
    attend_m = next(m for m in a.tree_leaves() if m.type == "attend")
    fixed_fwd, fixed_bwd = attend_m.node.layer.fixed_macs(attend_m.input, weight_grad=not frozen)
    static = training_step(a, batch).backward_macs
    assert (a.macs - fixed_fwd) * batch + fixed_fwd == fwd.get_total_flops() // 2
    assert (static - fixed_bwd) * batch + fixed_bwd == bwd.get_total_flops() // 2


# -- export, draw ------------------------------------------------------------------------------
def test_onnx_export_of_rolled_masked_windows_verifies(tmp_path):
    """A tiny Swin (28x28: a 7x7 map in 3x3 windows, padded, every other block shifted and masked):
    exported to ONNX and read back by onnxruntime within the export's tolerance."""
    from netspec.deploy import export as ex
    tiny = ["input=[3,28,28]", "vars.width=8", "vars.window=3", "vars.depth1=2", "vars.depth2=1", "vars.depth3=1",
            "vars.depth4=1", "vars.heads1=1", "vars.heads2=2", "vars.heads3=2", "vars.heads4=2", "vars.classes=5"]
    torch.manual_seed(0)
    model = randomised(netspec.build(SPECS / "swin_t.yaml", overrides=tiny)).eval()
    result = ex.export(model, [3, 28, 28], "onnx", tmp_path / "swin.onnx", dynamic=True)
    assert result.ok, [str(d) for d in result.differences]


def test_a_swin_stage_reads_at_depth_2():
    from netspec.draw import layout
    lines = [b.lines for b in layout(netspec.analyze(SPECS / "swin_t.yaml"), depth=2).boxes]
    stage = next(text for text in lines if text[0] == "1: sequence")
    assert stage[1].startswith("attention on 7×7 windows → linear → linear → attention on 7×7 windows, shift 3")
    last = next(text for text in lines if text[0] == "7: sequence")
    assert "shift" not in last[1]   # one window covers the 7x7 map: no shift
