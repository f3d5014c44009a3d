"""The static training-step model (netspec/autograd.py) against torch itself:

- the bytes of the tensors autograd saves for the backward (`saved_tensors_hooks`, each
  storage once, parameters and buffers excluded) equal `training_step(...).saved_bytes` on
  the zoo (one spec per family and every spec without a torchvision model, at the smallest
  input each takes; the bench runs every spec: bench/memory.py) and on random specs, fp32 and
  bf16 autocast;
- backward MACs equal `FlopCounterMode` on a real backward (forward MACs too), where torch
  2.14's counter is right: it counts a grouped conv's weight gradient `groups` times (fixed
  upstream, pytorch#183405), so that excess is measured per layer against the same conv
  written as a loop over its groups, and static is proved equal to the loop.
"""
from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import netspec

from netspec.autograd import training_step
from netspec.errors import SpecError
from specgen import random_spec
from test_fuzz import HypothesisDraw
from test_layers import counted_attention
from zoo import IMAGE_VAR, ONE_PER_FAMILY, OWN_SPECS, SPECS, at_size, smallest_input
from zoo_detection import SAME_AS_BASE

# one spec per torchvision classification family (resnext50: resnet.py's Bottleneck, grouped) and
# every other spec of a structure of its own (tests/zoo.py's OWN_SPECS) but the detection
# backbones that are their base's network and the blog's two ResNets (resnet50's and
# resnext50's wiring again)
CI_SPECS = sorted({*ONE_PER_FAMILY, "resnext50", *OWN_SPECS} - SAME_AS_BASE - {"resnet50_tutorial", "resnext50_tutorial"})


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, low: torch.dtype | None) -> int:
    """Bytes autograd keeps for one forward: each storage once, model state excluded."""
    state = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}
    alive = []   # every saved storage held until the forward ends: a freed one's address, reused, would count once

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in state:
            seen[storage.data_ptr()] = storage.nbytes()
        alive.append(t.detach())
        return t.detach()  # the tensor itself would tie a saved output to its own grad_fn: a cycle
        #                   that gc cannot see, which kept every model and its activations alive

    cast = torch.autocast("cpu", dtype=low) if low else torch.autocast("cpu", enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        model(x)
    return sum(seen.values())


def small(path) -> netspec.Analysis:
    """The spec's analysis at the smallest input it takes (tests/zoo.py's smallest_input; its
    own if smaller; a ViT's image size is a variable too)."""
    a = netspec.analyze(path)
    side = smallest_input(path.stem)
    if len(a.input) != 3 or a.input[1] <= side:
        return a
    overrides = at_size(path.stem, side)[1]   # a ViT's image size, MaxViT's group size: variables too
    if overrides:
        return netspec.analyze(path, overrides=overrides)
    return netspec.analyze(path, input=(a.input[0], side, side))


def measured_vs_static(analysis, precision: str, batch: int = 2, inplace: bool = True) -> tuple[int, int]:
    torch.manual_seed(0)
    model = netspec.build(analysis, inplace=inplace).train()
    x = torch.randn(batch, *analysis.input)
    low = {"bf16": torch.bfloat16, "fp32": None}[precision]
    return saved_bytes(model, x, low), training_step(analysis, batch, precision, inplace=inplace).saved_bytes


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", CI_SPECS)
def test_saved_bytes_are_exact_on_the_zoo(name, precision):
    measured, static = measured_vs_static(small(SPECS / f"{name}.yaml"), precision)
    assert static == measured, f"static {static:,} vs measured {measured:,} ({static - measured:+,})"


@pytest.mark.filterwarnings("ignore::netspec.errors.SpecWarning")
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.data(), st.sampled_from(["fp32", "bf16"]))
def test_saved_bytes_are_exact_on_random_specs(data, precision):
    spec, _ = random_spec(HypothesisDraw(data))
    try:
        analysis = netspec.analyze(spec)
    except SpecError:  # the generator's few invalid specs are the fuzz's business
        return
    measured, static = measured_vs_static(analysis, precision)
    assert static == measured, f"static {static:,} vs measured {measured:,}"


L2_SCALE = [{"normalize": {}}, {"scale": {"per": "channels", "vector": True, "init": 20.0, "name": "scale_weight"}}]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("layers", [
    [{"conv": {"out": 8, "k": 3}}, "relu", *L2_SCALE, {"conv": {"out": 4, "k": 1}}],   # SSD's conv4_3 head
    [*L2_SCALE, {"conv": {"out": 4, "k": 3}}],                                          # the input needs no gradient
    [{"conv": {"out": 6, "k": 1}}, {"normalize": {"p": 1.0, "dim": -1}}, "flatten", {"linear": 3}]],
    ids=["ssd", "first", "rows"])
def test_saved_bytes_of_normalize_and_a_vector_scale(layers, precision):
    analysis = netspec.analyze({"netspec": 1, "name": "l2", "input": [3, 9, 7], "layers": layers})
    measured, static = measured_vs_static(analysis, precision)
    assert static == measured, f"static {static:,} vs measured {measured:,}"


def test_a_wrong_rule_is_seen(monkeypatch):
    """A layer rule that forgets what its backward keeps (relu's output) breaks the equality."""
    from dataclasses import replace

    from netspec.layers.act import ReLU

    a = small(SPECS / "resnet18.yaml")
    right = measured_vs_static(a, "fp32")
    rule = ReLU.autograd
    monkeypatch.setattr(ReLU, "autograd", lambda self, *args, **kw: replace(rule(self, *args, **kw), output=False))
    wrong = measured_vs_static(a, "fp32")
    assert right[0] == right[1] == wrong[0] and wrong[1] < wrong[0]


# -- MACs --------------------------------------------------------------------------------
def counted(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """FlopCounterMode's forward and backward FLOPs of one step (attention on the math kernel,
    the one the counter sees; a loss on every output of a dict, segmentation's out and aux)."""
    with counted_attention(), FlopCounterMode(display=False) as fwd:
        y = model(x)
    with counted_attention(), FlopCounterMode(display=False) as bwd:
        total(y).backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def total(y) -> torch.Tensor:
    """The sum of an output: a tensor, or every tensor of a record (an FPN's feature maps)."""
    return sum(v.float().sum() for v in y.values()) if isinstance(y, dict) else y.float().sum()


def one_group(conv: torch.nn.Conv2d) -> torch.nn.Conv2d:
    """The conv one group of a grouped conv is: its slice of the channels, same window."""
    g = conv.groups
    return torch.nn.Conv2d(conv.in_channels // g, conv.out_channels // g, conv.kernel_size, conv.stride,
                           conv.padding, conv.dilation, bias=conv.bias is not None)


def grouped_excess(conv: torch.nn.Conv2d, shape, input_grad: bool, batch: int) -> int:
    """FLOPs torch's counter adds to a grouped conv's backward beyond those of the same conv
    written as a loop over its groups (`groups` convs of one group's shape: a chunk, a conv
    each, a cat, none of which but the convs counts). Counted once per distinct conv and input
    (a depthwise net repeats a few dozen)."""
    return _grouped_excess(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                           conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, tuple(shape), input_grad,
                           batch)


@functools.lru_cache(maxsize=None)
def _grouped_excess(cin, cout, k, stride, padding, dilation, groups, bias, padding_mode, shape, input_grad, batch) -> int:
    conv = torch.nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias, padding_mode)
    x = torch.randn(batch, *shape, requires_grad=input_grad)
    part = torch.randn(batch, shape[0] // groups, *shape[1:], requires_grad=input_grad)
    return counted(conv, x)[1] - groups * counted(one_group(conv), part)[1]


def grouped_convs(model, analysis):
    for m in analysis.tree_leaves():
        if not m.node.layer.own_module:  # tensors on its enclosing module, not a module
            continue
        module = model.get_submodule(m.path)
        if isinstance(module, torch.nn.Conv2d) and module.groups > 1:
            yield m, module


@pytest.mark.parametrize("name", CI_SPECS)
def test_macs_equal_flop_counter_on_the_zoo(name):
    batch = 2
    a = small(SPECS / f"{name}.yaml")
    torch.manual_seed(0)
    model = netspec.build(a).train()
    fwd, bwd = counted(model, torch.randn(batch, *a.input))
    first = a.layers[0].path  # the input needs no gradient: only the first layer's is skipped
    excess = sum(grouped_excess(conv, m.input, m.path != first, batch) for m, conv in grouped_convs(model, a))
    static = training_step(a, batch)
    # what runs once per batch (a position-bias MLP) is in the static per-sample figures once
    fixed = [m.node.layer.fixed_macs(m.input, weight_grad=m.trainable_params > 0) for m in a.tree_leaves()]
    fixed_fwd, fixed_bwd = sum(f for f, _ in fixed), sum(b for _, b in fixed)
    assert (a.macs - fixed_fwd, static.backward_macs - fixed_bwd) == \
        ((fwd // 2 - fixed_fwd) // batch, ((bwd - excess) // 2 - fixed_bwd) // batch)


@pytest.mark.parametrize("groups,input_grad", [(2, True), (8, True), (32, False), (64, True)])
def test_grouped_conv_backward_macs_are_those_of_the_loop_of_groups(groups, input_grad):
    spec = {"netspec": 1, "name": "g", "input": [64, 12, 12], "layers": [{"conv": {"out": 128, "k": 3, "groups": groups}}]}
    a = netspec.analyze(spec)
    conv = next(m for m in netspec.build(a).modules() if isinstance(m, torch.nn.Conv2d))
    loop = groups * counted(one_group(conv), torch.randn(2, 64 // groups, 12, 12, requires_grad=input_grad))[1] // 2 // 2
    leaf = next(a.tree_leaves())
    assert leaf.node.layer.backward_macs(leaf.input, leaf.output, input_grad=input_grad, weight_grad=True) == loop
