"""`netspec export`: ONNX and .pt2 files that are verified before success is reported.

One spec per family (residual, concat, dense, gate, plain) at a small input, both formats from
one dynamic-batch trace and each read back by its runtime; the CLI on the digits model with a
fixed and a dynamic batch; a broken file caught with exit 1; the missing extra named in one line;
docs/deploy.md's onnxruntime snippet run as written.
"""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import onnxruntime
import pytest
import torch

import netspec
from conftest import ROOT, save_png
from netspec.deploy import export as ex

# spec -> (small input, --set overrides): one member of each family of the zoo, kept small
# (export time grows with the number of layers: torch.export and the ONNX exporter are Python)
FAMILIES = {
    "resnet18": ([3, 32, 32], ["vars.depth2=1", "vars.depth3=1", "vars.depth4=1"]),  # residual, projections
    "googlenet_d2l": ([1, 32, 32], []),          # concat branches (Inception)
    "densenet_d2l": ([1, 32, 32], ["vars.convs=2"]),  # dense connectivity, transitions
    "mobilenet_v3_small": ([3, 32, 32], []),     # gate (squeeze-excitation), hardswish, depthwise convs
    "vgg_d2l": ([1, 32, 32], []),                # plain conv stacks, dropout, linear head
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_exports_verify_in_both_formats(name, tmp_path):
    shape, overrides = FAMILIES[name]
    analysis = netspec.analyze(ROOT / "specs" / f"{name}.yaml", input=shape, overrides=overrides)
    torch.manual_seed(0)
    model = netspec.build(analysis)
    program = ex.trace(model, shape, 1, dynamic=True)
    for fmt in ex.FORMATS:
        result = ex.export(model, shape, fmt, tmp_path / f"m.{fmt}", dynamic=True, program=program)
        assert [d.batch for d in result.differences] == [1, 3]
        assert result.ok, [str(d) for d in result.differences]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"  # a named dynamic dimension
    assert session.run(None, {"input": np.zeros([5, *shape], np.float32)})[0].shape == (5, analysis.output[0])


DIGITS = str(ROOT / "specs" / "digits.yaml")
WROTE = re.compile(r"^wrote (\S+) .*verified with .* max rel ([0-9.e+-]+)")


def test_cli_onnx_fixed_batch_and_pt2_dynamic(cli, digits_ckpt, tmp_path):
    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "onnx", "--batch", "2", "-o", tmp_path / "d.onnx")
    assert r.code == 0, r.err
    assert WROTE.match(r.out) and "input [2, 1, 8, 8]" in r.out and "batch 2:" in r.out and "onnxruntime" in r.out
    assert "init: 20 tensors from" in r.err  # what was loaded is said, on stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 1, 8, 8]
    meta = json.loads(session.get_modelmeta().custom_metadata_map["netspec"])
    assert meta["classes"] == [str(i) for i in range(10)] and len(meta["mean"]) == 1 and meta["batch"] == 2

    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "pt2", "--dynamic-batch", "-o", tmp_path / "d.pt2")
    assert r.code == 0, r.err
    assert "input [batch, 1, 8, 8]" in r.out and "batch 1:" in r.out and "batch 3:" in r.out
    assert "torch.export.load" in r.out
    module = torch.export.load(tmp_path / "d.pt2").module()
    eager = netspec.build(netspec.analyze(DIGITS)).eval()
    eager.load_state_dict(torch.load(digits_ckpt, weights_only=True)["model"])
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(module(x), eager(x))


def test_a_file_that_differs_is_exit_1(cli, digits_ckpt, tmp_path, monkeypatch):
    real = ex.run_onnx

    def off_by_a_little(path):  # the file as written, its output nudged by 0.1% of its scale
        run = real(path)
        return lambda x: [y + 1e-3 * y.abs().max() for y in run(x)]   # each output (a classifier: one)

    monkeypatch.setattr(ex, "run_onnx", off_by_a_little)
    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "--format", "onnx", "-o", tmp_path / "d.onnx")
    assert r.code == 1
    line = r.err.strip().splitlines()[-1]
    assert "check failed" in line and "tolerance" in line and "max rel 1.00e-03" in line


def test_missing_extra_is_one_line_naming_it(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    r = cli("export", DIGITS, "--format", "onnx", "-o", tmp_path / "d.onnx")
    assert r.code == 2 and r.out == ""
    assert r.err.strip().splitlines() == [
        "error: netspec export --format onnx needs onnxruntime (the 'export' extra): "
        "pip install -e '.[export]' (from a clone) or pip install 'netspec[export]'"]
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--format", "onnx", "--opset", "17"], "--opset 17: error: torch's exporter writes opset 18 or newer"),
    (["--format", "onnx", "--opset", "99"], "--opset 99: error: torch's exporter writes opset 18 or newer, and onnx"),
    (["--format", "onnx", "--opset", str(10**20)], f"--opset {10**20}: error: torch's exporter writes opset 18"),
    (["--format", "pt2", "--opset", "18"], "--opset 18: error: only --format onnx has an opset"),
    (["--format", "onnx", "--init-skip", "fc.*"], "--init-skip needs --init"),
    (["--format", "onnx", "--init", "nope.pt"], "no such file"),
    (["--format", "pt2", "--input", "1,1,1"], "--input 1,1,1: error: layers[6].maxpool: kernel 2 is larger than"),
])
def test_bad_arguments_are_one_line_exit_2(cli, tmp_path, argv, needle):
    """`--opset 99` printed onnxscript's 18-line traceback; 10**20 said `check failed` (exit 1); a bad
    --input blamed the spec's own line."""
    r = cli("export", DIGITS, *argv, "-o", tmp_path / f"d.{argv[1]}")
    assert r.code == 2 and r.out == "" and r.err.count("\n") == 1 and needle in r.err, r.err
    assert not (tmp_path / f"d.{argv[1]}").exists()


@pytest.mark.parametrize("argv,written,error", [
    (["-o", "m.onnx"], "m.onnx", None),                       # the format from the suffix
    (["-o", "m.PT2"], "m.PT2", None),
    (["--format", "pt2"], "digits.pt2", None),                # the file from the format
    (["--format", "onnx", "-o", "y.pt2"], None, "-o y.pt2: error: --format onnx writes a .onnx file, not .pt2"),
    (["-o", "mini.txt"], None, "-o mini.txt: error: the file name must end in .onnx or .pt2"),
    (["--format", "pt2", "-o", "mini"], None, "name it mini.pt2"),
    ([], None, "--format: error: netspec export needs --format onnx|pt2, or -o FILE.onnx|FILE.pt2"),
])
def test_the_format_follows_the_file_name(cli, tmp_path, monkeypatch, argv, written, error):
    """`--format onnx -o y.pt2` and `-o mini.txt` were accepted, and --format was required with `-o x.onnx`."""
    monkeypatch.chdir(tmp_path)
    r = cli("export", DIGITS, *argv)
    if error is None:
        assert r.code == 0, r.err
        assert r.out.startswith(f"wrote {written} ({written.rsplit('.', 1)[1].lower()}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [written]  # no temporary or lock file left
    else:
        assert r.code == 2 and r.err.strip().splitlines() == [r.err.strip()] and error in r.err, r.err
        assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def rgb_ckpt(tmp_path_factory):
    """best.pt of a tiny 3x8x8 RGB model (tests/train_helpers.tiny_spec), one epoch."""
    from netspec.cli import main
    from tests.train_helpers import tiny_spec

    folder = tmp_path_factory.mktemp("rgb")
    spec = folder / "tiny.json"
    spec.write_text(json.dumps(tiny_spec()))
    assert main(["train", str(spec), "--out", str(folder / "run"), "--quiet", "--set", "train.epochs=1"]) == 0
    return spec, folder / "run" / "best.pt"


@pytest.mark.parametrize("model", ["digits (1 channel)", "tiny (RGB, test_flip)"])
def test_docs_onnxruntime_recipe_runs_as_written(cli, digits_ckpt, rgb_ckpt, tmp_path, monkeypatch, model):
    """docs/deploy.md's lines, on images of a 1-channel and of an RGB model, give `netspec predict`'s
    label and probabilities. The recipe reshaped H×W×3 into 3×H×W: a cat came out "airplane"."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    if model.startswith("digits"):
        spec, ckpt, sets = DIGITS, digits_ckpt, []
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(4)]
    else:
        (spec, ckpt), sets = rgb_ckpt, ["--set", "train.augmentation.test_flip=true"]
        y, x = np.mgrid[0:8, 0:8]  # pictures whose channels differ: a scramble changes them
        images = [np.dstack([x * 30 + i, y * 20 + 40 * i, (x * y * 4 + 50 * i) % 256]).astype(np.uint8) for i in range(4)]
    assert cli("export", spec, "--ckpt", ckpt, *sets, "-o", "digits.onnx").code == 0  # the recipe's file name
    text = (ROOT / "docs" / "deploy.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    for i, image in enumerate(images):
        scope = {"image": image}
        exec(compile(snippet, "docs/deploy.md", "exec"), scope)  # noqa: S102 - our own documentation
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        r = cli("predict", spec, "--ckpt", ckpt, *sets, "--precision", "fp32", tmp_path / f"{i}.png", "--json", "--top", "1")
        top = json.loads(r.out)["top"][0]
        probability = float(torch.from_numpy(np.asarray(scope["logits"])).softmax(0).max())
        assert (scope["label"], probability) == (top["class"], pytest.approx(top["p"], abs=1e-5)), i


# -- the file written (issue 23: exports that lost the previous file, or wrote where they should not) ---------
def _pt2_metadata(path) -> dict:
    extra = {"netspec.json": ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra["netspec.json"])


@pytest.fixture
def exported(cli, digits_ckpt, tmp_path):
    """A good d.pt2 from the digits checkpoint, and its bytes."""
    out = tmp_path / "d.pt2"
    assert cli("export", DIGITS, "--ckpt", digits_ckpt, "-o", out).code == 0
    return out, out.read_bytes()


def test_a_failed_check_or_a_full_disk_keeps_the_previous_file(cli, digits_ckpt, exported, monkeypatch):
    out, good = exported
    real = ex.run_pt2
    monkeypatch.setattr(ex, "run_pt2", lambda path: (lambda run: lambda x: [y + 1 for y in run(x)])(real(path)))
    r = cli("export", DIGITS, "-o", out)  # random weights, and a runtime that disagrees
    assert r.code == 1 and f"{out} is left as it was" in r.err
    assert out.read_bytes() == good
    monkeypatch.undo()

    def disk_full(program, path, meta):  # half a file, then ENOSPC, as a full disk writes
        path.write_bytes(good[: len(good) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex, "_write_pt2", disk_full)
    r = cli("export", DIGITS, "-o", out)
    assert r.code == 2 and r.err.strip().splitlines()[-1] == (
        f"-o {out}: error: cannot write it: No space left on device; the previous file is kept")
    assert out.read_bytes() == good and sorted(p.name for p in out.parent.iterdir()) == ["d.pt2"]


def test_until_verified_the_output_holds_the_previous_file(cli, exported, monkeypatch):
    """SIGKILL over an export left a partial, unloadable file: what is on disk while the new file is
    written and checked (what a kill at that moment leaves) is the old file, the new one beside it."""
    out, good = exported
    real = ex.compare
    seen = []

    def compare_and_look(model, run, shape, batches):
        staged = list(out.parent.glob(".d.pt2.*.tmp/d.pt2"))
        seen.append((out.read_bytes() == good, len(staged) == 1 and staged[0].stat().st_size > 0))
        return real(model, run, shape, batches)

    monkeypatch.setattr(ex, "compare", compare_and_look)
    assert cli("export", DIGITS, "-o", out).code == 0
    assert seen == [(True, True)] and out.read_bytes() != good  # the old file until the new one was verified
    assert sorted(p.name for p in out.parent.iterdir()) == ["d.pt2"]


def test_one_exporter_at_a_time(cli, tmp_path):
    """Two exporters on one -o both wrote into it (both exit 3, the file unloadable)."""
    out = tmp_path / "d.onnx"
    fd, lock = ex._lock(out)  # another export holds it
    try:
        r = cli("export", DIGITS, "-o", out)
    finally:
        os.unlink(lock)
        os.close(fd)
    assert r.code == 2 and r.err.strip().splitlines()[-1] == (
        f"-o {out}: error: another netspec export is writing this file now; wait for it to finish")
    assert not out.exists()


def test_what_is_beside_or_behind_the_output_is_left_alone(cli, digits_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "digits.pt2"  # a spec that happens to end in .pt2
    spec.write_text((ROOT / "specs" / "digits.yaml").read_text())
    r = cli("export", spec, "-o", spec)
    assert r.code == 2 and f"-o {spec}: error: is the spec; the export would overwrite it" in r.err
    r = cli("export", DIGITS, "--ckpt", digits_ckpt, "-o", digits_ckpt.with_suffix(".pt2"))
    assert r.code == 0  # a name beside the weights is fine
    (tmp_path / "d.onnx.data").write_bytes(b"someone else's")  # the exporter deleted this
    assert cli("export", DIGITS, "-o", tmp_path / "d.onnx").code == 0
    assert (tmp_path / "d.onnx.data").read_bytes() == b"someone else's"
    # a symlink at -o is replaced by the file; what it pointed at is not written through
    (tmp_path / "target.txt").write_text("keep me")
    (tmp_path / "link.pt2").symlink_to(tmp_path / "target.txt")
    assert cli("export", DIGITS, "-o", tmp_path / "link.pt2").code == 0
    assert (tmp_path / "target.txt").read_text() == "keep me"
    assert not (tmp_path / "link.pt2").is_symlink() and _pt2_metadata(tmp_path / "link.pt2")["name"] == "digits-cnn"


@pytest.mark.parametrize("target, needle", [
    ("folder.onnx", "is a folder; name the file to write"),
    ("fifo.pt2", "is not a regular file (a device, FIFO or socket)"),
    ("a_file/x.pt2", "cannot make its folder {tmp}/a_file: {tmp}/a_file is a file, not a folder"),
    ("/proc/x.onnx", "cannot write into /proc:"),
])
def test_bad_output_targets_are_one_line_exit_2(cli, tmp_path, target, needle):
    """Exit 3 or 134 (a C++ terminate) before: a folder, a device, a path under a file, /proc."""
    (tmp_path / "folder.onnx").mkdir()
    os.mkfifo(tmp_path / "fifo.pt2")
    (tmp_path / "a_file").write_text("")
    out = target if target.startswith("/") else tmp_path / target
    r = cli("export", DIGITS, "-o", out)
    assert r.code == 2 and r.out == "" and r.err.strip().splitlines() == [
        f"-o {out}: error: {needle.format(tmp=tmp_path)}" + r.err.strip().split(needle.format(tmp=tmp_path), 1)[1]]


def test_the_model_is_refused_before_it_is_built_when_it_cannot_fit(cli, write, tmp_path, monkeypatch):
    """A 10-billion-parameter spec and --batch 2147483647 allocated before failing (exit 3)."""
    import netspec.budget
    import netspec.deploy.predict

    monkeypatch.setattr(netspec.budget, "physical_memory", lambda: 16 * 2**30)
    monkeypatch.setattr(netspec, "build", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setattr(netspec.deploy.predict, "physical_memory", lambda: 16 * 2**30)
    huge = write("netspec: 1\nname: huge\ninput: [1, 8, 8]\nlayers:\n  - flatten\n  - linear: 100000\n"
                 "  - linear: 100000\n")
    with torch.device("meta"):  # its weights' shapes, in a file of a few KB
        shapes = {"1.weight": torch.empty(100000, 64), "1.bias": torch.empty(100000),
                  "2.weight": torch.empty(100000, 100000), "2.bias": torch.empty(100000)}
    torch.save(shapes, tmp_path / "huge.pt")
    for command, copies, gib in (("export", "3 copies of the weights", "111.8"), ("predict", "the weights", "37.3")):
        r = cli(command, huge, "--init", tmp_path / "huge.pt", *(["-o", tmp_path / "h.onnx"] if command == "export" else ["x.png"]))
        assert r.code == 2 and r.err.strip().splitlines() == [
            f"{huge}:7:13: error: layers[2].linear: running the model needs at least {gib} GiB, more than the 16.0 GiB "
            f"of this machine's memory ({copies}: {gib} GiB); refused before allocating"], r.err
    r = cli("export", DIGITS, "--batch", "2147483647", "-o", tmp_path / "d.onnx")
    assert r.code == 2 and r.err.startswith("--batch 2147483647: error: running the model needs at least"), r.err
    assert "the largest activation of a batch of 2,147,483,647" in r.err


def test_the_metadata_says_fp32_and_what_test_flip_is_not_done(cli, write, tmp_path):
    flipped = ROOT / "specs" / "digits.yaml"
    r = cli("export", flipped, "-o", tmp_path / "f.pt2", "--set", "train.augmentation.test_flip=true")
    assert r.code == 0
    meta = _pt2_metadata(tmp_path / "f.pt2")
    assert meta["precision"] == "fp32" and meta["test_flip"] is True
    assert "the exported model does not (its metadata says test_flip: true)" in r.err
    assert cli("export", flipped, "-o", tmp_path / "g.pt2").code == 0
    assert _pt2_metadata(tmp_path / "g.pt2")["test_flip"] is False
