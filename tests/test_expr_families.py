"""Family rules written as netspec expressions compute exactly what torchvision computes:
_make_divisible (MobileNetV2/V3 widths), EfficientNet b0..b7's compound scaling and
per-block stochastic depth (and V2's explicit widths through the same rule), and RegNet's
width quantisation for all 15 builders. Values come out of netspec's real path (a spec
with those `vars`, loaded and resolved; probe layers read them back) and are compared
with torchvision's own configs and with the modules its builders make (on the meta
device: no memory, no weights). The family bases' `vars:` are tests/families/*.yaml."""
from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import pytest
import ruamel.yaml
import torch
from torch import nn
from torchvision.models import _utils, efficientnet, list_models, mobilenetv2, mobilenetv3, regnet
from torchvision.ops.misc import SqueezeExcitation

import netspec
from netspec.errors import SpecWarning

FAMILIES = Path(__file__).parent / "families"

# torchvision.models._utils._make_divisible(v, d, m) as one netspec expression; pass v parenthesised
MAKE_DIVISIBLE = "max({m}, int({v} + {d} / 2) // {d} * {d}) + ({d} if max({m}, int({v} + {d} / 2) // {d} * {d}) < 0.9 * {v} else 0)"


def make_divisible(v: str, d="8", m=None) -> str:
    return "${" + MAKE_DIVISIBLE.format(v=v, d=d, m=m or d) + "}"


def family(name: str, **member) -> dict:
    """A family base's vars (tests/families/NAME.yaml) with a member's settings in place."""
    base = ruamel.yaml.YAML(typ="safe").load((FAMILIES / f"{name}.yaml").read_text())["vars"]
    assert set(member) <= set(base), set(member) - set(base)
    return {**base, **member}


def resolved(vars_: dict, layers: list) -> dict:
    """Resolve a spec with these vars -> {module name: `out` of a linear probe, `p` of a dropout}."""
    with warnings.catch_warnings():  # a probe reads the values it checks, not every var of the family
        warnings.filterwarnings("ignore", ".*variable '.*' is never used", SpecWarning)
        graph = netspec.resolve({"netspec": 1, "name": "probe", "input": [8], "vars": vars_, "layers": layers})
    return {leaf.name: leaf.layer.out if hasattr(leaf.layer, "out") else leaf.layer.p for leaf in graph.root.children}


def ints(**exprs) -> list:
    """Probe layers reading integer values: linear `out` refuses anything but an int."""
    return [{"linear": {"out": text, "name": name}} for name, text in exprs.items()]


def per_block(prefix: str, n: str, text: str, kind="linear") -> dict:
    """A repeat of n probes named PREFIX_0.. whose value is `text` (it may use $i)."""
    field = "out" if kind == "linear" else "p"
    return {"repeat": n, "body": [{kind: {field: text, "name": prefix + "_${i}"}}]}


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


# -- 1. _make_divisible --------------------------------------------------------------------
@pytest.mark.parametrize("d,m", [(8, None), (8, 16), (16, None), (24, None), (120, None), (168, 336)])
def test_make_divisible_over_many_values(d, m):
    """v = i / 16 for 0 <= i < 3200 (0 .. 200 in sixteenths: the 10% rule acts below 5 * d),
    and d * i / 7 beyond."""
    layers = [per_block("a", 3200, make_divisible("(i / 16)", str(d), m and str(m))),
              per_block("b", 1000, make_divisible(f"({d} * i / 7)", str(d), m and str(m)))]
    got = resolved({}, layers)
    for i in range(3200):
        assert got[f"a_{i}"] == _utils._make_divisible(i / 16, d, m), i / 16
    for i in range(1000):
        assert got[f"b_{i}"] == _utils._make_divisible(d * i / 7, d, m), d * i / 7


WIDTH_MULTS = [0.1, 0.2, 0.25, 0.3, 0.35, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.3, 1.4, 1.5, 1.75, 2.0, 3.0]


@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_mobilenet_v2_widths(width_mult):
    """Every width of torchvision's MobileNetV2(width_mult) from vars: _make_divisible(c * width_mult, 8),
    the last one _make_divisible(1280 * max(1.0, width_mult), 8), a block's hidden width
    int(round(cin * t))."""
    with torch.device("meta"):
        model = mobilenetv2.MobileNetV2(width_mult=width_mult)
    rows = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]  # t, c, n
    vars_ = {"width_mult": width_mult, "c32": make_divisible("(32 * width_mult)"),
             **{f"c{c}": make_divisible(f"({c} * width_mult)") for _, c, _ in rows},
             "last": make_divisible("(1280 * max(1.0, width_mult))")}
    got = resolved(vars_, ints(**{k: f"${k}" for k in vars_ if k != "width_mult"}))
    blocks = list(model.features)
    assert got["c32"] == blocks[0][0].out_channels and got["last"] == model.last_channel == blocks[-1][0].out_channels
    outs = [got[f"c{c}"] for _, c, n in rows for _ in range(n)]
    assert outs == [b.out_channels for b in blocks[1:-1]]
    ts = [t for t, _, n in rows for _ in range(n)]
    hidden = resolved({}, ints(**{f"h{k}": f"${{round({cin} * {t})}}" for k, (cin, t) in enumerate(zip([got["c32"]] + outs, ts))}))
    assert [hidden[f"h{k}"] for k in range(len(ts))] == [convs(b)[-1].in_channels for b in blocks[1:-1]]


@pytest.mark.parametrize("arch", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_mobilenet_v3_widths(arch, width_mult):
    """InvertedResidualConfig.adjust_channels(c, width_mult) for every input, expanded and
    output width and the last channel; the SE squeeze _make_divisible(expanded // 4, 8)."""
    base, base_last = mobilenetv3._mobilenet_v3_conf(arch, width_mult=1.0)
    conf, last = mobilenetv3._mobilenet_v3_conf(arch, width_mult=width_mult)
    widths = sorted({c for b in base for c in (b.input_channels, b.expanded_channels, b.out_channels)} | {base_last})
    vars_ = {"width_mult": width_mult, **{f"c{c}": make_divisible(f"({c} * width_mult)") for c in widths}}
    got = resolved(vars_, ints(**{f"c{c}": f"$c{c}" for c in widths}))
    for b, scaled in zip(base, conf):
        assert [got[f"c{c}"] for c in (b.input_channels, b.expanded_channels, b.out_channels)] == \
            [scaled.input_channels, scaled.expanded_channels, scaled.out_channels]
    assert got[f"c{base_last}"] == last
    squeeze = resolved({}, ints(**{f"s{k}": make_divisible(f"({b.expanded_channels} // 4)") for k, b in enumerate(conf)}))
    assert [squeeze[f"s{k}"] for k in range(len(conf))] == [_utils._make_divisible(b.expanded_channels // 4, 8) for b in conf]


# -- 2. EfficientNet ---------------------------------------------------------------------------
def efficientnet_builds(names: list[str]) -> dict:
    """name -> (the _efficientnet_conf arguments its builder passes, the model built on meta)."""
    out, seen = {}, []
    conf = efficientnet._efficientnet_conf
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(efficientnet, "_efficientnet_conf", lambda arch, **kw: (seen.append(dict(kw)), conf(arch, **kw))[1])
        for name in names:
            with torch.device("meta"):
                model = getattr(efficientnet, name)()
            out[name] = (seen.pop(), model)
    return out


def mbconv_facts(model) -> list[list[dict]]:
    """Per stage, per block: input/expanded/output channels, SE squeeze, stochastic depth p."""
    stages = []
    for stage in list(model.features)[1:-1]:
        blocks = []
        for block in stage:
            cs = convs(block)
            se = [m for m in block.modules() if isinstance(m, SqueezeExcitation)]
            blocks.append({"cin": cs[0].in_channels, "exp": cs[-1].in_channels, "cout": cs[-1].out_channels,
                           "se": se[0].fc1.out_channels if se else None, "p": block.stochastic_depth.p})
        stages.append(blocks)
    return stages


B_SERIES = [f"efficientnet_b{k}" for k in range(8)]


@pytest.fixture(scope="module")
def b_series():
    return efficientnet_builds(B_SERIES)


def efficientnet_probes(n_stages: int, ratios: list[float], width: str = "c") -> list:
    """Stage depths, every channel and stochastic depth p of each block, from the vars."""
    layers = ints(**{f"n{s}": f"$n{s}" for s in range(1, n_stages + 1)},
                  **{f"c{s}": f"${width}{s}" for s in range(n_stages + 1)})
    for s in range(1, n_stages + 1):
        cin = f"({width}{s - 1} if i == 0 else {width}{s})"                # a stage's first block changes width
        layers += [per_block(f"cin{s}", f"$n{s}", f"${{{cin}}}"),
                   per_block(f"exp{s}", f"$n{s}", make_divisible(f"({cin} * {ratios[s - 1]})")),
                   per_block(f"se{s}", f"$n{s}", f"${{max(1, {cin} // 4)}}"),
                   per_block(f"p{s}", f"$n{s}", f"${{stochastic_depth_prob * (first{s} + i) / total}}", "dropout")]
    return layers


def check_efficientnet(got: dict, model, fused: int = 0) -> None:
    stages = mbconv_facts(model)
    assert got["c0"] == model.features[0][0].out_channels
    for s, blocks in enumerate(stages, 1):
        assert got[f"n{s}"] == len(blocks)
        for i, b in enumerate(blocks):
            assert (got[f"cin{s}_{i}"], got[f"exp{s}_{i}"], got[f"c{s}"], got[f"p{s}_{i}"]) == \
                (b["cin"], b["exp"], b["cout"], b["p"]), (s, i)
            assert b["se"] is None if s <= fused else got[f"se{s}_{i}"] == b["se"]


@pytest.mark.parametrize("name", B_SERIES)
def test_efficientnet_b_series(name, b_series):
    """The family base's vars with a member's width_mult/depth_mult give every stage's channels
    and depth, the expanded width, the SE squeeze, the last channel (4 * c7) and each block's
    stochastic depth p (which needs the blocks before it: first{s})."""
    kwargs, model = b_series[name]
    ratios = [1, 6, 6, 6, 6, 6, 6]
    got = resolved(family("efficientnet", **kwargs), efficientnet_probes(7, ratios) + ints(last="$last"))
    check_efficientnet(got, model)
    assert got["last"] == model.features[-1][0].out_channels
    assert sum(got[f"n{s}"] for s in range(1, 8)) == sum(len(st) for st in list(model.features)[1:-1])


@pytest.mark.parametrize("name", ["efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"])
def test_efficientnet_v2_widths_pass_the_rule_unchanged(name):
    """V2's explicit widths and depths go through adjust_channels / adjust_depth with
    width_mult = depth_mult = 1.0 unchanged, with V2's own table in the same vars shape."""
    (_, model), = efficientnet_builds([name]).values()
    conf, last = efficientnet._efficientnet_conf(name)
    table = [conf[0].input_channels] + [c.out_channels for c in conf]
    vars_ = {"width_mult": 1.0, "depth_mult": 1.0, "stochastic_depth_prob": 0.2,
             **{f"c{s}": make_divisible(f"({c} * width_mult)") for s, c in enumerate(table)},
             **{f"n{s}": f"${{ceil({c.num_layers} * depth_mult)}}" for s, c in enumerate(conf, 1)},
             "total": "${" + " + ".join(f"n{s}" for s in range(1, len(conf) + 1)) + "}", "first1": 0,
             **{f"first{s}": f"${{first{s - 1} + n{s - 1}}}" for s in range(2, len(conf) + 1)}}
    got = resolved(vars_, efficientnet_probes(len(conf), [c.expand_ratio for c in conf]))
    assert [got[f"c{s}"] for s in range(len(table))] == table
    fused = sum(isinstance(c, efficientnet.FusedMBConvConfig) for c in conf)
    check_efficientnet(got, model, fused)
    assert model.features[-1][0].out_channels == last == 1280


# -- 3. RegNet ---------------------------------------------------------------------------------
REGNETS = sorted(n for n in list_models() if n.startswith("regnet_"))


@pytest.fixture(scope="module")
def regnets():
    """name -> (its BlockParams.from_init_params arguments, the BlockParams, the model on meta)."""
    assert len(REGNETS) == 15
    out, seen = {}, []
    init, build = regnet.BlockParams.from_init_params, regnet._regnet
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(regnet.BlockParams, "from_init_params", staticmethod(lambda **kw: (seen.append(kw), init(**kw))[1]))
        mp.setattr(regnet, "_regnet", lambda params, weights, progress, **kw: params)
        for name in REGNETS:
            params = getattr(regnet, name)()
            with torch.device("meta"):
                model = build(params, None, False)
            out[name] = (seen.pop(), params, model)
    return out


def regnet_member(kwargs: dict) -> dict:
    member = {k: kwargs[k] for k in ("depth", "w_0", "w_a", "w_m", "group_width")}
    member["se_ratio"] = kwargs.get("se_ratio") or 0
    member["bottleneck_multiplier"] = kwargs.get("bottleneck_multiplier", 1.0)
    return family("regnet", **member)


STAGE_VARS = ("d", "w", "g", "b", "groups")


def stage_values(vars_: dict, se: bool = False) -> dict:
    layers = ints(**{f"{v}{s}": f"${v}{s}" for v in STAGE_VARS for s in range(1, 5)})
    if se:  # squeeze to round(se_ratio * cin): cin is the previous stage's width for a stage's first block
        for s in range(1, 5):
            before = "stem_width" if s == 1 else f"w{s - 1}"
            layers.append(per_block(f"se{s}", f"$d{s}", f"${{round(se_ratio * ({before} if i == 0 else w{s}))}}"))
    return resolved(vars_, layers)


@pytest.mark.parametrize("name", REGNETS)
def test_regnet_builders(name, regnets):
    """Each builder's from_init_params arguments in the family base's vars give torchvision's
    stage depths, widths and group widths (after the compatibility adjustment), and its
    blocks' bottleneck width, conv groups and SE squeeze, as built."""
    kwargs, params, model = regnets[name]
    got = stage_values(regnet_member(kwargs), se=bool(kwargs.get("se_ratio")))
    assert [[got[f"{v}{s}"] for s in range(1, 5)] for v in "dwg"] == [params.depths, params.widths, params.group_widths]
    for s, stage in enumerate(model.trunk_output.children(), 1):
        blocks = list(stage.children())
        assert len(blocks) == got[f"d{s}"]
        for i, block in enumerate(blocks):
            assert (block.f.c[0].out_channels, block.f.a[0].out_channels, block.f.b[0].groups) == \
                (got[f"w{s}"], got[f"b{s}"], got[f"groups{s}"]), (s, i)
            if kwargs.get("se_ratio"):
                assert block.f.se.fc1.out_channels == got[f"se{s}_{i}"], (s, i)


def near_tie(depth, w_0, w_a, w_m, **_) -> bool:
    """Does a rounding of from_init_params fall within float32 error of a tie (x.5)? There
    torchvision's float32 and netspec's float64 may round to different sides."""
    for j in range(depth):
        c = math.log((j * w_a + w_0) / w_0) / math.log(w_m)
        q = w_0 * w_m ** round(c) / 8
        if any(abs(x - math.floor(x) - 0.5) < 1e-5 for x in (c, q)):
            return True
    return False


def test_regnet_design_space():
    """Seeded random settings of the RegNet design space, including bottleneck multipliers
    other than 1 (no builder uses one): every one torchvision splits into 4 stages matches,
    except where float32 and float64 can round a tie differently (counted, few)."""
    r = random.Random(0)
    compared = ties = 0
    while compared < 200:
        kwargs = {"depth": r.randint(8, 32), "w_0": 8 * r.randint(1, 40), "w_a": round(r.uniform(5, 120), 2),
                  "w_m": round(r.uniform(2.0, 3.0), 2), "group_width": r.choice([1, 2, 4, 8, 16, 24, 48, 64, 112, 128]),
                  "bottleneck_multiplier": r.choice([0.25, 0.5, 1.0, 2.0, 4.0])}
        params = regnet.BlockParams.from_init_params(**kwargs)
        if len(params.depths) != 4:
            continue
        if near_tie(**kwargs):
            ties += 1
            continue
        got = stage_values(regnet_member(kwargs))
        assert [[got[f"{v}{s}"] for s in range(1, 5)] for v in "dwg"] == \
            [params.depths, params.widths, params.group_widths], kwargs
        compared += 1
    assert ties <= 10, ties
