"""`netspec sweep` (netspec/sweep/): a 2x2 sweep on synthetic data writes the tables
and plot, and a second invocation re-runs nothing; a run whose summary is missing is
trained (or resumed from its last.pt) again; bad input stops before any training.
With --jobs N the runs are subprocesses: same results as in-process, failures recorded,
a run-time error stops the sweep, SIGTERM leaves resumable runs."""
from __future__ import annotations

import csv

import pytest

import netspec.train.loop as loop
from conftest import ROOT

TINY = """\
netspec: 1
name: tiny
input: [3, 8, 8]
vars: {classes: 4, w: 8}
layers:
  - conv: {out: $w, k: 3, padding: 1, bias: false, name: conv1}
  - bn
  - relu
  - maxpool: 2
  - flatten
  - linear: {out: $classes, name: fc}
train:
  dataset: {name: synthetic, train_size: 64, test_size: 32, classes: 4, seed: 1}
  epochs: 2
  batch_size: 16
  optimizer: {name: sgd, lr: 0.05}
  device: cpu
"""

SWEEP = """\
sweep: tiny-lr
description: two learning rates, two seeds
spec: tiny.yaml
grid:
  train.optimizer.lr: [0.02, 0.1]
seeds: [0, 1]
reported: {"0.1": 90}
"""


@pytest.fixture
def sweep_dir(write, tmp_path):
    write(TINY, "tiny.yaml")
    write(SWEEP, "sweep.yaml")
    return tmp_path


@pytest.fixture
def fits(monkeypatch):
    """Count the trainer's fit calls (and what they resume from)."""
    calls = []
    real = loop.fit

    def counting(job, **kw):
        calls.append((job.config.optimizer.lr, job.config.seed, kw.get("resume")))
        return real(job, **kw)
    monkeypatch.setattr(loop, "fit", counting)
    return calls


def test_two_by_two_sweep_writes_tables_and_resumes(cli, sweep_dir, fits):
    out = sweep_dir / "out"
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", out, "--quiet")
    assert r.code == 0, r.err
    assert sorted(fits) == [(0.02, 0, None), (0.02, 1, None), (0.1, 0, None), (0.1, 1, None)]
    for name in ("results.md", "results.csv", "runs.csv", "results.png"):
        assert (out / name).is_file(), name

    rows = list(_rows(out / "results.csv"))
    assert [r["label"] for r in rows] == ["0.02", "0.1"]
    for row in rows:
        assert row["params"] == "748" and row["seeds"] == "2" and row["done"] == "2"
        assert 0 <= float(row["test_acc_mean"]) <= 1 and row["test_acc_std"] != ""
        assert {k for k in row if k.startswith("acc:")} == {"acc:class0", "acc:class1", "acc:class2", "acc:class3"}
        assert float(row["images_per_s"]) > 0 and float(row["wall_s"]) >= 0
    assert rows[1]["reported_acc"] == "90"
    # the mean is over the two seeds' summaries
    runs = list(_rows(out / "runs.csv"))
    assert len(runs) == 4 and {r["status"] for r in runs} == {"trained"}
    accs = [float(r["test_acc"]) for r in runs if r["label"] == "0.02"]
    assert float(rows[0]["test_acc_mean"]) == pytest.approx(sum(accs) / 2)

    md = (out / "results.md").read_text()
    assert "| lr | params | MACs | test acc | best test acc | reported | seeds | images/s | wall |" in md
    assert "| 0.1 | 748 |" in md and "| 90% |" in md and "± " in md
    assert "## Per-class test accuracy" in md

    # again: nothing is trained, the tables are the same
    before = (out / "results.csv").read_text()
    fits.clear()
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", out, "--quiet")
    assert r.code == 0 and fits == []
    assert "4 already done" in r.out
    assert (out / "results.csv").read_text() == before

    # a run that lost its summary resumes from its last.pt; only that one runs
    (out / "runs" / "0.1_seed1" / "summary.json").unlink()
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", out, "--quiet")
    assert r.code == 0 and [(lr, s) for lr, s, _ in fits] == [(0.1, 1)]
    assert fits[0][2] == out / "runs" / "0.1_seed1"


def test_variants_and_grid_from_the_command_line(cli, sweep_dir, write):
    write("extends: tiny.yaml\nname: tiny-wide\nvars: {w: 16}\n", "wide.yaml")
    out = sweep_dir / "cl"
    r = cli("sweep", sweep_dir / "tiny.yaml", sweep_dir / "wide.yaml", "--grid", "train.epochs=1",
            "--out", out, "--dry-run")
    assert r.code == 0, r.err
    assert "2 configurations, 2 runs" in r.out and not (out / "runs").exists()
    r = cli("sweep", sweep_dir / "tiny.yaml", sweep_dir / "wide.yaml", "--grid", "train.epochs=1", "--out", out, "--quiet")
    assert r.code == 0, r.err
    rows = list(_rows(out / "results.csv"))
    assert [(r["variant"], r["params"]) for r in rows] == [("tiny", "748"), ("wide", "1492")]


@pytest.mark.parametrize("text, words", [
    ("sweep: x\nspec: tiny.yaml\ngrid: {train.optimizer.lr: [0.1]}\nseed: [0]\n", "sweep.yaml:4:1: error: seed: unknown field 'seed' (did you mean 'seeds'?)"),
    ("sweep: x\nspec: nothere.yaml\n", "sweep.yaml:2:7: error: spec: spec file"),
    ("sweep: x\nspec: tiny.yaml\nreported: {'0.5': 70}\n", "'0.5' is not a configuration of this sweep"),
    ("sweep: x\nspec: tiny.yaml\ngrid: {layers.conv9.out: [4]}\n", "no item named 'conv9'"),
    ("sweep: x\nspec: tiny.yaml\ngrid: {train.optimizer.lr: [-1]}\n", "train.optimizer.lr: Input should be greater than 0"),
])
def test_bad_sweeps_stop_before_training(cli, sweep_dir, write, fits, text, words):
    path = write(text, "sweep.yaml")
    r = cli("sweep", path, "--out", sweep_dir / "bad")
    assert r.code == 2 and fits == []
    assert r.err.count("\n") == 1 and words in r.err, r.err
    assert not (sweep_dir / "bad" / "runs").exists()


def test_bad_grid_option(cli, sweep_dir):
    r = cli("sweep", sweep_dir / "tiny.yaml", "--grid", "train.optimizer.lr")
    assert r.code == 2 and "--grid takes PATH=V1,V2" in r.err


@pytest.mark.parametrize("name", ["elexnet_lr.yaml", "elexnet_study.yaml", "resnet18_cifar_norm.yaml",
                                  "resnet18_cifar_recipe.yaml"])
def test_shipped_sweep_definitions_plan_and_check(cli, name, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    r = cli("sweep", f"sweeps/{name}", "--dry-run", "--out", "/nonexistent/dry")
    if r.code:  # no CIFAR-10 beside this clone: the dry run says so, at the spec's root field
        assert r.code == 2 and "train.dataset.root: " in r.err and "is not a folder" in r.err, r.err
        for split in ("train", "test"):
            (tmp_path / "cifar10" / split).mkdir(parents=True)
        r = cli("sweep", f"sweeps/{name}", "--dry-run", "--out", "/nonexistent/dry",
                "--set", f"train.dataset.root={tmp_path / 'cifar10'}")
    assert r.code == 0, r.err
    counts = {"elexnet_lr.yaml": "6 configurations, 6 runs", "elexnet_study.yaml": "4 configurations, 4 runs",
              "resnet18_cifar_norm.yaml": "3 configurations, 3 runs", "resnet18_cifar_recipe.yaml": "4 configurations, 4 runs"}
    assert counts[name] in r.out


# -- --jobs N: runs as `netspec train` subprocesses ------------------------------------------------
def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _runs(out) -> dict:
    return {(r["label"], r["seed"]): r for r in _rows(out / "runs.csv")}


def test_parallel_jobs_train_the_same_runs_as_one_after_another(cli, sweep_dir, fits):
    """CPU, fixed seeds: --jobs 2 (subprocesses) and the in-process sweep give the same accuracies."""
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", sweep_dir / "seq", "--quiet")
    assert r.code == 0, r.err
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", sweep_dir / "par", "--quiet", "--jobs", "2")
    assert r.code == 0, r.err
    assert len(fits) == 4  # the parallel runs did not train in this process
    assert "up to 2 at a time" in r.out
    seq, par = _runs(sweep_dir / "seq"), _runs(sweep_dir / "par")
    assert {k: (v["status"], v["test_acc"], v["best_epoch"]) for k, v in par.items()} == \
           {k: ("trained", v["test_acc"], v["best_epoch"]) for k, v in seq.items()}
    log = (sweep_dir / "par" / "runs" / "0.1_seed1" / "train.log").read_text()
    assert "tiny: test accuracy" in log
    assert (sweep_dir / "par" / "results.png").is_file()
    # resumable the same way
    r = cli("sweep", sweep_dir / "sweep.yaml", "--out", sweep_dir / "par", "--quiet", "--jobs", "2")
    assert r.code == 0 and "4 already done" in r.out


def test_parallel_failed_run_is_recorded_and_the_others_finish(cli, sweep_dir):
    r = cli("sweep", sweep_dir / "tiny.yaml", "--grid", "train.optimizer.lr=0.05,1.0e30", "--out", sweep_dir / "f",
            "--quiet", "--jobs", "2")
    assert r.code == 1, r.err
    runs = _runs(sweep_dir / "f")
    assert runs[("0.05", "0")]["status"] == "trained"
    bad = runs[("1e+30", "0")]
    assert bad["status"] == "failed" and "loss became" in bad["error"], bad
    assert "1 run(s) failed" in r.out


def test_parallel_invalid_input_at_run_time_stops_the_sweep(cli, sweep_dir):
    """A missing dataset is found when a run starts: its one-line error ends the sweep (exit 2)."""
    r = cli("sweep", sweep_dir / "tiny.yaml", "--seeds", "1,2,3", "--out", sweep_dir / "m", "--quiet",
            "--jobs", "2", "--set", "train.dataset={name: imagefolder, root: /nonexistent/photos}")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "/nonexistent/photos" in r.err, r.err
    assert not (sweep_dir / "m" / "runs" / "3_seed0").exists()  # the third run never started


def test_parallel_sweep_stopped_by_sigterm_resumes(sweep_dir, write):
    """SIGTERM to the sweep: every running run saves a resumable checkpoint, exit 130; the same
    command again finishes the runs from their checkpoints, with the uninterrupted results."""
    import signal
    import subprocess
    import sys
    import time

    slow = TINY.replace("epochs: 2", "epochs: 40").replace("train_size: 64", "train_size: 512")
    write(slow, "slow.yaml")
    command = [sys.executable, "-m", "netspec", "sweep", str(sweep_dir / "slow.yaml"), "--grid",
               "train.optimizer.lr=0.02,0.1", "--out", str(sweep_dir / "s"), "--quiet", "--jobs", "2"]
    sweep = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = [sweep_dir / "s" / "runs" / f"{lr}_seed0" / "last.pt" for lr in ("0.02", "0.1")]
    deadline = time.time() + 120
    while not all(c.exists() for c in checkpoints) and sweep.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert sweep.poll() is None, "the sweep ended before it could be stopped"
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, (out, err)
    assert "run the same command again to resume" in err
    assert not any((c.parent / "summary.json").exists() for c in checkpoints)

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resuming in") == 2
    full = subprocess.run([*command[:-5], "--out", str(sweep_dir / "full"), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    got, want = _runs(sweep_dir / "s"), _runs(sweep_dir / "full")
    assert {k: v["test_acc"] for k, v in got.items()} == {k: v["test_acc"] for k, v in want.items()}


# -- issue 23 -------------------------------------------------------------------------------------------
def test_a_second_sweep_on_one_out_is_refused(cli, sweep_dir, fits):
    """Another sweep holds OUT: one line naming its pid and command, nothing trained; once it
    is gone (its lock goes with its process), the sweep runs."""
    from train_helpers import lock_held_elsewhere

    out = sweep_dir / "out"
    out.mkdir()
    with lock_held_elsewhere(out, ["netspec", "sweep", "x.yaml"]) as pid:
        r = cli("sweep", sweep_dir / "sweep.yaml", "--out", out, "--quiet")
    assert r.code == 2 and fits == [] and not (out / "runs" / "0.02_seed0").exists()
    assert r.err == f"error: sweep folder {out} is in use by pid {pid} (netspec sweep x.yaml); wait for it to end, " \
                    f"or use another folder\n"
    r = cli("sweep", sweep_dir / "tiny.yaml", "--out", out, "--quiet", "--set", "train.epochs=1")
    assert r.code == 0, r.err


def test_sweep_wide_sets_head_every_table_and_the_plot(cli, sweep_dir, monkeypatch):
    import matplotlib.axes
    titles = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, text, **kw: titles.append(text) or real(ax, text, **kw))
    out = sweep_dir / "out"
    r = cli("sweep", sweep_dir / "tiny.yaml", "--out", out, "--quiet", "--set", "train.epochs=1",
            "--set", "train.batch_size=32")
    assert r.code == 0, r.err
    md = (out / "results.md").read_text().split("\n")
    every = "Every run with `--set train.epochs=1` `--set train.batch_size=32`."
    tables = [i for i, line in enumerate(md) if line.startswith("| ") and not md[i - 1].startswith("|")]
    assert len(tables) == 2 and all(every in md[i - 4:i] for i in tables), md
    assert titles[-1] == "sweep tiny\nevery run with train.epochs=1, train.batch_size=32"


def test_dry_run_commands_paste_into_a_shell(cli, sweep_dir):
    import shlex
    norm = '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}'
    r = cli("sweep", sweep_dir / "tiny.yaml", "--grid", f"train.normalization={norm}", "--out", sweep_dir / "o d",
            "--dry-run")
    assert r.code == 0, r.err
    line = r.out.splitlines()[1]
    argv = shlex.split(line.split(": ", 1)[1])
    assert argv == ["netspec", "train", str(sweep_dir / "tiny.yaml"), "--set",
                    "train.normalization={\"mean\": [0.5, 0.5, 0.5], \"std\": [0.25, 0.25, 0.25]}",
                    "--set", "train.seed=0", "--out", str(sweep_dir / "o d" / "runs" / line.split(":")[0].strip())]


def test_sweep_names_and_labels_reach_the_terminal_escaped(cli, sweep_dir, write):
    write('sweep: "x\\e]0;owned\\aa\\nfake line"\nspec: tiny.yaml\ngrid:\n  train.epochs: {"one\\e[2J": 1}\n',
          "evil.yaml")
    import warnings
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise keep them from stderr
        warnings.simplefilter("always")
        r = cli("sweep", sweep_dir / "evil.yaml", "--out", sweep_dir / "out", "--quiet")
    assert r.code == 0, r.err
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []   # none drawn into results.png
    assert not any(c in r.out + r.err for c in "\x1b\x07"), r.out
    assert "sweep x\\x1b]0;owned\\x07a\\nfake line: 1 configurations" in r.out
    assert all(line.startswith(("sweep ", "[1/1] ", "results: ")) for line in r.out.splitlines()), r.out
