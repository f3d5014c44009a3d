"""torchvision's six segmentation builders and the U-Net as zoo specs (references in
tests/zoo_segmentation.py; bench/segmentation_parity.py runs every member at full size):
- every spec, aux_loss off and on: torchvision's state_dict keys in the same order with the same
  shapes, and every conv's, norm's and dropout's settings by path (on the meta device: cheap);
- params and MACs: the published num_params and _ops (with the aux head, as the weights are),
  and MACs exactly FlopCounterMode's count of torchvision's model / 2;
- outputs of one member per family at a small odd input (65x71), key by key, eval and seeded
  training, with the aux head; deliberately broken specs (the aux head read one block late, a
  dilation changed, the U-Net's skip padded on one side) keep their keys and fail;
- family members differ only in vars: tests/test_zoo.py, from tests/zoo.py's FAMILIES;
- specs/unet.yaml against milesial/Pytorch-UNet's modules (written out in zoo_segmentation.py)
  at odd sizes, several depths.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.errors import SpecError
from zoo import SPECS, parity, shapes, spec_model
from zoo_segmentation import (TORCHVISION_SEGMENTATION, aux_settings, metadata, overrides,
                              reference, unet_overrides, unet_reference)

TOLERANCE = 1e-5              # fp32, relative to each output's scale
SMALL = (3, 65, 71)           # odd, not a multiple of the output stride (8 or 16): 9x9 maps at stride 8
CASES = [(name, aux) for name in TORCHVISION_SEGMENTATION for aux in aux_settings(name)]
# outputs in CI: one member per family, with its aux head (the structure test covers aux_loss false: the same
# modules less the aux head); the bench compares every member, both settings, at full size and an odd size
OUTPUTS_IN_CI = [("fcn_resnet50", True), ("deeplabv3_resnet50", True), ("deeplabv3_mobilenet_v3_large", True),
                 ("lraspp_mobilenet_v3_large", False)]


def settings(model: torch.nn.Module) -> dict:
    """path -> (type, settings) of every conv, norm and dropout: what keys and shapes do not show
    (a dilation, a padding, eps) and small inputs may not (a 3x3 conv dilated 36 reads only its
    centre tap on a 9x9 map)."""
    fields = ("stride", "padding", "dilation", "groups", "eps", "momentum", "p")
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)
    return {path: (type(m).__name__, {f: getattr(m, f) for f in fields if hasattr(m, f)})
            for path, m in model.named_modules() if isinstance(m, kinds)}


@pytest.mark.parametrize("name, aux", CASES)
def test_structure_matches_torchvision(name, aux):
    ref = reference(name, aux, device="meta")
    analysis = netspec.analyze(SPECS / f"{name}.yaml", overrides=overrides(name, aux))
    model = netspec.build(analysis, device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())
    assert analysis.params == sum(p.numel() for p in ref.parameters())
    assert settings(model) == settings(ref)
    assert list(analysis.output) == (["out", "aux"] if aux else ["out"])


@pytest.mark.parametrize("name", list(TORCHVISION_SEGMENTATION))
def test_params_and_macs_match_torchvision(name):
    """The weights' model has the aux head: the spec with aux_loss true has the published
    num_params and _ops (GMACs, 3 decimals), and exactly FlopCounterMode's MACs (its convs: the
    resizes and LR-ASPP's product count none) of torchvision's model at 520x520."""
    meta = metadata(name)
    analysis = netspec.analyze(SPECS / f"{name}.yaml", overrides=overrides(name, True))
    assert list(analysis.input) == [3, 520, 520]
    assert analysis.params == meta["num_params"]
    assert round(analysis.macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)
    ref = reference(name, True, device="meta").eval()
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        ref(torch.empty(1, *analysis.input, device="meta"))
    assert analysis.macs * 2 == flops.get_total_flops()


@pytest.mark.parametrize("name, aux", OUTPUTS_IN_CI)
def test_outputs_match_torchvision(name, aux):
    result = parity(SPECS / f"{name}.yaml", reference(name, aux), SMALL, overrides=overrides(name, aux))
    assert result["scale"] > 1e-3, "calibrated BatchNorm gives outputs of a usable scale"
    assert result["eval"] < TOLERANCE and result["train"] < TOLERANCE, result


# deeplabv3_mobilenet_v3_large with its aux head, broken where keys and shapes cannot tell
BROKEN = {
    # FCNHead on block 5 (the same [40, H/8, W/8]) instead of 4, as _deeplabv3_mobilenetv3's stage_indices[-4]
    "aux tap one block late": ["graph.nodes.aux_classifier.from=backbone.5"],
    # C4's residual blocks undilated (padding 2 for 4): same shapes, other arithmetic
    "C4 not dilated": ["graph.nodes.backbone.body.12.body.0.bneck_res.dilation=1"],
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_spec_fails_parity(broken):
    path, name = SPECS / "deeplabv3_mobilenet_v3_large.yaml", "deeplabv3_mobilenet_v3_large"
    sets = overrides(name, True) + BROKEN[broken]
    result = parity(path, reference(name, True), SMALL, overrides=sets)   # loads strict: same keys and shapes
    assert result["eval"] > 1e-2 and result["train"] > 1e-2, result


def test_a_wrong_aspp_rate_fails_the_structure_check():
    """A rate of 35 for 36 changes no output at a small input (a 9x9 map lies inside the dilation
    either way) and no key: the settings comparison catches it; the bench compares outputs at 520."""
    ref = reference("deeplabv3_resnet50", device="meta")
    sets = ["blocks.deeplab_head.sequence.body.0.sequence.body.0.concat.branches.3.0.aspp_conv.rate=35"]
    model = netspec.build(SPECS / "deeplabv3_resnet50.yaml", overrides=sets, device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())
    differ = {p for p, s in settings(model).items() if settings(ref)[p] != s}
    assert differ == {"classifier.0.convs.3.0"}


def test_lraspp_has_no_aux_loss():
    """LRASPP has no aux head, so no aux_loss to set (an error naming the variables it has)."""
    assert "aux_loss" not in netspec.load(SPECS / "lraspp_mobilenet_v3_large.yaml").source.data["vars"]
    with pytest.raises(SpecError, match="uses no variable 'aux_loss'"):
        netspec.analyze(SPECS / "lraspp_mobilenet_v3_large.yaml", overrides=["vars.aux_loss=true"])


# -- U-Net ---------------------------------------------------------------------------------------
UNET = SPECS / "unet.yaml"


def test_unet_is_milesials_unet():
    """At full width and the paper's 572x572 tile: milesial's keys, order and shapes, and its
    31,037,698 parameters with 3 input channels (31,036,546 with the paper's 1)."""
    for channels, params in ((1, 31_036_546), (3, 31_037_698)):
        analysis = netspec.analyze(UNET, input=(channels, 572, 572))
        model = netspec.build(analysis, device="meta")
        ref = unet_reference(channels, device="meta")
        assert shapes(model.state_dict()) == shapes(ref.state_dict())
        assert analysis.params == sum(p.numel() for p in ref.parameters()) == params
        assert settings(model) == settings(ref)


@pytest.mark.parametrize("depth, shape", [(4, (1, 77, 91)), (1, (3, 33, 20)), (2, (3, 45, 39)), (5, (2, 97, 65))])
def test_unet_outputs_match_milesial_at_odd_sizes(depth, shape):
    """Width 8 for speed; sizes whose max-pools floor at several levels, so the skips are
    padded (centred, as milesial's F.pad) on both axes."""
    ref = unet_reference(shape[0], classes=3, base=8, depth=depth)
    result = parity(UNET, ref, shape, overrides=unet_overrides(classes=3, base=8, depth=depth))
    assert result["scale"] > 1e-3
    assert result["eval"] < TOLERANCE and result["train"] < TOLERANCE, result


def test_unet_skip_joined_in_the_other_order_fails_parity():
    """The upsampled map concatenated before the skip (milesial: torch.cat([x2, x1]), the skip
    first): same keys and shapes, other outputs."""
    sets = unet_overrides(classes=3, base=8, depth=4) + ["blocks.join.graph.nodes.joined.from=[padded,skip]"]
    result = parity(UNET, unet_reference(1, classes=3, base=8, depth=4), (1, 77, 91), overrides=sets)
    assert result["eval"] > 1e-2, result


@pytest.mark.parametrize("depth", [0, 6])
def test_unet_depth_out_of_range_is_one_located_error(cli, depth):
    run = cli("check", UNET, "--set", f"vars.depth={depth}")
    assert run.code == 2
    assert run.err.count("\n") == 1 and "unet.yaml:" in run.err and "depth_must_be_1_to_5" in run.err, run.err
