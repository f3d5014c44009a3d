"""Evaluation: the loaders of a task's data, `netspec eval`, and what evaluation and predict share.

Owns `make_loaders` (the loop's and eval's, for labels or masks), `evaluate_checkpoint` /
`evaluate_weights` (`netspec eval --ckpt / --init`: the measures of task.py on the test
set), and the normalization evaluation and `netspec predict` share.

Imports torch, netspec.data and the trainer's checkpoint/distributed parts. Must not
import loop.py (the loop imports this) or netspec.cli.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from netspec.data.datasets import DataError, ImageData, load_dataset
from netspec.data.gpu_loader import DeviceLoader, channel_stats
from netspec.errors import CheckFailed
from netspec.train import checkpoint, distributed
from netspec.train.task import make_task, per_class_iou


def make_loaders(cfg, data, input_shape: list[int], task, mean, std, dev, d: distributed.Dist | None = None,
                 train: bool = True):
    """(training loader or None, test loader) for the task's data: images and labels
    (DeviceLoader) or images and masks (MaskLoader, joint scale/crop/flip), this rank's share."""
    from netspec.data.masks import MaskLoader
    rank, world = (d.rank, d.world) if d is not None else (0, 1)
    aug = cfg.augmentation
    # capped at the test set: eval batches are padded to full size
    eval_bs = max(1, min((cfg.eval_batch_size or 2 * cfg.batch_size) // world, -(-len(data.test_x) // world)))
    if task.kind == "segmentation":
        common = dict(device=dev, mean=mean, std=std, ignore=task.ignore, rank=rank, world=world,
                      channels_last=cfg.channels_last)
        test = MaskLoader(data.test_x, data.test_y, batch_size=eval_bs, train=False, **common)
        crop = (aug.crop, aug.crop) if aug.crop else tuple(input_shape[1:])
        trained = MaskLoader(data.train_x, data.train_y, batch_size=cfg.batch_size // world, train=True,
                             seed=cfg.seed, scale=aug.scale, crop=crop, flip=aug.flip, **common) if train else None
        return trained, test
    test = DeviceLoader(data.test_x, data.test_y, batch_size=eval_bs, device=dev, mean=mean, std=std, train=False,
                        rank=rank, world=world, channels_last=cfg.channels_last, on_device=cfg.data_on_device)
    trained = DeviceLoader(data.train_x, data.train_y, batch_size=cfg.batch_size // world, device=dev, mean=mean,
                           std=std, train=True, seed=cfg.seed, crop_padding=aug.crop_padding,
                           padding_mode=aug.padding_mode, flip=aug.flip, cutout=aug.cutout, rank=rank, world=world,
                           channels_last=cfg.channels_last, on_device=cfg.data_on_device) if train else None
    return trained, test


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
    task = make_task(job, data, cfg)
    model = job.build()
    on_report(weights.load_into(model, source, skip, job.name).lines())
    model = model.to(dev)
    mean, std = normalization(cfg, data, source)
    _, loader = make_loaders(cfg, data, job.input, task, mean, std, dev, train=False)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    predictions: list[torch.Tensor] | None = [] if per_image else None
    with autocast(cfg, dev):
        row, confusion = task.evaluate(model, loader, test_flip=cfg.augmentation.test_flip, predictions=predictions)
    if not math.isfinite(row["test_loss"]):  # NaN logits would still have an argmax, and an accuracy
        raise CheckFailed(f"the model's output on the test set is not finite (NaN or inf) at train.precision "
                          f"{cfg.precision}; no accuracy", job.source)
    rows = confusion.sum(1).clamp_min(1)
    per_class = (confusion.diag().double() / rows).tolist()
    result = {**row, "classes": task.classes, "per_class_acc": per_class, "confusion": confusion.tolist(),
              "epoch": source.epoch}
    if task.kind == "segmentation":   # fractions, as test_acc: pixel accuracy and mIoU
        result.update(pixel_accuracy=row["test_acc"], miou=row["test_miou"], per_class_iou=per_class_iou(confusion),
                      images=len(data.test_x), pixels=int(confusion.sum()))
    else:
        result["images"] = int(confusion.sum())
    if predictions is not None:
        result["predictions"] = [p.tolist() for p in torch.cat(predictions)] if task.kind == "segmentation" else \
            torch.cat(predictions).tolist()
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
