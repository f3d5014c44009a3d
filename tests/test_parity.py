"""ResNeXt-50 equals torchvision's, and built modules trace whole under torch.compile
(fullgraph) and torch.export."""
from __future__ import annotations

import torch
import torchvision

import netspec
from conftest import ROOT


def test_resnext50_matches_torchvision_exactly():
    reference = torchvision.models.resnext50_32x4d().eval()
    model = netspec.build(ROOT / "specs" / "resnext50.yaml").eval()
    ref_state, state = reference.state_dict(), model.state_dict()
    assert list(state) == list(ref_state)
    assert [v.shape for v in state.values()] == [v.shape for v in ref_state.values()]
    model.load_state_dict(ref_state, strict=True)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-4, rtol=0)
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
    for spec in (ALL_CONSTRUCTS, ROOT / "specs" / "resnet18_cifar.yaml"):
        analysis = netspec.analyze(spec)
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
