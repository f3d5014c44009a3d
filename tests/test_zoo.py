"""torchvision parity for the zoo (the procedure is in tests/zoo.py; bench/zoo_parity.py runs it
for every spec at full size):
- every spec has exactly torchvision's state_dict keys, in the same order, with the same shapes
  (both built on the meta device: no memory, so the 600M-parameter ones are checked too);
- for a few specs per family, outputs equal torchvision's relative to their scale, after
  calibrating BatchNorm on a real batch, in eval and (seeded) training mode, at small inputs;
- parameter count and MACs equal torchvision's published num_params and _ops;
- family members differ only in vars.
"""
from __future__ import annotations

import pytest
import torch

import netspec
from zoo import (FAMILIES, OUTPUTS_IN_CI, SPECS, TORCHVISION, at_size, metadata, natural_batch, parity, reference,
                 relative, shapes, spec_model)

MEMBER_KEYS = {"extends", "name", "description", "vars", "expect"}
TOLERANCE = 1e-5   # fp32, relative to the output's scale


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_state_dict_keys_order_and_shapes_match_torchvision(name):
    ref = reference(name, device="meta")
    model = netspec.build(SPECS / f"{name}.yaml", device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())


@pytest.mark.parametrize("name", OUTPUTS_IN_CI)
def test_outputs_match_torchvision_relative_to_scale(name):
    size = 96 if name in ("inception_v3",) else 64
    kwargs, overrides = at_size(name, size)
    result = parity(SPECS / f"{name}.yaml", reference(name, **kwargs), (3, size, size), overrides=overrides)
    assert result["scale"] > 1e-3, "calibrated BatchNorm gives outputs of a usable scale"
    assert result["eval"] < TOLERANCE and result["train"] < TOLERANCE, result


def test_a_deliberately_broken_spec_fails_parity():
    """mobilenet_v2 with hardswish where torchvision has ReLU6 (same keys): with default
    BatchNorm statistics its outputs are about 1e-9, so an absolute 1e-4 passes it; relative
    to scale after calibration it fails."""
    path, broken = SPECS / "mobilenet_v2.yaml", ["blocks.cna.sequence.body.2=hardswish"]
    ref = reference("mobilenet_v2")
    x = natural_batch(2, (3, 64, 64), seed=2)
    model = spec_model(path, ref).eval()
    bad = netspec.build(netspec.analyze(path, overrides=broken))
    bad.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        want, got = ref.eval()(x), bad.eval()(x)
        assert relative(model(x), want) < TOLERANCE
        assert (got - want).abs().max() < 1e-4                 # the old check: passes, whatever the spec computes
    from zoo import calibrate
    calibrate(ref, natural_batch(8, (3, 64, 64), seed=1))
    bad.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert relative(bad.eval()(x), ref.eval()(x)) > 1e-2   # relative to scale: caught


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
    ("vit_b_16", ["vars.dim=1024", "vars.depth=24", "vars.heads=16", "vars.mlp_dim=4096"], "vit_l_16"),
])
def test_set_turns_one_member_into_another(base, overrides, target):
    a = netspec.analyze(SPECS / f"{base}.yaml", overrides=overrides)
    b = netspec.analyze(SPECS / f"{target}.yaml")
    assert (a.params, a.macs, a.output) == (b.params, b.macs, b.output)
    assert [(r.path, r.type, r.output) for r in a.layers] == [(r.path, r.type, r.output) for r in b.layers]


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_params_and_macs_match_torchvision_metadata(name):
    meta = metadata(name)
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
