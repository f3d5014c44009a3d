"""Optimizers and schedules by name; atomic checkpoints."""
import math
import os

import pytest
import torch

from netspec.document.train import TrainConfig
from netspec.train import checkpoint
from netspec.train.optim import OPTIMIZERS, SCHEDULES, lr_factor, make_optimizer, param_groups


def cfg(**doc):
    return TrainConfig.model_validate(doc)


def test_every_config_name_has_a_factory():
    from netspec.document.train import OPTIMIZER_NAMES, SCHEDULE_NAMES
    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES) and set(SCHEDULES) == set(SCHEDULE_NAMES)


def test_onecycle_rises_then_falls():
    f = lr_factor(cfg(schedule={"name": "onecycle", "pct_start": 0.25, "div_factor": 10,
                                "final_div_factor": 100}).schedule, steps_per_epoch=10, epochs=4)
    values = [f(s) for s in range(41)]
    assert values[0] == pytest.approx(0.1) and max(values) == pytest.approx(1.0)
    assert values.index(max(values)) == 10
    assert values[40] == pytest.approx(0.001)
    assert all(a <= b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b for a, b in zip(values[10:40], values[11:41]))


def test_warmup_cosine_and_step():
    f = lr_factor(cfg(schedule={"name": "cosine", "warmup_epochs": 1, "final_ratio": 0.1}).schedule, 10, 5)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(50) == pytest.approx(0.1)
    assert f(30) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    g = lr_factor(cfg(schedule={"name": "step", "milestones": [0.5, 0.75], "gamma": 0.1}).schedule, 10, 4)
    assert [g(0), g(19), g(20), g(30), g(39)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    c = lr_factor(cfg(schedule={"name": "constant", "warmup_epochs": 0.5}).schedule, 10, 2)
    assert [c(0), c(4), c(5), c(19)] == pytest.approx([0.2, 1.0, 1.0, 1.0])


def test_no_weight_decay_on_biases_and_norms_unless_asked():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    groups = param_groups(model, 5e-4, decay_norm_and_bias=False)
    assert [len(g["params"]) for g in groups] == [1, 3] and groups[1]["weight_decay"] == 0
    assert len(param_groups(model, 5e-4, decay_norm_and_bias=True)) == 1
    opt = make_optimizer(cfg(optimizer={"name": "sgd", "lr": 0.3, "nesterov": True}).optimizer, model, "cpu")
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"] and opt.param_groups[0]["lr"] == 0.3
    opt = make_optimizer(cfg(optimizer={"name": "adamw", "weight_decay": 0.1}).optimizer, model, "cpu")
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1


def test_checkpoint_is_atomic_and_refuses_foreign_files(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save({"model": {"w": torch.ones(2)}, "epoch": 1}, path)
    checkpoint.save({"model": {"w": torch.zeros(2)}, "epoch": 2}, path)  # replaces, never half-written
    assert checkpoint.load(path)["epoch"] == 2
    assert os.listdir(tmp_path) == ["c.pt"]
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a netspec checkpoint"):
        checkpoint.load(tmp_path / "plain.pt")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")


def test_rng_state_round_trip():
    state = checkpoint.rng_state()
    a = torch.rand(3)
    checkpoint.set_rng_state(state)
    assert torch.equal(torch.rand(3), a)
