"""Every zoo spec compiles under torch.compile(fullgraph=True): no graph breaks.

fullgraph=True turns any graph break into an error. Backend "eager" runs Dynamo's tracing (where
graph breaks happen) without Inductor's code generation, and the module lives on the meta device,
so a spec traces in a few CPU-seconds (as long as torchvision's own class of the same depth).

A family member (tests/zoo.py's FAMILIES) is its base's blocks and layers with other vars
(tests/test_zoo.py checks that): the same wiring code, traced through the base. Members are
traced too where CI compares their outputs (OUTPUTS_IN_CI): they stand for a variant that
`when:` items change (vgg11_bn's BN, regnet_x's blocks without squeeze-excitation). The rest
(resnet101, regnet_y_128gf, ...) would add minutes of tracing the same code; so would the
detection backbones that are their base's network under another builder's name
(tests/zoo_detection.py's SAME_AS_BASE: mask/keypoint R-CNN, FCOS, the 320 MobileNet).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netspec
from zoo import FAMILIES, OUTPUTS_IN_CI
from zoo_detection import SAME_AS_BASE

TRACED_BY_BASE = {member for members in FAMILIES.values() for member in members} - set(OUTPUTS_IN_CI) | SAME_AS_BASE
SPECS = [p for p in sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
         if p.stem not in TRACED_BY_BASE]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_compiles_without_graph_breaks(path):
    analysis = netspec.analyze(path)
    model = netspec.build(analysis, device="meta").eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(torch.empty(2, *analysis.input, device="meta"))
    from netspec.builder import output_form
    assert output_form(out) == analysis.output   # a record: the same keys, in order, and shapes
