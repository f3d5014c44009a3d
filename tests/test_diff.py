"""`netspec diff` (netspec/diff.py): alignment by module path with unnamed layers aligned
as a sequence, causes vs consequences, totals equal to the two analyses, train: section
differences, exit codes, and the ElexNet study's consecutive variants."""
from __future__ import annotations

import json

import pytest

import netspec
from conftest import ROOT, spec_text
from netspec.diff import diff, diff_analyses, render

STUDY = ROOT / "specs" / "elexnet"
NET = """\
  - conv: {out: 8, k: 3, padding: 1, name: conv1}
  - bn
  - relu
  - maxpool: 2
  - conv: {out: 16, k: 3, padding: 1, name: conv2}
  - relu
  - avgpool: global
  - flatten
  - linear: {out: 10, name: fc}
"""


def causes(d):
    """(change, path A, path B, attributes) of the entries that are not consequences."""
    return [(e.change, e.a.path if e.a else None, e.b.path if e.b else None, e.attributes)
            for e in d.entries if e.change in ("removed", "added", "changed")]


def test_self_diff_is_no_differences(cli):
    path = STUDY / "d.yaml"
    r = cli("diff", path, path)
    assert r.code == 0 and r.err == ""
    assert r.out.splitlines()[-1] == "no differences"
    r = cli("diff", path, path, "--json")
    data = json.loads(r.out)
    assert data["identical"] is True and data["modules"] == [] and data["train"] == {}


@pytest.mark.parametrize("a, b, expected", [
    ("a", "b", [("changed", "conv2", "conv2", {"out": (32, 64)}),
                ("changed", "conv3", "conv3", {"out": (64, 128)}),
                ("changed", "conv4", "conv4", {"out": (128, 256)}),
                ("changed", "conv5", "conv5", {"out": (96, 192)}),
                ("changed", "fc1", "fc1", {"out": (384, 768)}),
                ("changed", "fc2", "fc2", {"out": (144, 96)})]),
    # the first max-pool goes; the classifier widths of c are the chosen 1568/1568 (see c.yaml)
    ("b", "c", [("removed", "3", None, {}),
                ("changed", "fc1", "fc1", {"out": (768, 1568)}),
                ("changed", "fc2", "fc2", {"out": (96, 1568)})]),
    ("c", "d", [("changed", "conv1", "conv1", {"padding": (0, 3)})]),
])
def test_elexnet_consecutive_variants_show_exactly_the_named_change(a, b, expected):
    d = diff(STUDY / f"{a}.yaml", STUDY / f"{b}.yaml")
    assert causes(d) == expected
    assert d.train == {}
    # everything else is a consequence: the same settings, another shape/cost
    assert all(e.change in ("affected", "renamed") for e in d.entries if e.change not in ("removed", "added", "changed"))


def test_param_and_mac_deltas_equal_the_analyses():
    for a, b in ("ab", "bc", "cd"):
        x, y = netspec.analyze(STUDY / f"{a}.yaml"), netspec.analyze(STUDY / f"{b}.yaml")
        data = diff(STUDY / f"{a}.yaml", STUDY / f"{b}.yaml").as_dict()
        assert data["totals"]["params"] == {"a": x.params, "b": y.params, "delta": y.params - x.params}
        assert data["totals"]["macs"]["delta"] == y.macs - x.macs
        # per-module deltas add up to the total delta
        per_module = sum((m["params"][1] or 0) - (m["params"][0] or 0) for m in data["modules"])
        assert per_module == y.params - x.params


def test_unnamed_insert_is_one_added_layer_and_positions_are_renumbered(write):
    a = write(spec_text(NET), "a.yaml")
    b = write("extends: a.yaml\npatch:\n  - insert_after: {layers.conv1: dropout}\n", "b.yaml")
    d = diff(a, b)
    assert causes(d) == [("added", None, "1", {})]
    renamed = [(e.a.path, e.b.path) for e in d.entries if e.change == "renamed"]
    assert renamed == [("1", "2"), ("2", "3"), ("3", "4"), ("5", "6"), ("6", "7"), ("7", "8")]
    text = render(d)
    assert "+ 1  dropout" in text and "= 1 -> 2  bn" in text


def test_changed_unnamed_layer_is_one_change(write):
    a = write(spec_text(NET), "a.yaml")
    b = write("extends: a.yaml\npatch:\n  - set: {layers.3.k: 4}\n", "b.yaml")
    d = diff(a, b)
    assert causes(d) == [("changed", "3", "3", {"k": (2, 4)})]
    affected = {e.b.path for e in d.entries if e.change == "affected"}
    assert affected == {"conv2", "5"}    # smaller maps downstream; pooling/flatten/fc keep their size


def test_named_layer_replaced_by_another_type(write):
    a = write(spec_text(NET), "a.yaml")
    b = write("extends: a.yaml\npatch:\n  - replace: {layers.conv2: {linear: {out: 16, name: conv2}}}\n", "b.yaml")
    # 'conv2' as a linear on [8, 16, 16] maps the last dim: the report shows a removed and an added module
    d = diff(a, b)
    assert [c[0] for c in causes(d)] == ["removed", "added"]


def test_train_section_and_spec_fields(write, cli):
    text = spec_text(NET, extra="")
    a = write(text + "train: {optimizer: {name: adam, lr: 0.001}, epochs: 3}\n", "a.yaml")
    b = write("extends: a.yaml\nname: t2\ntrain: {optimizer: {lr: 0.002}}\n", "b.yaml")
    d = diff(a, b)
    assert d.entries == [] and d.train == {"train.optimizer.lr": (0.001, 0.002)}
    assert d.spec == {"name": ("t", "t2")}
    r = cli("diff", a, b)
    assert r.code == 0
    assert "modules: no differences" in r.out and "  optimizer.lr: 0.001 -> 0.002" in r.out
    # an optimizer of another kind is shown whole
    c = write("extends: a.yaml\npatch:\n  - set: {train.optimizer: {name: sgd}}\n", "c.yaml")
    assert list(diff(a, c).train) == ["train.optimizer"]


def test_text_report_of_a_study_step(cli):
    r = cli("diff", STUDY / "c.yaml", STUDY / "d.yaml")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[1].startswith("modules: 1 changed, 15 affected")
    assert lines[2].startswith("  ~ conv1  conv  padding: 0 -> 3; output [16, 26, 26] -> [16, 32, 32]")
    assert "  params    14,155,242 -> 18,068,970 (+3,913,728, +27.6%)" in lines
    brief = cli("diff", STUDY / "c.yaml", STUDY / "d.yaml", "--brief").out
    assert sum(line.startswith("  ~ ") or line.startswith("  . ") for line in brief.splitlines()) == 1


def test_set_b_is_a_what_if(cli):
    path = ROOT / "specs" / "resnext50.yaml"
    # 64x2d: the same widths as 32x4d, twice the groups
    r = cli("diff", path, path, "--set-b", "vars.groups=64", "--set-b", "vars.width_per_group=2", "--json")
    data = json.loads(r.out)
    changed = [m for m in data["modules"] if m["change"] == "changed"]
    assert len(changed) == 16 and all(m["attributes"] == {"groups": [32, 64]} for m in changed)
    assert data["totals"]["params"]["delta"] < 0


@pytest.mark.parametrize("args, words", [
    (["nope.yaml", "specs/elexnet.yaml"], "nope.yaml: error: cannot read spec"),
    (["specs/elexnet.yaml", "specs/elexnet.yaml", "--set-b", "layers.fc9.out=3"], "no item named 'fc9'"),
])
def test_invalid_input_exits_2_with_one_line(cli, monkeypatch, args, words):
    monkeypatch.chdir(ROOT)
    r = cli("diff", *args)
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and words in r.err


def test_invalid_spec_is_located(cli, write):
    good = write(spec_text(NET), "good.yaml")
    bad = write(spec_text(NET.replace("out: 16, k: 3", "out: 16, k: 30")), "bad.yaml")
    r = cli("diff", good, bad)
    assert r.code == 2 and r.err.startswith(f"{bad}:9:24: error: layers[4].conv.k: kernel 30")


def test_diff_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys; from netspec.cli import main; main(['diff', sys.argv[1], sys.argv[2]]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code, str(STUDY / "c.yaml"), str(STUDY / "d.yaml")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_a_removed_or_added_variable_reads_as_not_set(write, cli):
    """issue 23, item 12: not `-> null`."""
    a = write(spec_text(NET, extra="").replace("layers:", "vars: {w: 8, old: 1}\nlayers:").replace("out: 8,", "out: $w,"),
              "a.yaml")
    b = write("extends: a.yaml\nvars: {new: 2}\npatch:\n  - delete: vars.old\n", "b.yaml")
    r = cli("diff", a, b)
    assert r.code == 0 and "null" not in r.out
    assert "spec.vars.old: 1 -> (not set)" in r.out and "spec.vars.new: (not set) -> 2" in r.out
    assert json.loads(cli("diff", a, b, "--json").out)["spec"]["vars.old"] == [1, None]


# -- issue 23, item 20: aligning long lists is linear, not quadratic ------------------------------
def _long(write, n: int, name: str, first: str, middle: str):
    half = "{repeat: %d, body: [conv: {out: 4, k: 3, padding: 1}, relu]}" % (n // 2)
    return netspec.analyze(write(spec_text(f"  - {first}\n  - {half}\n{middle}  - {half}\n  - {first}\n",
                                           input_shape="[4, 4, 4]"), name))


def _lines_run(a, b) -> int:
    """Lines of netspec/diff.py and difflib executed to align and compare a with b (a
    deterministic count of the work, not a time)."""
    import difflib
    import sys

    from netspec import diff as diff_module
    files = {diff_module.__file__, difflib.__file__}
    count = 0

    def local(frame, event, arg):
        nonlocal count
        count += event == "line"
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in files else None)
    try:
        diff_module.diff_analyses(a, b)
    finally:
        sys.settrace(None)
    return count


def test_aligning_long_lists_takes_linear_work(write):
    """Two specs that differ at both ends and by one inserted layer in the middle: twice the
    layers, about twice the work (difflib's SequenceMatcher did four times)."""
    work = {}
    for n in (300, 600):
        a = _long(write, n, f"a{n}.yaml", "identity", "")
        b = _long(write, n, f"b{n}.yaml", "dropout", "  - dropout\n")
        d = diff_analyses(a, b)
        assert [(e.change, e.a.type if e.a else None, e.b.type if e.b else None) for e in d.entries
                if e.change != "renamed"] == [
            ("removed", "identity", None), ("added", None, "dropout"), ("added", None, "dropout"),
            ("removed", "identity", None), ("added", None, "dropout")]
        work[n] = _lines_run(a, b)
    assert work[600] / work[300] < 2.5, work


def test_alignment_is_a_shortest_edit_script():
    """_opcodes against a brute-force longest common subsequence, on random lists of few types."""
    import random

    from netspec.diff import _opcodes
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abc") for _ in range(rng.randrange(0, 12))]
        b = [rng.choice("abc") for _ in range(rng.randrange(0, 12))]
        ops = _opcodes(a, b)
        assert [x for op in ops for x in a[op[1]:op[2]]] == a and [y for op in ops for y in b[op[3]:op[4]]] == b
        equal = [(op[1], op[2], op[3], op[4]) for op in ops if op[0] == "equal"]
        assert all(a[i1:i2] == b[j1:j2] for i1, i2, j1, j2 in equal)
        lcs = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a) - 1, -1, -1):
            for j in range(len(b) - 1, -1, -1):
                lcs[i][j] = lcs[i + 1][j + 1] + 1 if a[i] == b[j] else max(lcs[i + 1][j], lcs[i][j + 1])
        assert sum(i2 - i1 for i1, i2, _, _ in equal) == lcs[0][0]
