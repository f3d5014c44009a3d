"""Every registered layer type: its static rules agree with the module it builds.

A new layer type must add a sample below (the first test fails until it does), and
then gets all the checks for free: shape inference == real forward output shape,
param_count == sum of numel, macs == FlopCounterMode FLOPs / 2, every field documented.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from netspec.errors import LayerError
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
                ({"k": "global"}, (3, 7, 7)), ({"k": 3, "stride": 1, "padding": 1, "count_include_pad": False}, (2, 7, 9))],
    "adaptive_avgpool": [({"size": 3}, (2, 7, 7)), ({"size": [2, 1]}, (2, 6, 6))],
    "adaptive_maxpool": [({"size": 2}, (2, 5, 5))],
    "dropout": [({"p": 0.3}, (4, 2, 2))],
    "flatten": [({}, (3, 4, 5)), ({"start": 1}, (768, 14, 14)), ({"start": 0, "end": 1}, (3, 4, 5)),
                ({"start": -2, "end": -1}, (2, 3, 4, 5)), ({"start": 1, "end": 1}, (3, 4)), ({}, (7,))],
    "reshape": [({"shape": [4, 15]}, (3, 4, 5)), ({"shape": [-1, 5]}, (3, 4, 5)), ({"shape": [2, -1, 3]}, (6, 7)),
                ({"shape": [60]}, (3, 4, 5)), ({"shape": [1, 7, 1]}, (7,))],
    "permute": [({"dims": [1, 2, 0]}, (3, 5, 7)), ({"dims": [2, 0, 1]}, (3, 5, 7)), ({"dims": [1, 0]}, (768, 196)),
                ({"dims": [0]}, (5,)), ({"dims": [0, 1, 2]}, (2, 3, 4))],
    "channel_shuffle": [({"groups": 2}, (6, 3, 5)), ({"groups": 3}, (12, 1, 1)), ({"groups": 1}, (4, 2, 2)),
                        ({"groups": 5}, (5, 3, 3))],
    "stochastic_depth": [({"p": 0.1}, (4, 3, 3)), ({"p": 0.5, "mode": "batch"}, (5,)), ({"p": 0.0}, (3, 4)), ({"p": 1.0}, (2, 2, 2))],
    "layernorm": [({}, (7,)), ({}, (5, 12)), ({"eps": 1e-6}, (4, 5, 6)), ({"over": "channels", "eps": 1e-6}, (6, 5, 3)),
                  ({"over": "channels", "bias": False}, (3, 4, 4)), ({"elementwise_affine": False}, (5, 3)),
                  ({"over": "channels", "elementwise_affine": False}, (2, 3, 3))],
    "groupnorm": [({"groups": 2}, (6, 3, 5)), ({"groups": 3, "affine": False}, (6, 4)), ({"groups": 1, "eps": 1e-3}, (5,)),
                  ({"groups": 7}, (7, 2, 2))],
    "scale": [({"init": 1e-6}, (6, 3, 3)), ({"per": "last"}, (5, 8)), ({"per": "sample", "batch_dim": True}, (3, 4)),
              ({"per": "channels", "vector": True, "init": 20.0}, (6, 3, 3)), ({"per": "sample", "vector": True}, (2, 3, 4)),
              ({"per": "channels", "batch_dim": True}, (4, 2, 3)), ({}, (9,))],
    "add": [({}, (6, 3, 3)), ({"per": "sample", "batch_dim": True, "std": 0.02}, (7, 16)), ({"per": "last", "init": 0.5}, (4, 6)),
            ({"per": "sample", "std": 1.0, "init": 2.0}, (2, 3, 3))],
    "conv_transpose": [({"out": 4, "k": 2, "stride": 2}, (3, 5, 7)), ({"out": 6, "k": 3, "stride": 2, "padding": 1, "output_padding": 1}, (4, 5, 5)),
                       ({"out": 6, "k": [3, 5], "stride": [1, 2], "padding": [0, 2], "dilation": 2, "groups": 2, "bias": False}, (4, 4, 3)),
                       ({"out": 2, "k": 4, "stride": 3, "output_padding": [2, 0], "groups": 2}, (6, 3, 4)),
                       ({"out": 3, "k": 1, "dilation": 3, "output_padding": 2}, (2, 3, 3))],
    "upsample": [({"scale": 2}, (3, 5, 7)), ({"scale": 1.7, "mode": "bilinear"}, (2, 5, 7)),
                 ({"scale": [0.5, 2.5], "mode": "bicubic", "align_corners": True}, (2, 9, 3)),
                 ({"size": [4, 9], "mode": "bilinear", "align_corners": False}, (2, 5, 5)), ({"size": 3}, (1, 7, 7)),
                 ({"scale": 1.1}, (2, 9, 11)), ({"scale": 0.34}, (1, 3, 6)),
                 ({"scale": [0.29, 1]}, (1, 100, 4))],  # 100 * 0.29 = 28.999999999999996: floor gives 28
    "identity": [({}, (3, 4))],
    "linear": [({"out": 7}, (12,)), ({"out": 3, "bias": False}, (5, 12)), ({"out": 9, "bias_zeroed": [3, 6]}, (4, 5))],
    # tokens [N, D]
    "self_attention": [({"heads": 4}, (10, 32)), ({"heads": 1, "bias": False}, (5, 8)), ({"heads": 3, "dropout": 0.1}, (7, 12)),
                       ({"heads": 12}, (197, 768))],
    "class_token": [({}, (6, 8)), ({"name": "class_token"}, (1, 3))],
    "pos_embedding": [({}, (7, 16)), ({"tokens": 5, "std": 1.0}, (5, 4))],
    "select_token": [({}, (5, 8)), ({"index": -1}, (3, 4)), ({"index": 2}, (3, 4))],
    # attention in parts: [..., N, parts*H*Dh] -> [..., parts, H, N, Dh] -> attend -> merge_heads
    "split_heads": [({"heads": 4, "parts": 3}, (10, 96)), ({"heads": 2}, (3, 5, 8)), ({"heads": 1, "parts": 2}, (4, 6))],
    "merge_heads": [({}, (4, 10, 8)), ({}, (3, 2, 5, 4))],
    "attend": [({}, (3, 4, 10, 8)), ({"scale": 0.3, "scaled": "k"}, (2, 3, 2, 5, 4)), ({"dropout": 0.1}, (3, 2, 6, 4)),
               ({"position_bias": "table", "window": [2, 3]}, (4, 3, 2, 6, 4)),
               ({"position_bias": "table", "window": [3, 3], "index": "square", "shift": [1, 1], "groups": [2, 2]}, (4, 3, 2, 9, 4)),
               ({"cosine": True, "position_bias": "mlp", "window": [2, 2], "mlp": 16}, (3, 2, 4, 4)),
               ({"cosine": True, "shift": [0, 1], "groups": [1, 3], "window": [1, 4]}, (3, 3, 2, 4, 2))],
    "space_to_depth": [({}, (4, 6, 3)), ({"k": 3}, (7, 5, 2)), ({}, (5, 5, 4))],
}
SAMPLES["gelu"].append(({}, (5, 8)))
# layers of several inputs: a list of input shapes (a `like` reference is the last)
SAMPLES.update({
    "merge": [({"op": "sum"}, [(4, 5, 5), (4, 5, 5)]), ({"op": "product"}, [(4, 5, 5), (4, 1, 1)]),
              ({"op": "difference"}, [(4, 1, 6), (4, 3, 1)]), ({"op": "quotient", "eps": 1e-6}, [(3, 4, 4), (3, 1, 1), (1, 4, 4)]),
              ({"op": "mean"}, [(6,), (6,), (6,)]), ({"op": "max"}, [(2, 3, 3), (2, 3, 3)]),
              ({"op": "concat"}, [(2, 3, 3), (5, 3, 3), (1, 3, 3)]), ({"op": "concat", "dim": -1}, [(3, 4), (3, 2)])],
    "reduce": [({"op": "mean", "dims": [1, 2], "keepdim": True}, (4, 5, 6)), ({"op": "norm", "dims": [0, 1], "keepdim": True}, (5, 6, 8)),
               ({"op": "max", "dims": [-1]}, (4, 5)), ({"op": "sum", "dims": [0]}, (3, 4, 4)), ({"op": "norm", "dims": [2], "p": 1.0}, (2, 3, 4))],
    "resize": [({"like": "x"}, [(3, 4, 5), (7, 9, 11)]), ({"like": "x", "mode": "bilinear", "align_corners": False}, [(3, 8, 6), (1, 7, 3)]),
               ({"like": "x", "mode": "bicubic", "align_corners": True}, [(2, 5, 5), (3, 6)])],
    "pad": [({"like": "x"}, [(3, 4, 5), (2, 7, 9)]), ({"like": "x", "align": "start", "value": 1.5}, [(2, 3, 3), (1, 4, 6)])],
    "crop": [({"like": "x"}, [(3, 9, 8), (1, 4, 5)]), ({"like": "x", "align": "start"}, [(2, 7, 7), (2, 6, 7)])],
    "frozen_bn": [({}, (4, 3, 3)), ({"eps": 1e-3}, (2, 5, 5))],
    "normalize": [({}, (6, 3, 3)), ({"p": 1.0, "dim": -1, "eps": 1e-6}, (4, 7)), ({"dim": 1}, (2, 5, 3)), ({}, (9,))],
})
SAMPLES["dropout"].append(({"p": 0.1}, (5, 8)))


def test_every_layer_type_has_samples():
    assert sorted(SAMPLES) == sorted(REGISTRY), "add samples for new layer types"


@contextmanager
def counted_attention():
    """FlopCounterMode sees attention's matmuls only through the math kernel: on the CPU,
    inference takes nn.MultiheadAttention's fused fast path and SDPA's fused CPU kernel,
    which it does not count (on the meta device both are the math path already)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


CASES = [(tag, fields, shape) for tag, samples in SAMPLES.items() if tag in REGISTRY for fields, shape in samples]


@pytest.mark.parametrize("tag,fields,shape", CASES, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(CASES)])
def test_static_rules_match_built_module(tag, fields, shape):
    layer = REGISTRY[tag].model_validate(fields)
    out = layer.infer(shape)
    module = layer.build(shape).eval()
    xs = [torch.randn(2, *s) for s in shape] if isinstance(shape, list) else [torch.randn(2, *shape)]
    with FlopCounterMode(display=False) as counter, torch.no_grad(), counted_attention():
        y = module(*xs)
    assert tuple(y.shape[1:]) == tuple(out)
    assert layer.param_count(shape) == sum(p.numel() for p in module.parameters())
    fixed = layer.fixed_macs(shape, weight_grad=True)[0]   # runs once per batch (a position-bias MLP)
    assert (layer.macs(shape, out) - fixed) * 2 * 2 + fixed * 2 == counter.get_total_flops(), "MACs per sample = FLOPs / 2 / batch"


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
    assert REGISTRY["permute"].model_validate([1, 2, 0]).dims == [1, 2, 0]
    assert REGISTRY["reshape"].model_validate([-1, 4]).shape == [-1, 4]
    assert REGISTRY["groupnorm"].model_validate(32).groups == 32
    assert REGISTRY["channel_shuffle"].model_validate(2).groups == 2
    assert REGISTRY["stochastic_depth"].model_validate(0.1).p == 0.1
    assert REGISTRY["upsample"].model_validate(2).scale == 2.0
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


# -- layers that must equal a reference bit for bit --------------------------------------------
def _build(tag, fields, shape):
    layer = REGISTRY[tag].model_validate(fields)
    return layer, layer.build(shape)


def _randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))
    return module


def test_layernorm_channels_is_torchvisions_layernorm2d():
    from torchvision.models.convnext import LayerNorm2d
    _, ours = _build("layernorm", {"over": "channels", "eps": 1e-6}, (6, 5, 3))
    ref = LayerNorm2d(6, eps=1e-6)
    assert type(ours) is LayerNorm2d and list(ours.state_dict()) == ["weight", "bias"]
    ref.load_state_dict(_randomize(ours).state_dict())
    x = torch.randn(4, 6, 5, 3) * 100
    assert torch.equal(ours(x), ref(x))


def test_layernorm_last_on_channels_last_map():
    _, ours = _build("layernorm", {"eps": 1e-6, "bias": False}, (5, 3, 8))
    ref = torch.nn.LayerNorm(8, eps=1e-6, bias=False)
    ref.load_state_dict(_randomize(ours).state_dict())
    x = torch.randn(2, 5, 3, 8)
    assert torch.equal(ours(x), ref(x))


def test_groupnorm_is_torchs():
    _, ours = _build("groupnorm", {"groups": 3, "eps": 1e-3}, (6, 4, 4))
    ref = torch.nn.GroupNorm(3, 6, eps=1e-3)
    ref.load_state_dict(_randomize(ours).state_dict())
    x = torch.randn(2, 6, 4, 4)
    assert torch.equal(ours(x), ref(x))


@pytest.mark.parametrize("groups,shape", [(2, (6, 3, 5)), (4, (8, 2, 7)), (3, (3, 1, 1))])
def test_channel_shuffle_is_torchvisions_and_compiles_fullgraph(groups, shape):
    from torchvision.models.shufflenetv2 import channel_shuffle
    _, ours = _build("channel_shuffle", {"groups": groups}, shape)
    x = torch.randn(3, *shape)
    assert torch.equal(ours(x), channel_shuffle(x, groups))
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")  # a graph break would raise
    assert torch.equal(compiled(x), channel_shuffle(x, groups))


@pytest.mark.parametrize("p,mode", [(0.3, "row"), (0.5, "batch"), (0.0, "row"), (1.0, "row"), (1.0, "batch")])
def test_stochastic_depth_draws_as_torchvision_in_training(p, mode):
    from torchvision.ops import StochasticDepth
    _, ours = _build("stochastic_depth", {"p": p, "mode": mode}, (3, 4, 4))
    ref = StochasticDepth(p, mode)
    x = torch.randn(16, 3, 4, 4)
    outs = []
    for module in (ours, ref):
        torch.manual_seed(0)
        outs.append([module.train()(x) for _ in range(3)])
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    if 0 < p < 1 and mode == "row":  # really random: some rows dropped, some kept
        kept = outs[0][0].flatten(1).abs().sum(1) > 0
        assert 0 < kept.sum() < len(kept)
    assert ours.eval()(x) is x


def test_ssd_l2_scale_is_torchvisions():
    """normalize then a per-channel scale kept as a vector is SSDFeatureExtractorVGG's
    `scale_weight.view(1, -1, 1, 1) * F.normalize(x)`, bit for bit, with a zero vector (the
    norm's eps) among the positions; the vector is torchvision's [512] of 20."""
    from torchvision.models.detection.ssd import SSDFeatureExtractorVGG
    from torchvision.models import vgg16
    ref = SSDFeatureExtractorVGG(vgg16().features, highres=False)
    layer, scale = _build("scale", {"per": "channels", "vector": True, "init": 20.0}, (512, 5, 4))
    assert layer.param_count((512, 5, 4)) == 512 and torch.equal(scale.weight, ref.scale_weight)
    _, normalize = _build("normalize", {}, (512, 5, 4))
    x = torch.randn(2, 512, 5, 4).relu()
    x[0, :, 1, 2] = 0
    weight = torch.rand(512) * 30
    want = weight.view(1, -1, 1, 1) * torch.nn.functional.normalize(x)
    assert torch.equal(scale.functional(normalize(x), weight), want) and not want.isnan().any()
    with pytest.raises(LayerError, match="vector or batch_dim"):
        REGISTRY["scale"].model_validate({"vector": True, "batch_dim": True}).infer((4, 2, 2))


def test_permute_reshape_flatten_are_torchs():
    x = torch.randn(2, 3, 4, 5)
    _, permute = _build("permute", [1, 2, 0], (3, 4, 5))
    assert torch.equal(permute(x), x.permute(0, 2, 3, 1))  # torchvision's Permute([0, 2, 3, 1])
    _, reshape = _build("reshape", {"shape": [4, -1]}, (3, 4, 5))
    assert torch.equal(reshape(x), x.reshape(2, 4, 15))
    _, back = _build("reshape", {"shape": [3, 4, 5]}, (4, 5, 3))
    assert torch.equal(back(permute(x)), x.permute(0, 2, 3, 1).reshape(2, 3, 4, 5))  # non-contiguous input
    # ViT: [768, 14, 14] -> flatten start 1 -> [768, 196] -> permute [1, 0] -> [196, 768]
    layer, flatten = _build("flatten", {"start": 1}, (768, 14, 14))
    _, tokens = _build("permute", [1, 0], (768, 196))
    v = torch.randn(2, 768, 14, 14)
    assert layer.infer((768, 14, 14)) == (768, 196)
    assert torch.equal(tokens(flatten(v)), v.reshape(2, 768, -1).permute(0, 2, 1))


def test_plain_flatten_builds_the_same_module_as_before():
    _, flatten = _build("flatten", {}, (3, 4, 5))
    assert repr(flatten) == repr(torch.nn.Flatten()) and vars(flatten) == vars(torch.nn.Flatten())


def test_learned_tensors_are_one_bare_weight():
    """`scale`/`add` build one parameter `weight` and a functional(x, weight) the builder
    calls with the parameter it registers on the enclosing module."""
    from torchvision.models.convnext import CNBlock
    layer, scale = _build("scale", {"init": 1e-6}, (8, 5, 5))
    assert layer.bare_parameter and [n for n, _ in scale.named_parameters()] == ["weight"]
    cn = CNBlock(8, layer_scale=1e-6, stochastic_depth_prob=0.0)
    assert torch.equal(scale.weight, cn.layer_scale)  # ConvNeXt's [C, 1, 1] of 1e-6
    x, other = torch.randn(2, 8, 5, 5), torch.randn(8, 1, 1)
    assert torch.equal(scale(x), cn.layer_scale * x)
    assert torch.equal(scale.functional(x, other), x * other)
    layer, add = _build("add", {"per": "sample", "batch_dim": True, "std": 0.02}, (197, 16))
    assert layer.bare_parameter and [n for n, _ in add.named_parameters()] == ["weight"]
    torch.manual_seed(0)
    _, add = _build("add", {"per": "sample", "batch_dim": True, "std": 0.02}, (197, 16))
    torch.manual_seed(0)
    pos_embedding = torch.empty(1, 197, 16).normal_(std=0.02)  # torchvision ViT's Encoder
    assert torch.equal(add.weight, pos_embedding)
    t = torch.randn(3, 197, 16)
    assert torch.equal(add(t), t + pos_embedding)
    assert torch.equal(add.functional(t, torch.zeros(16)), t)
