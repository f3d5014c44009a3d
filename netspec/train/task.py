"""What the trainer optimizes and measures, from the spec's output and the data.

A classifier ([classes] scores; `ImageData`): cross-entropy per image, accuracy and the
confusion matrix of images. A segmenter ([classes, H, W] logits, or a record whose `out` is
that, `aux` beside it; `MaskData`): per-pixel cross-entropy over the pixels not ignored (the
mean over those pixels, PyTorch's default; weighted by class when asked), summed over the
record's outputs with their weights (out 1.0, aux 0.5 as torchvision's references); measured
by one confusion matrix of pixels over the whole test set (summed across ranks): pixel
accuracy, per-class IoU and accuracy, and mIoU — the mean IoU over the classes present in the
target or the prediction (a class absent from both has no IoU; MMSegmentation's nanmean).

The loop (loop.py) and `netspec eval` (evaluate.py) call the task; nothing else differs.
Imports torch. Must not import loop.py or netspec.cli.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from netspec.data.datasets import DataError
from netspec.document.train import DEFAULT_OUTPUT_WEIGHTS, task_of


@dataclass
class Task:
    kind: str                     # classification | segmentation
    n_classes: int
    classes: list[str]
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None
    ignore: int = -100            # segmentation: the mask value that counts nowhere
    weights: dict = field(default_factory=dict)   # a record's outputs -> loss weight

    @property
    def score(self) -> str:
        """The row field the best checkpoint is chosen by."""
        return "test_miou" if self.kind == "segmentation" else "test_acc"

    def loss(self, out, y: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(y.device)
        if self.kind == "classification":
            return F.cross_entropy(out, y, weight=weight, label_smoothing=self.label_smoothing)
        outputs = out if isinstance(out, dict) else {"out": out}
        total = None
        for key, w in self.weights.items():
            part = w * F.cross_entropy(outputs[key].float(), y, weight=weight, ignore_index=self.ignore,
                                       label_smoothing=self.label_smoothing)
            total = part if total is None else total + part
        return total

    def hits(self, out, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        """(right, counted) in a batch: images (a number: no copy to the device every step), or
        pixels that are not ignored."""
        predicted = main_output(out).detach().argmax(1)
        if self.kind == "classification":
            return (predicted == y).sum(), y.shape[0]
        counted = y != self.ignore
        return ((predicted == y) & counted).sum(), counted.sum()

    @torch.no_grad()
    def evaluate(self, net: torch.nn.Module, loader, d=None, test_flip: bool = False,
                 predictions: list | None = None) -> tuple[dict, torch.Tensor]:
        """The row fields of one pass over `loader` (all ranks summed) and the confusion matrix
        (rows true, columns predicted; images, or pixels not ignored). `predictions` gets
        each batch's predicted classes (this rank's)."""
        was_training = net.training
        net.eval()
        dev = loader.device
        k = self.n_classes
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        counted = torch.zeros((), dtype=torch.float64, device=dev)
        confusion = torch.zeros(k * k, dtype=torch.long, device=dev)
        for x, y, valid in loader.epoch(0):
            logits, y = forward(net, x, test_flip)[:valid].float(), y[:valid]
            predicted = logits.argmax(1)
            if self.kind == "classification":
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                counted += y.shape[0]
                true, guessed = y, predicted
            else:
                keep = y != self.ignore
                loss_sum += F.cross_entropy(logits, y, ignore_index=self.ignore, reduction="sum").double()
                counted += keep.sum()
                true, guessed = y[keep], predicted[keep]
            confusion += torch.bincount(true * k + guessed, minlength=k * k)
            if predictions is not None:
                predictions.append(predicted.cpu())
        counts = torch.cat([loss_sum.view(1), counted.view(1), confusion.double()])
        if d is not None:
            d.sum_(counts)
        net.train(was_training)
        confusion = counts[2:].round().long().view(k, k)
        row = {"test_loss": float(counts[0]) / max(1.0, float(counts[1]))}
        row.update(metrics(confusion, self.kind))
        return row, confusion


def main_output(out):
    """The output measured (logits, or their shape): the output, or a record's `out`."""
    return out["out"] if isinstance(out, dict) else out


def forward(net: torch.nn.Module, x: torch.Tensor, test_flip: bool = False) -> torch.Tensor:
    """The logits measured of a batch; with `test_flip` the mean of the images' and their mirror
    images' (a segmenter's per-pixel logits mirrored back first). Evaluation and predict share it."""
    logits = main_output(net(x))
    if test_flip:
        flipped = main_output(net(x.flip(3)))
        logits = (logits + (flipped.flip(3) if logits.dim() == 4 else flipped)) / 2
    return logits


def metrics(confusion: torch.Tensor, kind: str) -> dict:
    """test_acc (images or pixels right), and for segmentation test_miou and the per-class IoU."""
    c = confusion.double()
    total = float(c.sum())
    out = {"test_acc": float(c.diag().sum()) / total if total else 0.0}
    if kind == "segmentation":
        iou = per_class_iou(confusion)
        present = [v for v in iou if v is not None]
        out["test_miou"] = sum(present) / len(present) if present else 0.0
    return out


def per_class_iou(confusion: torch.Tensor) -> list[float | None]:
    """IoU of each class: right / (in the target or the prediction); None where it is in neither."""
    c = confusion.double()
    union = c.sum(0) + c.sum(1) - c.diag()
    return [float(i / u) if u > 0 else None for i, u in zip(c.diag(), union)]


def make_task(job, data, cfg) -> Task:
    """The task for `job`'s model on `data`, with its output checked against the data (the
    static checks of document/train.py's output_problem ran when the spec was loaded)."""
    from netspec.data.masks import MaskData

    segmenting = isinstance(data, MaskData)
    n = len(data.classes)
    output = job.outputs
    kind = task_of(output) if output is not None else ("segmentation" if segmenting else "classification")
    if kind == "classification" and not segmenting:
        if isinstance(output, dict):   # refused by output_problem when the spec was loaded
            raise DataError(f"spec output {output} is not a vector of class scores; end the spec with "
                            f"flatten and linear: {{out: {n}}}")
        scores = output[0] if output is not None else n
        if scores < n:
            raise DataError(f"spec output [{scores}] has fewer scores than {data.name}'s {n} classes")
        classes = list(data.classes) + [f"unused{i}" for i in range(n, scores)]
        return Task("classification", scores, classes, cfg.loss.label_smoothing, _class_weights(cfg, scores))
    if kind != "segmentation" or not segmenting:
        raise DataError(f"spec output {output} does not fit dataset {data.name} "
                        f"({'masks' if segmenting else 'one label per image'})")
    main = main_output(output)
    if main[0] < n:
        raise DataError(f"the spec's output has {main[0]} channels (class scores), fewer than {data.name}'s {n} classes")
    if isinstance(output, dict):
        weights = dict(cfg.loss.outputs) if cfg.loss.outputs is not None else \
            {k: w for k, w in DEFAULT_OUTPUT_WEIGHTS.items() if k in output}
        weights = {k: w for k, w in weights.items() if w > 0}
    else:
        weights = {"out": 1.0}
    classes = list(data.classes) + [f"unused{i}" for i in range(n, main[0])]
    return Task("segmentation", main[0], classes, cfg.loss.label_smoothing, _class_weights(cfg, main[0]),
                cfg.loss.ignore_index, weights)


def _class_weights(cfg, n: int) -> torch.Tensor | None:
    given = cfg.loss.class_weights
    if given is None:
        return None
    if len(given) > n:
        raise DataError(f"train.loss.class_weights has {len(given)} weights for {n} class scores")
    return torch.tensor(list(given) + [1.0] * (n - len(given)), dtype=torch.float32)
