"""The spec language's constructs, each proven on a small spec: blocks with defaults and
nesting, repeat with overrides, vars and expressions, residual shortcuts, concat, dense,
gate, names, JSON input, --set and --input."""
from __future__ import annotations

import json

import pytest
import torch

import netspec
from netspec.errors import SpecError


def spec(layers, **extra):
    return {"netspec": 1, "name": "t", "input": extra.pop("input", [4, 8, 8]), "layers": layers, **extra}


def keys(s):
    return list(netspec.build(s).state_dict())


def test_block_arguments_defaults_and_nesting():
    s = spec(["stage"], blocks={
        "unit": {"args": {"c": "required", "k": 3}, "body": [{"conv": {"out": "$c", "k": "$k", "padding": "${k // 2}", "name": "conv"}}, "relu"]},
        "stage": {"args": {"c": 8}, "body": [{"unit": {"c": "$c", "name": "a"}}, {"unit": {"c": "${c * 2}", "k": 1, "name": "b"}}]}})
    a = netspec.analyze(s)
    assert a.output == [16, 8, 8]
    assert keys(s) == ["0.a.conv.weight", "0.a.conv.bias", "0.b.conv.weight", "0.b.conv.bias"]
    assert a.params == (8 * 4 * 9 + 8) + (16 * 8 + 16)


def test_block_scope_is_lexical():
    s = spec([{"repeat": 1, "body": ["b"]}], blocks={"b": {"body": [{"conv": {"out": "$i", "k": 1}}]}})
    with pytest.raises(SpecError, match="undefined variable 'i'"):
        netspec.analyze(s)


def test_repeat_overrides_first_block_strides():
    s = spec([{"repeat": 3, "name": "layer", "body": [{"unit": {"c": 8}}], "overrides": {0: {"stride": 2}, -1: {"c": 4}}}],
             blocks={"unit": {"args": {"c": "required", "stride": 1},
                              "body": [{"conv": {"out": "$c", "k": 3, "stride": "$stride", "padding": 1}}]}})
    a = netspec.analyze(s)
    assert [r.output for r in a.layers] == [[8, 4, 4], [8, 4, 4], [4, 4, 4]]
    assert [r.path for r in a.layers] == ["layer.0", "layer.1", "layer.2"]


def test_repeat_index_and_name_templates():
    s = spec([{"repeat": 3, "body": [{"conv": {"out": "${4 * (i + 1)}", "k": 1, "name": "c${i + 1}"}}]}])
    a = netspec.analyze(s)
    assert [r.path for r in a.layers] == ["c1", "c2", "c3"] and a.output == [12, 8, 8]


def test_unnamed_repeat_inlines_into_parent():
    s = spec([{"conv": {"out": 4, "k": 1}}, {"repeat": 2, "body": [{"conv": {"out": 4, "k": 1}}, "relu"]}, "flatten"])
    assert [r.path for r in netspec.analyze(s).layers] == ["0", "1", "2", "3", "4", "5"]


def test_vars_and_expressions():
    s = spec([{"conv": {"out": "${max(w, 3) * 2 - w // 2 % 3}", "k": "$kernel", "bias": "$b"}}],
             vars={"w": 8, "kernel": [3, 1], "b": False})
    a = netspec.analyze(s)
    assert a.output == [16 - 1, 6, 8] and a.params == 15 * 4 * 3


def test_vars_may_use_earlier_vars():
    s = spec([{"linear": "$out"}], input=[5], vars={"base": 3, "out": "${base * 4}"})
    assert netspec.analyze(s).output == [12]


@pytest.mark.parametrize("shortcut,params", [("auto", 4 * 8 + 16), ("identity", None),
                                             ([{"conv": {"out": 8, "k": 1, "stride": 2}}], 8 * 4 + 8)])
def test_residual_shortcuts(shortcut, params):
    body = [{"conv": {"out": 8, "k": 3, "stride": 2, "padding": 1, "bias": False}}]
    s = spec([{"residual": {"body": body, "shortcut": shortcut, "post": "relu"}}])
    if params is None:
        with pytest.raises(SpecError, match="cannot be added to the identity shortcut"):
            netspec.analyze(s)
        return
    a = netspec.analyze(s)
    assert a.output == [8, 4, 4] and a.params == 8 * 4 * 9 + params
    m = netspec.build(a)
    assert m(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)


def test_auto_shortcut_is_identity_when_shape_kept():
    s = spec([{"residual": {"body": [{"conv": {"out": 4, "k": 3, "padding": 1}}]}}])
    m = netspec.build(s)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(m(x), m[0].get_submodule("0")(x) + x)


def test_concat_branches_named():
    s = spec([{"concat": {"branches": {"b1": [{"conv": {"out": 2, "k": 1}}],
                                       "b2": [{"conv": {"out": 3, "k": 1}}, {"conv": {"out": 5, "k": 3, "padding": 1}}],
                                       "b3": [{"maxpool": {"k": 3, "stride": 1, "padding": 1}}]}}}])
    a = netspec.analyze(s)
    assert a.output == [2 + 5 + 4, 8, 8]
    assert keys(s) == ["0.b1.weight", "0.b1.bias", "0.b2.0.weight", "0.b2.0.bias", "0.b2.1.weight", "0.b2.1.bias"]


def test_dense_connectivity():
    s = spec([{"dense": {"repeat": 3, "body": [{"conv": {"out": 2, "k": 3, "padding": 1, "name": "denselayer${i + 1}"}}]}}])
    a = netspec.analyze(s)
    assert a.output == [4 + 3 * 2, 8, 8]
    assert [r.input[0] for r in a.layers] == [4, 6, 8]
    assert netspec.build(a)(torch.randn(1, 4, 8, 8)).shape == (1, 10, 8, 8)
    assert keys(s)[0] == "0.denselayer1.weight"


def test_gate_multiplies_input():
    s = spec([{"gate": {"body": [{"avgpool": "global"}, {"conv": {"out": 4, "k": 1}}, "sigmoid"]}}])
    m = netspec.build(s)
    assert m(torch.randn(2, 4, 8, 8)).shape == (2, 4, 8, 8)


def test_sequence_nests_and_names():
    s = spec([{"sequence": {"name": "features", "body": [{"conv": {"out": 4, "k": 1}}, "relu"]}}, "flatten",
              {"sequence": {"name": "classifier", "body": ["dropout", {"linear": 3}]}}])
    assert keys(s) == ["features.0.weight", "features.0.bias", "classifier.1.weight", "classifier.1.bias"]


def test_bn_rank_selects_1d_or_2d():
    m = netspec.build(spec(["bn", "flatten", "bn"]))
    assert type(m[0]).__name__ == "BatchNorm2d" and type(m[2]).__name__ == "BatchNorm1d"


def test_json_spec_equals_yaml(tmp_path):
    data = spec([{"conv": {"out": 4, "k": 3}}, "relu"])
    (tmp_path / "s.json").write_text(json.dumps(data))
    import ruamel.yaml
    with open(tmp_path / "s.yaml", "w") as f:
        ruamel.yaml.YAML().dump(data, f)
    assert netspec.analyze(tmp_path / "s.json").as_dict() == netspec.analyze(tmp_path / "s.yaml").as_dict()


def test_set_overrides_and_input(cli, write):
    path = write("netspec: 1\nname: t\ninput: [3, 8, 8]\nvars: {c: 4}\nlayers:\n  - conv: {out: $c, k: 3}\n")
    run = cli("compile", path, "--json", "--set", "vars.c=6", "--input", "3,16,16")
    assert run.code == 0
    report = json.loads(run.out)
    assert report["output"] == [6, 14, 14] and report["input"] == [3, 16, 16]
    assert set(report) == {"file", "name", "input", "output", "params", "trainable_params", "buffers", "buffer_bytes",
                           "macs", "layers", "modules", "auto_projections"}
    assert set(report["layers"][0]) == {"path", "type", "output", "params", "macs"}
    bad = cli("compile", path, "--set", "vars.c=zero")
    assert bad.code == 2 and "'zero'" in bad.err


def test_resolve_prints_plain_graph(cli):
    from conftest import ROOT
    run = cli("resolve", ROOT / "specs" / "resnext50.yaml")
    assert run.code == 0
    assert "conv2: conv(out=128, k=3, padding=1, groups=32, bias=False)" in run.out
    assert "$" not in run.out


def test_table_shows_every_layer_and_totals(cli):
    from conftest import ROOT
    run = cli("compile", ROOT / "specs" / "shallow_cnn.yaml")
    assert run.code == 0
    for text in ("conv1", "fc3", "62,006", "[10]"):
        assert text in run.out


def test_reserved_and_bad_names():
    with pytest.raises(SpecError, match="torch.nn.Module attribute"):
        netspec.analyze(spec([{"conv": {"out": 4, "k": 1, "name": "forward"}}]))
    with pytest.raises(SpecError, match="part '' is empty"):
        netspec.analyze(spec([{"conv": {"out": 4, "k": 1, "name": "a..b"}}]))
    with pytest.raises(SpecError, match="'a.forward': part 'forward' is a torch.nn.Module attribute"):
        netspec.analyze(spec([{"conv": {"out": 4, "k": 1, "name": "a.forward"}}]))


def test_dotted_names_make_containers():
    """`inner_blocks.0.0` registers the conv in containers made on the way (a reference's
    ModuleLists); a module and a container of one name clash."""
    a = netspec.analyze(spec([{"conv": {"out": 4, "k": 1, "name": "inner.0.0"}}, {"conv": {"out": 4, "k": 1, "name": "inner.1.0"}}]))
    assert [r.path for r in a.layers] == ["inner.0.0", "inner.1.0"]
    model = netspec.build(a)
    assert list(model.state_dict()) == ["inner.0.0.weight", "inner.0.0.bias", "inner.1.0.weight", "inner.1.0.bias"]
    with pytest.raises(SpecError, match="two modules named 'inner' in one module"):
        netspec.analyze(spec([{"conv": {"out": 4, "k": 1, "name": "inner.0"}}, {"conv": {"out": 4, "k": 1, "name": "inner"}}]))


def test_yaml_anchors_and_merge_keys(write):
    """`<<: *anchor` merges a mapping under explicit keys, wherever they are written."""
    path = write("netspec: 1\nname: t\ninput: [3, 8, 8]\nlayers:\n"
                 "  - conv: &c3 {out: 8, k: 3, padding: 1}\n"
                 "  - conv: {<<: *c3, out: 16, name: wide}\n")
    a = netspec.analyze(path)
    assert a.output == [16, 8, 8]
    assert a.params == (8 * 3 * 9 + 8) + (16 * 8 * 9 + 16)


@pytest.mark.parametrize("bn, expected", [(1, ["0:conv", "1:bn", "2:relu"]), (True, ["0:conv", "1:bn", "2:relu"]),
                                          (0, ["0:conv", "1:identity", "2:relu"]), (False, ["0:conv", "1:identity", "2:relu"])])
def test_when_inlines_body_or_else(bn, expected):
    s = spec([{"conv": {"out": 8, "k": 3}}, {"when": "$bn", "body": ["bn"], "else": ["identity"]}, "relu"], vars={"bn": bn})
    assert [f"{r.path}:{r.type}" for r in netspec.analyze(s).layers] == expected


def test_when_without_else_leaves_nothing_and_positions_follow():
    """vgg11 vs vgg11_bn: the ReLU is features.1 without BN and features.2 with it."""
    s = spec([{"conv": {"out": 8, "k": 3}}, {"when": "${bn}", "body": ["bn"]}, {"relu": None}], vars={"bn": 0})
    assert [r.path for r in netspec.analyze(s).layers] == ["0", "1"]


@pytest.mark.parametrize("value, words", [(2, "Input should be a valid boolean or 0 or 1, got 2"),
                                          ("$two", "when needs true/false or 1/0, got 2")])
def test_when_refuses_other_values(value, words):
    with pytest.raises(SpecError, match=words):
        netspec.analyze(spec([{"when": value, "body": ["bn"]}], vars={"two": 2}))



def test_a_dotted_name_inside_a_plain_chain_runs():
    """A chain whose child has a dotted name is no nn.Sequential (it would call the container)."""
    import torch
    s = spec([{"sequence": {"name": "body", "body": [{"conv": {"out": 4, "k": 1, "name": "a.b"}}, "relu"]}}])
    model = netspec.build(s)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(model(x), torch.relu(model.body.a.b(x)))
