"""Segmentation data: images with masks of class indices, and the loader that augments both.

Owns `MaskData` (uint8 images C×H×W and masks H×W, train and test, as tensors when every
image has one size, else as lists), the two segmentation datasets — `digits_canvas` (offline:
scikit-learn's digits on a canvas, every pixel labelled) and `segmentation_folder`
(`root/{train,test}/{images,masks}`, checked whole before anything trains) — and
`MaskLoader`, which draws a random scale, crop and flip per image and applies the same
geometry to its mask (nearest for masks; padding with 0 for the image, the ignore index for
the mask), then normalizes the image only.

Imports torch (and numpy, Pillow, scikit-learn where they are needed). Must not import
netspec.train or anything past the data stage.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from netspec.data.datasets import IMAGE_SUFFIXES, MAX_PIXELS, DataError, _open_regular, read_image
from netspec.document.train import IGNORE

DIGIT_CLASSES = ["background", *(str(d) for d in range(10))]


@dataclass
class MaskData:
    """A segmentation dataset in memory. Images uint8 C×H×W and masks uint8 H×W (class indices,
    `ignore` where nothing counts), as N×C×H×W / N×H×W tensors when all share one size, else lists."""

    name: str
    train_x: torch.Tensor | list
    train_y: torch.Tensor | list
    test_x: torch.Tensor | list
    test_y: torch.Tensor | list
    classes: list[str]
    ignore: int = IGNORE

    @property
    def channels(self) -> int:
        return int(self.train_x[0].shape[0])

    def sizes(self, split: str = "train") -> set[tuple[int, int]]:
        images = self.train_x if split == "train" else self.test_x
        return {tuple(x.shape[-2:]) for x in images}


def load_masks(config, input_shape: list[int], progress) -> MaskData:
    """The segmentation dataset `config` names, checked against the spec's input."""
    data = {"digits_canvas": digits_canvas, "segmentation_folder": segmentation_folder}[config.name](
        config, input_shape, progress)
    if data.channels != input_shape[0]:
        raise DataError(f"spec input {list(input_shape)} has {input_shape[0]} channels; the {data.name} images have "
                        f"{data.channels}")
    return data


# ---------------------------------------------------------------- digits on a canvas

def digits_canvas(config, input_shape: list[int], progress) -> MaskData:
    """scikit-learn's 8x8 digits on a size×size canvas, one per quarter at most (3 in 4 are
    filled), enlarged to 3/4 of a quarter, at a random offset in it. Labels: background 0,
    a digit's pixels its class + 1 where its ink is at least half, the background where it is
    under a tenth, and the rim between ignored. The digit images are split 4:1 first (by `seed`),
    so no test canvas shows a digit a training canvas did."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float() / 16.0          # (1797, 8, 8) in [0, 1]
    labels = torch.from_numpy(bunch.target).long()
    g = torch.Generator().manual_seed(config.seed)
    perm = torch.randperm(len(labels), generator=g)
    cut = len(labels) * 4 // 5
    pools = {"train": perm[:cut], "test": perm[cut:]}
    size = config.size
    cell = size // 2
    side = max(8, cell * 3 // 4)
    big = F.interpolate(images[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)

    def draw(n: int, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filled = torch.rand(n, 4, generator=g) < 0.75
        which = pool[torch.randint(0, len(pool), (n, 4), generator=g)]
        offsets = torch.randint(0, cell - side + 1, (n, 4, 2), generator=g)
        quarter = torch.arange(4)
        tops = (quarter // 2) * cell + offsets[..., 0]                   # (n, 4)
        lefts = (quarter % 2) * cell + offsets[..., 1]
        digits = big[which]                                              # (n, 4, side, side)
        labels_q = torch.full(digits.shape, IGNORE, dtype=torch.uint8)
        labels_q[digits >= 0.5] = (labels[which] + 1).to(torch.uint8)[..., None, None].expand_as(digits)[digits >= 0.5]
        labels_q[digits < 0.1] = 0
        # every filled quarter's pixels to their place on its canvas (quarters never overlap)
        c, q = filled.nonzero(as_tuple=True)
        rows = (tops[c, q][:, None] + torch.arange(side))[:, :, None].expand(-1, side, side)
        cols = (lefts[c, q][:, None] + torch.arange(side))[:, None, :].expand(-1, side, side)
        canvas = c[:, None, None].expand(-1, side, side)
        ink = torch.zeros(n, size, size)
        mask = torch.zeros(n, size, size, dtype=torch.uint8)
        ink[canvas, rows, cols] = digits[c, q]
        mask[canvas, rows, cols] = labels_q[c, q]
        noise = 8.0 * torch.randn(n, size, size, generator=g)
        image = (ink * 255.0 + noise).round().clamp(0, 255).to(torch.uint8)
        return image[:, None], mask

    if list(input_shape[:1]) != [1] or list(input_shape[1:]) != [size, size]:
        raise DataError(f"dataset digits_canvas makes [1, {size}, {size}] images; the spec's input is "
                        f"{list(input_shape)} (set train.dataset.size, or the input)")
    train_x, train_y = draw(config.train_size, pools["train"])
    test_x, test_y = draw(config.test_size, pools["test"])
    return MaskData("digits_canvas", train_x, train_y, test_x, test_y, list(DIGIT_CLASSES))


# ---------------------------------------------------------------- a folder of images and masks

MAX_FILES = 1_000_000   # images (or masks) in one split


def segmentation_folder(config, input_shape: list[int], progress) -> MaskData:
    """root/{train,test}/images/* and root/{train,test}/masks/<stem>.png, checked whole (a mask
    for every image and an image for every mask, equal sizes, class indices below the classes
    given or the ignore index) before anything is trained on them."""
    root = Path(config.root)
    if not root.is_dir():
        raise DataError(f"dataset segmentation_folder: {root} is not a folder")
    splits = {}
    for split, sub, listed in (("train", config.train_dir, config.train_list), ("test", config.test_dir, config.test_list)):
        folder = root if listed is not None else root / sub
        stems = _stems(root / listed) if listed is not None else None
        splits[split] = _read_split(folder, config.images, config.masks, input_shape[0], len(config.classes), progress, stems)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    return MaskData("segmentation_folder", _stacked(train_x), _stacked(train_y), _stacked(test_x), _stacked(test_y),
                    list(config.classes))


def _stacked(items: list):
    """One tensor when every item has one shape (then batches gather), else the list."""
    return torch.stack(items) if len({tuple(t.shape) for t in items}) == 1 else items


def _listing(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"dataset segmentation_folder: no {what} folder {folder}")
    out: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if len(out) >= MAX_FILES:
                raise DataError(f"dataset segmentation_folder: {folder} holds over {MAX_FILES:,} files")
            path = Path(entry.path)
            if entry.name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            if path.stem in out:
                raise DataError(f"dataset segmentation_folder: two {what} named {path.stem}.* in {folder} "
                                f"({out[path.stem].name}, {entry.name})")
            out[path.stem] = path
    return out


def _stems(path: Path) -> list[str]:
    """The stems a split list names (VOC's ImageSets/Segmentation/train.txt), in order."""
    try:
        with _open_regular(str(path)) as f:
            text = f.read(64 << 20).decode("utf-8", "replace")
    except DataError as e:
        raise DataError(f"dataset segmentation_folder: {str(e).removeprefix('error: ').removeprefix('cannot read image ')}") from None
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    if not stems:
        raise DataError(f"dataset segmentation_folder: {path} names no images")
    if len(stems) > MAX_FILES:
        raise DataError(f"dataset segmentation_folder: {path} names over {MAX_FILES:,} images")
    return stems


def _read_split(folder: Path, images_dir: str, masks_dir: str, channels: int, n_classes: int, progress,
                listed: list[str] | None = None) -> tuple[list, list]:
    images = _listing(folder / images_dir, IMAGE_SUFFIXES, "images")
    masks = _listing(folder / masks_dir, (".png",), "masks")
    if listed is not None:   # a list picks its images; the folders may hold more (VOC's hold every image)
        missing = [s for s in listed if s not in images]
        if missing:
            raise DataError(f"dataset segmentation_folder: the list names {missing[0]!r}, which is not in "
                            f"{folder / images_dir}" + (f" (and {len(missing) - 1:,} more)" if len(missing) > 1 else ""))
        images = {s: images[s] for s in listed}
        masks = {s: m for s, m in masks.items() if s in images}
    if not images:
        raise DataError(f"dataset segmentation_folder: {folder / images_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    unmasked = sorted(set(images) - set(masks))
    if unmasked:
        raise DataError(f"dataset segmentation_folder: {images[unmasked[0]]} has no mask {folder / masks_dir / unmasked[0]}.png"
                        + (f" (and {len(unmasked) - 1:,} more images without one)" if len(unmasked) > 1 else ""))
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(f"dataset segmentation_folder: {len(orphans):,} masks in {folder / masks_dir} have no image "
                        f"(first: {masks[orphans[0]].name}); every mask needs {images_dir}/<same name>")
    xs, ys = [], []
    stems = list(listed) if listed is not None else sorted(images)
    progress(f"reading {len(stems):,} images and masks in {folder}", 0, len(stems))
    for i, stem in enumerate(stems):
        x = read_image(str(images[stem]), channels, None)
        y = read_mask(str(masks[stem]), n_classes)
        if tuple(x.shape[1:]) != tuple(y.shape):
            raise DataError(f"dataset segmentation_folder: {images[stem]} is {x.shape[2]}x{x.shape[1]} but its mask "
                            f"is {y.shape[1]}x{y.shape[0]}")
        xs.append(x)
        ys.append(y)
        if (i + 1) % 500 == 0 or i + 1 == len(stems):
            progress("", i + 1, len(stems))
    return xs, ys


def read_mask(path: str, n_classes: int, ignore: int = IGNORE) -> torch.Tensor:
    """A mask file as uint8 H×W class indices: an 8-bit gray or palette PNG (the palette's
    indices are the classes, as VOC's). Refused with one line: other pixel types (RGB colours,
    16-bit), over MAX_PIXELS from the header, an index that is no class and not `ignore`."""
    import numpy as np
    from PIL import Image

    with _open_regular(path) as f:
        try:
            with warnings.catch_warnings():   # Pillow warns (DecompressionBombWarning) before it refuses
                warnings.simplefilter("ignore")
                im = Image.open(f, formats=("PNG",))
        except Image.DecompressionBombError as e:
            raise DataError(f"mask {path}: {e}") from None
        except Image.UnidentifiedImageError:
            raise DataError(f"cannot read mask {path}: not a PNG image") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot read mask {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        with im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DataError(f"mask {path} is {width}x{height} pixels, over the {MAX_PIXELS:,} a mask may have")
            if im.mode not in ("L", "P", "1"):
                raise DataError(f"mask {path} has {im.mode} pixels: a mask holds class indices (an 8-bit gray or "
                                f"palette PNG), not colours; convert it with the classes' palette")
            try:
                arr = np.array(im if im.mode != "1" else im.convert("L"))
            except (OSError, ValueError, SyntaxError) as e:
                raise DataError(f"cannot read mask {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if im.mode == "1":
        arr = (arr > 0).astype(np.uint8)
    mask = torch.from_numpy(arr.astype(np.uint8))
    bad = (mask >= n_classes) & (mask != ignore)
    if bool(bad.any()):
        value = int(mask[bad][0])
        raise DataError(f"mask {path} has class index {value}, but train.dataset.classes names {n_classes} classes "
                        f"(0..{n_classes - 1}; {ignore} is ignored)")
    return mask


def palette(n: int) -> list[tuple[int, int, int]]:
    """Colours of classes 0..n-1: PASCAL VOC's (bits of the index spread over R, G, B; 0 black),
    so a mask written with it looks like VOC's; the ignore index is white."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


# ---------------------------------------------------------------- the loader

class MaskLoader:
    """Iterates (images, masks, valid) batches: images float32 normalized, masks int64, on `device`.

    Training: each epoch draws a permutation (seeded by seed and epoch; ranks take their slice of
    each global batch, the ragged tail dropped), and for each image a scale in `scale`, a crop of
    `crop` pixels a side (padded where the image is smaller) and a flip; image and mask get the
    same geometry. Evaluation: images in order, each at its own size, batched while sizes agree
    (the last batch of a size padded to full size with ignored masks; `valid` says how many are real).
    """

    def __init__(self, x, y, *, batch_size: int, device, mean: list[float], std: list[float], train: bool,
                 seed: int = 0, scale=None, crop: tuple[int, int] | None = None, flip: bool = False,
                 ignore: int = IGNORE, rank: int = 0, world: int = 1, channels_last: bool = False):
        self.device = torch.device(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.scale, self.flip, self.ignore = scale, flip, ignore
        self.rank, self.world, self.channels_last = rank, world, channels_last
        n = len(x)
        if not train and world > 1:  # evaluation: a contiguous shard per rank
            per = -(-n // world)
            x, y = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
        self.x, self.y = x, y
        self.crop = crop if crop is not None else tuple(x[0].shape[-2:])
        c = x[0].shape[0]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        self.scale_t = (1.0 / (255.0 * std_t)).to(self.device)
        self.shift_t = (-mean_t / std_t).to(self.device)

    def __len__(self) -> int:
        n = len(self.x)
        if self.train:
            return n // (self.batch_size * self.world)
        return len(self._eval_groups())

    @property
    def images_per_epoch(self) -> int:
        return len(self) * self.batch_size * self.world if self.train else len(self.x)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        if not self.train:
            yield from self._eval_batches()
            return
        n = len(self.x)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        draws = torch.rand(n, 4, generator=g)   # per position: scale, crop row, crop column, flip
        gb, b = self.batch_size * self.world, self.batch_size
        steps = len(self)
        whole = self.scale is None and isinstance(self.x, torch.Tensor) and tuple(self.x.shape[-2:]) == self.crop
        for step in range(start_step, steps):
            pos = torch.arange(step * gb + self.rank * b, step * gb + (self.rank + 1) * b)
            if whole:   # every image at its size: gathered as one batch, mirrored where drawn
                idx = perm[pos]
                xb, yb = self.x[idx].float(), self.y[idx]
                if self.flip:
                    mirror = draws[pos, 3] < 0.5
                    xb = torch.where(mirror[:, None, None, None], xb.flip(-1), xb)
                    yb = torch.where(mirror[:, None, None], yb.flip(-1), yb)
            else:
                pairs = [self._augment(int(perm[p]), draws[p]) for p in pos]
                xb, yb = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            yield self._normalize(xb.to(self.device, non_blocking=True)), yb.to(self.device, non_blocking=True).long(), b

    def _augment(self, i: int, draw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image i and its mask, scaled, cropped (padded first where smaller) and flipped alike."""
        x, y = self.x[i].float(), self.y[i]
        h, w = x.shape[-2:]
        if self.scale is not None:
            s = self.scale[0] + float(draw[0]) * (self.scale[1] - self.scale[0])
            size = (max(1, round(h * s)), max(1, round(w * s)))
            if size != (h, w):
                x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
                y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)
                h, w = size
        ch, cw = self.crop
        if h < ch or w < cw:   # padded at the bottom and right: the image with 0, the mask with the ignore index
            x = F.pad(x, (0, max(0, cw - w), 0, max(0, ch - h)), value=0.0)
            y = F.pad(y, (0, max(0, cw - w), 0, max(0, ch - h)), value=self.ignore)
            h, w = x.shape[-2:]
        top, left = int(float(draw[1]) * (h - ch + 1)), int(float(draw[2]) * (w - cw + 1))
        x, y = x[:, top:top + ch, left:left + cw], y[top:top + ch, left:left + cw]
        if self.flip and float(draw[3]) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y

    def _eval_groups(self) -> list[tuple[int, int]]:
        """(start, end) of consecutive images of one size, at most batch_size each."""
        groups, start = [], 0
        n = len(self.x)
        for i in range(1, n + 1):
            if i == n or i - start == self.batch_size or tuple(self.x[i].shape) != tuple(self.x[start].shape):
                groups.append((start, i))
                start = i
        return groups

    def _eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for start, end in self._eval_groups():
            xb = torch.stack([self.x[i] for i in range(start, end)]).float()
            yb = torch.stack([self.y[i] for i in range(start, end)])
            valid = end - start
            if valid < self.batch_size and isinstance(self.x, torch.Tensor):   # one shape (compiled models); ignored
                xb = torch.cat([xb, xb.new_zeros((self.batch_size - valid, *xb.shape[1:]))])
                yb = torch.cat([yb, yb.new_full((self.batch_size - valid, *yb.shape[1:]), self.ignore)])
            yield self._normalize(xb.to(self.device)), yb.to(self.device).long(), valid

    def _normalize(self, xb: torch.Tensor) -> torch.Tensor:
        xb = torch.addcmul(self.shift_t, xb, self.scale_t)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return xb.contiguous(memory_format=fmt)
