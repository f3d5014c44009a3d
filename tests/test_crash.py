"""Crash safety through the real CLI: a training process killed with SIGKILL after its
first checkpoint resumes with `--resume` and ends with the same metrics and weights
as an uninterrupted run (CPU, fixed seed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import ruamel.yaml
import torch

from conftest import ROOT
from train_helpers import tiny_spec


def _train(spec, *extra):
    return subprocess.Popen([sys.executable, "-m", "netspec", "train", str(spec), *map(str, extra)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    spec = tmp_path / "tiny.yaml"
    doc = tiny_spec(epochs=5, dataset={"train_size": 480})
    with open(spec, "w") as f:
        ruamel.yaml.YAML().dump(doc, f)

    with _train(spec, "--out", tmp_path / "full") as full:
        _, err = full.communicate(timeout=240)
        assert full.returncode == 0, err

    with _train(spec, "--out", tmp_path / "cut") as cut:
        checkpoint = tmp_path / "cut" / "last.pt"
        deadline = time.time() + 240
        while not checkpoint.exists() and cut.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert cut.poll() is None, "the run finished before it could be killed"
        os.kill(cut.pid, signal.SIGKILL)
        cut.communicate()
    assert not (tmp_path / "cut" / "summary.json").exists()

    with _train(spec, "--resume", tmp_path / "cut") as resumed:
        _, err = resumed.communicate(timeout=240)
        assert resumed.returncode == 0, err

    a = json.loads((tmp_path / "full" / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / "summary.json").read_text())
    for key in ("test_acc", "best_test_acc", "epochs"):
        assert a[key] == b[key], key
    wa = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
