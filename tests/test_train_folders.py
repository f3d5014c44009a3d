"""Issue 23, the trainer's side: run folders are locked while trained and never replaced by a
new run; a finished run resumed says it is complete and changes nothing, and more epochs
extend it; fp16 on the CPU warns with the measured alternative; torch's noise that is not
the user's concern stays off the console."""
from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from netspec.locks import LOCK_FILE, FolderLock
from train_helpers import lock_held_elsewhere, tiny_spec


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec(epochs=1, schedule={"name": "constant"})))
    return path


@pytest.fixture
def finished(cli, tiny, tmp_path):
    r = cli("train", tiny, "--out", tmp_path / "r", "--quiet")
    assert r.code == 0, r.err
    return tmp_path / "r"


def _files(folder) -> dict:
    """Every file of a run but the lock's (taken and dropped by whoever looks)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.name != LOCK_FILE}


def _one_line(r) -> str:
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1, (r.code, r.err)
    return lines[0]


# -- item 18: a new run never replaces one ---------------------------------------------------------
@pytest.mark.parametrize("to_resume", [False, True])
def test_a_new_run_refuses_a_folder_holding_a_run(cli, tiny, finished, to_resume):
    """A finished run's folder, or one stopped midway (last.pt, no summary.json): refused,
    naming --resume; best.pt and last.pt untouched."""
    if to_resume:
        (finished / "summary.json").unlink()
    before = _files(finished)
    line = _one_line(cli("train", tiny, "--out", finished, "--quiet"))
    found = "last.pt" if to_resume else "last.pt, summary.json"
    assert line == f"error: {finished} already holds a run ({found}); continue it with --resume {finished}, " \
                   f"or train into another --out"
    assert _files(finished) == before


def test_a_folder_without_a_checkpoint_is_trained_into(cli, tiny, tmp_path):
    """A run stopped before its first checkpoint left only spec.yaml: nothing to resume or lose."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "spec.yaml").write_text("# from a run stopped at once\n")
    assert cli("train", tiny, "--out", tmp_path / "r", "--quiet").code == 0


# -- item 4: one process at a time in a run folder ---------------------------------------------------
def test_a_run_folder_being_trained_is_refused(cli, tiny, finished):
    """The lock of a running `train` (taken here as that process would): a resume, or a new run
    on the same --out, is one line naming it, and changes nothing."""
    (finished / "summary.json").unlink()
    before = _files(finished)
    with FolderLock(finished, "run folder").acquire(["netspec", "train", "a b.yaml"]):
        for argv in (["--resume", finished], [tiny, "--out", finished]):
            line = _one_line(cli("train", *argv, "--quiet"))
            assert line == f"error: run folder {finished} is in use by pid {os.getpid()} " \
                           f"(netspec train 'a b.yaml'); wait for it to end, or use another folder"
    assert _files(finished) == before
    assert cli("train", "--resume", finished, "--quiet").code == 0   # released: it goes on


def test_the_lock_goes_with_its_process(cli, tiny, finished):
    """A holder killed with SIGKILL leaves no stale lock."""
    (finished / "summary.json").unlink()
    with lock_held_elsewhere(finished, ["netspec", "train"]) as pid:
        assert f"is in use by pid {pid} (netspec train)" in _one_line(cli("train", "--resume", finished))
    assert cli("train", "--resume", finished, "--quiet").code == 0


# -- item 6: resuming a finished run -----------------------------------------------------------------
def test_resuming_a_finished_run_says_so_and_changes_nothing(cli, finished):
    before = _files(finished)
    r = cli("train", "--resume", finished)
    assert r.code == 0 and r.err == "", r.err
    assert r.out.splitlines() == [f"{finished}: complete, 1 epoch trained (test accuracy "
                                  f"{100 * json.loads(before['summary.json'][0])['test_acc']:.2f}%); nothing was "
                                  f"changed. To train it further, give it more epochs: {sys.executable} -m netspec "
                                  f"train --resume {finished} --set train.epochs=2"]
    assert _files(finished) == before


def test_more_epochs_extend_a_finished_run(cli, tiny, finished, tmp_path):
    """The command the message offers trains epoch 2 on; with a constant schedule the result
    is the run that was asked for 2 epochs in the first place, bit for bit."""
    r = cli("train", "--resume", finished, "--set", "train.epochs=2")
    assert r.code == 0, r.err
    assert "resumed at epoch 2 step 0; train.epochs 1 -> 2" in r.out
    straight = cli("train", tiny, "--out", tmp_path / "two", "--quiet", "--set", "train.epochs=2")
    assert straight.code == 0, straight.err
    extended, want = (json.loads((f / "metrics.jsonl").read_text().splitlines()[-1])
                      for f in (finished, tmp_path / "two"))
    assert {k: v for k, v in extended.items() if not k.endswith("_s")} == \
           {k: v for k, v in want.items() if not k.endswith("_s")}
    assert json.loads((finished / "summary.json").read_text())["epochs"] == 2
    assert cli("train", "--resume", finished).out.startswith(f"{finished}: complete, 2 epochs trained")


def test_extending_a_decaying_schedule_says_what_it_does(cli, tmp_path):
    spec = tmp_path / "cos.json"
    spec.write_text(json.dumps(tiny_spec(epochs=1, schedule={"name": "cosine"})))
    assert cli("train", spec, "--out", tmp_path / "r", "--quiet").code == 0
    r = cli("train", "--resume", tmp_path / "r", "--set", "train.epochs=2")
    assert r.code == 0, r.err
    # halfway through a 2-epoch cosine: lr 0.05 * 0.5 (it had decayed to 0 at the end of the 1-epoch run)
    assert "train.epochs 1 -> 2: the cosine schedule is recomputed over 2 epochs (lr 0.025 from here, " \
           "0 at the end of epoch 1)" in r.out


def test_fewer_epochs_than_trained_is_refused(cli, tmp_path):
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps(tiny_spec(epochs=2)))
    assert cli("train", spec, "--out", tmp_path / "r", "--quiet").code == 0
    (tmp_path / "r" / "summary.json").unlink()
    line = _one_line(cli("train", "--resume", tmp_path / "r", "--set", "train.epochs=1"))
    assert line.endswith("last.pt: it is at the end of epoch 2, past train.epochs 1")


# -- item 3: fp16 on the CPU ---------------------------------------------------------------------------
def test_fp16_convolutions_on_the_cpu_warn_with_the_alternative(cli, tiny, tmp_path, monkeypatch):
    import netspec.train.loop as loop
    monkeypatch.setattr(loop, "_native_low_precision", lambda precision: True)   # as oneDNN says on this CPU
    r = cli("train", tiny, "--out", tmp_path / "conv", "--quiet", "--set", "train.precision=fp16")
    assert r.code == 0, r.err
    assert r.err == ("warning: train.precision fp16: torch's fp16 convolution backward on the CPU trains 50-170x slower "
                     "than fp32 (specs/digits.yaml, measured by bench/cpu_precision.py); --set train.precision=fp32, or "
                     "bf16 on a CPU with native bf16, trains at full speed\n")
    r = cli("train", tiny, "--out", tmp_path / "mlp", "--quiet", "--set", "train.precision=fp16",
            "--set", "layers=[flatten, {linear: {out: $classes}}]")
    assert r.code == 0 and r.err == ""   # no convolution: fp16 is as fast as fp32


# -- item 13: torch's noise ------------------------------------------------------------------------------
def test_no_cuda_runtime_message_on_a_cpu_machine(tiny, tmp_path, monkeypatch, capfd):
    """torch.compile imports torch.utils.cpp_extension, which logs "No CUDA runtime is found"
    wherever a CUDA_HOME exists without a GPU. The import is what the fake compile does here
    (a real compile takes 25 s); torch's other messages still reach the user."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("the message is logged only without a GPU")
    from netspec.cli import main
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))

    def compile(net, **kwargs):
        import torch.utils.cpp_extension as cpp_extension   # its first import logs it too
        cpp_extension._find_cuda_home()
        logging.getLogger("torch.utils.cpp_extension").warning("something else")
        return net
    monkeypatch.setattr(torch, "compile", compile)
    code = main(["train", str(tiny), "--out", str(tmp_path / "r"), "--quiet", "--set", "train.compile=true"])
    err = capfd.readouterr().err
    assert code == 0 and "No CUDA runtime" not in err and "something else" in err, err
