"""Module names: one rule for every name from every source, applied at resolve time, so the
analysis and the built module can never disagree (issue: a shortcut named like a body conv
overwrote it; the lost conv was never trained nor saved).

Sources of a name: an item's `name:`, a concat/split branch key, `shortcut_name`, a block
call's `name`, a named repeat's `name`; positions name the rest. The built module tree is
checked against the analysed one on every build."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import netspec
from conftest import spec_text
from netspec.builder import Net, tree_mismatches
from netspec.errors import SpecError
from netspec.resolver import RESERVED, name_problem


def spec(layers, **extra):
    return {"netspec": 1, "name": "t", "input": extra.pop("input", [4, 8, 8]), "layers": layers, **extra}


CONV = {"conv": {"out": 4, "k": 3, "padding": 1}}


def with_name(source: str, name: str) -> dict:
    """A small spec that takes `name` from the given source."""
    if source == "item":
        return spec([{"conv": {**CONV["conv"], "name": name}}])
    if source == "branch":
        return spec([{"concat": {"branches": {name: [CONV], "other": [CONV]}}}])
    if source == "shortcut_name":
        return spec([{"residual": {"body": [{"conv": {"out": 8, "k": 1}}], "shortcut_name": name}}])
    if source == "call":
        return spec([{"b": {"name": name}}], blocks={"b": {"body": [CONV, "relu"]}})
    if source == "repeat":
        return spec([{"repeat": 2, "name": name, "body": [CONV]}])
    raise ValueError(source)


SOURCES = ["item", "branch", "shortcut_name", "call", "repeat"]


def test_reserved_names_are_exactly_torchs_module_attributes():
    """A child may not shadow an attribute of the modules netspec builds: the static list
    (resolve imports no torch) equals what this torch has."""
    public = {n for n in dir(nn.Sequential()) if not n.startswith("_")} | {n for n in dir(Net()) if not n.startswith("_")}
    assert public == RESERVED


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("bad", ["_body", "__class__", "_modules", "share_memory", "forward", "training",
                                 "a..b", "", "-1", "x y", "état"])
def test_a_refused_name_is_one_located_error_from_every_source(source, bad):
    with pytest.raises(SpecError, match="module name") as e:
        netspec.analyze(with_name(source, bad))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("good", ["block1-0", "add_inplace", "layer_scale", "Mixed_5b", "0x"])
def test_names_torch_accepts_build_with_that_key(source, good):
    model = netspec.build(with_name(source, good), device="meta")
    assert any(good in path.split(".") for path, _ in model.named_modules())


def test_shortcut_named_like_a_body_module_is_refused(cli, write):
    """The issue's reproduction: 450 analysed params, 154 built, training silently wrong."""
    text = spec_text("""  - residual:
      body: [conv: {out: 8, k: 3, padding: 1, name: conv}, bn, relu, conv: {out: 8, k: 3, padding: 1, name: downsample}]
      shortcut_name: downsample
""", input_shape="[4, 8, 8]")
    run = cli("check", write(text))
    assert run.code == 2 and "two modules named 'downsample'" in run.err and run.err.count("\n") == 1


def test_shortcut_named_0_with_unnamed_body_is_refused():
    s = spec([{"residual": {"body": [{"conv": {"out": 8, "k": 1}}, "bn"], "shortcut_name": "0"}}])
    with pytest.raises(SpecError, match="two modules named '0'"):
        netspec.analyze(s)


def test_post_items_continue_the_body_positions_and_may_not_take_a_body_name():
    s = spec([{"residual": {"body": [CONV, {"bn": {"name": "bn"}}], "post": {"relu": {"name": "bn"}}}}])
    with pytest.raises(SpecError, match="two modules named 'bn'"):
        netspec.analyze(s)


def test_flat_children_share_the_enclosing_namespace():
    s = spec([{"sequence": {"name": "fire", "body": [
        {"conv": {"out": 4, "k": 1, "name": "squeeze"}},
        {"concat": {"flat": True, "branches": [[{"conv": {"out": 4, "k": 1, "name": "squeeze"}}], [CONV]]}}]}}])
    with pytest.raises(SpecError, match="two modules named 'squeeze'"):
        netspec.analyze(s)


def test_build_refuses_a_module_tree_that_differs_from_the_analysis(monkeypatch):
    """The safety net: should a name ever slip through, build fails loudly (exit 3), never silently."""
    analysis = netspec.analyze(spec([CONV, "relu", {"conv": {"out": 2, "k": 1, "name": "head"}}]))
    model = netspec.build(analysis)
    assert tree_mismatches(analysis, model) == []
    model.add_module("head", nn.Identity())          # what add_module's overwrite did
    assert tree_mismatches(analysis, model) == ["head: built 0, analysed 10"]
    import netspec.builder as builder
    monkeypatch.setattr(builder, "_register", lambda owner, node, value: owner.add_module("0", value))
    with pytest.raises(AssertionError, match="built module tree differs"):
        netspec.build(analysis)




@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("ab0_-.")), max_size=4) | st.sampled_from(sorted(RESERVED)[:8]),
                min_size=2, max_size=5), st.sampled_from(SOURCES[:2]))
def test_any_names_either_refused_or_built_exactly(names, where):
    """Random names (colliding, reserved, punctuation) as item names or branch keys: the spec
    is refused with one line, or the built module has exactly the analysed tree."""
    if where == "item":
        s = spec([{"conv": {**CONV["conv"], "name": n}} for n in names])
    else:
        s = spec([{"concat": {"branches": {n: [CONV] for n in names}}}])
    try:
        analysis = netspec.analyze(s)
    except SpecError as e:
        assert "\n" not in str(e)
        assert any(name_problem(n) for n in names) or len(set(names)) < len(names)
        return
    assert not any(name_problem(n) for n in names)
    model = netspec.build(analysis, device="meta")
    assert tree_mismatches(analysis, model) == []
    assert sum(p.numel() for p in model.parameters()) == analysis.params
    assert model(torch.empty(1, 4, 8, 8, device="meta")).shape[1:] == torch.Size(analysis.output)


def test_auto_projections_of_two_flat_residuals_may_not_share_a_name():
    """Two flat residuals in one module: fine while both are identities (ViT's EncoderBlock);
    the analysis, which decides `auto`, refuses two projections under one name."""
    res = lambda out: {"residual": {"flat": True, "body": [{"conv": {"out": out, "k": 1}}]}}
    assert netspec.analyze(spec([{"sequence": {"name": "s", "body": [res(4), res(4)]}}])).output == [4, 8, 8]
    with pytest.raises(SpecError, match="two modules at 's.shortcut'"):
        netspec.analyze(spec([{"sequence": {"name": "s", "body": [res(6), res(8)]}}]))
