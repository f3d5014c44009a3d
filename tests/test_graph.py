"""The `graph` construct: named nodes wired by reference, several inputs and outputs, merges,
sizes taken *like* another tensor, dotted module names and registration order — what each
does at run time (against the same computation written in torch), and every way of getting
a reference wrong as one located line."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import netspec
from netspec.errors import SpecError, SpecWarning

FPN = """\
netspec: 1
name: tiny-fpn
input: [3, 32, 32]
graph:
  nodes:
    body:
      body:
        - conv: {out: 8, k: 3, padding: 1, name: stem}
        - relu
        - conv: {out: 16, k: 3, stride: 2, padding: 1, name: c2}
        - relu: {name: r2}
        - conv: {out: 32, k: 3, stride: 2, padding: 1, name: c3}
        - relu: {name: r3}
    lat2: {from: body.r2, conv: {out: 8, k: 1, name: inner_blocks.0.0}}
    lat3: {from: body, conv: {out: 8, k: 1, name: inner_blocks.1.0}}
    p3: {conv: {out: 8, k: 3, padding: 1, name: layer_blocks.1.0}}
    up3: {from: lat3, resize: {like: lat2}}
    m2: {from: [lat2, up3], merge: sum}
    p2: {conv: {out: 8, k: 3, padding: 1, name: layer_blocks.0.0}}
    pool: {from: p3, maxpool: {k: 1, stride: 2}}
  outputs: {"0": p2, "1": p3, pool: pool}
  order: [body, lat2, lat3, p2]
expect:
  output: {"0": [8, 16, 16], "1": [8, 8, 8], pool: [8, 4, 4]}
"""


def get(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def seeded(spec, **kw):
    torch.manual_seed(0)
    return netspec.build(spec, **kw).eval()


def test_fpn_runs_what_its_nodes_say_at_any_size(write):
    path = write(FPN)
    model = seeded(path)
    for h, w in ((32, 32), (45, 29)):   # sizes come from the tensors at run time
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            out = model(x)
            b = model.body
            r2 = b.r2(b.c2(b[1](b.stem(x))))
            r3 = b.r3(b.c3(r2.clone()))
            lat2, lat3 = get(model, "inner_blocks.0.0")(r2), get(model, "inner_blocks.1.0")(r3)
            p3 = get(model, "layer_blocks.1.0")(lat3)
            p2 = get(model, "layer_blocks.0.0")(lat2 + F.interpolate(lat3, size=lat2.shape[-2:]))
        assert list(out) == ["0", "1", "pool"]
        assert torch.equal(out["0"], p2) and torch.equal(out["1"], p3)
        assert torch.equal(out["pool"], F.max_pool2d(p3, 1, 2))


def test_order_and_dotted_names_give_the_keys_in_registration_order(write):
    """FPN registers every inner block before any layer block; the nodes run in another order."""
    model = seeded(write(FPN))
    keys = [k for k in model.state_dict() if not k.startswith("body.")]
    assert keys == [f"{g}.{i}.0.{p}" for g in ("inner_blocks", "layer_blocks") for i in (0, 1) for p in ("weight", "bias")]
    a = netspec.analyze(write(FPN))
    assert a.output == {"0": [8, 16, 16], "1": [8, 8, 8], "pool": [8, 4, 4]}


def test_a_graph_without_from_is_the_chain(write):
    chain = "netspec: 1\nname: c\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, k: 3}\n  - relu\n  - flatten\n  - linear: 5\n"
    graph = ("netspec: 1\nname: c\ninput: [3, 8, 8]\ngraph:\n  keys: index\n  nodes:\n    c: {conv: {out: 4, k: 3}}\n"
             "    r: relu\n    f: flatten\n    l: {linear: 5}\n")
    a, b = seeded(write(chain, "a.yaml")), seeded(write(graph, "b.yaml"))
    assert list(a.state_dict()) == list(b.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(a(x), b(x))


BLOCKS = """\
netspec: 1
name: heads
input: [3, 16, 16]
vars: {aux: false, widths: 6}
blocks:
  head:
    args: {c: required}
    inputs: [low, high]
    outputs: {out: sum, gate: g}
    graph:
      nodes:
        l: {from: low, conv: {out: $c, k: 1}}
        h: {from: high, conv: {out: $c, k: 1}}
        up: {from: h, resize: {like: l, mode: bilinear, align_corners: false}}
        g: {from: h, body: [adaptive_avgpool: 1, sigmoid]}
        sum: {from: [l, up], merge: sum}
graph:
  nodes:
    stem: {conv: {out: 4, k: 3, padding: 1}}
    down: {conv: {out: 8, k: 3, stride: 2, padding: 1}}
    head: {from: {high: down, low: stem}, head: {c: $widths}}
    gated: {from: [head.out, head.gate], merge: product}
    aux: {when: $aux, from: down, conv: {out: 2, k: 1}}
  outputs: {out: gated, aux: aux}
"""


def test_block_inputs_by_name_and_record_fields(write):
    path = write(BLOCKS)
    model = seeded(path)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        stem = model.stem(x)
        down = model.down(stem)
        l, h = model.head.l(stem), model.head.h(down)
        s = l + F.interpolate(h, size=l.shape[-2:], mode="bilinear", align_corners=False)
        g = torch.sigmoid(F.adaptive_avg_pool2d(h, 1))
    assert list(out) == ["out"]           # aux is left out, and so is its output
    assert torch.equal(out["out"], s * g)
    a = netspec.analyze(path, overrides=["vars.aux=true"])
    assert a.output == {"out": [6, 16, 16], "aux": [2, 8, 8]}


def test_inputs_by_position_and_a_list_output(write):
    text = BLOCKS.replace("from: {high: down, low: stem}", "from: [stem, down]").replace(
        "outputs: {out: gated, aux: aux}", "outputs: [gated, head.gate]")
    a = netspec.analyze(write(text))
    assert a.output == [[6, 16, 16], [6, 1, 1]]
    out = seeded(a)(torch.randn(1, 3, 16, 16))
    assert isinstance(out, list) and [tuple(t.shape[1:]) for t in out] == [(6, 16, 16), (6, 1, 1)]


def test_taps_read_nested_children_and_are_never_overwritten_in_place(write):
    """body.stage.r reads the ReLU inside a named repeat; the ReLU after it must not run in place
    on what another node still reads."""
    text = """\
netspec: 1
name: taps
input: [3, 8, 8]
graph:
  nodes:
    body:
      body:
        - conv: {out: 4, k: 3, padding: 1}
        - {repeat: 1, name: stage, body: [conv: {out: 4, k: 1}, relu: {name: r}]}
        - relu: {name: after}
        - conv: {out: 4, k: 1}
    skip: {from: body.stage.0.r, identity}
    out: {from: [body, skip], merge: sum}
"""
    a = netspec.analyze(write(text))
    model = seeded(a)
    ref = seeded(a, inplace=False)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        stage = model.body.stage(model.body[0](x))
        assert torch.equal(model(x), model.body[3](model.body.after(stage.clone())) + stage)
    inplace = {m.path for m in a.tree_leaves() if m.inplace}
    assert "body.after" not in inplace


@pytest.mark.parametrize("body,message", [
    ("    a: {conv: {out: 4, k: 1}}\n    b: {from: c, relu}\n    c: relu\n",
     "nodes.b.from: 'c' is defined below 'b' (line 8)"),
    ("    a: {conv: {out: 4, k: 1}}\n    b: {from: aa, relu}\n",
     "nodes.b.from: unknown reference 'aa' (did you mean 'a'?); names above: input, a"),
    ("    a: {when: false, conv: {out: 4, k: 1}}\n    b: {from: a, relu}\n",
     "nodes.b.from: 'a' is left out by its when: (line 6)"),
    ("    a: {conv: {out: 4, k: 1}}\n    b: {from: a.x, relu}\n",
     "'a' is a tensor [4, 8, 8], not a record: it has no field 'x'"),
    ("    a: {conv: {out: 4, k: 1}}\n    b: {from: [a, input], merge: sum}\n",
     "merge sum needs equal shapes (or size 1 on one side, to broadcast): input 1 is [4, 8, 8], input 2 is [3, 8, 8]; "
     "inputs are a [4, 8, 8], input [3, 8, 8]"),
    ("    a: {conv: {out: 3, k: 2}}\n    b: {from: [a, input], merge: sum}\n",
     "align the sizes with resize, pad or crop `like:` one of them"),
    ("    a: {from: [input, input], relu}\n", "relu takes one tensor, got 2"),
    ("    a: {merge: sum}\n", "merge takes 2 or more inputs (from: [a, b, ...]), got 1"),
    ("    a: {conv: {out: 4, k: 1}}\n    b: {from: a.stage.r, relu}\n", "'a' is a tensor [4, 8, 8], not a record: it has no field 'stage'"),
    ("    input: relu\n", "node id 'input' is taken by the graph input"),
    ("    a.b: relu\n", "node name 'a.b' must be a name"),
    ("    a: {from: [], relu}\n", "from: [] reads nothing"),
    ("    a: relu\n  order: [b]\n", "order names no node 'b'"),
    ("    a: {when: yes, relu}\n", "when takes true/false, 1/0 or a $variable"),
    ("    a: {else: [relu], relu}\n", "put a `when:` item (with else) in its body"),
    ("    a: {from: input}\n", "the node has no item"),
    ("    a: {conv: {out: 4, k: 1, kernel: 3}}\n", "nodes.a.conv.kernel: unknown field 'kernel'"),
])
def test_a_bad_reference_is_one_located_line(cli, write, body, message):
    path = write(f"netspec: 1\nname: bad\ninput: [3, 8, 8]\ngraph:\n  nodes:\n{body}")
    run = cli("check", path)
    assert run.code == 2, run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:") and message in lines[0], run.err


def test_a_record_used_as_a_tensor_names_its_fields(write):
    text = BLOCKS.replace("gated: {from: [head.out, head.gate], merge: product}", "gated: {from: head, relu}")
    with pytest.raises(SpecError, match=r"relu takes a tensor, got a record \{out: \[6, 16, 16\], gate: \[6, 1, 1\]\}; "
                                        r"read one of its fields \(from: head.out\)"):
        netspec.analyze(write(text))


def test_a_node_that_reaches_no_output_is_a_warning(write):
    path = write("netspec: 1\nname: w\ninput: [3, 8, 8]\ngraph:\n  nodes:\n    a: relu\n    b: {from: input, sigmoid}\n"
                 "  outputs: b\n")
    with pytest.warns(SpecWarning, match=r"nodes\.a: node 'a' reaches no output"):
        netspec.analyze(path)


def test_expect_output_takes_the_record(cli, write):
    path = write(FPN)
    assert cli("compile", path, "--check-params").code == 0
    wrong = write(FPN.replace('pool: [8, 4, 4]}', 'pool: [8, 4, 5]}'), "wrong.yaml")
    run = cli("compile", wrong, "--check-params")
    assert run.code == 1 and 'pool: [8, 4, 5]}, got {0: [8, 16, 16], 1: [8, 8, 8], pool: [8, 4, 4]}' in run.err


def test_the_table_shows_what_each_node_reads(cli, write):
    run = cli("compile", write(FPN), "--columns", "from,output")
    assert run.code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in run.out.splitlines() if line.startswith("│")}
    assert rows["inner_blocks.0.0"] == "lat2 <- body.r2" and rows["m2"] == "[lat2, up3]" and rows["up3"] == "lat3 (like lat2)"


def test_vars_stand_for_list_elements(write):
    path = write("netspec: 1\nname: v\ninput: [3, 8, 8]\nvars: {c: 12}\nlayers:\n  - reshape: [$c, -1]\n"
                 "  - reshape: {shape: [\"${c // 2}\", 2, 16]}\n")
    assert netspec.analyze(path).output == [6, 2, 16]


def test_compiles_without_graph_breaks(write):
    model = seeded(write(BLOCKS))
    x = torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    assert torch.equal(compiled(x)["out"], model(x)["out"])


def test_a_size_mismatch_names_the_input_sizes_that_work(cli, write):
    """A U-Net-like join at an odd input: the error says which sizes work."""
    path = write("netspec: 1\nname: u\ninput: [3, 37, 37]\ngraph:\n  nodes:\n    e1: {conv: {out: 4, k: 3, padding: 1}}\n"
                 "    d1: {maxpool: 2}\n    e2: {conv: {out: 4, k: 3, padding: 1}}\n    d2: {maxpool: 2}\n"
                 "    u2: {conv_transpose: {out: 4, k: 2, stride: 2}}\n    j2: {from: [u2, e2], merge: concat}\n"
                 "    u1: {conv_transpose: {out: 4, k: 2, stride: 2}}\n    j1: {from: [u1, e1], merge: concat}\n")
    run = cli("check", path)
    assert run.code == 2 and "(H and W must be multiples of 4: 36 or 40, e.g. --input 3,36,36)" in run.err, run.err
    assert cli("check", path, "--set", "input=[3,40,40]").code == 0


def test_the_editor_schema_knows_graph_nodes(write):
    import jsonschema
    from ruamel.yaml import YAML

    from netspec.document.schema import json_schema
    validator = jsonschema.Draft202012Validator(json_schema())
    for text in (FPN, BLOCKS):
        assert not list(validator.iter_errors(YAML(typ="safe").load(text)))
    for wrong in ("lat2: {from: body.r2, conv: {out: 8, k: 1, kernel: 3, name: inner_blocks.0.0}}",
                  "lat2: {form: body.r2, conv: {out: 8, k: 1, name: inner_blocks.0.0}}"):
        doc = YAML(typ="safe").load(FPN.replace("lat2: {from: body.r2, conv: {out: 8, k: 1, name: inner_blocks.0.0}}", wrong))
        assert list(validator.iter_errors(doc)), wrong


def test_diff_shows_a_rewired_node_as_changed(cli, write):
    base = write(FPN, "fpn.yaml")
    other = write("extends: fpn.yaml\nname: other\npatch:\n  - set: {graph.nodes.lat2.from: body.c2}\n", "other.yaml")
    run = cli("diff", base, other)
    assert run.code == 0 and "~ inner_blocks.0.0  conv  from: body.r2 -> body.c2" in run.out, run.out
    assert "modules: 1 changed " in run.out   # one change, not a node removed and another added


@pytest.mark.parametrize("path", ["graph.nodes.lat2.conv.out=16", "graph.nodes.p2.from=lat2"])
def test_set_reaches_graph_nodes(cli, write, path):
    run = cli("compile", write(FPN), "--set", path, "--columns", "from,output")
    rows = {line.split("│")[1].strip(): line.split("│")[3:5] for line in run.out.splitlines() if line.startswith("│")}
    if path.endswith("out=16"):   # lat2 wider: the merge with up3 refuses, naming both
        assert run.code == 2 and "inputs are lat2 [16, 16, 16], up3 [8, 16, 16]" in run.err
    else:
        assert run.code == 0 and rows["layer_blocks.0.0"][0].strip() == "p2 <- lat2"


@pytest.mark.parametrize("path,message", [
    ("graph.nodes.lat9.conv.out=16", "graph.nodes has no node 'lat9' (did you mean 'lat3'?) (nodes: body, lat2, lat3"),
    ("layers.c2.out=32", "the spec has no layers: its network is graph:"),
])
def test_a_set_never_makes_up_a_node(cli, write, path, message):
    run = cli("compile", write(FPN), "--set", path)
    assert run.code == 2 and run.err.strip() == f"--set {path}: error: {message}" + run.err.strip().split(message, 1)[1]


def test_draw_shows_the_wiring(write):
    """Nodes one under another; each read other than the node above is a skip edge into the
    node's box; several outputs meet in a bar naming them."""
    from netspec.draw import layout
    lay = layout(netspec.analyze(write(FPN)))
    labels = [b.lines[0] for b in lay.boxes]
    assert "lat2: conv 1×1" in labels and "m2: merge sum" in labels and "up3: resize like lat2" in labels
    assert "outputs: 0, 1, pool" in labels
    skips = [e for e in lay.edges if e.kind == "skip"]
    # lat2 <- body.r2, lat3 <- body, up3 like lat2, m2 <- lat2, p3 <- lat3, pool <- p3, and the 3 outputs
    assert len(skips) == 9
    r2 = next(b for b in lay.boxes if b.path == "body.r2")
    assert any(e.points[0] == pytest.approx((r2.x + r2.w, r2.y + r2.h / 2)) for e in skips)   # the tap leaves the child's box


@pytest.mark.parametrize("suffix", ["onnx", "pt2"])
def test_export_keeps_the_record_names_and_verifies_each_output(cli, write, tmp_path, suffix):
    path = write(FPN)
    target = tmp_path / f"fpn.{suffix}"
    run = cli("export", path, "-o", target, *(["--dynamic-batch"] if suffix == "onnx" else []))
    assert run.code == 0, run.err
    for name in ("0", "1", "pool"):
        assert f"batch 1 output {name}: max abs diff" in run.out
    if suffix == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["0", "1", "pool"]
        assert [o.shape[1:] for o in session.get_outputs()] == [[8, 16, 16], [8, 8, 8], [8, 4, 4]]


GRN = """\
netspec: 1
name: grn
input: [6, 5, 4]   # [H, W, C], channels last as ConvNeXt-V2's blocks hold it
graph:
  nodes:
    gx: {reduce: {op: norm, dims: [0, 1], keepdim: true}}
    mean: {reduce: {op: mean, dims: [2], keepdim: true}}
    nx: {from: [gx, mean], merge: {op: quotient, eps: 1.0e-6}}
    xn: {from: [input, nx], merge: product}
    gamma: {scale: {per: last, init: 0, name: gamma}}
    beta: {add: {per: last, name: beta}}
    out: {from: [beta, input], merge: sum}
"""


def test_convnext_v2_grn_is_written_with_merges_and_reductions(write):
    """ConvNeXt-V2's GRN (Woo et al. 2023, their code): gamma * (x * Nx) + beta + x with
    Nx = ||x||_HW / (mean_C ||x||_HW + 1e-6), bit for bit."""
    model = seeded(write(GRN))
    gamma, beta = torch.randn(4), torch.randn(4)
    with torch.no_grad():
        model.gamma.copy_(gamma), model.beta.copy_(beta)   # bare parameters, as ConvNeXt-V2 registers them
    x = torch.randn(2, 6, 5, 4)
    gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    want = gamma.view(1, 1, 1, 4) * (x * nx) + beta.view(1, 1, 1, 4) + x
    with torch.no_grad():
        assert torch.equal(model(x), want)
    assert netspec.analyze(write(GRN)).params == 8


POOLFORMER = """\
netspec: 1
name: poolformer_mixer
input: [4, 7, 9]
graph:
  nodes:
    pool: {avgpool: {k: 3, stride: 1, padding: 1, count_include_pad: COUNT}}
    mixed: {from: [pool, input], merge: difference}
"""


def test_poolformer_token_mixer_is_pool_minus_input(write):
    """PoolFormer's Pooling (Yu et al. 2022): AvgPool2d(3, 1, 1, count_include_pad=False)(x) - x, at
    two sizes; counting the padding (a different border average) is caught."""
    good, counted = seeded(write(POOLFORMER.replace("COUNT", "false"))), seeded(write(POOLFORMER.replace("COUNT", "true")))
    for h, w in ((7, 9), (12, 5)):
        x = torch.randn(2, 4, h, w)
        want = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) - x
        with torch.no_grad():
            assert torch.equal(good(x), want)
            assert not torch.allclose(counted(x), want)


def test_references_and_output_keys_take_expressions(cli, write):
    """`from: c${lvl}` in a block's graph, called once per level, and `outputs: {"p${lvl}": ...}`:
    the wiring follows the arguments; an undefined variable and two equal keys are located errors."""
    spec = write("""\
netspec: 1
name: levels
input: [3, 8, 8]
blocks:
  head:
    args: {lvl: required}
    graph:
      nodes:
        c1: {conv: {out: 4, k: 1}}
        c2: {from: input, conv: {out: 5, k: 1}}
        o: {from: "c${lvl}", relu: null}
      outputs: {"p${lvl}": o}
layers:
  - head: {lvl: 2}
""")
    with pytest.warns(SpecWarning, match="'c1' reaches no output"):
        a = netspec.analyze(spec)
    assert {k: list(v) for k, v in a.output.items()} == {"p2": [5, 8, 8]} and a.params == 16 + 20
    bad = write("netspec: 1\nname: t\ninput: [3, 8, 8]\ngraph:\n  nodes:\n    a: {conv: {out: 3, k: 1}}\n"
                "    b: {from: \"a${zz}\", relu: null}\n", "bad.yaml")
    run = cli("check", bad)
    assert run.code == 2 and "bad.yaml:7:15: error: graph.nodes.b.from: undefined variable 'zz'" in run.err
    twice = write("netspec: 1\nname: t\ninput: [3, 8, 8]\nvars: {k: p3}\ngraph:\n  nodes:\n    a: {conv: {out: 3, k: 1}}\n"
                  "  outputs: {\"${k}\": a, p3: a}\n", "twice.yaml")
    run = cli("check", twice)
    assert run.code == 2 and "two outputs are named 'p3'" in run.err


def test_a_chain_read_at_a_child_stops_there_and_its_tail_costs_nothing(write):
    """`from: body.b` of a chain a, b, c whose own output nobody reads: c never runs, so it costs
    no MACs and is marked as not running, while its parameters are kept (weights load)."""
    spec = write("""\
netspec: 1
name: tail
input: [3, 8, 8]
graph:
  nodes:
    body:
      body:
        - conv: {out: 4, k: 1, name: a}
        - conv: {out: 4, k: 1, name: b}
        - conv: {out: 4, k: 1, name: c}
    head: {from: body.b, relu: null}
""")
    a = netspec.analyze(spec)
    rows = {r.path: r for r in a.layers}
    assert (rows["body.c"].macs, rows["body.c"].runs) == (0, False) and rows["body.c"].params == 20
    assert rows["body.b"].runs and rows["body.b"].macs == 4 * 4 * 64
    assert a.macs == rows["body.a"].macs + rows["body.b"].macs
    model = seeded(spec)
    ran = []
    for name in ("a", "b", "c"):
        get(model, f"body.{name}").register_forward_hook(lambda *_, name=name: ran.append(name))
    model(torch.randn(1, 3, 8, 8))
    assert ran == ["a", "b"]
