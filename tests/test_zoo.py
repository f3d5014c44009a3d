"""torchvision parity for the zoo (the procedure is in tests/zoo.py; bench/zoo_parity.py runs it
for every spec at full size):
- every spec has exactly torchvision's state_dict keys, in the same order, with the same shapes,
  and the same norm, dropout and stochastic depth settings (both built on the meta device: no
  memory, so the 600M-parameter ones are checked too);
- for one spec per family (tests/zoo.py's ONE_PER_FAMILY), outputs equal torchvision's relative
  to their scale, after calibrating BatchNorm on a real batch, in eval and (seeded) training
  mode, at the smallest input the spec takes (`python bench/zoo_parity.py`: every spec, full size);
- parameter count and MACs equal torchvision's published num_params and _ops (where num_params
  counts another structure, tests/zoo.py's PUBLISHED_WITH says which and the test checks that);
- family members differ only in vars.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netspec
from zoo import (FAMILIES, ONE_PER_FAMILY, PUBLISHED_WITH, SPECS, TORCHVISION, at_size, crop_size, metadata,
                 natural_batch, parity, reference, relative, shapes, smallest_input, spec_model, weights)

# a member may also set `input`: the resolution its weights were published for (EfficientNet's
# compound scaling scales it with width and depth; its MACs are counted there)
MEMBER_KEYS = {"extends", "name", "description", "input", "vars", "expect"}
TOLERANCE = 1e-5   # fp32, relative to the output's scale


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_state_dict_keys_and_norm_and_dropout_settings_match_torchvision(name):
    """Keys, their order and shapes; and BatchNorm eps and momentum, dropout and stochastic
    depth p of every such module the forward calls, by path (torchvision's MBConv builds a
    stochastic_depth it never calls where there is no residual; a spec leaves it out). Both
    models on the meta device: no memory, so the 600M-parameter ones are checked too."""
    ref = reference(name, device="meta")
    analysis = netspec.analyze(SPECS / f"{name}.yaml")
    model = netspec.build(analysis, device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())
    # where torchvision calls one module twice (Swin's and MaxViT's stochastic depth serve both
    # residuals of a block), the spec has one per call: its modules that torchvision has no path for
    got = {path: rest for path, *rest in called_settings(model, analysis.input)}
    calls = called_settings(ref, analysis.input)
    want = {path: rest for path, *rest in calls}
    assert {path: got.get(path) for path in want} == want
    repeats = [repr(rest) for i, (path, *rest) in enumerate(calls) if path in {p for p, *_ in calls[:i]}]
    assert sorted(repr(rest) for path, rest in got.items() if path not in want) == sorted(repeats)


def called_settings(model: torch.nn.Module, shape) -> list:
    """(path, type, settings) of every call of a normalisation, dropout or stochastic depth module
    in an eval forward (on meta), in order: what the state_dict cannot show and eval outputs may
    not (momentum never changes an output; p only in training)."""
    from torchvision.ops import StochasticDepth
    kinds = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.Dropout,
             StochasticDepth)
    names = {m: n for n, m in model.named_modules()}
    out = []

    def record(m, args):
        out.append((names[m], type(m).__name__, {a: getattr(m, a) for a in ("eps", "momentum", "p", "mode") if hasattr(m, a)}))
    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(torch.empty(1, *shape, device="meta"))
    for h in hooks:
        h.remove()
    return out


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_outputs_match_torchvision_relative_to_scale(name):
    size = smallest_input(name)
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
    # and by the procedure CI runs, at the small input it runs at
    size = smallest_input("mobilenet_v2")
    result = parity(path, reference("mobilenet_v2"), (3, size, size), overrides=broken)
    assert result["eval"] > 1e-2 and result["train"] > 1e-2, result


def test_a_damped_branch_is_seen():
    """ConvNeXt's layer_scale starts at 1e-6, so each residual branch is a millionth of the
    output: with torchvision's init a spec with ReLU for GELU in every block stays within
    tolerance. `parity` undamps such constants first (tests/zoo.py: undamp), and catches it.
    A small ConvNeXt (width 8, one block per stage) keeps this cheap."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from zoo import calibrate, undamp
    small = [f"vars.{k}={v}" for k, v in {"width": 8, "depth1": 1, "depth2": 1, "depth3": 1, "depth4": 1}.items()]
    broken = small + ["blocks.cnblock.residual.body.0.sequence.body.4=relu"]
    torch.manual_seed(0)
    ref = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, None, 1)],
                   stochastic_depth_prob=0.1)
    x = natural_batch(2, (3, 64, 64), seed=2)

    def differences():
        out = []
        for overrides in (small, broken):
            model = netspec.build(netspec.analyze(SPECS / "convnext_tiny.yaml", overrides=overrides))
            model.load_state_dict(ref.state_dict(), strict=True)
            with torch.no_grad():
                out.append(relative(model.eval()(x), ref.eval()(x)))
        return out
    right, wrong = differences()
    assert right < TOLERANCE and wrong < TOLERANCE     # at layer_scale 1e-6: blind
    undamp(ref)
    calibrate(ref, natural_batch(8, (3, 64, 64), seed=1))
    right, wrong = differences()
    assert right < TOLERANCE and wrong > 1e-2           # undamped: caught


def test_squeeze_excitation_is_a_gate():
    """mobilenet_v3_small's SE modules are netspec gates (x * body(x)) with torchvision's names."""
    model = netspec.build(SPECS / "mobilenet_v3_small.yaml", device="meta")
    se = model.features[1].block[1]
    assert type(se).__name__ == "Gate"
    assert [n for n, _ in se.named_children()] == ["avgpool", "fc1", "activation", "fc2", "scale_activation"]


def resolved_members(base: str, members: list[str]) -> tuple[dict, list[dict]]:
    """The resolved base and members, after checking that each member file is `extends:` the
    base plus MEMBER_KEYS only, and that resolved, nothing else differs."""
    from netspec.document.load import read
    resolved_base = netspec.load(SPECS / f"{base}.yaml").source.data
    out = []
    for member in members:
        raw = read(SPECS / f"{member}.yaml").data
        assert raw["extends"] == f"{base}.yaml"
        assert set(raw) <= MEMBER_KEYS, f"{member}.yaml has more than vars: {sorted(set(raw) - MEMBER_KEYS)}"
        resolved = netspec.load(SPECS / f"{member}.yaml").source.data
        assert {k: v for k, v in resolved.items() if k not in MEMBER_KEYS} == \
               {k: v for k, v in resolved_base.items() if k not in MEMBER_KEYS}
        out.append(resolved)
    return resolved_base, out


@pytest.mark.parametrize("base", list(FAMILIES))
def test_family_members_differ_only_in_vars(base):
    """Families, not copies: a member file is `extends:` its family's base plus `vars`; it has no
    blocks or layers of its own, and resolved, only vars (and name, description, expect) differ."""
    resolved_base, members = resolved_members(base, FAMILIES[base])
    for resolved in members:
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
    ("efficientnet_b0", ["vars.width_mult=1.6", "vars.depth_mult=2.2", "input=[3, 456, 456]"], "efficientnet_b5"),
    ("squeezenet1_0", ["vars.stem_c=64", "vars.stem_k=3", "vars.pool1=2", "vars.pool2=4"], "squeezenet1_1"),
    ("regnet_y_400mf", ["vars.depth=22", "vars.w_0=24", "vars.w_a=24.48", "vars.w_m=2.54", "vars.group_width=16",
                        "vars.se_ratio=0"], "regnet_x_400mf"),
    ("vit_b_16", ["vars.dim=1024", "vars.depth=24", "vars.heads=16", "vars.mlp_dim=4096"], "vit_l_16"),
    ("swin_t", ["vars.depth3=18", "vars.stochastic_depth_prob=0.3"], "swin_s"),
    ("swin_v2_t", ["vars.width=128", "vars.depth3=18", "vars.heads1=4", "vars.heads2=8", "vars.heads3=16",
                   "vars.heads4=32", "vars.stochastic_depth_prob=0.5"], "swin_v2_b"),
])
def test_set_turns_one_member_into_another(base, overrides, target):
    a = netspec.analyze(SPECS / f"{base}.yaml", overrides=overrides)
    b = netspec.analyze(SPECS / f"{target}.yaml")
    assert (a.params, a.macs, a.output) == (b.params, b.macs, b.output)
    assert [(r.path, r.type, r.output) for r in a.layers] == [(r.path, r.type, r.output) for r in b.layers]


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_params_and_macs_match_torchvision_metadata(name):
    """The spec's counts are torchvision's published ones, for the weights entry the table names
    (evaluated at the spec's input size); where num_params counts another structure
    (PUBLISHED_WITH: the kwargs that build it, e.g. inception_v3's AuxLogits), torchvision's
    model with those kwargs has exactly the published count, and the spec its own reference's."""
    meta = metadata(name)
    analysis = netspec.analyze(SPECS / f"{name}.yaml")
    assert list(analysis.input[1:]) == [crop_size(weights(name))] * 2, "the table's weights are for another input size"
    if name in PUBLISHED_WITH:
        counted = sum(p.numel() for p in reference(name, "meta", **PUBLISHED_WITH[name]).parameters())
        assert counted == meta["num_params"], f"torchvision with {PUBLISHED_WITH[name]} is not what num_params counts"
        assert analysis.params == sum(p.numel() for p in reference(name, "meta").parameters()) != meta["num_params"]
    else:
        assert analysis.params == meta["num_params"]
    assert round(analysis.macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)   # _ops: GMACs, 3 decimals


OTHER_SIZES = [(name, entry.name) for name in TORCHVISION for entry in type(weights(name))
               if crop_size(entry) != crop_size(weights(name))]


@pytest.mark.parametrize("name, entry", OTHER_SIZES)
def test_weights_published_for_other_input_sizes(name, entry):
    """Weights evaluated at another size (regnet_y_128gf's DEFAULT, SWAG end-to-end at 384 px) are
    the same network there: the spec at that input has their num_params and _ops."""
    weights_entry = type(weights(name))[entry]
    size = crop_size(weights_entry)
    _, overrides = at_size(name, size)   # a ViT's image size is a variable too
    analysis = (netspec.analyze(SPECS / f"{name}.yaml", overrides=overrides) if overrides else
                netspec.analyze(SPECS / f"{name}.yaml", input=(3, size, size)))
    assert analysis.params == weights_entry.meta["num_params"]
    assert round(analysis.macs / 1e9, 3) == pytest.approx(weights_entry.meta["_ops"], abs=1e-9)


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


# -- RegNet -----------------------------------------------------------------------------------
def test_regnet_base_uses_the_checked_family_rules():
    """specs/regnet_y_400mf.yaml's vars are tests/families/regnet.yaml's (checked against all 15
    torchvision builders by tests/test_expr_families.py), plus the class count."""
    from netspec.document.load import read
    family = read(Path(__file__).parent / "families" / "regnet.yaml").data["vars"]
    base = read(SPECS / "regnet_y_400mf.yaml").data["vars"]
    assert {k: v for k, v in base.items() if k != "classes"} == family


# -- ShuffleNetV2, MNASNet, MobileNetV3-Large ------------------------------------------------
def test_mobilenet_v3_large_shares_the_small_blocks():
    """Large and Small are two tables of one InvertedResidual (no rule maps one onto the other):
    mobilenet_v3_large.yaml `extends:` the Small spec for its blocks and writes only its own
    table (`layers`), so the two cannot drift apart."""
    from netspec.document.load import read
    raw = read(SPECS / "mobilenet_v3_large.yaml").data
    assert raw["extends"] == "mobilenet_v3_small.yaml"
    assert set(raw) <= {"extends", "name", "description", "layers", "expect"}, sorted(raw)
    small, large = (netspec.load(SPECS / f"{n}.yaml").source.data for n in ("mobilenet_v3_small", "mobilenet_v3_large"))
    assert large["blocks"] == small["blocks"] and large["vars"] == small["vars"]
    assert large["layers"] != small["layers"]


# alphas where _round_to_multiple_of's 10% rule moves some width up (0.74375: 16 * alpha = 11.9 -> 16)
MNASNET_ALPHAS = [0.1, 0.2, 0.25, 0.35, 0.5, 0.6, 0.74375, 0.75, 0.9, 1.0, 1.1, 1.3, 1.4, 1.75, 2.0, 3.0]


@pytest.mark.parametrize("alpha", MNASNET_ALPHAS)
def test_mnasnet_widths_are_torchvisions_get_depths(alpha):
    """mnasnet1_0.yaml's vars (torchvision's _get_depths as expressions) give every stage width
    of MNASNet(alpha): the stem conv, the separable conv's projection, each stack's last unit."""
    from torchvision.models.mnasnet import _get_depths
    out = {row.path: row.output[0] for row in netspec.analyze(SPECS / "mnasnet1_0.yaml", overrides=[f"vars.alpha={alpha}"]).layers}
    got = [out["layers.0"], out["layers.6"]] + [out[f"layers.{8 + j}.{n - 1}.layers.6"] for j, n in enumerate([3, 3, 3, 2, 4, 1])]
    assert got == _get_depths(alpha)
