"""The detection backbones of the zoo (`specs/*_backbone.yaml`) against torchvision's
(tests/zoo_detection.py builds them; bench/detection_parity.py compares every spec's outputs at
its full input size and at an odd one):
- every spec, on the meta device: state_dict keys in torchvision's order with its shapes, the
  same parameters trained (requires_grad by name: FrozenBN body, frozen conv1/layer1), params,
  trainable params and MACs (FlopCounterMode on torchvision's forward), norm settings, and
  the output record's keys in order and shapes;
- one spec per family and each variant that changes what runs, at a small odd input: outputs
  equal torchvision's (tests/zoo.py's `parity`: constant-filled tensors and FrozenBN buffers
  randomised, BatchNorm calibrated, eval and seeded training mode);
- a spec with one detail wrong (P6 from the lateral instead of P5, bilinear top-down, no ReLU
  before P7, the max-pool level from the wrong map) loads with strict=True and fails parity;
- family members are their base plus vars (and input, naming, expect).
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import netspec
from test_zoo import TOLERANCE, called_settings, resolved_members
from zoo import SPECS, parity, shapes
from zoo_detection import BUILDERS, DETECTION, FAMILIES, VARIANTS, reference

SMALL = (3, 97, 83)
# SSD's valid 3x3 convs of its last extra blocks need 268 px or more: the smallest, one image
# (it has no BatchNorm to calibrate or train on a batch)
AT = {"ssd300_vgg16_backbone": ((3, 269, 271), 1)}
OUTPUTS_IN_CI = [*FAMILIES, *VARIANTS, "ssd300_vgg16_backbone", "ssdlite320_mobilenet_v3_large_backbone"]


def test_every_detection_builder_has_a_spec():
    assert len(BUILDERS) == 12
    assert all((SPECS / f"{name}.yaml").exists() for name in DETECTION)


def trained(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("name", list(DETECTION))
def test_keys_params_trained_macs_and_outputs_match_torchvision(name):
    ref = reference(name, device="meta")
    analysis = netspec.analyze(SPECS / f"{name}.yaml")
    model = netspec.build(analysis, device="meta")
    assert shapes(model.state_dict()) == shapes(ref.state_dict())
    assert trained(model) == trained(ref)
    assert (analysis.params, analysis.trainable_params) == \
        (sum(p.numel() for p in ref.parameters()), sum(p.numel() for p in ref.parameters() if p.requires_grad))
    x = torch.empty(1, *analysis.input, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = ref.eval()(x)
    assert analysis.macs * 2 == counter.get_total_flops()
    assert {k: list(v.shape[1:]) for k, v in out.items()} == analysis.output and list(out) == list(analysis.output)
    assert called_settings(model, analysis.input) == called_settings(ref, analysis.input)


@pytest.mark.parametrize("name", OUTPUTS_IN_CI)
def test_outputs_match_torchvision_at_a_small_odd_size(name):
    shape, batch = AT.get(name, (SMALL, 2))
    result = parity(SPECS / f"{name}.yaml", reference(name), shape, batch, overrides=[f"input={list(shape)}"])
    assert result["eval"] < TOLERANCE and result["train"] < TOLERANCE, result


BROKEN = {
    "P6 from the C5 lateral, not P5": ("retinanet_resnet50_fpn_backbone", "blocks.fpn.graph.nodes.from_p5.from=inner2"),
    "P7 without the ReLU": ("retinanet_resnet50_fpn_backbone", "blocks.fpn.graph.nodes.p7.from=p6"),
    "bilinear top-down": ("fasterrcnn_resnet50_fpn_backbone", "blocks.fpn.graph.nodes.down1.resize.mode=bilinear"),
    "pool from the first level": ("fasterrcnn_mobilenet_v3_large_fpn_backbone", "blocks.fpn.graph.nodes.pool.from=p0"),
}


@pytest.mark.filterwarnings("ignore::netspec.errors.SpecWarning")   # the ReLU left unread
@pytest.mark.parametrize("name,change", BROKEN.values(), ids=list(BROKEN))
def test_a_spec_with_one_detail_wrong_loads_but_fails_parity(name, change):
    result = parity(SPECS / f"{name}.yaml", reference(name), SMALL, overrides=[f"input={list(SMALL)}", change])
    assert result["eval"] > 1e-3 and result["train"] > 1e-3, result


@pytest.mark.parametrize("base", list(FAMILIES))
def test_family_members_differ_only_in_vars_and_input(base):
    """A member is `extends:` its base plus vars (and input, name, description, expect); resolved,
    nothing else differs. mask/keypoint R-CNN and FCOS have no vars of their own: the same
    backbone under another builder's name."""
    resolved_members(base, FAMILIES[base])
