"""The structural constructs beyond the classic ones: `flat` (no module level, so a
reference's keys come out exactly), `split`, `shortcut_first`, hyphenated names — each
checked against the torchvision module it reproduces (strict load, same key order,
outputs relative to scale), and the builder's wiring semantics (children called by name)."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.constructs import CONSTRUCTS
from netspec.errors import SpecError


def spec(layers, **extra):
    return {"netspec": 1, "name": "t", "input": extra.pop("input", [4, 8, 8]), "layers": layers, **extra}


def same(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max difference relative to the output's scale."""
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def load_and_compare(s: dict, reference: nn.Module, shape) -> float:
    model = netspec.build(s).eval()
    ref = reference.eval()
    assert list(model.state_dict()) == list(ref.state_dict())          # same keys, same order
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return same(model(x), ref(x))


FIRE = {"args": {"s": "required", "e1": "required", "e3": "required"},
        "body": [{"conv": {"out": "$s", "k": 1, "name": "squeeze"}},
                 {"relu": {"name": "squeeze_activation"}},
                 {"concat": {"flat": True, "branches": [
                     [{"conv": {"out": "$e1", "k": 1, "name": "expand1x1"}}, {"relu": {"name": "expand1x1_activation"}}],
                     [{"conv": {"out": "$e3", "k": 3, "padding": 1, "name": "expand3x3"}},
                      {"relu": {"name": "expand3x3_activation"}}]]}}]}


def test_flat_concat_gives_torchvisions_fire_keys():
    from torchvision.models.squeezenet import Fire
    torch.manual_seed(0)
    s = spec([{"fire": {"s": 16, "e1": 64, "e3": 64, "name": "3"}}], input=[96, 13, 13], blocks={"fire": FIRE})
    ref = nn.Sequential()
    ref.add_module("3", Fire(96, 16, 64, 64))
    assert load_and_compare(s, ref, (96, 13, 13)) < 1e-6
    assert "3.expand1x1.weight" in netspec.build(s).state_dict()


def test_a_deliberately_wrong_fire_fails_the_comparison():
    """The comparison above can fail: swap the branches and the outputs differ."""
    from torchvision.models.squeezenet import Fire
    wrong = {**FIRE, "body": [*FIRE["body"][:2], {"concat": {"flat": True, "branches": FIRE["body"][2]["concat"]["branches"][::-1]}}]}
    s = spec([{"fire": {"s": 16, "e1": 64, "e3": 64, "name": "3"}}], input=[96, 13, 13], blocks={"fire": wrong})
    ref = nn.Sequential()
    ref.add_module("3", Fire(96, 16, 64, 64))
    with pytest.raises(AssertionError):
        assert load_and_compare(s, ref, (96, 13, 13)) < 1e-6


def test_nested_flat_concats_register_on_one_module_like_inception_e():
    """InceptionE's branch3x3: 3x3_1 then [3x3_2a, 3x3_2b] joined: all siblings on the block."""
    conv = lambda out, k, name, p=0: {"conv": {"out": out, "k": k, "padding": p, "name": name}}
    s = spec([{"sequence": {"name": "Mixed", "body": [{"concat": {"flat": True, "branches": [
        [conv(4, 1, "branch1x1")],
        [conv(6, 1, "branch3x3_1"), {"concat": {"flat": True, "branches": [[conv(3, [1, 3], "branch3x3_2a", [0, 1])],
                                                                         [conv(3, [3, 1], "branch3x3_2b", [1, 0])]]}}],
        [{"avgpool": {"k": 3, "stride": 1, "padding": 1}}, conv(2, 1, "branch_pool")]]}}]}}])
    a = netspec.analyze(s)
    assert a.output == [4 + 6 + 2, 8, 8]
    keys = [k for k in netspec.build(a).state_dict() if k.endswith("weight")]
    assert keys == ["Mixed.branch1x1.weight", "Mixed.branch3x3_1.weight", "Mixed.branch3x3_2a.weight",
                    "Mixed.branch3x3_2b.weight", "Mixed.branch_pool.weight"]
    assert [r.path for r in a.layers][-2:] == ["Mixed.4", "Mixed.branch_pool"]  # positions count every module registered on Mixed


def test_split_is_shufflenets_stride_1_unit():
    from torchvision.models.shufflenetv2 import InvertedResidual
    torch.manual_seed(0)
    cbr = lambda out, k, groups=1, relu=True, p=0: [{"conv": {"out": out, "k": k, "padding": p, "groups": groups, "bias": False}},
                                                   "bn", *(["relu"] if relu else [])]
    branch2 = [*cbr(8, 1), *cbr(8, 3, groups=8, relu=False, p=1), *cbr(8, 1)]
    s = spec([{"sequence": {"name": "0", "body": [
        {"split": {"flat": True, "branches": {"branch1": [], "branch2": branch2}}},
        {"channel_shuffle": {"groups": 2}} if "channel_shuffle" in netspec.layers.REGISTRY else "identity"]}}],
        input=[16, 8, 8])
    ref = nn.Sequential(InvertedResidual(16, 16, 1))
    if "channel_shuffle" in netspec.layers.REGISTRY:
        assert load_and_compare(s, ref, (16, 8, 8)) < 1e-6
    else:  # without the shuffle the halves are concatenated unshuffled: compare to that
        model = netspec.build(s).eval()
        model.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, 16, 8, 8)
        x1, x2 = x.chunk(2, 1)
        with torch.no_grad():
            want = torch.cat([x1, ref[0].branch2.eval()(x2)], 1)
            assert same(model(x), want) < 1e-6


def test_split_errors_are_located():
    with pytest.raises(SpecError, match="do not split into 3 equal parts"):
        netspec.analyze(spec([{"split": {"branches": [[], [], []]}}]))
    with pytest.raises(SpecError, match=r"sizes \[1, 2\] must give one part per branch \(2\) and add up"):
        netspec.analyze(spec([{"split": {"branches": [[], []], "sizes": [1, 2]}}]))
    out = netspec.analyze(spec([{"split": {"branches": [[], [CONV]], "sizes": [1, 3]}}])).output
    assert out == [5, 8, 8]


def test_shortcut_first_registers_the_projection_before_the_body_like_regnet():
    s = spec([{"residual": {"name": "block1-0", "shortcut_first": True, "shortcut_name": "proj",
                            "shortcut": [{"conv": {"out": 8, "k": 1, "stride": 2, "bias": False}}, "bn"],
                            "body": [{"sequence": {"name": "f", "body": [{"conv": {"out": 8, "k": 3, "stride": 2, "padding": 1}}]}}],
                            "post": {"relu": {"name": "activation"}}}}])
    keys = list(netspec.build(s).state_dict())
    assert keys[:3] == ["block1-0.proj.0.weight", "block1-0.proj.1.weight", "block1-0.proj.1.bias"]
    assert keys[-2:] == ["block1-0.f.0.weight", "block1-0.f.0.bias"]
    flipped = {**s, "layers": [{"residual": {**s["layers"][0]["residual"], "shortcut_first": False}}]}
    assert list(netspec.build(flipped).state_dict())[0] == "block1-0.f.0.weight"


def test_two_flat_residuals_are_one_module_like_vits_encoder_block():
    """EncoderBlock: x + drop(attn(ln_1(x))), then + mlp(ln_2(.)): ln_1, ..., mlp are siblings."""
    s = spec([{"sequence": {"name": "encoder_layer_0", "body": [
        {"residual": {"flat": True, "body": [{"bn": {"name": "ln_1"}}, {"conv": {"out": 4, "k": 1, "name": "self_attention"}},
                                             {"dropout": {"name": "dropout"}}]}},
        {"residual": {"flat": True, "body": [{"bn": {"name": "ln_2"}},
                                             {"sequence": {"name": "mlp", "body": [{"conv": {"out": 4, "k": 1}}, "gelu"]}}]}}]}}])
    model = netspec.build(s).eval()
    assert [name for name, _ in model.encoder_layer_0.named_children()] == ["ln_1", "self_attention", "dropout", "ln_2", "mlp"]
    x = torch.randn(2, 4, 8, 8)
    m = model.encoder_layer_0
    with torch.no_grad():
        h = x + m.dropout(m.self_attention(m.ln_1(x)))
        want = h + m.mlp(m.ln_2(h))
        assert same(model(x), want) < 1e-6


def test_children_are_called_by_name_so_replacing_one_takes_effect():
    """Fine-tuning replaces a head (`model.fc = nn.Linear(...)`): inside a construct too."""
    s = spec([{"residual": {"name": "res", "body": [{"conv": {"out": 4, "k": 1, "name": "conv"}}]}}])
    model = netspec.build(s).eval()
    model.res.conv = nn.Conv2d(4, 4, 1, bias=False)
    nn.init.zeros_(model.res.conv.weight)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(model(x), x)                        # body now gives 0: identity shortcut only
    fresh = netspec.build(s, device="meta")
    fresh.load_state_dict(netspec.build(s).state_dict(), assign=True)
    assert fresh.res.conv.weight.device.type == "cpu"      # assign=True replaced the tensors that forward uses
    fresh(x)


def test_flat_construct_takes_no_name():
    with pytest.raises(SpecError, match="a flat construct adds no module level, so it takes no name"):
        netspec.analyze(spec([{"concat": {"flat": True, "name": "x", "branches": [[CONV]]}}]))


def test_flat_constructs_compile_without_graph_breaks():
    s = spec([{"fire": {"s": 4, "e1": 4, "e3": 4, "name": "fire"}},
              {"split": {"flat": True, "branches": [[], ["relu"]]}},
              {"residual": {"flat": True, "body": [CONV], "post": "relu"}}], blocks={"fire": FIRE})
    model = netspec.build(s).eval()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))


def test_every_construct_is_documented_and_registered_in_the_schema():
    from netspec.document.schema import STRUCTURAL
    assert sorted(STRUCTURAL) == sorted(CONSTRUCTS)
    for tag, cls in CONSTRUCTS.items():
        assert cls.__doc__ and cls.__doc__.strip()
        for name, info in cls.model_fields.items():
            assert info.description, f"{tag}.{name} needs a description"


CONV = {"conv": {"out": 4, "k": 3, "padding": 1}}
