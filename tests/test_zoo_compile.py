"""Zoo specs compile under torch.compile(fullgraph=True): no graph breaks.

fullgraph=True turns any graph break into an error. Backend "eager" runs Dynamo's tracing (where
graph breaks happen) without Inductor's code generation, and the module lives on the meta device,
so a spec traces in a few CPU-seconds (as long as torchvision's own class of the same depth).

Traced here: one spec per torchvision classification family (tests/zoo.py's ONE_PER_FAMILY;
resnext50 for resnet.py's Bottleneck) and every other spec of a structure of its own
(tests/zoo.py's OWN_SPECS) but the blog's two ResNets (resnet50's and resnext50's wiring again)
and the detection backbones that are their base's network under another builder's name
(tests/zoo_detection.py's SAME_AS_BASE: mask/keypoint R-CNN, FCOS, the 320 MobileNet). A
family's other specs are the same wiring code with other vars or `when:` choices
(tests/test_zoo.py checks that members differ only in vars); `python bench/compile_zoo.py`
traces every spec.
"""
from __future__ import annotations

import pytest
import torch

import netspec
from zoo import ONE_PER_FAMILY, OWN_SPECS, SPECS
from zoo_detection import SAME_AS_BASE

TRACED = sorted({*ONE_PER_FAMILY, "resnext50", *OWN_SPECS} - SAME_AS_BASE - {"resnet50_tutorial", "resnext50_tutorial"})


def traces_whole(path) -> None:
    """torch.compile(fullgraph=True) of the spec's module runs on the meta device (raises on a graph break)."""
    from netspec.builder import output_form
    analysis = netspec.analyze(path)
    model = netspec.build(analysis, device="meta").eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(torch.empty(2, *analysis.input, device="meta"))
    assert output_form(out) == analysis.output   # a record: the same keys, in order, and shapes


@pytest.mark.parametrize("name", TRACED)
def test_compiles_without_graph_breaks(name):
    traces_whole(SPECS / f"{name}.yaml")
