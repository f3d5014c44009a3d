"""Evaluation: accuracy, loss and the confusion matrix of a model on a test loader.

Owns `evaluate` (used by the loop after each evaluated epoch) and `evaluate_checkpoint`
(`netspec eval`), plus the checks that the spec's output fits the dataset's classes.

Imports torch, netspec.data and the trainer's checkpoint/distributed parts. Must not
import loop.py (the loop imports this) or netspec.cli.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from netspec.data.datasets import DataError, ImageData, load_dataset
from netspec.data.gpu_loader import DeviceLoader
from netspec.train import checkpoint, distributed


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: DeviceLoader, n_classes: int, d: distributed.Dist | None = None,
             test_flip: bool = False) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, confusion matrix rows=true cols=predicted) over all ranks."""
    was_training = net.training
    net.eval()
    dev = loader.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    confusion = torch.zeros(n_classes * n_classes, dtype=torch.long, device=dev)
    for x, y, valid in loader.epoch(0):
        logits = net(x)
        if test_flip:  # the mean of the image's and its mirror image's logits
            logits = (logits + net(x.flip(3))) / 2
        logits, y = logits[:valid].float(), y[:valid]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * n_classes + logits.argmax(1), minlength=n_classes * n_classes)
    counts = torch.cat([loss_sum.view(1), confusion.double()])
    if d is not None:
        d.sum_(counts)
    net.train(was_training)
    confusion = counts[1:].round().long().view(n_classes, n_classes)
    total = max(1, int(confusion.sum()))
    return float(counts[0]) / total, float(confusion.diag().sum()) / total, confusion


def evaluate_checkpoint(job, ckpt: str | Path, device: str | None = None) -> dict:
    """`netspec eval`: the checkpoint's model on the spec's test set."""
    cfg = job.config
    dev = distributed.pick_device(device or cfg.device)
    state = checkpoint.load(ckpt, map_location=dev, needs=checkpoint.EVAL)
    if len(state["mean"]) != job.input[0]:
        raise checkpoint.CheckpointError(f"checkpoint {ckpt} normalizes {len(state['mean'])} channels; "
                                         f"the spec's input has {job.input[0]}")
    data = load_dataset(cfg.dataset, job.input)
    n_classes = check_classes(job, data)
    model = job.build().to(dev)
    load_weights(model, state, ckpt, averaged=True)
    loader = DeviceLoader(data.test_x, data.test_y, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
                          device=dev, mean=state["mean"], std=state["std"], train=False,
                          channels_last=cfg.channels_last)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
        loss, acc, confusion = evaluate(model, loader, n_classes, test_flip=cfg.augmentation.test_flip)
    rows = confusion.sum(1).clamp_min(1)
    per_class = (confusion.diag().double() / rows).tolist()
    return {"test_acc": acc, "test_loss": loss, "classes": class_names(data, n_classes),
            "per_class_acc": per_class, "confusion": confusion.tolist(), "epoch": state.get("epoch"),
            "images": int(confusion.sum())}


# ---------------------------------------------------------------- checks

def check_classes(job, data: ImageData) -> int:
    """The number of class scores, checked against the dataset's classes."""
    n = len(data.classes)
    if job.outputs is None:
        return n
    if len(job.outputs) != 1:
        raise DataError(f"spec output {job.outputs} is not a vector of class scores; end the spec with "
                        f"flatten and linear: {{out: {n}}}")
    if job.outputs[0] < n:
        raise DataError(f"spec output [{job.outputs[0]}] has fewer scores than {data.name}'s {n} classes")
    return job.outputs[0]


def class_names(data: ImageData, n: int) -> list[str]:
    return list(data.classes) + [f"unused{i}" for i in range(len(data.classes), n)]


def load_weights(model: torch.nn.Module, state: dict, path, averaged: bool = False) -> None:
    """The checkpoint's weights into model; `averaged`: its moving average (train.ema)
    where it has one, i.e. the weights its test accuracy was measured with."""
    try:
        model.load_state_dict(state["ema"]["model"] if averaged and "ema" in state else state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise checkpoint.CheckpointError(f"checkpoint {path} does not fit the spec's model: "
                                         f"{' '.join(s.strip() for s in first[:2])[:300]}") from None
