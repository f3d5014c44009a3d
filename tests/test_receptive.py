"""Receptive fields (netspec.receptive) against measured ones: the nonzero extent of the input
gradient of one output position (every channel, weighed at random), in eval mode and float64,
with max pooling measured as average pooling over the same windows (an argmax reads one
pixel), and either every weight positive (1/fan-in; ReLU nets: nothing cancels or is cut off)
or random weights with activations replaced by identities (any spec: no dead units)."""
from __future__ import annotations

import pytest
import torch

import netspec
from conftest import ROOT
from netspec.ir import Leaf
from netspec.receptive import Field, fields
from specgen import RANDOM_SPEC_WARNINGS

ACTIVATIONS = ("ReLU", "ReLU6", "Sigmoid", "Tanh", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "LeakyReLU")


def _measurable(model, weights: str):
    """Max pools as average pools over the same windows (an argmax reads one pixel); with
    `positive` weights 1/fan-in and neutral norms and biases (ReLU nets: nothing cancels or
    is cut off), with `random` weights (any spec) activations as identities (no dead units)."""
    nn = torch.nn
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if weights == "positive":
                    p.fill_(1.0 / p[0].numel() if p.dim() > 1 else (0.0 if name == "bias" else 1.0))
                else:   # at its initial ones a layer norm's output sums to 0 over its dim: nothing would reach a pool of it
                    p.normal_()
        for parent in model.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.MaxPool2d):
                    setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode))
                elif isinstance(child, nn.AdaptiveMaxPool2d):
                    setattr(parent, name, nn.AdaptiveAvgPool2d(child.output_size))
                elif weights == "random" and type(child).__name__ in ACTIVATIONS:
                    setattr(parent, name, nn.Identity())
    return model.double().eval()


def centre(field: Field, out: tuple):
    """The output position measured: the centre along the dims holding h and w (an axis held
    by no dim is the same for every output); None where a dim holds merged positions."""
    where = {}
    for d, held in enumerate(field.dims):
        if "*" in held and held != "*":
            return None
        if held in ("h", "w"):
            where[held] = (d, out[d] // 2)
    return where


def measure(analysis, static, paths, weights="positive") -> dict[str, tuple]:
    """path -> ((first, last) input row, (first, last) input column) that the centre output
    position (every channel) depends on: the nonzero extent of the input gradient."""
    torch.manual_seed(0)
    model = _measurable(netspec.build(analysis, inplace=False), weights)
    outputs = {}
    for path in paths:
        module = model.get_submodule(path)
        module.register_forward_hook(lambda mod, args, out, path=path: outputs.setdefault(path, out))
    x = (torch.ones if weights == "positive" else torch.randn)(1, *analysis.input, dtype=torch.float64)
    x.requires_grad_(True)
    model(x)
    boxes = {}
    for path in paths:
        if path not in outputs:   # a chain a graph reads at its children runs child by child: its own hook never fires
            assert weights == "random", path
            boxes[path] = None
            continue
        out, where = outputs[path][0], centre(static[path], outputs[path][0].shape)
        index = [slice(None)] * out.dim()
        for d, i in where.values():
            index[d] = i
        picked = out[tuple(index)]   # weighed at random: a sum of normalised values would cancel
        if not picked.requires_grad:   # a graph node read only for its size runs without autograd
            boxes[path] = None
            continue
        target = (picked * (torch.rand(picked.shape, dtype=torch.float64) + 0.5)).sum()
        grad = torch.autograd.grad(target, x, retain_graph=True)[0][0].abs().sum(0)
        rows, cols = grad.sum(1).nonzero().flatten(), grad.sum(0).nonzero().flatten()
        if not len(rows):   # nothing reaches it (a norm over a dim of size 1 outputs a constant)
            boxes[path] = None
            continue
        boxes[path] = ((rows.min().item(), rows.max().item()), (cols.min().item(), cols.max().item()))
    return boxes


def static_box(analysis, field: Field, path: str) -> tuple:
    """The pixels the same output position reads, statically."""
    out = outputs(analysis)[path]
    where = centre(field, out)
    return tuple(axis.pixels(where[name][1] if name in where else 0) for name, axis in (("h", field.h), ("w", field.w)))


def tracked(analysis) -> list[str]:
    """The modules whose output positions can be picked (no merged dims; a bare parameter
    layer is a tensor on its owner, not a module with a hook)."""
    shapes, stack, bare = outputs(analysis), [analysis.tree], set()
    while stack:
        m = stack.pop()
        stack.extend(m.children)
        if isinstance(m.node, Leaf) and not m.node.layer.own_module:
            bare.add(m.path)
    return [p for p, f in fields(analysis).items() if p not in bare and centre(f, shapes[p]) is not None]


def outputs(analysis) -> dict[str, tuple]:
    """Output shape by module path (a flat construct's path is its parent's: the parent's)."""
    out, stack = {}, [analysis.tree]
    while stack:
        m = stack.pop()
        out.setdefault(m.path, m.output)
        stack.extend(reversed(m.children))
    return out


def check(analysis, paths, exact=True, weights="positive"):
    static = fields(analysis)
    measured = measure(analysis, static, paths, weights)
    for path in paths:
        want, got = static_box(analysis, static[path], path), measured[path]
        if got is None:   # only a random spec's degenerate norm outputs a constant
            assert weights == "random", path
            continue
        if exact is not None:
            assert static[path].exact == exact, (path, static[path])
        if static[path].exact:
            assert got == want, f"{path}: static {static[path]} gives {want}, measured {got}"
        else:   # an upper bound
            assert all(w[0] <= g[0] and g[1] <= w[1] for w, g in zip(want, got)), (path, static[path], want, got)
    return static


# -- the zoo ------------------------------------------------------------------------------

def test_resnet18():
    a = netspec.analyze(ROOT / "specs/resnet18.yaml", input=[3, 224, 224])
    f = check(a, ["conv1", "maxpool", "layer1.0", "layer1", "layer2.0.downsample", "layer2.0.conv1",
                  "layer2", "layer3.1.conv1", "layer3", "layer4", "fc", ""])
    assert str(f["layer4"]) == "r 435x435 s 32" and str(f["layer2"]) == "r 99x99 s 8"   # as published
    assert f["fc"].is_global and not f["layer3"].is_global


def test_googlenet():
    a = netspec.analyze(ROOT / "specs/googlenet.yaml", input=[3, 160, 160])
    f = check(a, ["maxpool1", "conv3", "inception3a.branch3", "inception3a", "inception3b", "maxpool3",
                  "inception4a.branch4", "inception4a", "inception4e", "inception5b", "fc"])
    assert f["inception3a"].h.r == max(f[f"inception3a.branch{i}"].h.r for i in range(1, 5))


def test_densenet121():
    a = netspec.analyze(ROOT / "specs/densenet121.yaml", input=[3, 128, 128])
    f = check(a, ["features.pool0", "features.denseblock1.denselayer1", "features.denseblock1.denselayer6",
                  "features.denseblock1", "features.transition1", "features.denseblock2.denselayer3",
                  "features.denseblock2", "features.transition2", "features.denseblock3", "classifier"])
    layers = [f[f"features.denseblock1.denselayer{i}"].h.r for i in range(1, 7)]
    assert layers == sorted(layers) and f["features.denseblock1"].h.r == layers[-1]


# -- small specs, one feature each ------------------------------------------------------------

def spec(layers, input=(3, 48, 48), blocks=None):
    doc = {"netspec": 1, "name": "t", "input": list(input), "layers": layers}
    if blocks:
        doc["blocks"] = blocks
    return netspec.analyze(doc)


def test_dilation_stride_and_non_square_kernels():
    a = spec([{"conv": {"out": 4, "k": 3, "dilation": 2, "padding": 2, "name": "a"}},
              {"conv": {"out": 4, "k": [3, 5], "dilation": [3, 1], "stride": [1, 2], "padding": [0, 1], "name": "b"}},
              {"conv": {"out": 4, "k": [1, 3], "stride": [2, 1], "padding": "valid", "name": "c"}},
              {"avgpool": {"k": [2, 3], "stride": [2, 1], "padding": [1, 0], "ceil_mode": True, "name": "d"}},
              {"conv": {"out": 4, "k": 2, "padding": "same", "dilation": 3, "name": "e"}}], input=(3, 64, 64))
    f = check(a, ["a", "b", "c", "d", "e"])
    assert (f["a"].h.r, f["a"].h.start) == (5, -2)
    assert (f["b"].h.r, f["b"].w.r, f["b"].h.stride, f["b"].w.stride) == (5 + (3 - 1) * 3, 5 + (5 - 1), 1, 2)
    assert str(f["c"]) == "r 11x13 s 2"


def test_residual_with_projection_and_auto_shortcut():
    body = [{"conv": {"out": 8, "k": 3, "stride": 2, "padding": 1}}, "relu", {"conv": {"out": 8, "k": 5, "padding": 2}}]
    a = spec([{"residual": {"name": "given", "body": body, "shortcut": [{"conv": {"out": 8, "k": 1, "stride": 2}}]}},
              {"residual": {"name": "auto", "body": [{"conv": {"out": 16, "k": 3, "stride": 2, "padding": 1}}]}},
              {"residual": {"name": "same", "body": [{"conv": {"out": 16, "k": [1, 3], "padding": [0, 1]}}]}}])
    f = check(a, ["given", "given.shortcut", "auto", "auto.shortcut", "same"])
    assert f["given"].h.r == 1 + 2 + 4 * 2 and f["given.shortcut"].h.r == 1


def test_concat_of_branches_with_different_kernels():
    a = spec([{"concat": {"name": "mix", "branches": {
        "one": [{"conv": {"out": 2, "k": 1}}],
        "tall": [{"conv": {"out": 2, "k": [5, 1], "padding": [2, 0]}}],
        "wide": [{"conv": {"out": 2, "k": [1, 7], "padding": [0, 3]}}],
        "pool": [{"maxpool": {"k": 3, "stride": 1, "padding": 1}}, {"conv": {"out": 2, "k": 1}}],
        "off": [{"conv": {"out": 2, "k": 6, "padding": "same"}}],   # torch pads 2 before, 3 after
    }}}, {"conv": {"out": 4, "k": 3, "stride": 2, "name": "after"}}])
    f = check(a, ["mix.one", "mix.tall", "mix.wide", "mix.pool", "mix.off", "mix", "after"])
    assert str(f["mix"]) == "r 6x7 s 1" and f["mix"].h.start == -2
    same = {"conv": {"out": 2, "k": 2, "padding": "same"}}   # torch pads 0 before, 1 after
    b = spec([{"concat": {"name": "cat", "branches": [[{"conv": {"out": 2, "k": 3, "padding": 1}}], [same, same]]}}])
    g = check(b, ["cat.0", "cat.1", "cat"])
    assert (g["cat.0"].h.start, g["cat.1"].h.start, str(g["cat"]), g["cat"].h.start) == (-1, 0, "r 4x4 s 1", -1)  # the union


def test_dense_block_split_and_gate():
    layer = [{"conv": {"out": 4, "k": 3, "padding": 1}}, "relu"]
    a = spec([{"conv": {"out": 8, "k": 3, "stride": 2, "name": "stem"}},
              {"dense": {"name": "dense", "repeat": 3, "body": [{"sequence": {"name": "l${i}", "body": layer}}]}},
              {"conv": {"out": 20, "k": 1, "name": "mixer"}},   # every channel the same field again
              {"split": {"name": "split", "branches": {"a": [], "b": [{"conv": {"out": 10, "k": 5, "padding": 2}}]}}},
              {"gate": {"name": "se", "body": [{"avgpool": "global"}, {"conv": {"out": 20, "k": 1}}, "sigmoid"]}},
              {"conv": {"out": 4, "k": 3, "name": "after"}}])
    f = check(a, ["stem", "dense.l0", "dense.l2", "dense", "split", "se", "after"])
    assert [f[f"dense.l{i}"].h.r for i in range(3)] == [3 + 4, 3 + 8, 3 + 12] and f["dense"].h.r == 15
    assert f["se"].is_global and f["after"].is_global and str(f["se"]) == "global"
    # without the mixer, the split's parts are channels of the dense block's output, whose
    # fields differ (the input's r 3, each layer's more): the union is only an upper bound
    b = spec([{"conv": {"out": 8, "k": 3, "stride": 2}},
              {"dense": {"name": "dense", "repeat": 3, "body": [{"sequence": {"name": "l${i}", "body": layer}}]}},
              {"split": {"name": "split", "branches": {"a": [{"conv": {"out": 10, "k": 1}}], "b": []}}}])
    g = check(b, ["dense", "split.a", "split"], exact=None)
    assert g["dense"].exact and "unequal" in g["split.a"].h.bound and str(g["split"]) == "≤ r 15x15 s 2"


def test_global_pooling_and_linear():
    a = spec([{"conv": {"out": 4, "k": 3, "name": "c"}}, {"adaptive_avgpool": {"size": [23, 1], "name": "p"}},
              {"flatten": {"name": "f"}}, {"linear": {"out": 3, "name": "fc"}}])
    f = check(a, ["c", "p", "fc"])
    assert str(f["p"]) == "r 4xall s 2x0" and f["fc"].is_global


def test_what_is_not_tracked_is_an_upper_bound():
    a = spec([{"conv": {"out": 4, "k": 3, "stride": 2, "name": "c"}},
              {"upsample": {"scale": 2, "name": "up"}},
              {"conv": {"out": 4, "k": 3, "name": "after"}}])
    f = check(a, ["up", "after"], exact=False)
    assert "upsample" in f["after"].h.bound and str(f["after"]).startswith("≤ ")
    uneven = spec([{"concat": {"name": "cat", "branches": [[{"conv": {"out": 2, "k": 1, "stride": 2, "padding": 1}}],
                                                           [{"conv": {"out": 2, "k": 24}}]]}}])
    g = check(uneven, ["cat"], exact=False)
    assert "strides" in g["cat"].h.bound


def test_permute_and_reshape_keep_the_axes():
    a = spec([{"conv": {"out": 4, "k": [3, 5], "name": "c"}},
              {"permute": {"dims": [1, 2, 0], "name": "p"}}, {"linear": {"out": 4, "name": "fc"}},
              {"permute": {"dims": [2, 0, 1], "name": "back"}},
              {"flatten": {"start": 0, "end": 0, "name": "f"}}, {"reshape": {"shape": [4, 46, 44], "name": "r"}},
              {"conv": {"out": 4, "k": 3, "name": "after"}}])
    f = check(a, ["c", "back", "r", "after"])
    assert str(f["after"]) == "r 5x7 s 1"
    b = spec([{"flatten": {"start": 1, "name": "f"}}, {"linear": {"out": 5, "name": "fc"}}])
    assert str(fields(b)["fc"]) == "global"


def test_inputs_without_positions_have_no_fields():
    assert fields(spec([{"linear": 4}], input=(8,))) == {}


@pytest.mark.filterwarnings(RANDOM_SPEC_WARNINGS)
def test_random_specs():
    """Every module of random valid specs (every layer type, every construct, permutes and
    reshapes) whose output positions are tracked: exact figures equal the measured extent,
    upper bounds contain it."""
    from specgen import Draw, random_spec
    compared = exact = 0
    for seed in range(40):
        doc, _ = random_spec(Draw(seed))
        a = netspec.analyze(doc)
        static, paths = fields(a), tracked(a)
        try:
            check(a, paths, exact=None, weights="random")
        except AssertionError as e:
            raise AssertionError(f"seed {seed}: {e}") from None
        compared += len(paths)
        exact += sum(static[p].exact for p in paths)
    assert compared > 300 and exact > 0.8 * compared, (compared, exact)


def test_every_layer_type_on_a_map():
    """Each layer type's rule (tests/test_layers.py's samples on [C, H, W] maps), after a 3x3
    conv so its input field is wider than a pixel; the root's output is the layer's."""
    from test_layers import SAMPLES
    seen = set()
    for tag, samples in SAMPLES.items():
        for settings, shape in samples:
            if isinstance(shape, tuple) and len(shape) == 3:   # a list: the inputs of a merge (random graphs cover those)
                a = spec([{"conv": {"out": shape[0], "k": 3, "padding": 1}}, {tag: settings}], input=shape)
                check(a, tracked(a), exact=None, weights="random")
                seen.add(tag)
    assert len(seen) >= 20, seen
