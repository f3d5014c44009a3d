"""ResNeXt-50 equals torchvision's, and built modules trace whole under torch.compile
(fullgraph) and torch.export."""
from __future__ import annotations

import torch

import netspec
from conftest import ROOT
from zoo import parity, reference, smallest_input


def test_resnext50_matches_torchvision_exactly():
    """resnet.py's Bottleneck with groups (tests/test_zoo.py compares resnet18's BasicBlock): the
    outputs relative to their scale, by tests/zoo.py's procedure, at the smallest input it takes."""
    size = smallest_input("resnext50")
    result = parity(ROOT / "specs" / "resnext50.yaml", reference("resnext50"), (3, size, size))
    assert result["eval"] < 1e-5 and result["train"] < 1e-5, result
    model = netspec.build(ROOT / "specs" / "resnext50.yaml", device="meta")
    grouped = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 32]
    assert len(grouped) == 16, "each ResNeXt 3x3 is one grouped conv, never a loop over slices"


ALL_CONSTRUCTS = {
    "netspec": 1, "name": "all", "input": [4, 16, 16],
    "layers": [
        {"residual": {"body": [{"conv": {"out": 8, "k": 3, "stride": 2, "padding": 1}}, "bn"], "post": "relu"}},
        {"concat": {"branches": [[{"conv": {"out": 4, "k": 1}}], [{"maxpool": {"k": 3, "stride": 1, "padding": 1}}]]}},
        {"dense": {"repeat": 2, "body": ["bn", "relu", {"conv": {"out": 4, "k": 3, "padding": 1}}]}},
        {"gate": {"body": [{"avgpool": "global"}, {"conv": {"out": 20, "k": 1}}, "hardsigmoid"]}},
        {"avgpool": "global"}, "flatten", {"dropout": 0.1}, {"linear": 10}]}


def test_compile_fullgraph_has_no_graph_breaks():
    """Every construct in one module, on real tensors (tests/test_zoo_compile.py traces the zoo on meta)."""
    analysis = netspec.analyze(ALL_CONSTRUCTS)
    model = netspec.build(analysis).eval()
    x = torch.randn(2, *analysis.input)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # raises on any graph break
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x))


def test_torch_export():
    model = netspec.build(ALL_CONSTRUCTS).eval()
    x = torch.randn(2, 4, 16, 16)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-6)
