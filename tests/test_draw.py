"""`netspec draw`: the layout (plain data) says what the picture shows; the command writes
PNG and SVG files and refuses anything else with one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

import netspec
from conftest import ROOT
from netspec.draw import layout, runs

SPECS = ROOT / "specs"


@pytest.fixture(scope="module")
def resnet50():
    return netspec.analyze(SPECS / "resnet50.yaml")


def _modules(m):
    yield m
    for child in m.children:
        yield from _modules(child)


def _residuals(analysis):
    return [m for m in _modules(analysis.tree) if m.type == "residual"]


def _inside(box, x, y):
    return box.x - 1e-9 <= x <= box.x + box.w + 1e-9 and box.y - 1e-9 <= y <= box.y + box.h + 1e-9


def test_every_residual_has_one_skip_edge_around_its_body(resnet50):
    lay = layout(resnet50, expand=True)
    residuals = _residuals(resnet50)
    assert len(residuals) == 16
    skips = [e for e in lay.edges if e.kind == "skip"]
    assert len(skips) == len(residuals)
    for m in residuals:
        (join,) = [b for b in lay.boxes if b.kind == "join" and b.path == m.path and b.lines == ["+"]]
        (skip,) = [e for e in skips if _inside(join, *e.points[-1])]  # it ends in this residual's +
        inside = {d.path for c in m.slots["body"] for d in _modules(c)}
        body = [b for b in lay.boxes if b.path in inside]
        assert len(body) == 8  # conv, bn, relu, conv, bn, relu, conv, bn (post's relu comes after the +)
        lane = max(x for x, _ in skip.points)
        assert lane > max(b.x + b.w for b in body)  # beside the body, not through it
        top, bottom = min(y for _, y in skip.points), max(y for _, y in skip.points)
        assert top < min(b.y for b in body) and bottom > max(b.y + b.h for b in body)
    # a projection shortcut is its own box on the skip edge
    projections = [b for b in lay.boxes if b.path.endswith(".downsample")]
    assert len(projections) == 4
    for p in projections:
        assert any(_inside(p, x, p.y + p.h / 2) for e in skips for x, _ in e.points[1:3])


def test_repeated_blocks_collapse_unless_expand(resnet50):
    layer3 = next(m for m in resnet50.tree.children if m.path == "layer3")
    n = len(layer3.children) - 1  # layer3.0 projects; the others are the same block
    assert n == 5
    assert [len(g) for g in runs(layer3.children)] == [1, n]
    lay = layout(resnet50)
    (box,) = [b for b in lay.boxes if b.kind == "repeat" and b.path == "layer3.1"]
    assert box.count == n and f"×{n}" in box.lines[0]
    assert not any(b.path.startswith(("layer3.2.", "layer3.3.", "layer3.4.", "layer3.5.")) for b in lay.boxes)
    assert len([e for e in lay.edges if e.kind == "skip"]) == 4  # only each stage's first block is drawn open
    expanded = layout(resnet50, expand=True)
    assert not any(b.kind == "repeat" for b in expanded.boxes)
    assert any(b.path == "layer3.5.conv2" for b in expanded.boxes)


def test_a_different_shape_breaks_a_run(write):
    spec = write("netspec: 1\nname: t\ninput: [3, 8, 8]\nlayers:\n"
                 "  - {sequence: {name: a, body: [conv: {out: 4, k: 1}, relu]}}\n"
                 "  - {sequence: {name: b, body: [conv: {out: 4, k: 1}, relu]}}\n"
                 "  - {sequence: {name: c, body: [conv: {out: 4, k: 1}, relu]}}\n"
                 "  - {sequence: {name: d, body: [conv: {out: 4, k: 3}, relu]}}\n")
    tree = netspec.analyze(spec).tree
    # a sees 3 channels, b and c see 4; d has another kernel
    assert [[m.path for m in g] for g in runs(tree.children)] == [["a"], ["b", "c"], ["d"]]


def test_inception_branches_side_by_side():
    lay = layout(netspec.analyze(SPECS / "googlenet.yaml"))
    frames = sorted((f for f in lay.frames if f.path.startswith("inception3a.") and f.path.count(".") == 1),
                    key=lambda f: f.x)
    assert [f.path for f in frames] == [f"inception3a.branch{i}" for i in range(1, 5)]
    assert len({f.y for f in frames}) == 1  # one row
    for left, right in zip(frames, frames[1:]):
        assert left.x + left.w < right.x  # side by side, not overlapping
    (join,) = [b for b in lay.boxes if b.kind == "join" and b.path == "inception3a"]
    assert join.lines == ["concat → 256×28×28"] and join.y > max(f.y + f.h for f in frames)


def test_dense_block_and_gate_are_drawn():
    dense = layout(netspec.analyze(SPECS / "densenet121.yaml"))
    (run,) = [b for b in dense.boxes if b.kind == "repeat" and b.path == "features.denseblock1.denselayer1"]
    assert run.count == 6 and "input 64×56×56 … 224×56×56" in run.lines
    assert any(b.path == "features.denseblock1" and b.lines[0].startswith("concat → 256") for b in dense.boxes)
    assert any(e.kind == "dense" for e in dense.edges)
    mobile = layout(netspec.analyze(SPECS / "mobilenet_v3_small.yaml"))
    gates = [b for b in mobile.boxes if b.kind == "join" and b.lines == ["×"]]
    assert gates and all(b.path.endswith(".block.1") or b.path.split(".")[-1].isdigit() for b in gates)


def test_depth_folds_containers_into_one_box_with_totals(resnet50):
    lay = layout(resnet50, depth=1)
    assert not lay.frames and not any(e.kind == "skip" for e in lay.edges)
    layer1 = next(m for m in resnet50.tree.children if m.path == "layer1")
    (box,) = [b for b in lay.boxes if b.path == "layer1"]
    assert box.kind == "folded" and "216K params" in box.lines[-1] and "MACs" in box.lines[-1]
    assert layer1.params == 215_808
    assert not any(b.path.startswith("layer1.") for b in lay.boxes)
    two = layout(resnet50, depth=2)  # layer1 open, its blocks folded
    assert any(f.path == "layer1" for f in two.frames)
    assert {b.path for b in two.boxes if b.kind == "folded"} >= {"layer1.0", "layer2.0"}
    assert len(layout(resnet50).boxes) > len(two.boxes) > len(lay.boxes)


def test_writes_png_and_svg(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("draw", SPECS / "resnet18_cifar.yaml")
    assert r.code == 0, r.err
    svg = tmp_path / "resnet18-cifar.svg"  # the default: the spec's name, here
    assert svg.stat().st_size > 10_000 and "<svg" in svg.read_text()[:2000]
    r = cli("draw", SPECS / "googlenet.yaml", "-o", "g.png", "--depth", "2", "--input", "3,96,96")
    assert r.code == 0, r.err
    png = (tmp_path / "g.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "wrote g.png" in r.out


def test_bad_input_is_one_line_exit_2(cli, tmp_path, write):
    r = cli("draw", SPECS / "resnet50.yaml", "-o", tmp_path / "x.jpg")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert r.err.startswith("-o: error:") and ".svg or .png" in r.err
    assert not (tmp_path / "x.jpg").exists()
    bad = write("netspec: 1\nname: t\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, k: 9}\n")
    r = cli("draw", bad, "-o", tmp_path / "t.svg")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and r.err.startswith(f"{bad}:5:")
    r = cli("draw", SPECS / "alexnet.yaml", "--input", "3,8,8", "-o", tmp_path / "t.svg")
    assert r.code == 2 and r.err.startswith("--input 3,8,8: error:") and len(r.err.strip().splitlines()) == 1
    r = cli("draw", SPECS / "resnet50.yaml", "-o", tmp_path / "no" / "such" / "dir.svg")
    assert r.code == 2 and r.err.startswith("-o: error: cannot write") and len(r.err.strip().splitlines()) == 1


def test_help_and_layout_import_neither_torch_nor_matplotlib():
    code = ("import sys, netspec; from netspec.draw import layout; "
            "layout(netspec.analyze(sys.argv[1]), depth=3); from netspec.cli import make_parser; "
            "make_parser(['draw']).parse_args(['draw', 'x.yaml']); "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(SPECS / "resnet50.yaml")], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_a_folded_transformer_block_shows_its_attention():
    """issue 23, item 12: a ViT encoder block folded by --depth reads attention, then the MLP."""
    lay = layout(netspec.analyze(SPECS / "vit_tiny_cifar.yaml"), depth=3)
    block = next(b for b in lay.boxes if b.path == "encoder.layers.encoder_layer_0")
    assert block.lines[1].startswith("self_attention h3 → linear → linear"), block.lines


# -- issue 23, item 20: drawing is bounded --------------------------------------------------------
def test_a_long_run_of_a_repeated_pair_is_one_box(write):
    """2,000 x [conv, relu] in one list (an unnamed repeat): one ×2000 box, not 4,000."""
    spec = write("netspec: 1\nname: t\ninput: [4, 8, 8]\nlayers:\n  - conv: {out: 4, k: 1}\n"
                 "  - {repeat: 2000, body: [conv: {out: 4, k: 3, padding: 1}, relu]}\n  - flatten\n")
    tree = netspec.analyze(spec).tree
    assert [(len(g), g.period) for g in runs(tree.children)] == [(1, 1), (4000, 2), (1, 1)]
    lay = layout(netspec.analyze(spec))
    (box,) = [b for b in lay.boxes if b.kind == "repeat"]
    assert box.count == 2000 and box.lines[:2] == ["1–4000: conv → relu ×2000", "conv 3×3 p1 → relu"]
    assert len(lay.boxes) == 6   # title, input, conv, the run, flatten, output
    # a short periodic run stays open (VGG's [conv, relu] x 2 is drawn as written)
    assert [len(g) for g in runs(tree.children[:7])] == [1] * 7


MANY = "netspec: 1\nname: t\ninput: [4, 8, 8]\nlayers:\n  - {repeat: 2100, %s body: [conv: {out: '${i %% 11 + 1}', k: 1}]}\n"


def test_a_picture_of_too_many_boxes_is_refused_with_the_depth_that_fits(write, cli, tmp_path):
    from netspec.draw import MAX_BOXES, TooManyBoxes
    flat = write(MANY % "", "flat.yaml")
    with pytest.raises(TooManyBoxes):
        layout(netspec.analyze(flat))
    r = cli("draw", flat, "-o", tmp_path / "x.svg")
    assert r.code == 2 and r.err.count("\n") == 1 and not (tmp_path / "x.svg").exists()
    assert r.err.startswith(f"{flat}: error: the picture would have more than {MAX_BOXES:,} boxes") and \
        "2,100 modules at the top level" in r.err, r.err
    nested = write(MANY % "name: blocks,", "nested.yaml")
    r = cli("draw", nested, "-o", tmp_path / "x.svg", "--expand")
    assert r.code == 2 and "--depth 1 draws it" in r.err, r.err
    assert cli("draw", nested, "-o", tmp_path / "x.svg", "--depth", "1").code == 0
