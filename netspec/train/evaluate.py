"""Evaluation: accuracy, loss and the confusion matrix of a model on a test loader.

Owns `evaluate` (used by the loop after each evaluated epoch), `evaluate_checkpoint` /
`evaluate_weights` (`netspec eval --ckpt / --init`), the normalization evaluation and
`netspec predict` share, and the checks that the spec's output fits the dataset's classes.

Imports torch, netspec.data and the trainer's checkpoint/distributed parts. Must not
import loop.py (the loop imports this) or netspec.cli.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from netspec.data.datasets import DataError, ImageData, load_dataset
from netspec.data.gpu_loader import DeviceLoader, channel_stats
from netspec.errors import CheckFailed
from netspec.train import checkpoint, distributed


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: DeviceLoader, n_classes: int, d: distributed.Dist | None = None,
             test_flip: bool = False, predictions: list | None = None) -> tuple[float, float, torch.Tensor]:
    """(mean loss, accuracy, confusion matrix rows=true cols=predicted) over all ranks;
    `predictions`, when given, gets each batch's predicted classes (this rank's images)."""
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
        if predictions is not None:
            predictions.append(logits.argmax(1).cpu())
    counts = torch.cat([loss_sum.view(1), confusion.double()])
    if d is not None:
        d.sum_(counts)
    net.train(was_training)
    confusion = counts[1:].round().long().view(n_classes, n_classes)
    total = max(1, int(confusion.sum()))
    return float(counts[0]) / total, float(confusion.diag().sum()) / total, confusion


def evaluate_checkpoint(job, ckpt: str | Path, device: str | None = None, per_image: bool = False) -> dict:
    """`netspec eval --ckpt`: the checkpoint's model on the spec's test set."""
    from netspec import weights

    return evaluate_weights(job, weights.from_checkpoint(ckpt), device=device, per_image=per_image)


def evaluate_weights(job, source, device: str | None = None, skip=(), per_image: bool = False,
                     on_report=lambda lines: None) -> dict:
    """`netspec eval`: the model with `source`'s weights (a netspec.weights.Weights) on the
    spec's test set, normalized as its training was (see `normalization`). `per_image` adds
    the predicted class of every test image, in order; `on_report` gets the lines saying
    what was loaded."""
    from netspec import weights

    cfg = job.config
    dev = distributed.pick_device(device or cfg.device)
    source.check_channels(job.input[0])
    data = load_dataset(cfg.dataset, job.input)
    n_classes = check_classes(job, data)
    model = job.build()
    on_report(weights.load_into(model, source, skip, job.name).lines())
    model = model.to(dev)
    mean, std = normalization(cfg, data, source)
    loader = DeviceLoader(data.test_x, data.test_y, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
                          device=dev, mean=mean, std=std, train=False, channels_last=cfg.channels_last)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    predictions: list[torch.Tensor] | None = [] if per_image else None
    with autocast(cfg, dev):
        loss, acc, confusion = evaluate(model, loader, n_classes, test_flip=cfg.augmentation.test_flip,
                                        predictions=predictions)
    if not math.isfinite(loss):  # NaN logits would still have an argmax, and an accuracy
        raise CheckFailed(f"the model's output on the test set is not finite (NaN or inf) at train.precision "
                          f"{cfg.precision}; no accuracy", job.source)
    rows = confusion.sum(1).clamp_min(1)
    per_class = (confusion.diag().double() / rows).tolist()
    result = {"test_acc": acc, "test_loss": loss, "classes": class_names(data, n_classes),
              "per_class_acc": per_class, "confusion": confusion.tolist(), "epoch": source.epoch,
              "images": int(confusion.sum())}
    if predictions is not None:
        result["predictions"] = torch.cat(predictions).tolist()
    return result


def autocast(cfg, dev: torch.device):
    """The train.precision autocast of evaluation (a no-op for fp32)."""
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    return torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()


def normalization(cfg, data: ImageData | None, source=None) -> tuple[list[float], list[float]] | None:
    """The per-channel mean and std inputs are normalized with: what the weights recorded (a
    netspec checkpoint; torchvision weights' own), else train.normalization, else measured on
    the training images, as `netspec train` does (None without `data`)."""
    if source is not None and source.mean is not None and source.std is not None:
        return list(source.mean), list(source.std)
    given = cfg.normalization
    if given.mean is not None and given.std is not None:
        return list(given.mean), list(given.std)
    if data is None:
        return None
    stats = channel_stats(data.train_x)
    return (list(given.mean) if given.mean is not None else stats[0],
            list(given.std) if given.std is not None else stats[1])


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


def load_weights(model: torch.nn.Module, state: dict, path, name: str | None = None) -> None:
    """The checkpoint's training weights into model (a resumed run; `netspec eval` and
    `--init` read the evaluated ones through netspec.weights). A checkpoint of another model
    is refused naming the spec it was trained from and the first keys that differ."""
    weights = state["model"]
    mine = model.state_dict()
    missing = [k for k in mine if k not in weights]
    unexpected = [k for k in weights if k not in mine]
    reshaped = [f"{k} {list(weights[k].shape)} vs {list(v.shape)}" for k, v in mine.items()
                if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if missing or unexpected or reshaped:
        parts = [f"{len(keys)} {what} ({_first(keys)})" for what, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape, checkpoint vs model", reshaped))
                 if keys]
        trained = state.get("name") if isinstance(state.get("name"), str) else None
        if trained is not None and trained == name:
            lead = f"checkpoint {path} (spec '{trained}', another architecture) does not fit this spec's model"
        else:
            lead = (f"checkpoint {path} was trained from {f'spec {trained!r}' if trained else 'another spec'}, "
                    f"not this spec{f' {name!r}' if name else ''}")
        raise checkpoint.CheckpointError(f"{lead}: {'; '.join(parts)}")
    model.load_state_dict(weights)


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... {len(keys) - n} more" if len(keys) > n else "")
