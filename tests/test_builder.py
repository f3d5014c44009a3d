"""The builder's in-place decisions: ReLUs and residual adds run in place exactly where
torchvision's do, never where the overwritten tensor is still needed (a shared input,
an output autograd keeps), and not at all with inplace=False. tests/test_fuzz.py checks
on random specs that the in-place build computes bit for bit what the out-of-place one does."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

import netspec
from conftest import ROOT
from netspec.builder import Net
from netspec.constructs.residual import ResidualStep


def spec(layers, **extra):
    return {"netspec": 1, "name": "t", "input": extra.pop("input", [4, 8, 8]), "layers": layers, **extra}


def residuals(model: nn.Module) -> list[ResidualStep]:
    """The wiring of every residual module (its in-place add decision is on the step)."""
    return [m._run for m in model.modules() if isinstance(m, Net) and isinstance(m._run, ResidualStep)]


def inplace_relus(model: nn.Module) -> dict[str, bool]:
    return {name: m.inplace for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6))}


def test_resnet50_runs_in_place_like_torchvision():
    model = netspec.build(ROOT / "specs" / "resnet50.yaml")
    relus = inplace_relus(model)
    assert len(relus) == 1 + 3 * 16 and all(relus.values())      # stem + three per bottleneck
    blocks = residuals(model)
    assert len(blocks) == 16 and all(b.add_inplace for b in blocks)  # torchvision: out += identity
    reference = torchvision.models.resnet50()
    assert all(m.inplace for m in reference.modules() if isinstance(m, nn.ReLU))


def test_mobilenet_v2_relu6_in_place_and_its_linear_bottleneck_add_too():
    model = netspec.build(ROOT / "specs" / "mobilenet_v2.yaml")
    assert all(inplace_relus(model).values())
    assert all(b.add_inplace for b in residuals(model))  # body ends in bn


def test_never_in_place_on_a_shared_or_kept_tensor():
    s = spec([
        "relu",                                                        # the caller's input
        {"conv": {"out": 4, "k": 1}}, "sigmoid", {"relu": {"name": "after_sigmoid"}},  # sigmoid keeps its output
        "dropout", {"relu": {"name": "after_dropout"}},                # dropout is identity in eval
        {"residual": {"body": [{"relu": {"name": "first"}}, {"conv": {"out": 4, "k": 1}}, {"relu": {"name": "last"}}],
                      "post": {"relu": {"name": "post"}}, "name": "res"}},
        {"concat": {"branches": {"a": [{"relu": {"name": "r"}}], "b": [{"conv": {"out": 2, "k": 1}}, {"relu": {"name": "r"}}]},
                    "name": "cat"}},
        {"gate": {"body": [{"relu": {"name": "r"}}, "sigmoid"], "name": "gate"}},
    ])
    model = netspec.build(s)
    assert inplace_relus(model) == {
        "0": False, "after_sigmoid": False, "after_dropout": False,
        "res.first": False,        # its input is also the identity shortcut's
        "res.last": True,          # after a conv
        "res.post": True,          # the sum is a new tensor
        "cat.a": False,            # branches share the concat's input
        "cat.b.r": True,
        "gate.r": False,           # the gate multiplies its own input
    }
    assert model.res._run.add_inplace is False  # the body ends in a relu, whose backward reads its output
    x = torch.randn(2, 4, 8, 8)
    kept = x.clone()
    model(x).sum().backward()
    assert torch.equal(x, kept)


def test_a_relu_after_a_reduction_whose_backward_reads_its_output_is_not_in_place():
    # amax's and norm's backward read their result; mean's and sum's do not (found by bench/fuzz.py:
    # "modified by an inplace operation ... output 0 of LinalgVectorNorm")
    ops = ["mean", "sum", "max", "norm"]
    s = spec([{"conv": {"out": 4, "k": 1}},
              {"concat": {"branches": {op: [{"reduce": {"op": op, "dims": [1, 2], "keepdim": True}}, {"relu": {"name": "r"}}]
                                       for op in ops}, "name": "cat"}}])
    model = netspec.build(s)
    assert inplace_relus(model) == {"cat.mean.r": True, "cat.sum.r": True, "cat.max.r": False, "cat.norm.r": False}
    model(torch.randn(2, 4, 8, 8)).sum().backward()


def test_inplace_false_builds_nothing_in_place():
    model = netspec.build(ROOT / "specs" / "resnet18.yaml", inplace=False)
    assert not any(inplace_relus(model).values())
    assert not any(b.add_inplace for b in residuals(model))


def test_forward_hooks_see_the_pre_relu_output_with_inplace_false():
    """The reason for the switch: a hook that keeps a conv's output must not see it rectified."""
    s = spec([{"conv": {"out": 4, "k": 1, "name": "conv"}}, "relu"])
    for inplace, rectified in ((True, True), (False, False)):
        torch.manual_seed(0)
        model = netspec.build(s, inplace=inplace)
        kept = []
        model.conv.register_forward_hook(lambda m, i, o: kept.append(o))
        model(torch.randn(2, 4, 8, 8))
        assert bool((kept[0] >= 0).all()) is rectified


def test_efficientnet_adds_its_residual_in_place_like_torchvision():
    """MBConv's body ends in bn, then stochastic depth (x * noise while training, x itself in
    eval): its output is as fresh as bn's, so `result += input` runs in place as torchvision's."""
    model = netspec.build(ROOT / "specs" / "efficientnet_b0.yaml")
    blocks = residuals(model)
    assert len(blocks) == 9 and all(b.add_inplace for b in blocks)


def test_dropout_stochastic_depth_and_identity_are_as_fresh_as_their_input():
    s = spec([
        {"conv": {"out": 4, "k": 1}}, "dropout", {"relu": {"name": "after_conv_dropout"}},
        "sigmoid", {"stochastic_depth": 0.5}, {"relu": {"name": "after_sigmoid_sd"}},
        {"conv": {"out": 4, "k": 1}}, "identity", {"relu": {"name": "after_conv_identity"}},
        {"residual": {"body": [{"conv": {"out": 4, "k": 1}}, "bn", {"stochastic_depth": 0.5}], "name": "res"}},
        {"residual": {"body": [{"stochastic_depth": 0.5}], "name": "shared"}},      # its input is the shortcut's
        {"residual": {"body": ["dropout", {"relu": {"name": "r"}}], "name": "shared_relu"}},
    ])
    model = netspec.build(s)
    assert inplace_relus(model) == {"after_conv_dropout": True, "after_sigmoid_sd": False, "after_conv_identity": True,
                                    "shared_relu.r": False}
    assert (model.res._run.add_inplace, model.shared._run.add_inplace) == (True, False)
    x = torch.randn(3, 4, 8, 8)
    for train in (True, False):
        outs = []
        for inplace in (True, False):
            torch.manual_seed(0)
            m = netspec.build(s, inplace=inplace).train(train)
            given = x.clone().requires_grad_()
            out = m(given)
            out.square().sum().backward()
            assert torch.equal(given.detach(), x)
            outs.append((out.detach(), given.grad, [p.grad for p in m.parameters()]))
        (a, ga, pa), (b, gb, pb) = outs
        assert torch.equal(a, b) and torch.equal(ga, gb) and all(torch.equal(p, q) for p, q in zip(pa, pb))
