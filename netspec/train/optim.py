"""Optimizers and learning-rate schedules by name.

Owns `OPTIMIZERS` and `SCHEDULES`: dicts from the `name` in the spec's
`train.optimizer` / `train.schedule` to a factory, so adding one is one entry; and
`make_ema`, the moving average of the weights (`train.ema`). Schedules
are plain functions of the step (a `LambdaLR` stepped every batch), so their state is
two integers and a resumed run lands on the same rate.

Imports torch and netspec.document.train. Must not import the loop, data or build.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

LrFactor = Callable[[int], float]


# ---------------------------------------------------------------- optimizers

def param_groups(model: torch.nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying biases and
    normalization scales (1-D tensors) usually hurts, so they get none unless asked."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim > 1 or decay_norm_and_bias else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _fused(device: torch.device) -> dict:
    # one fused kernel per step instead of one per tensor: matters for small nets on GPU
    return {"fused": True} if device.type == "cuda" else {}


def _sgd(groups, c, device):
    return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0,
                           **_fused(device))


def _adam(groups, c, device):
    return torch.optim.Adam(groups, lr=c.lr, betas=tuple(c.betas), eps=c.eps, **_fused(device))


def _adamw(groups, c, device):
    return torch.optim.AdamW(groups, lr=c.lr, betas=tuple(c.betas), eps=c.eps, **_fused(device))


OPTIMIZERS: dict[str, Callable] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}


def make_optimizer(config, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay, config.decay_norm_and_bias)
    return OPTIMIZERS[config.name](groups, config, torch.device(device))


# ---------------------------------------------------------------- schedules: step -> factor of the peak lr

def _with_warmup(factor: LrFactor, warmup_steps: int) -> LrFactor:
    if warmup_steps <= 0:
        return factor
    return lambda step: min(1.0, (step + 1) / warmup_steps) * factor(step)


def _constant(c, total: int, warmup: int) -> LrFactor:
    return _with_warmup(lambda step: 1.0, warmup)


def _step(c, total: int, warmup: int) -> LrFactor:
    bounds = sorted(int(m * total) for m in c.milestones)
    return _with_warmup(lambda step: c.gamma ** sum(step >= b for b in bounds), warmup)


def _cosine(c, total: int, warmup: int) -> LrFactor:
    span = max(1, total - warmup)

    def factor(step: int) -> float:
        t = min(1.0, max(0, step - warmup) / span)
        return c.final_ratio + (1 - c.final_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return _with_warmup(factor, warmup)


def _onecycle(c, total: int, warmup: int) -> LrFactor:
    # as torch.optim.lr_scheduler.OneCycleLR: peak/div_factor up to peak over pct_start of
    # training, then down to initial/final_div_factor; linear ramps by default (the fast
    # CIFAR recipes use those)
    start = 1.0 / c.div_factor
    end = start / c.final_div_factor
    up = max(1, int(c.pct_start * total))
    down = max(1, total - up)

    def ramp(a: float, b: float, t: float) -> float:
        t = min(1.0, max(0.0, t))
        if c.anneal == "cos":
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * t))
        return a + (b - a) * t

    def factor(step: int) -> float:
        if step < up:
            return ramp(start, 1.0, step / up)
        return ramp(1.0, end, (step - up) / down)

    return factor


def _poly(c, total: int, warmup: int) -> LrFactor:
    # torchvision's segmentation references: (1 - t / T) ** 0.9 over the steps after warmup
    span = max(1, total - warmup)
    return _with_warmup(lambda step: (1 - min(1.0, max(0, step - warmup) / span)) ** c.power, warmup)


SCHEDULES: dict[str, Callable[..., LrFactor]] = {
    "constant": _constant, "step": _step, "cosine": _cosine, "onecycle": _onecycle, "poly": _poly,
}


def lr_factor(config, steps_per_epoch: int, epochs: int) -> LrFactor:
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(getattr(config, "warmup_epochs", 0.0) * steps_per_epoch))
    return SCHEDULES[config.name](config, total, warmup)


def make_scheduler(config, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch, epochs))


# ---------------------------------------------------------------- weight averaging

def make_ema(cfg, model: torch.nn.Module):
    """torch's AveragedModel with an EMA of parameters and buffers (batch-norm statistics
    too, so the averaged model evaluates without recalibration); None when `cfg.decay` is 0.
    Updated every `cfg.every` steps, so the decay per update is decay**every."""
    if cfg.decay == 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.decay ** cfg.every), use_buffers=True)

