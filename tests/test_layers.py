"""Every registered layer type: its static rules agree with the module it builds.

A new layer type must add a sample below (the first test fails until it does), and
then gets all the checks for free: shape inference == real forward output shape,
param_count == sum of numel, macs == FlopCounterMode FLOPs / 2, every field documented.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from netspec.layers import REGISTRY

# tag -> list of (fields, input shape without batch)
SAMPLES = {
    "conv": [({"out": 8, "k": 3}, (4, 9, 9)),
             ({"out": 8, "k": [3, 5], "stride": 2, "padding": [1, 2], "bias": False}, (4, 11, 10)),
             ({"out": 8, "k": 3, "groups": 4, "dilation": 2, "padding": "same"}, (8, 9, 9)),
             ({"out": 6, "k": 3, "padding": "valid", "groups": 2}, (4, 5, 7))],
    "bn": [({}, (6, 4, 4)), ({}, (6,)), ({"affine": False}, (6, 5)), ({"eps": 1e-3, "momentum": 0.01}, (6, 3, 3))],
    "relu": [({}, (3, 4, 4))], "relu6": [({}, (5,))], "leaky_relu": [({"negative_slope": 0.2}, (3, 4))],
    "sigmoid": [({}, (3, 2, 2))], "tanh": [({}, (4,))], "gelu": [({}, (4,)), ({"approximate": "tanh"}, (2, 3, 3))],
    "silu": [({}, (4,))], "hardswish": [({}, (2, 3, 3))], "hardsigmoid": [({}, (4,))],
    "maxpool": [({"k": 3, "stride": 2, "padding": 1}, (2, 9, 9)), ({"k": 3, "stride": 2, "ceil_mode": True}, (2, 10, 10)),
                ({"k": "global"}, (2, 5, 7)), ({"k": [2, 3]}, (1, 8, 9))],
    "avgpool": [({"k": 2}, (2, 8, 8)), ({"k": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 10, 10)),
                ({"k": "global"}, (3, 7, 7))],
    "adaptive_avgpool": [({"size": 3}, (2, 7, 7)), ({"size": [2, 1]}, (2, 6, 6))],
    "adaptive_maxpool": [({"size": 2}, (2, 5, 5))],
    "dropout": [({"p": 0.3}, (4, 2, 2))],
    "flatten": [({}, (3, 4, 5))],
    "identity": [({}, (3, 4))],
    "linear": [({"out": 7}, (12,)), ({"out": 3, "bias": False}, (5, 12))],
}


def test_every_layer_type_has_samples():
    assert sorted(SAMPLES) == sorted(REGISTRY), "add samples for new layer types"


CASES = [(tag, fields, shape) for tag, samples in SAMPLES.items() if tag in REGISTRY for fields, shape in samples]


@pytest.mark.parametrize("tag,fields,shape", CASES, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(CASES)])
def test_static_rules_match_built_module(tag, fields, shape):
    layer = REGISTRY[tag].model_validate(fields)
    out = layer.infer(shape)
    module = layer.build(shape).eval()
    x = torch.randn(2, *shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        y = module(x)
    assert tuple(y.shape[1:]) == tuple(out)
    assert layer.param_count(shape) == sum(p.numel() for p in module.parameters())
    assert layer.macs(shape, out) * 2 * x.shape[0] == counter.get_total_flops(), "MACs per sample = FLOPs / 2 / batch"


@pytest.mark.parametrize("tag", sorted(REGISTRY))
def test_every_field_is_documented(tag):
    cls = REGISTRY[tag]
    assert cls.__doc__ and cls.__doc__.strip()
    for name, info in cls.model_fields.items():
        assert info.description, f"{tag}.{name} needs a description"


def test_shorthand_forms():
    assert REGISTRY["dropout"].model_validate(0.2).p == 0.2
    assert REGISTRY["maxpool"].model_validate(2).k == 2
    assert REGISTRY["linear"].model_validate(10).out == 10
    assert REGISTRY["avgpool"].model_validate("global").k == "global"
    with pytest.raises(ValueError, match="takes a mapping"):
        REGISTRY["conv"].model_validate(3)


def test_frozen_layer_counts_but_does_not_train():
    import netspec
    spec = {"netspec": 1, "name": "f", "input": [3, 8, 8],
            "layers": [{"conv": {"out": 4, "k": 3, "frozen": True}}, "flatten", {"linear": 2}]}
    a = netspec.analyze(spec)
    assert a.params == 4 * 27 + 4 + 4 * 36 * 2 + 2 and a.trainable_params == 4 * 36 * 2 + 2
    m = netspec.build(a)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == a.trainable_params
