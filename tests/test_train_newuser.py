"""Issue 11, the trainer's side, through the real CLI: the resume hint after SIGTERM is a
command that works pasted into a shell (`--set`s and all) and `--resume DIR` alone works;
progress lines when stdout is not a terminal; the first decode of an image folder says
so; bf16 on a CPU that emulates it warns; counts and plurals; whole-epoch ticks on the
curves; `eval` with another spec's checkpoint says whose it is and which keys differ."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import ruamel.yaml

from test_data import _write_images
from train_helpers import tiny_spec


def _write_spec(path, doc) -> str:
    with open(path, "w") as f:
        ruamel.yaml.YAML().dump(doc, f)
    return str(path)


def _stopped_run(cli, monkeypatch, *args: str):
    """`netspec train ARGS` (in this process) stopped by a real SIGTERM at epoch 1 step 5."""
    import netspec.train.loop as loop
    fit = loop.fit

    def stop(epoch, step):
        if (epoch, step) == (0, 4):
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(loop, "fit", lambda *a, **kw: fit(*a, **kw, on_step=stop))
    r = cli("train", *args)
    assert r.code == 130, r.err
    return r


def test_resume_hint_works_pasted_into_a_shell(cli, tmp_path, monkeypatch):
    spec = _write_spec(tmp_path / "tiny.yaml", tiny_spec(epochs=3))
    monkeypatch.chdir(tmp_path)
    r = _stopped_run(cli, monkeypatch, spec, "--out", "run one", "--set", "train.epochs=2",
                     "--set", "train.optimizer={name: sgd, lr: 0.05}")
    assert r.err.count("continue with: ") == 1 and "Source(" not in r.err
    hint = r.err.split("continue with: ", 1)[1].strip()
    assert hint.endswith("--resume 'run one'") and "--set 'train.optimizer={name: sgd, lr: 0.05}'" in hint
    resumed = subprocess.run(["bash", "-c", hint], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "run one" / "summary.json").read_text())
    assert summary["epochs"] == 2  # the --set was kept: without it the resume is refused (train section changed)


def test_resume_with_the_run_folder_alone(cli, tmp_path, monkeypatch):
    spec = _write_spec(tmp_path / "tiny.yaml", tiny_spec(epochs=3))
    monkeypatch.chdir(tmp_path)
    _stopped_run(cli, monkeypatch, spec, "--out", "r", "--set", "train.epochs=2", "--set", "train.optimizer.name=adam")
    monkeypatch.undo()
    (tmp_path / "tiny.yaml").unlink()  # the run folder holds everything
    monkeypatch.chdir(tmp_path)
    r = cli("train", "--resume", "r", "--quiet")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["epochs"] == 2


@pytest.fixture
def tiny(tmp_path):
    return _write_spec(tmp_path / "tiny.yaml", tiny_spec(epochs=1))


def test_progress_lines_off_a_terminal_at_the_interval(cli, tiny, tmp_path, monkeypatch):
    r = cli("train", tiny, "--out", tmp_path / "a")
    assert r.code == 0 and " step " not in r.out  # a one-second epoch is under the 30 s interval
    monkeypatch.setenv("NETSPEC_PROGRESS_INTERVAL", "0")
    r = cli("train", tiny, "--out", tmp_path / "b")
    steps = [line for line in r.out.splitlines() if " step " in line]
    assert steps and steps[0].startswith("epoch 1/1  step 1/6  loss ") and "left in the epoch" in steps[0]


def test_first_decode_of_an_image_folder_is_announced(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NETSPEC_CACHE", str(tmp_path / "cache"))
    for split, n in (("train", 4), ("test", 2)):
        _write_images(tmp_path / "img" / split, ["cat", "dog"], n, size=(8, 8))
    doc = tiny_spec(epochs=1, batch_size=4, dataset={"name": "imagefolder", "root": str(tmp_path / "img")})
    for key in ("train_size", "test_size", "classes", "seed"):
        del doc["train"]["dataset"][key]
    spec = _write_spec(tmp_path / "img.yaml", doc)
    first = cli("train", spec, "--out", tmp_path / "a")
    assert first.code == 0, first.err
    assert f"decoding 8 images under {tmp_path / 'img' / 'train'} (once" in first.out
    second = cli("train", spec, "--out", tmp_path / "b")
    assert second.code == 0 and "decoding" not in second.out


def test_digits_counts_plurals_and_emulated_bf16(cli, tmp_path):
    from netspec.train.loop import _native_low_precision
    doc = tiny_spec(epochs=1, batch_size=64, precision="bf16", dataset={"name": "digits"})
    doc["input"], doc["vars"]["classes"] = [1, 8, 8], 10
    del doc["train"]["dataset"]["train_size"], doc["train"]["dataset"]["test_size"]
    del doc["train"]["dataset"]["classes"], doc["train"]["dataset"]["seed"]
    r = cli("train", _write_spec(tmp_path / "d.yaml", doc), "--out", tmp_path / "r", "--device", "cpu")
    assert r.code == 0, r.err
    assert "(1,438 train / 359 test images)" in r.out
    assert ", 1 epoch, " in r.out.splitlines()[-1]
    warned = "warning: train.precision bf16: this CPU has no native bf16" in r.err
    assert warned == (not _native_low_precision("bf16"))


def test_curves_tick_whole_epochs(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from netspec.train.runs import RunFolder
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    rows = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "test_loss": 1 / e, "test_acc": 0.5} for e in (1, 2)]
    RunFolder(tmp_path).write_curves(rows)
    ticks = [t for ax in figures[0].axes for t in ax.get_xticks()]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_eval_with_another_specs_checkpoint(cli, tiny, tmp_path):
    assert cli("train", tiny, "--out", tmp_path / "r", "--quiet").code == 0
    other = tiny_spec(epochs=1)
    other["name"] = "other"
    other["layers"][0]["conv"]["out"] = 12
    r = cli("eval", _write_spec(tmp_path / "other.yaml", other), "--ckpt", tmp_path / "r" / "last.pt")
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"{tmp_path / 'r' / 'last.pt'} (netspec checkpoint, spec 'tiny', epoch 1) was trained from spec 'tiny', " \
           "not this spec 'other'" in r.err
    assert "0.weight file [8, 3, 3, 3] model [12, 3, 3, 3]" in r.err
