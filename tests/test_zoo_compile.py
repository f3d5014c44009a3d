"""Every zoo spec compiles under torch.compile(fullgraph=True): no graph breaks.

fullgraph=True turns any graph break into an error. Backend "eager" runs Dynamo's tracing (where
graph breaks happen) without Inductor's code generation, and the module lives on the meta device,
so the whole zoo traces in well under a minute on 2 CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netspec

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_compiles_without_graph_breaks(path):
    analysis = netspec.analyze(path)
    model = netspec.build(analysis, device="meta").eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(torch.empty(2, *analysis.input, device="meta"))
    assert list(out.shape) == [2, *analysis.output]
