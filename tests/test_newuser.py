"""Issue 11, the compiler's side: what a new user hit, each reproduction through the real
CLI. Closed pipes, `--set` mistakes and where they are reported, `--input`, unused
variables, paths in specs, `shortcut: auto` made visible, --help, and what `check` imports.
(The trainer's side is tests/test_train_newuser.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import netspec
from conftest import ROOT, spec_text

SPECS = ROOT / "specs"


def _closed_stdout(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """Run `python -m netspec ARGS` with stdout a pipe nobody reads (`| head -0`)."""
    read, write = os.pipe()
    os.close(read)  # every write gets EPIPE, as after `head -1` has exited
    try:
        proc = subprocess.run([sys.executable, "-m", "netspec", *args], stdout=write, stderr=subprocess.PIPE,
                              cwd=cwd, text=True, timeout=120)
    finally:
        os.close(write)
    return proc


# -- 1. pipes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["schema"], ["check", "specs/digits.yaml", "specs/lenet.yaml"],
                                  ["resolve", "specs/resnet18_cifar.yaml"], ["compile", "specs/resnext50.yaml", "--json"],
                                  ["compile", "specs/resnext50.yaml"], ["train", "--help"],
                                  ["diff", "specs/elexnet/a.yaml", "specs/elexnet/b.yaml"],
                                  ["sweep", "specs/digits.yaml", "--dry-run", "--grid", "train.epochs=1,2", "--out", "/nonexistent"]],
                         ids=["schema", "check", "resolve", "compile-json", "compile-table", "train-help", "diff", "sweep"])
def test_a_closed_pipe_is_a_normal_end(args):
    proc = _closed_stdout(*args)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_closed_pipe_keeps_the_exit_code_and_the_error_line():
    proc = _closed_stdout("check", "specs/digits.yaml", "tests/bad/groups.yaml")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "groups.yaml:5:35: error:" in proc.stderr


# -- 4. unused variables ---------------------------------------------------------------------------
def test_unused_variable_from_the_command_line_is_an_error(cli):
    r = cli("check", SPECS / "digits.yaml", "--set", "vars.clases=100")
    assert r.code == 2 and r.err.count("\n") == 1
    assert r.err.startswith("--set vars.clases=100: error: vars.clases: the spec uses no variable 'clases' "
                            "(did you mean 'classes'?)")
    assert cli("check", SPECS / "digits.yaml", "--set", "vars.classes=100").code == 0


def test_unused_variable_in_a_file_is_one_warning(cli, write):
    path = write(spec_text("  - conv: {out: $w, k: 3, name: 'c${i}'}\n",
                           "vars: {w: 8, i: 1, spare: 3, w2: '${w * 2}'}\nblocks:\n"
                           "  b: {args: {spare: 1}, body: [conv: {out: $spare, k: 1}]}\n"))
    r = cli("check", path, path)
    assert r.code == 0 and r.out.count(": ok") == 2
    # `spare` is only read inside a block whose own argument shadows it; w2 is read by nothing
    assert r.err.splitlines() == [f"{path}:4:20: warning: vars.spare: variable 'spare' is never used",
                                  f"{path}:4:30: warning: vars.w2: variable 'w2' is never used"]


def test_zoo_has_no_unused_variables(cli):
    r = cli("check", *sorted(SPECS.rglob("*.yaml")))
    assert r.code == 0 and r.err == ""


# -- 5. --set and --input errors say where they came from ---------------------------------------------
@pytest.mark.parametrize("option, line", [
    ("train.optimizer.lr=0.05x", "--set train.optimizer.lr=0.05x: error: train.optimizer.lr: Input should be a valid number"),
    ("train.epoch=3", "--set train.epoch=3: error: train.epoch: unknown field 'epoch' (did you mean 'epochs'?)"),
    ("train.optimzer.lr=0.1", "--set train.optimzer.lr=0.1: error: train.optimzer: unknown field 'optimzer' (did you mean 'optimizer'?)"),
    ("layers.fc.out=x", "--set layers.fc.out=x: error: layers[12].linear.out: Input should be a valid integer"),
    ("layers.²=3", "--set layers.²=3: error: layers.²: no item named '²'"),
    ("layers.--1.k=3", "--set layers.--1.k=3: error: layers.--1: no item named '--1'"),
    ("train.epochs=3\n4", "--set train.epochs=3\\n4: error: --set PATH=VALUE is one line"),
    ("train.ep\noch=3", "--set train.ep\\noch=3: error: --set PATH=VALUE is one line"),
    ("train.epochs=[3,", "--set train.epochs=[3,: error: invalid YAML"),
])
def test_set_errors_name_the_set(cli, option, line):
    r = cli("check", SPECS / "digits.yaml", "--set", option)
    assert r.code == 2 and r.err.count("\n") == 1, r.err
    assert r.err.startswith(line), r.err


def test_a_set_that_breaks_its_mapping_says_so(cli):
    r = cli("check", SPECS / "digits.yaml", "--set", "train.optimizer.name=adamx")
    assert r.code == 2 and "specs/digits.yaml:33:14: error: train.optimizer: unknown optimizer name" in r.err
    assert r.err.rstrip().endswith("(after --set train.optimizer.name=adamx)")


def test_odd_path_segments_in_grids_patches_and_diff(cli, write, tmp_path):
    r = cli("sweep", SPECS / "digits.yaml", "--dry-run", "--grid", "layers.²=1,2", "--out", tmp_path / "s")
    assert r.code == 2 and r.err.count("\n") == 1 and "no item named '²'" in r.err
    child = write(f"extends: {SPECS / 'digits.yaml'}\npatch:\n  - set: {{layers.--1.k: 3}}\n", "child.yaml")
    r = cli("check", child)
    assert r.code == 2 and r.err.startswith(f"{child}:3:11: error: ") and "no item named '--1'" in r.err
    r = cli("diff", SPECS / "digits.yaml", SPECS / "digits.yaml", "--set-b", "layers.²=3")
    assert r.code == 2 and r.err.count("\n") == 1 and "no item named '²'" in r.err


def test_input_errors_blame_the_argument(cli):
    r = cli("compile", SPECS / "resnet18_cifar.yaml", "--input", "32x32")
    assert r.code == 2 and r.err.count("\n") == 1
    assert r.err.startswith("--input 32,32: error: layers[0].conv: conv needs input [channels, height, width]")
    assert "the spec's own input [3, 32, 32] works" in r.err
    bad = cli("compile", ROOT / "tests" / "bad" / "groups.yaml", "--input", "3,32,32")  # the spec's own fault
    assert bad.code == 2 and bad.err.startswith(f"{ROOT / 'tests' / 'bad' / 'groups.yaml'}:5:35: error:")


# -- 3. paths in a spec: relative to the file that writes them ---------------------------------------
def _image_root(folder):
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
    return folder


def test_dataset_root_is_relative_to_the_spec_file(tmp_path, monkeypatch):
    (tmp_path / "specs" / "variants").mkdir(parents=True)
    _image_root(tmp_path / "data")
    train = "train: {dataset: {name: imagefolder, root: ../data}}\n"
    (tmp_path / "specs" / "base.yaml").write_text(spec_text("  - flatten\n", train))
    (tmp_path / "specs" / "variants" / "v.yaml").write_text("extends: ../base.yaml\nname: v\n")
    (tmp_path / "specs" / "variants" / "w.yaml").write_text("extends: ../base.yaml\nname: w\n" + train)
    monkeypatch.chdir(tmp_path / "specs" / "variants")  # anywhere but the spec's folder
    assert netspec.load("../base.yaml").train.dataset.root == str(tmp_path / "data")
    # a base's path is relative to the base's own folder, an override's to its file's
    assert netspec.load("v.yaml").train.dataset.root == str(tmp_path / "data")
    assert netspec.load("w.yaml").train.dataset.root == str(tmp_path / "specs" / "data")
    # a --set path is relative to the current directory, like any path typed in a shell
    assert netspec.load("v.yaml", overrides=["train.dataset.root=d2"]).train.dataset.root == str(tmp_path / "specs" / "variants" / "d2")
    assert netspec.load("v.yaml", overrides=["train.dataset.root=~/d3"]).train.dataset.root == os.path.expanduser("~/d3")


def test_missing_dataset_root_is_located_and_absolute(cli, write, tmp_path, monkeypatch):
    path = write(spec_text("  - flatten\n", "train:\n  dataset: {name: imagefolder, root: nowhere}\n"))
    monkeypatch.chdir(ROOT)
    line = f"{path}:5:38: error: train.dataset.root: {tmp_path / 'nowhere'} is not a folder"
    for args in (["train", path, "--out", tmp_path / "r"], ["sweep", path, "--dry-run", "--out", tmp_path / "s"]):
        r = cli(*args)
        assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith(line), r.err
    r = cli("sweep", path, "--dry-run", "--out", tmp_path / "s", "--set", "train.dataset.root=elsewhere")
    assert r.code == 2 and r.err.startswith(f"--set train.dataset.root=elsewhere: error: train.dataset.root: "
                                            f"{ROOT / 'elsewhere'} is not a folder")
    _image_root(tmp_path / "nowhere")
    assert cli("sweep", path, "--dry-run", "--out", tmp_path / "s").code == 0


def test_shipped_cifar_specs_point_beside_the_clone(tmp_path, monkeypatch):
    """The zoo's CIFAR-10 specs read ../shared/data/cifar10 of the clone's folder (where the
    project's copy is), written relative to each spec file: from any directory."""
    monkeypatch.chdir(tmp_path)
    beside = (ROOT.parent / "shared" / "data" / "cifar10").resolve()
    for name in ("elexnet.yaml", "resnet18_cifar.yaml", "shallow_cnn.yaml", "elexnet/a.yaml"):
        assert os.path.realpath(netspec.load(SPECS / name).train.dataset.root) == str(beside), name


# -- 7. shortcut: auto made visible -------------------------------------------------------------
def test_auto_projections_are_listed(cli, write):
    body = ("  - conv: {out: 8, k: 3, padding: 1}\n"
            "  - residual:\n      name: r\n      body: [conv: {out: 8, k: 3, padding: 1}, conv: {out: 16, k: 3, padding: 1}]\n"
            "  - residual:\n      name: s\n      body: [conv: {out: 16, k: 3, padding: 1}]\n")
    path = write(spec_text(body, input_shape="[3, 8, 8]"))
    r = cli("compile", path)
    assert r.code == 0
    assert r.out.splitlines()[-1] == "shortcut: auto projected 1 residual (input -> body output): r [8, 8, 8] -> [16, 8, 8]"
    data = json.loads(cli("compile", path, "--json").out)
    assert data["auto_projections"] == [{"path": "r", "input": [8, 8, 8], "output": [16, 8, 8]}]
    assert "projected" not in cli("compile", SPECS / "digits.yaml").out


# -- 11. --help ---------------------------------------------------------------------------------
def _help(capsys, *args: str) -> str:
    from netspec.cli import main
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_texts(capsys):
    assert "one row per leaf module" in _help(capsys, "compile")
    assert "without importing torch" in _help(capsys, "check")
    resolve = _help(capsys, "resolve")
    assert "plain graph" in resolve and "input shape instead of the spec's `input`" in resolve
    assert "--set" not in _help(capsys, "schema")
    train = _help(capsys, "train")
    for line in ("train.dataset.name  (digits|synthetic|cifar10|cifar100|mnist|fashion_mnist|imagefolder|digits_canvas|segmentation_folder, default 'digits')",
                 "train.optimizer.name  (sgd|adam|adamw, default 'sgd')",
                 "train.schedule.name  (constant|step|cosine|onecycle|poly, default 'onecycle')"):
        assert line in train
    assert "sweep" in _help(capsys) and "eval" in _help(capsys)  # every command still listed


# -- startup ---------------------------------------------------------------------------------
def test_check_imports_only_what_it_uses():
    code = ("import sys; from netspec.cli import main; main(['check', 'specs/resnext50.yaml']); "
            "import json; print(json.dumps(sorted(m for m in sys.modules if m.startswith(('netspec.', 'torch', 'rich')))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert not [m for m in loaded if m.startswith(("netspec.diff", "netspec.sweep", "netspec.train", "torch", "rich"))], loaded
