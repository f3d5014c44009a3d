"""`netspec compile`'s table and --json as a user shapes them: container rows, --depth,
--columns, frozen marks, --memory (defaults from the spec's train: section), and `check`
verifying `expect:` without torch."""
from __future__ import annotations

import json

import netspec
from conftest import ROOT
from netspec.autograd import training_step

SPECS = ROOT / "specs"
HEAD = "netspec: 1\nname: t\ninput: [3, 8, 8]\n"


def table_rows(out: str) -> list[list[str]]:
    """The body rows of a printed table, as stripped cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┡")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("├"))
    return [[c.strip() for c in line.strip("│").split("│")] for line in lines[start:end]]


def test_containers_have_rows_with_their_output_and_subtotals(cli):
    run = cli("compile", SPECS / "googlenet.yaml")
    rows = {r[0]: r for r in table_rows(run.out)}
    a = netspec.analyze(SPECS / "googlenet.yaml")
    inception = next(m for m in a.tree.children if m.path == "inception3a")
    assert rows["inception3a"][1].startswith("concat") and rows["inception3a"][3] == "[256, 28, 28]"
    assert rows["inception3a"][4] == f"{inception.params:,}"
    leaves = [r for p, r in rows.items() if p.startswith("inception3a.") and r[1] == "conv"]
    assert leaves and all(r[3].startswith("[") for r in leaves)


def test_depth_folds_deeper_modules_into_their_row(cli):
    run = cli("compile", SPECS / "resnet18.yaml", "--depth", "1")
    rows = table_rows(run.out)
    paths = [r[0] for r in rows]
    assert paths == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "9", "fc"]
    layer1 = rows[paths.index("layer1")]
    a = netspec.analyze(SPECS / "resnet18.yaml")
    assert layer1[1] == "sequence …"   # folded: its modules are in this row
    assert layer1[4] == f"{sum(r.params for r in a.layers if r.path.startswith('layer1.')):,}"
    assert sum(int(r[4].replace(",", "")) for r in rows if r[4] != "-") == a.params


def test_columns_are_chosen_by_name(cli):
    run = cli("compile", SPECS / "lenet.yaml", "--columns", "input,trainable")
    header = [c.strip() for c in run.out.splitlines()[2].strip("┃").split("┃")]
    assert header == ["path", "type", "input", "trainable"]
    assert table_rows(run.out)[1] == ["conv.0", "conv", "[1, 28, 28]", "156"]
    run = cli("compile", SPECS / "lenet.yaml", "--columns", "input,flops")
    assert run.code == 2 and run.err.startswith("--columns: error: unknown column 'flops' (columns: from, input, settings, output")


def test_frozen_rows_are_marked(write, cli):
    path = write(HEAD + "layers:\n  - conv: {out: 4, k: 3, frozen: true}\n  - conv: {out: 4, k: 3}\n")
    rows = table_rows(cli("compile", path).out)
    assert rows[0][4] == "112 frozen" and rows[1][4] == "148"
    assert "frozen=True" in rows[0][2]   # the settings column


def test_memory_defaults_come_from_the_train_section(write, cli):
    path = write(HEAD + "layers:\n  - conv: {out: 4, k: 3}\n  - relu\n"
                 "train:\n  batch_size: 32\n  precision: bf16\n  optimizer: {name: adamw, lr: 0.001}\n")
    run = cli("compile", path, "--memory")
    a = netspec.analyze(path)
    m = training_step(a, 32, "bf16", "adamw")
    assert run.code == 0 and "training step at batch 32, bf16, adamw: " in run.out
    assert f"backward {m.backward_macs:,} MACs" in run.out
    assert "training step at batch 8, bf16, sgd: " in cli("compile", path, "--memory", "--batch", "8",
                                                           "--optimizer", "sgd").out


def test_json_is_one_line_per_spec_with_file_and_memory(cli):
    specs = [SPECS / "lenet.yaml", SPECS / "resnet18.yaml"]
    run = cli("compile", *specs, "--json", "--memory", "--batch", "4")
    lines = run.out.splitlines()
    assert run.code == 0 and len(lines) == 2
    for line, path in zip(lines, specs):
        data = json.loads(line)
        m = training_step(netspec.analyze(path), 4, "fp32", "sgd_momentum")
        assert data["file"] == str(path) and data["memory"] == m.as_dict()
        leaves = [r for r in data["modules"] if r["type"] in ("conv", "linear")]
        assert sum(r["backward_macs"] for r in leaves) == m.backward_macs
    assert "memory" not in json.loads(cli("compile", specs[0], "--json").out)


def test_check_verifies_expect_without_torch(write, cli):
    good = write(HEAD + "layers:\n  - conv: {out: 4, k: 3}\nexpect: {params: 112, output: [4, 6, 6]}\n", "good.yaml")
    bad = write(HEAD + "layers:\n  - conv: {out: 4, k: 3}\nexpect: {params: 100, macs: 3888}\n", "bad.yaml")
    assert cli("check", good).code == 0
    run = cli("check", bad)
    assert run.code == 1 and run.err.count("\n") == 1
    assert "params: expected 100, got 112 (off by +12)" in run.err


def test_receptive_field_column(cli):
    from netspec.receptive import fields

    run = cli("compile", SPECS / "resnet18.yaml", "--depth", "1", "--columns", "rf")
    rows = {r[0]: r[2] for r in table_rows(run.out)}
    want = fields(netspec.analyze(SPECS / "resnet18.yaml"))
    assert rows["layer2"] == str(want["layer2"]) == "r 99x99 s 8"
    data = json.loads(cli("compile", SPECS / "resnet18.yaml", "--json", "--columns", "rf").out)
    assert next(m for m in data["modules"] if m["path"] == "layer4")["receptive_field"] == "r 435x435 s 32"


def test_buffers_are_counted_apart_from_params(cli, monkeypatch):
    """Buffers (BatchNorm's running statistics, FrozenBatchNorm2d's tensors) are state that does
    not train: counted apart from params, in elements and bytes, in the table's totals, --json,
    --memory's model state, and cross-checked against the built module's buffers."""
    import torchvision

    from netspec.builder import cross_check
    from netspec.layers.norm import BatchNorm

    a = netspec.analyze(SPECS / "resnet18.yaml")
    ref = list(torchvision.models.resnet18().buffers())
    assert a.buffers == sum(b.numel() for b in ref) == 9_620
    assert a.buffer_bytes == sum(b.numel() * b.element_size() for b in ref)
    assert f"· buffers 9,620 (37.66 KiB) · forward" in cli("compile", SPECS / "resnet18.yaml").out
    assert "· buffers" not in cli("compile", SPECS / "lenet.yaml").out   # none: not shown
    data = json.loads(cli("compile", SPECS / "resnet18.yaml", "--json", "--memory").out)
    assert (data["buffers"], data["buffer_bytes"], data["memory"]["buffers_bytes"]) == (9_620, a.buffer_bytes, a.buffer_bytes)
    assert "parameters 44.59 MiB · buffers 37.66 KiB · gradients" in cli("compile", SPECS / "resnet18.yaml", "--memory").out
    frozen = netspec.analyze(ROOT / "specs" / "fcn_resnet50.yaml")
    assert frozen.buffers > 0 and not cross_check(frozen)
    monkeypatch.setattr(BatchNorm, "buffers", lambda self, shape: ())   # a rule that forgets them is caught
    assert any("buffer elements" in p for p in cross_check(netspec.analyze(SPECS / "resnet18.yaml")))


# -- issue 23, item 12: what the table and `resolve` say ----------------------------------------
PROJECTED = HEAD + """\
layers:
  - residual: {body: [conv: {out: 8, k: 3, padding: 1, bias: false}], post: relu}
  - residual: {body: [conv: {out: 8, k: 3, stride: 2, padding: 1, bias: false}]}
  - residual: {body: [conv: {out: 8, k: 3, padding: 1}], shortcut: auto}
"""


def test_an_auto_projection_shows_its_stride_as_written(write, cli):
    rows = {r[0]: r for r in table_rows(cli("compile", write(PROJECTED)).out)}
    assert rows["0.shortcut.0"][2] == "out=8, k=1, bias=False"          # stride 1: the default, not 1x1
    assert rows["1.shortcut.0"][2] == "out=8, k=1, stride=2, bias=False"


def test_a_flat_construct_row_names_the_modules_it_holds(cli):
    paths = [r[0] for r in table_rows(cli("compile", SPECS / "squeezenet1_1.yaml").out)]
    assert len(paths) == len(set(paths))
    assert paths[4:8] == ["features.3", "features.3.squeeze", "features.3.squeeze_activation",
                          "features.3.{expand1x1..expand3x3_activation}"]
    assert "features.3.{expand1x1,expand1x1_activation}" in paths
    vit = [r[0] for r in table_rows(cli("compile", SPECS / "vit_tiny_cifar.yaml").out)]
    assert "encoder.layers.encoder_layer_0.{ln_1,self_attention,dropout}" in vit
    assert "encoder.layers.encoder_layer_0.{ln_2,mlp}" in vit
    assert len(vit) == len(set(vit))


def test_resolve_separates_slots_and_says_what_auto_became(write, cli):
    run = cli("resolve", write(PROJECTED))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    first = lines.index("  0: residual(shortcut=auto -> projection)")
    assert lines[first + 1:first + 9] == ["    body:", "      0: conv(out=8, k=3, padding=1, bias=False)",
                                          "    shortcut:", "      shortcut: sequence",
                                          "        0: conv(out=8, k=1, bias=False)", "        1: bn()",
                                          "    post:", "      1: relu()"]
    last = lines.index("  2: residual(shortcut=auto -> identity)")
    assert lines[last + 1:] == ["    body:", "      0: conv(out=8, k=3, padding=1)"]
    # the graph without the analysis (Python API) still separates the slots
    assert "    post:" in str(netspec.resolve(write(PROJECTED)))


def test_resolve_of_a_spec_the_analysis_refuses_prints_the_graph_then_the_error(cli):
    run = cli("resolve", ROOT / "tests" / "bad" / "residual.yaml")
    assert run.code == 2 and run.out.startswith("graph t input=[3, 32, 32]\n: sequence\n  0: residual(shortcut=identity)")
    assert run.err.count("\n") == 1 and "cannot be added to the identity shortcut" in run.err
