"""The training loop: run folder, exact resume (after an epoch and mid-epoch, through
the real SIGTERM path), NaN handling, evaluation of a checkpoint."""
import json
import os
import signal

import pytest
import torch

import netspec
from netspec.train import checkpoint
from netspec.train.evaluate import evaluate_checkpoint
from netspec.train.loop import Interrupted, Job, TrainingFailed, fit
from tests.train_helpers import tiny_spec


def job(**train):
    return Job.from_spec(netspec.load(tiny_spec(**train)), source="tiny.yaml")


def test_run_folder_has_everything(tmp_path):
    s = fit(job(), out=tmp_path, quiet=True)
    for name in ("spec.yaml", "metrics.jsonl", "metrics.csv", "last.pt", "best.pt", "curves.png",
                 "confusion.png", "report.md", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_acc", "best_test_acc", "epochs", "images_per_s", "wall_s", "params", "device"):
        assert summary[key] is not None, key
    assert summary["epochs"] == 3 and summary["device"] == "cpu" and summary["params"] == s["params"]
    assert summary["best_test_acc"] >= summary["test_acc"] > 0.5  # 4 well-separated classes
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr,train_loss")
    report = (tmp_path / "report.md").read_text()
    assert "Per-class accuracy" in report and "| class3 |" in report and "confusion.png" in report
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["test_acc"] == summary["best_test_acc"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def _stop_at(epoch, step):
    def hook(e, s):
        if (e, s) == (epoch, step):
            os.kill(os.getpid(), signal.SIGTERM)  # the real signal path
    return hook


def _same_history(a, b):
    keys = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc")
    return [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


@pytest.mark.parametrize("ema", [{}, {"decay": 0.9, "every": 2}], ids=["", "ema"])
@pytest.mark.parametrize("stop", [(0, 5), (1, 1)], ids=["after-epoch-1", "mid-epoch-2"])
def test_resume_matches_an_uninterrupted_run(tmp_path, stop, ema):
    full = fit(job(ema=ema), out=tmp_path / "full", quiet=True)
    with pytest.raises(Interrupted) as e:
        fit(job(ema=ema), out=tmp_path / "cut", quiet=True, on_step=_stop_at(*stop))
    assert "--resume" in str(e.value) and "\n" not in str(e.value)
    saved = checkpoint.load(tmp_path / "cut" / "last.pt")
    assert (saved["epoch"], saved["step"]) == ((1, 0) if stop == (0, 5) else (1, 2))
    resumed = fit(job(ema=ema), resume=tmp_path / "cut", quiet=True)
    assert resumed["test_acc"] == full["test_acc"]
    assert resumed["final_train_loss"] == full["final_train_loss"]
    a = json.loads((tmp_path / "full" / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert a["best_test_acc"] == b["best_test_acc"] and a["epochs"] == b["epochs"] == 3
    hist = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert _same_history(hist("full"), hist("cut"))
    ca, cb = checkpoint.load(tmp_path / "full" / "last.pt"), checkpoint.load(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    if ema:
        assert ca["ema"]["n_averaged"] == cb["ema"]["n_averaged"] > 0
        assert all(torch.equal(ca["ema"]["model"][k], cb["ema"]["model"][k]) for k in ca["ema"]["model"])


def test_ema_is_the_moving_average_and_what_is_evaluated(tmp_path):
    """train.ema: every 2nd step ema = d^2 * ema + (1 - d^2) * w (the first update copies w),
    over parameters and batch-norm statistics; test_acc, best.pt and `netspec eval` use it."""
    j = job(ema={"decay": 0.8, "every": 2})
    built, expected = [], {}
    original = j.build
    j.build = lambda: built.append(original()) or built[-1]

    def track(epoch, step):
        if (step + 1) % 2:
            return
        for k, v in built[0].state_dict().items():
            if v.is_floating_point():
                expected[k] = v.clone() if k not in expected else 0.64 * expected[k] + 0.36 * v
    s = fit(j, out=tmp_path, quiet=True, on_step=track)
    last = checkpoint.load(tmp_path / "last.pt")
    averaged, live = last["ema"]["model"], last["model"]
    assert last["ema"]["n_averaged"] == 3 * (6 // 2)  # 96 images / batch 16 = 6 steps an epoch
    for k, v in expected.items():
        torch.testing.assert_close(averaged[k], v)
    assert not torch.equal(averaged["0.weight"], live["0.weight"])
    assert s["evaluated_weights"] == "ema"
    assert evaluate_checkpoint(j, tmp_path / "last.pt", device="cpu")["test_acc"] == s["test_acc"]
    best = checkpoint.load(tmp_path / "best.pt")
    assert evaluate_checkpoint(j, tmp_path / "best.pt", device="cpu")["test_acc"] == best["test_acc"] == s["best_test_acc"]


def test_resume_refuses_a_changed_train_section(tmp_path):
    with pytest.raises(Interrupted):
        fit(job(), out=tmp_path, quiet=True, on_step=_stop_at(0, 5))
    with pytest.raises(checkpoint.CheckpointError, match="train.optimizer.lr"):
        fit(job(optimizer={"lr": 0.5}), resume=tmp_path, quiet=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    j = job()
    built = []
    original = j.build
    j.build = lambda: built.append(original()) or built[-1]

    def poison(epoch, step):
        if (epoch, step) == (1, 2):
            with torch.no_grad():
                next(built[0].parameters()).fill_(float("nan"))

    with pytest.raises(TrainingFailed) as e:
        fit(j, out=tmp_path, quiet=True, on_step=poison)
    msg = str(e.value)
    assert "epoch 2 step 4" in msg and "last.pt" in msg and "\n" not in msg
    good = checkpoint.load(tmp_path / "last.pt")
    assert good["epoch"] == 1 and all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_eval_reproduces_the_final_accuracy(tmp_path):
    s = fit(job(), out=tmp_path, quiet=True)
    r = evaluate_checkpoint(job(), tmp_path / "last.pt", device="cpu")
    assert r["test_acc"] == s["test_acc"] and r["images"] == 40
    assert len(r["per_class_acc"]) == 4 and sum(map(sum, r["confusion"])) == 40


def test_bf16_autocast_adam_cosine_trains(tmp_path):
    s = fit(job(precision="bf16", optimizer={"name": "adam", "lr": 0.01}, schedule={"name": "cosine", "warmup_epochs": 1},
                loss={"label_smoothing": 0.1}, channels_last=True, grad_clip=1.0), out=tmp_path, quiet=True)
    assert s["test_acc"] > 0.5


def test_too_many_classes_for_the_model(tmp_path):
    from netspec.data.datasets import DataError
    with pytest.raises(DataError, match="fewer scores"):
        fit(job(dataset={"classes": 7}), out=tmp_path, quiet=True)


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    class Greedy(torch.nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    j = job()
    j.build = Greedy
    with pytest.raises(TrainingFailed) as e:
        fit(j, out=tmp_path, quiet=True)
    assert "batch_size 16" in str(e.value) and "train.batch_size=8" in str(e.value)
