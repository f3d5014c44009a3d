"""torchvision parity for the zoo: each spec below has exactly torchvision's state_dict keys and
shapes, loads torchvision's weights with strict=True, and then computes the same outputs; and the
family specs (resnet*, resnext*, wide_resnet*, vgg*) are one definition that differs only in vars.

Fast on 2 CPU cores: the netspec model is built on the meta device and takes the torchvision
model's tensors (load_state_dict(assign=True)), outputs are compared on a 2x3x64x64 input.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

import netspec

SPECS = Path(__file__).resolve().parent.parent / "specs"

# spec file -> (torchvision builder, keyword arguments)
TORCHVISION = {
    "resnet18": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "resnet50": ("resnet50", {}),
    "resnet101": ("resnet101", {}),
    "resnext50": ("resnext50_32x4d", {}),
    "resnext101_32x8d": ("resnext101_32x8d", {}),
    "wide_resnet50_2": ("wide_resnet50_2", {}),
    "vgg11": ("vgg11", {}),
    "vgg16": ("vgg16", {}),
    "vgg11_bn": ("vgg11_bn", {}),
    "alexnet": ("alexnet", {}),
    "googlenet": ("googlenet", {"aux_logits": False, "transform_input": False, "init_weights": True}),
    "densenet121": ("densenet121", {}),
    "mobilenet_v2": ("mobilenet_v2", {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
}

# family base -> members: each member is `extends: <base>.yaml` plus vars (and name, description, expect)
FAMILIES = {
    "resnet18": ["resnet34"],
    "resnet50": ["resnet101", "resnext101_32x8d", "wide_resnet50_2"],
    "vgg11": ["vgg16", "vgg11_bn"],
}
MEMBER_KEYS = {"extends", "name", "description", "vars", "expect"}


def torchvision_model(spec_name: str):
    builder, kwargs = TORCHVISION[spec_name]
    torch.manual_seed(0)
    return getattr(tvm, builder)(weights=None, **kwargs).eval()


def shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_parity(name):
    reference = torchvision_model(name)
    spec = netspec.load(SPECS / f"{name}.yaml")
    analysis = netspec.analyze(spec)
    ref_state = reference.state_dict()

    # the static analysis agrees with torchvision before any module exists
    n_ref = sum(p.numel() for p in reference.parameters())
    assert analysis.params == spec.expect.params == n_ref
    assert analysis.output == spec.expect.output == [1000]

    model = netspec.build(analysis, device="meta")
    assert shapes(model.state_dict()) == shapes(ref_state)            # same keys, same shapes
    assert list(model.state_dict()) == list(ref_state)               # ... in the same order
    model.load_state_dict(ref_state, strict=True, assign=True)
    model.eval()

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_squeeze_excitation_is_a_gate():
    """mobilenet_v3_small's SE modules are netspec gates (x * body(x)) with torchvision's names."""
    model = netspec.build(SPECS / "mobilenet_v3_small.yaml", device="meta")
    se = model.features[1].block[1]
    assert type(se).__name__ == "Gate"
    assert [n for n, _ in se.named_children()] == ["avgpool", "fc1", "activation", "fc2", "scale_activation"]


@pytest.mark.parametrize("base", list(FAMILIES))
def test_family_members_differ_only_in_vars(base):
    """Families, not copies: a member file is `extends:` its family's base plus `vars`; it has no
    blocks or layers of its own, and resolved, only vars (and name, description, expect) differ."""
    from netspec.spec.load import read
    resolved_base = netspec.load(SPECS / f"{base}.yaml").source.data
    for member in FAMILIES[base]:
        raw = read(SPECS / f"{member}.yaml").data
        assert raw["extends"] == f"{base}.yaml"
        assert set(raw) <= MEMBER_KEYS, f"{member}.yaml has more than vars: {sorted(set(raw) - MEMBER_KEYS)}"
        resolved = netspec.load(SPECS / f"{member}.yaml").source.data
        assert {k: v for k, v in resolved.items() if k not in MEMBER_KEYS} == \
               {k: v for k, v in resolved_base.items() if k not in MEMBER_KEYS}
        assert resolved["vars"] != resolved_base["vars"]


def test_resnext50_shares_the_bottleneck_block():
    """specs/resnext50.yaml (written first) uses the same bottleneck block as the resnet family."""
    family = netspec.load(SPECS / "resnet50.yaml").source.data["blocks"]
    assert netspec.load(SPECS / "resnext50.yaml").source.data["blocks"] == family


@pytest.mark.parametrize("base, overrides, target", [
    ("resnet50", ["vars.depth3=23"], "resnet101"),
    ("resnet50", ["vars.depth3=23", "vars.groups=32", "vars.width_per_group=8"], "resnext101_32x8d"),
    ("resnet50", ["vars.width_per_group=128"], "wide_resnet50_2"),
    ("resnet18", ["vars.depth1=3", "vars.depth2=4", "vars.depth3=6", "vars.depth4=3"], "resnet34"),
    ("vgg11", ["vars.bn=1"], "vgg11_bn"),
])
def test_set_turns_one_member_into_another(base, overrides, target):
    a = netspec.analyze(SPECS / f"{base}.yaml", overrides=overrides)
    b = netspec.analyze(SPECS / f"{target}.yaml")
    assert (a.params, a.macs, a.output) == (b.params, b.macs, b.output)
    assert [(r.path, r.type, r.output) for r in a.layers] == [(r.path, r.type, r.output) for r in b.layers]


# torchvision's published metadata for its ImageNet weights (no download: the enum holds it)
WEIGHTS = {
    "resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights", "resnext50": "ResNeXt50_32X4D_Weights",
    "resnext101_32x8d": "ResNeXt101_32X8D_Weights", "wide_resnet50_2": "Wide_ResNet50_2_Weights",
    "vgg11": "VGG11_Weights", "vgg16": "VGG16_Weights", "vgg11_bn": "VGG11_BN_Weights",
    "alexnet": "AlexNet_Weights", "googlenet": "GoogLeNet_Weights", "densenet121": "DenseNet121_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights", "mobilenet_v3_small": "MobileNet_V3_Small_Weights",
}


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_params_and_macs_match_torchvision_metadata(name):
    meta = getattr(tvm, WEIGHTS[name]).IMAGENET1K_V1.meta
    analysis = netspec.analyze(SPECS / f"{name}.yaml")
    assert analysis.params == meta["num_params"]
    assert round(analysis.macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)   # _ops: GMACs, 3 decimals


def test_readme_table_matches_the_specs():
    """specs/README.md's params and MACs columns are what the compiler says."""
    import re
    rows = re.findall(r"^\| \[`(\w+)`\]\(\w+\.yaml\) \|[^|]*\| ([0-9x]+) \| ([0-9,]+) \| ([0-9,]+) \|",
                      (SPECS / "README.md").read_text(), flags=re.M)
    assert len(rows) >= 25
    for name, shape, params, macs in rows:
        analysis = netspec.analyze(SPECS / f"{name}.yaml")
        assert "x".join(map(str, analysis.input)) == shape, name
        assert (analysis.params, analysis.macs) == (int(params.replace(",", "")), int(macs.replace(",", ""))), name
