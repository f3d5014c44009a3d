"""`extends:` + `patch:` (netspec/document/extends.py): merge rules, patch operations with
module-name addressing, `--set` by module name, located errors that point at the file a
value came from, and the ElexNet study chain (d is specs/elexnet.yaml)."""
from __future__ import annotations

import pytest

import netspec
from conftest import ROOT
from netspec.errors import SpecWarning


def unused(*names):
    """The warning a child gets for the base's variables its edits leave unread."""
    return pytest.warns(SpecWarning, match="|".join(f"variable '{n}' is never used" for n in names))

BASE = """\
netspec: 1
name: base
description: the base
input: [3, 16, 16]
vars: {w: 8, w2: "${w * 2}", classes: 10}
blocks:
  unit:
    args: {c: required}
    body:
      - conv: {out: $c, k: 3, padding: 1, name: conv}
      - bn
layers:
  - conv: {out: $w, k: 3, padding: 1, name: conv1}
  - bn
  - relu
  - maxpool: 2
  - sequence:
      name: features
      body:
        - conv: {out: $w2, k: 3, padding: 1, name: conv2}
        - relu
  - unit: {c: 4, name: u}
  - repeat: 2
    name: stage
    body: [unit: {c: 4}]
  - avgpool: global
  - flatten
  - linear: {out: $classes, name: fc}
expect: {params: 1, output: [10]}
train:
  dataset: {name: synthetic, train_size: 64}
  optimizer: {name: adam, lr: 0.001}
  epochs: 3
"""


@pytest.fixture
def base(write):
    return write(BASE, "base.yaml")


def child(write, text: str, name: str = "child.yaml"):
    return write("extends: base.yaml\n" + text, name)


def rows(analysis):
    return [(r.path, r.type, r.output, r.params, r.macs) for r in analysis.layers]


# -- merge rules ------------------------------------------------------------------------
def test_child_with_no_changes_equals_base(base, write):
    spec = netspec.load(child(write, "name: c\n"))
    assert spec.name == "c" and spec.description == "the base"
    assert rows(netspec.analyze(spec)) == rows(netspec.analyze(base))


def test_vars_merge_entry_by_entry_in_base_order(base, write):
    with unused("extra"):
        spec = netspec.load(child(write, "vars: {w: 16, extra: 3}\n"))
    assert list(spec.vars) == ["w", "w2", "classes", "extra"]
    a = netspec.analyze(spec)
    conv2 = next(r for r in a.layers if r.path == "features.conv2")
    assert conv2.output[0] == 32          # w2 = w * 2 sees the child's w


def test_blocks_replace_by_name(base, write):
    spec = netspec.load(child(write, "blocks:\n  unit:\n    args: {c: required}\n    body: [conv: {out: $c, k: 1, name: conv}, relu]\n"))
    a = netspec.analyze(spec)
    assert [(r.path, r.type, r.params) for r in a.layers if r.path.startswith("u.")] == \
        [("u.conv", "conv", 16 * 4 + 4), ("u.1", "relu", 0)]


def test_train_and_expect_merge_recursively(base, write):
    spec = netspec.load(child(write, "train: {optimizer: {lr: 0.01}}\nexpect: {params: 7}\n"))
    assert spec.train.optimizer.name == "adam" and spec.train.optimizer.lr == 0.01
    assert spec.train.epochs == 3 and spec.train.dataset.train_size == 64
    assert spec.expect.params == 7 and spec.expect.output == [10]


def test_an_expected_output_record_replaces_the_bases_whole(write):
    """A member whose graph returns other keys states its own output record; the base's keys
    are not merged into it (an FPN over C3..C5 has no '3' or 'pool')."""
    write(BASE.replace("expect: {params: 1, output: [10]}", "expect: {params: 1, output: {a: [10], b: [10]}}"),
          "base.yaml")
    spec = netspec.load(child(write, "expect: {output: {a: [10], c: [10]}}\n"))
    assert spec.source.data["expect"] == {"params": 1, "output": {"a": [10], "c": [10]}}


def test_a_graph_replaces_the_bases_layers(base, write):
    """`layers:` and `graph:` are one layout: a child's graph replaces the base's chain (and
    keeps its blocks and vars), where both together would be refused."""
    with unused("w2", "classes"):   # the base's chain read them; the graph does not
        spec = netspec.load(child(write, "graph:\n  nodes:\n    a: {unit: {c: $w}}\n    b: {from: input, conv: {out: 4, k: 3}}\n"
                                         "  outputs: {a: a, b: b}\nexpect: {params: 352, output: {a: [8, 16, 16], b: [4, 14, 14]}}\n"))
    assert "layers" not in spec.source.data
    a = netspec.analyze(spec)
    assert [r.path for r in a.layers if r.type == "conv"] == ["a.conv", "b"] and a.params == 352


def test_layers_replace_wholesale(base, write):
    with unused("w2", "classes"):
        spec = netspec.load(child(write, "layers: [flatten, linear: 10]\n"))
    assert [r.type for r in netspec.analyze(spec).layers] == ["flatten", "linear"]


def test_resolved_document_stands_alone(base, write):
    spec = netspec.load(child(write, "patch:\n  - delete: layers.3\n"))
    assert "extends" not in spec.source.data and "patch" not in spec.source.data
    assert netspec.load(spec.source.data).name == "base"   # the merged dict loads by itself


def test_chain_of_three(base, write):
    child(write, "name: mid\nvars: {w: 4}\n", "mid.yaml")
    top = write("extends: mid.yaml\nname: top\npatch:\n  - set: {layers.conv1.k: 1, layers.conv1.padding: 0}\n", "top.yaml")
    spec = netspec.load(top)
    assert spec.name == "top" and spec.vars["w"] == 4
    conv1 = netspec.analyze(spec).layers[0]
    assert conv1.output == [4, 16, 16] and conv1.params == 3 * 4 + 4


def test_base_in_another_folder_is_relative_to_the_file(base, write, tmp_path):
    (tmp_path / "sub").mkdir()
    spec = write("extends: ../base.yaml\nname: deep\n", "sub/deep.yaml")
    assert netspec.load(spec).name == "deep"


# -- patch operations -------------------------------------------------------------------
def test_set_by_name_by_index_and_with_type_key(base, write):
    for path in ("layers.conv1.k", "layers.0.k", "layers.0.conv.k", "'layers[0].conv.k'", "layers.-10.k"):
        spec = netspec.load(child(write, f"patch:\n  - set: {{{path}: 5}}\n"))
        assert netspec.analyze(spec).layers[0].params == 3 * 8 * 25 + 8, path


def test_set_expands_bare_items_and_shorthands(base, write):
    spec = netspec.load(child(write, "patch:\n  - set: {layers.1.eps: 0.001, layers.3.stride: 1}\n"))
    layers = spec.source.data["layers"]
    assert layers[1] == {"bn": {"eps": 0.001}}
    assert layers[3] == {"maxpool": {"k": 2, "stride": 1}}
    assert netspec.analyze(spec).layers[3].output == [8, 15, 15]


def test_set_inside_constructs_blocks_and_repeats(base, write):
    with unused("w2"):
        spec = netspec.load(child(write, "patch:\n"
                                         "  - set: {layers.features.conv2.out: 6}\n"
                                         "  - set: {layers.stage.repeat: 3, layers.stage.body.0.c: 5}\n"
                                         "  - set: {blocks.unit.body.conv.k: 1, blocks.unit.body.conv.padding: 0}\n"))
    a = netspec.analyze(spec)
    paths = {r.path: r for r in a.layers}
    assert paths["features.conv2"].output[0] == 6
    assert "stage.2.conv" in paths and paths["stage.2.conv"].output[0] == 5
    assert paths["u.conv"].params == 6 * 4 + 4       # 1x1 conv from the block edit


def test_set_inside_a_when_item(write):
    write("netspec: 1\nname: w\ninput: [3, 8, 8]\nvars: {hs: 0}\nlayers:\n"
          "  - {when: $hs, body: [hardswish: {name: act}], else: [conv: {out: 4, k: 3, name: alt}]}\n", "w.yaml")
    spec = netspec.load(write("extends: w.yaml\npatch:\n  - set: {layers.0.alt.k: 1}\n", "wc.yaml"))
    assert netspec.analyze(spec).layers[0].output == [4, 8, 8]            # k 3 -> 1, no padding: 8x8 kept
    assert netspec.analyze(spec, overrides=["vars.hs=1"]).layers[0].type == "hardswish"


def test_delete_insert_replace(base, write):
    with unused("w2"):
        spec = netspec.load(child(write, "patch:\n"
                                         "  - delete: [layers.3, layers.features]\n"
                                         "  - insert_after: {layers.conv1: {dropout: 0.1}}\n"
                                         "  - insert_before: {layers.fc: [linear: {out: 32, name: hidden}, relu]}\n"
                                         "  - replace: {layers.u: [conv: {out: 4, k: 1, name: u}]}\n"))
    a = netspec.analyze(spec)
    assert [r.path for r in a.layers] == ["conv1", "1", "2", "3", "u", "stage.0.conv", "stage.0.1",
                                          "stage.1.conv", "stage.1.1", "6", "7", "hidden", "9", "fc"]
    assert [r.type for r in a.layers][:5] == ["conv", "dropout", "bn", "relu", "conv"]


def test_set_creates_mapping_keys_and_delete_removes_fields(base, write):
    spec = netspec.load(child(write, "patch:\n  - set: {train.schedule: {name: constant}, vars.classes: 7}\n"
                                     "  - delete: [layers.conv1.padding, expect.params]\n"))
    assert spec.train.schedule.name == "constant" and spec.expect.params is None
    a = netspec.analyze(spec)
    assert a.output == [7] and a.layers[0].output == [8, 14, 14]


def test_patch_without_extends_edits_the_document_itself(write):
    path = write(BASE + "patch:\n  - set: {layers.fc.out: 3}\n", "self.yaml")
    with unused("classes"):
        assert netspec.analyze(path).output == [3]


# -- --set by module name -------------------------------------------------------------------
def test_set_option_by_module_name(base):
    with unused("classes"):
        assert netspec.analyze(base, overrides=["layers.fc.out=4"]).output == [4]
    assert netspec.analyze(base, overrides=["layers.0.k=1", "layers.0.padding=0"]).layers[0].params == 3 * 8 + 8
    with unused("classes"):
        assert netspec.analyze(base, overrides=["layers.9.linear.out=5"]).output == [5]   # plain path as before


def test_set_option_errors(base, cli):
    r = cli("check", base, "--set", "layers.fc9.out=3")
    assert r.code == 2 and r.err.count("\n") == 1
    assert r.err.startswith("--set layers.fc9.out=3: error: layers.fc9: no item named 'fc9'") and "did you mean 'fc'" in r.err
    r = cli("check", base, "--set", "extends=other.yaml")
    assert r.code == 2 and "resolved before --set" in r.err


STAGES = """\
netspec: 1
name: t
input: [3, 16, 16]
blocks:
  stage:
    args: {c: required, stride: 1}
    body: [conv: {out: $c, k: 3, stride: $stride, padding: 1}, relu]
layers:
  - stage: {c: 4, name: stage1}
  - {repeat: 2, name: stage2, body: [stage: {c: 8}], overrides: {0: {stride: 2}}}
  - {repeat: 2, name: stage3, body: [conv: {out: 8, k: 1}, relu]}
  - {repeat: 2, body: [conv: {out: 8, k: 1}]}
  - {repeat: 2, name: stage4, body: [conv: {out: 8, k: 1}]}
"""


def test_set_reaches_a_named_repeats_single_item_through_the_repeats_name(write):
    """docs/ablations.md: block arguments are `layers.stage1.c`; a named repeat of one block
    call takes the same path (issue 23, item 10)."""
    path = write(STAGES)
    outputs = lambda *sets: [list(m.output) for m in netspec.analyze(path, overrides=list(sets)).tree.children]
    assert outputs()[:2] == [[4, 16, 16], [8, 8, 8]]
    assert outputs("layers.stage1.c=5", "layers.stage2.c=6")[:2] == [[5, 16, 16], [6, 8, 8]]
    assert outputs("layers.stage2.stride=2")[1] == [8, 4, 4]              # every copy: the override keeps copy 0's
    assert outputs("layers.stage2.repeat=3")[1] == [8, 8, 8]              # the repeat's own fields first
    assert len(netspec.analyze(path, overrides=["layers.stage2.repeat=3"]).tree.children[1].children) == 3
    assert outputs("layers.3.out=5")[-2] == [5, 8, 8]                     # an unnamed repeat, by index
    assert outputs("layers.stage4.out=6")[-1] == [6, 8, 8]
    assert outputs("layers.stage4.conv.out=5")[-1] == [5, 8, 8]           # and its type key may be written


@pytest.mark.parametrize("setting, words", [
    ("layers.stage2.cc=5", "block 'stage' has no argument 'cc' (did you mean 'c'?) (arguments: c, stride)"),
    ("layers.stage3.out=5", "layers.stage3.out: no field or module 'out' here (fields: body, name, overrides, repeat; "
                            "named items: none); the repeat's body has 2 items: a field of one is layers.stage3.body.0.out"),
    ("layers.stage3.body.0.conv.outt=5", "unknown field 'outt' (did you mean 'out'?)"),
    ("layers.stage4.bogus.k=1", "layers.stage4.bogus: no field or module 'bogus' here (fields: bias, dilation, frozen, "
                                "groups, k, name, out, padding, stride; named items: none)"),
    ("layers.stage4.outt=1", "layers[4].body[0].conv.outt: unknown field 'outt' (did you mean 'out'?)"),
    ("layers.stage1.bogus.k=1", "layers.stage1.bogus: no field or module 'bogus' here (fields: c, name, stride; "
                                "named items: none)"),
    ("layers.stage2.body.0.stage.bogus.x=1", "--set layers.stage2.body.0.stage.bogus.x=1: error: layers[1].body[0]."
                                             "stage.bogus: block 'stage' has no argument 'bogus' (arguments: c, stride)"),
    ("layers.stage1.zz=1", "block 'stage' has no argument 'zz' (arguments: c, stride)"),
])
def test_a_failing_path_lists_what_is_there(write, cli, setting, words):
    r = cli("check", write(STAGES), "--set", setting)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert words in r.err, r.err


# -- errors: one located line, exit 2, in the right file --------------------------------------
def error_of(cli, path):
    r = cli("check", path)
    assert r.code == 2, r
    assert r.err.count("\n") == 1 and "Traceback" not in r.err, r.err
    return r.err.strip()


def test_missing_base(write, cli):
    path = write("name: x\nextends: nowhere.yaml\n", "orphan.yaml")
    assert error_of(cli, path) == f"{path}:2:10: error: extends: base spec 'nowhere.yaml' not found " \
                                  f"(looked for {path.parent / 'nowhere.yaml'})"


def test_cycle(write, cli):
    one = write("extends: two.yaml\nname: one\n", "one.yaml")
    two = write("name: two\nextends: one.yaml\n", "two.yaml")
    err = error_of(cli, one)
    assert err.startswith(f"{two}:2:10: error: extends: extends cycle: ")
    assert err.endswith("one.yaml -> " + str(two) + " -> " + str(one)) or "one.yaml" in err
    self_loop = write("extends: self.yaml\n", "self.yaml")
    assert "extends cycle" in error_of(cli, self_loop)


def test_error_in_base_points_at_the_base(base, write, cli):
    bad = write(BASE.replace("k: 3, padding: 1, name: conv1", "k: 3, padding: 1, groups: 3, name: conv1"), "bad_base.yaml")
    path = write("extends: bad_base.yaml\nname: c\nvars: {w: 16}\n", "c.yaml")
    err = error_of(cli, path)
    assert err.startswith(f"{bad}:13:47: error: layers[0].conv.groups: 3 does not divide out channels 16")


def test_error_in_patch_value_points_at_the_patch(base, write, cli):
    path = child(write, "name: c\npatch:\n  - replace: {layers.fc: {linear: {out: -1, name: fc}}}\n")
    assert error_of(cli, path).startswith(f"{path}:4:41: error: patch[0].replace.layers.fc.linear.out: "
                                          "Input should be greater than 0")


def test_error_in_a_layer_after_an_insert_points_at_the_right_line(base, write, cli):
    path = child(write, "patch:\n  - insert_before: {layers.conv1: [conv: {out: 4, k: 40}]}\n")
    assert error_of(cli, path).startswith(f"{path}:3:54: error: patch[0].insert_before.layers.conv1[0].conv.k: kernel 40")
    # the base's own layers keep their base positions though their index moved
    path = child(write, "patch:\n  - insert_before: {layers.conv1: relu}\n  - set: {layers.fc.out: 0}\n", "c2.yaml")
    assert ":4:" in error_of(cli, path) and "patch[1].set.layers.fc.out" in error_of(cli, path)


@pytest.mark.parametrize("patch, where, words", [
    ("  - delete: layers.conv9", "3:13", "patch[0].delete: layers.conv9: no item named 'conv9' in layers (did you mean 'conv1'?)"),
    ("  - remove: layers.conv1", "3:5", "patch[0].remove: unknown patch operation 'remove'"),
    ("  - set: {layers.conv1.k: 5}\n    delete: layers.0", "3:5", "a patch operation is a mapping with one key"),
    ("  - replace: {layers.conv1.k: [relu]}", "3:16", "replace needs a list element (a layer), but layers.conv1.k is a field"),
    ("  - insert_after: {layers.99: relu}", "3:21", "index 99 is out of range"),
    ("  - set: {layers.stage.nothing.x: 1}", "3:12", "no field or module 'nothing'"),
    ("  - delete: expect.macs", "3:13", "expect.macs does not exist"),
    ("  {set: 1}", "3:3", "patch is a list of operations"),
])
def test_bad_patches(base, write, cli, patch, where, words):
    text = f"patch:\n{patch}\n" if not patch.startswith("  {") else f"patch:\n{patch}\n"
    path = child(write, text)
    err = error_of(cli, path)
    assert err.startswith(f"{path}:"), err
    assert words in err, err


def test_extends_must_be_a_path(write, cli):
    path = write("extends: [a.yaml]\n", "list.yaml")
    assert "extends takes the path of a base spec" in error_of(cli, path)


def test_child_may_leave_out_what_the_base_gives_but_result_must_be_complete(write, cli):
    write("name: partial\ninput: [3, 8, 8]\n", "partial.yaml")
    path = write("extends: partial.yaml\nnetspec: 1\n", "c.yaml")
    assert "missing required field 'layers'" in error_of(cli, path)


# -- the ElexNet study ------------------------------------------------------------------------
STUDY = ROOT / "specs" / "elexnet"


def test_elexnet_d_is_specs_elexnet():
    d, ref = netspec.analyze(STUDY / "d.yaml"), netspec.analyze(ROOT / "specs" / "elexnet.yaml")
    assert rows(d) == rows(ref)
    assert str(d.graph).splitlines()[1:] == str(ref.graph).splitlines()[1:]
    assert (d.params, d.macs, d.output) == (ref.params, ref.macs, ref.output)


def test_elexnet_variants_match_the_report():
    widths = {}
    for v in "abcd":
        a = netspec.analyze(STUDY / f"{v}.yaml")
        convs = [r.output[0] for r in a.layers if r.type == "conv"]
        fcs = [(r.input[0], r.output[0]) for r in a.layers if r.type == "linear"]
        pools = sum(r.type == "maxpool" for r in a.layers)
        widths[v] = convs, fcs, pools, a.layers[0].output
    assert widths["a"] == ([16, 32, 64, 128, 96], [(384, 384), (384, 144), (144, 10)], 3, [16, 26, 26])
    assert widths["b"] == ([16, 64, 128, 256, 192], [(768, 768), (768, 96), (96, 10)], 3, [16, 26, 26])
    assert widths["c"] == ([16, 64, 128, 256, 192], [(6912, 1568), (1568, 1568), (1568, 10)], 2, [16, 26, 26])
    assert widths["d"] == ([16, 64, 128, 256, 192], [(9408, 1568), (1568, 1568), (1568, 10)], 2, [16, 32, 32])


def test_variant_files_validate_against_the_editor_schema_as_written():
    """A file with `extends:` may leave out netspec/input/layers; the JSON Schema knows."""
    import json

    import jsonschema

    from netspec.document.load import read
    validator = jsonschema.Draft202012Validator(json.loads((ROOT / "netspec.schema.json").read_text()))
    for v in "abcd":
        assert not list(validator.iter_errors(read(STUDY / f"{v}.yaml").data)), v
    assert list(validator.iter_errors({"extends": "x.yaml", "patch": [{"sett": {}}]}))
    assert list(validator.iter_errors({"name": "no base, no layers"}))
