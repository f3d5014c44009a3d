"""`netspec predict`: the top classes of image files, prepared exactly as evaluation prepares
test images; for a segmentation model, a mask per image (an indexed PNG in VOC's palette, at
the image's own size) and an overlay.

Owns finding the images (files as given, folders walked in sorted order), preparing them
(`netspec.data.datasets.read_image`: grayscale or RGB as the spec's input, resized to its
height and width; then the evaluation's normalization and test-time flip) and the top-K
softmax probabilities with the class names the weights recorded. An image that cannot be read
(or whose output is not finite) is reported through `on_error` and the others go on.

Imports torch and the trainer's evaluation parts. Must not import netspec.cli.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from netspec.budget import physical_memory, refuse_running, running_bytes
from netspec.data.datasets import IMAGE_SUFFIXES, DataError, load_dataset, read_image
from netspec.errors import EXIT_CHECK_FAILED, EXIT_INVALID, one_line
from netspec.train import distributed
from netspec.train.evaluate import autocast, normalization
from netspec.train.task import forward, main_output
from netspec.weights import Weights, WeightsError, load_into

BATCH = 64


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, int, float]]   # (class name, class index, probability), best first

    def as_dict(self) -> dict:
        return {"image": self.image, "top": [{"class": c, "index": i, "p": p} for c, i, p in self.top]}

    def __str__(self) -> str:  # the image's and the classes' names escaped: one line per image, always
        return one_line(f"{self.image}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, _, p in self.top))


def image_files(paths: list[str]) -> Iterator[str]:
    """Each path as given when it is a file (or missing: reading it reports that); a folder's
    images (by suffix) in sorted order, subfolders included."""
    for p in paths:
        if not os.path.isdir(p):
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_SUFFIXES):
                    yield os.path.join(root, name)


def labels_and_stats(job, weights: Weights, n_outputs: int) -> tuple[list[str], list[float], list[float]]:
    """Class names and normalization: the weights' own, else the spec's train section (its
    normalization; its dataset's classes and measured statistics, as `netspec train` records them)."""
    classes = weights.classes if weights.classes and len(weights.classes) <= n_outputs else None
    stats = normalization(job.config, None, weights)
    if classes is None or stats is None:
        data = _dataset(job, weights)
        classes = classes or list(data.classes)
        stats = stats or normalization(job.config, data, weights)
    return padded(classes, n_outputs), *stats


def padded(classes: list[str], n_outputs: int) -> list[str]:
    """Names for all of a model's outputs (a model may have more outputs than its data has classes)."""
    return list(classes) + [f"unused{i}" for i in range(len(classes), n_outputs)]


def _dataset(job, weights: Weights):
    try:
        return load_dataset(job.config.dataset, job.input)
    except DataError as e:
        raise WeightsError(f"{weights.origin} records no class names or normalization, and the spec's "
                           f"train.dataset cannot give them ({str(e).removeprefix('error: ')}); set "
                           f"train.dataset, or train.normalization, with --set") from None


@dataclass
class MaskPrediction:
    image: str
    mask: str                            # the indexed PNG written, at the image's size
    overlay: str
    size: tuple[int, int]                # the image's height and width
    areas: list[tuple[str, int, float]]  # (class name, class index, fraction of the pixels), largest first

    def as_dict(self) -> dict:
        return {"image": self.image, "mask": self.mask, "overlay": self.overlay, "size": list(self.size),
                "areas": [{"class": c, "index": i, "fraction": f} for c, i, f in self.areas]}

    def __str__(self) -> str:
        shown = ", ".join(f"{c} {100 * f:.1f}%" for c, _, f in self.areas[:5])
        return one_line(f"{self.image}: {self.mask} ({shown})")


def predict(job, weights: Weights, paths: list[str], *, top: int = 5, device: str | None = None,
            skip=(), on_error: Callable[[str, str, int], None],
            on_report: Callable[[list[str]], None] = lambda _: None) -> Iterator[Prediction]:
    """Predictions for the images under `paths`, in order, at the spec's train.precision;
    `on_error(path, message, exit_code)` for each image that cannot be read (2) or whose
    output is not finite (1)."""
    cfg = job.config
    dev = distributed.pick_device(device or cfg.device)
    n_outputs = job.outputs[0] if isinstance(job.outputs, list) and len(job.outputs) == 1 else None
    if n_outputs is None:
        raise WeightsError(f"spec output {job.outputs} is not a vector of class scores")
    weights.check_channels(job.input[0])
    batch_size = _batch_size(job.analysis, dev)
    model, classes, scale, shift = _prepared(job, weights, dev, n_outputs, skip, on_report)
    channels, size = job.input[0], tuple(job.input[1:])
    k = min(top, n_outputs)
    batch: list[tuple[str, torch.Tensor]] = []

    def flush() -> Iterator[Prediction]:
        x = torch.stack([img for _, img in batch]).to(dev).float()
        x = torch.addcmul(shift, x, scale)  # (x/255 - mean)/std, as the evaluation loader computes it
        with torch.no_grad(), autocast(cfg, dev):
            logits = forward(model, x, cfg.augmentation.test_flip).float()
        finite = torch.isfinite(logits).all(1).tolist()
        p, idx = logits.softmax(1).topk(k, dim=1)
        for (path, _), ok, pr, ix in zip(batch, finite, p.tolist(), idx.tolist()):
            if ok:
                yield Prediction(path, [(classes[i], i, q) for q, i in zip(pr, ix)])
            else:
                on_error(path, _not_finite(path, cfg), EXIT_CHECK_FAILED)
        batch.clear()

    for path in image_files(paths):
        try:
            batch.append((path, read_image(path, channels, size)))
        except DataError as e:
            on_error(path, str(e).removeprefix("error: "), EXIT_INVALID)
            continue
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def predict_masks(job, weights: Weights, paths: list[str], out_dir: str, *, device: str | None = None, skip=(),
                  on_error: Callable[[str, str, int], None],
                  on_report: Callable[[list[str]], None] = lambda _: None) -> Iterator[MaskPrediction]:
    """A segmentation model's masks for the images under `paths`: each image prepared as a test
    image (resized to the spec's input, normalized), its logits resized back to the image's own
    size (bilinear) and their argmax written to OUT_DIR/<name>.png as an indexed PNG in VOC's
    palette, with <name>_overlay.png (the image with the classes' colours over it, half and half)."""
    from netspec.document.train import task_of
    if task_of(job.outputs) != "segmentation":
        raise WeightsError(f"spec output {job.outputs} is not per-pixel class scores")
    cfg = job.config
    dev = distributed.pick_device(device or cfg.device)
    weights.check_channels(job.input[0])
    _batch_size(job.analysis, dev)   # a model that cannot run one image is refused before it is built
    model, classes, scale, shift = _prepared(job, weights, dev, main_output(job.outputs)[0], skip, on_report)
    channels, size = job.input[0], tuple(job.input[1:])
    os.makedirs(out_dir, exist_ok=True)
    written: set[str] = set()
    for path in image_files(paths):
        try:
            image = read_image(path, channels, None)
        except DataError as e:
            on_error(path, str(e).removeprefix("error: "), EXIT_INVALID)
            continue
        x = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                                            align_corners=False) if tuple(image.shape[1:]) != size else image[None].float()
        x = torch.addcmul(shift, x.to(dev), scale)
        with torch.no_grad(), autocast(cfg, dev):
            logits = forward(model, x, cfg.augmentation.test_flip).float()
        if not bool(torch.isfinite(logits).all()):
            on_error(path, _not_finite(path, cfg), EXIT_CHECK_FAILED)
            continue
        logits = torch.nn.functional.interpolate(logits, size=tuple(image.shape[1:]), mode="bilinear", align_corners=False)
        mask = logits.argmax(1)[0].to(torch.uint8).cpu()
        name = _unique(os.path.splitext(os.path.basename(path))[0], written)
        mask_path, overlay_path = os.path.join(out_dir, f"{name}.png"), os.path.join(out_dir, f"{name}_overlay.png")
        _write_mask(mask, mask_path, overlay_path, image, len(classes))
        counts = torch.bincount(mask.flatten().long(), minlength=len(classes)).tolist()
        total = mask.numel()
        areas = sorted(((classes[i], i, c / total) for i, c in enumerate(counts) if c), key=lambda a: -a[2])
        yield MaskPrediction(path, mask_path, overlay_path, tuple(image.shape[1:]), areas)


def _prepared(job, weights: Weights, dev: torch.device, n_outputs: int, skip, on_report):
    """(model with the weights, in eval mode on `dev`; class names; scale and shift such that
    x * scale + shift = (x/255 - mean)/std, as the evaluation loader normalizes)."""
    model = job.build()
    on_report(load_into(model, weights, skip, job.name).lines())
    model = model.to(dev).eval()
    classes, mean, std = labels_and_stats(job, weights, n_outputs)
    scale = torch.tensor([1 / (255.0 * s) for s in std], device=dev).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=dev).view(1, -1, 1, 1)
    return model, classes, scale, shift


def _not_finite(path: str, cfg) -> str:
    return f"the model's output for {path} is not finite (NaN or inf) at train.precision {cfg.precision}; no prediction"


def _unique(stem: str, taken: set[str]) -> str:
    """A file name for this image's mask that no earlier image of the call took (two images
    of one name in different folders: x, x-2)."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name


def _write_mask(mask: torch.Tensor, mask_path: str, overlay_path: str, image: torch.Tensor, n_classes: int) -> None:
    """The mask as an indexed PNG (VOC's palette) and the overlay, each written beside its name
    and renamed into place (never half a file)."""
    import numpy as np
    from PIL import Image

    from netspec.data.masks import palette
    colours = palette(max(n_classes, 256))
    indexed = Image.fromarray(mask.numpy(), mode="P")
    indexed.putpalette([c for rgb in colours for c in rgb])
    rgb = image.numpy()
    rgb = np.repeat(rgb, 3, axis=0) if rgb.shape[0] == 1 else rgb
    painted = np.array(colours, dtype=np.float32)[mask.numpy()]
    blended = (0.5 * rgb.transpose(1, 2, 0).astype(np.float32) + 0.5 * painted).round().astype(np.uint8)
    for picture, target in ((indexed, mask_path), (Image.fromarray(blended, mode="RGB"), overlay_path)):
        tmp = f"{target}.tmp"
        try:
            picture.save(tmp, format="PNG")
            os.replace(tmp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise DataError(f"cannot write {target}: {e.strerror or e}") from None


def _batch_size(analysis, dev: torch.device) -> int:
    """Images per forward pass: BATCH, or fewer where the device's memory holds fewer (a model that
    cannot run even one image is refused here, before it is built)."""
    memory = torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else physical_memory()
    if analysis is None or memory is None:
        return BATCH
    refuse_running(analysis, 1, memory, str(dev) if dev.type == "cuda" else "this machine's memory")
    weights, per_image = running_bytes(analysis, 1).values()
    return max(1, min(BATCH, (memory - weights) // max(1, per_image)))
