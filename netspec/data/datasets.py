"""Datasets by name → decoded uint8 tensors, once.

Owns `load_dataset(config, input_shape)`: the `DATASETS` table maps each
`train.dataset.name` to a factory that returns an `ImageData` (uint8 N×C×H×W images and
int64 labels for train and test, plus class names). Everything is decoded up front so
the training loop can keep it on the device (see gpu_loader.py); image folders are
decoded once and cached as a tensor file keyed by path, file count and mtimes.

Imports torch, torchvision and (for `digits`) scikit-learn, lazily where they are slow.
Must not import netspec.train, netspec.build or anything past the data stage.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from netspec.document.train import SEGMENTATION_DATASETS
from netspec.errors import NetspecError, first_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
MAX_PIXELS = 2**25   # per image, read from its header before decoding (8K video frames are 2**25)


class DataError(NetspecError):
    """The data cannot be had or does not fit the spec (exit 2, one line)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass
class ImageData:
    """A whole dataset in memory: images uint8 (N, C, H, W), labels int64 (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def image_shape(self) -> list[int]:
        return list(self.train_x.shape[1:])


def default_root() -> Path:
    return Path(os.environ.get("NETSPEC_DATA", Path.home() / ".cache" / "netspec" / "data"))


def cache_dir() -> Path:
    return Path(os.environ.get("NETSPEC_CACHE", Path.home() / ".cache" / "netspec"))


def load_dataset(config, input_shape: list[int], progress: Callable[[str, int, int], None] | None = None) -> ImageData:
    """The dataset `config` names (a `train.dataset` model), checked against the
    spec's input shape (C, H, W). `progress(message, done, total)` hears about slow
    preparation (decoding an image folder the first time): done 0 with the message,
    then counts up to total. A segmentation dataset (netspec.data.masks) gives a MaskData."""
    if config.name in SEGMENTATION_DATASETS:
        from netspec.data.masks import load_masks
        return load_masks(config, list(input_shape), progress or _silent)
    data = DATASETS[config.name](config, list(input_shape), progress or _silent)
    check_shape(data, input_shape)
    if len(data.classes) < 2:  # every prediction would be right: nothing to learn, nothing measured
        raise DataError(f"dataset {data.name} has {len(data.classes)} class ({', '.join(data.classes)}); "
                        f"a classifier needs at least 2")
    return data


def _silent(message: str, done: int, total: int) -> None:
    pass


def check_shape(data: ImageData, input_shape: list[int]) -> None:
    if list(input_shape) != data.image_shape:
        raise DataError(f"spec input {list(input_shape)} does not match the {data.name} images "
                        f"{data.image_shape} (C, H, W); change the spec's input or the dataset")


# ---------------------------------------------------------------- embedded and synthetic

def _digits(config, input_shape: list[int], progress) -> ImageData:
    # scikit-learn ships these 1,797 8x8 images inside its wheel: no network needed
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = _random_split(len(labels), 1.0 - config.test_fraction, config.split_seed)
    return ImageData("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                     [str(d) for d in range(10)])


def _synthetic(config, input_shape: list[int], progress) -> ImageData:
    # one random template per class plus Gaussian noise: learnable in a few steps,
    # shaped like whatever the spec takes
    g = torch.Generator().manual_seed(config.seed)
    templates = torch.randint(0, 256, (config.classes, *input_shape), generator=g).float()

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, config.classes, (n,), generator=g)
        x = templates[y] + config.noise * torch.randn((n, *input_shape), generator=g)
        return x.clamp(0, 255).round().to(torch.uint8), y

    train_x, train_y = draw(config.train_size)
    test_x, test_y = draw(config.test_size)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, [f"class{i}" for i in range(config.classes)])


def _random_split(n: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * train_fraction))
    if cut <= 0 or cut >= n:
        raise DataError(f"a {train_fraction:g} split of {n} images leaves one side empty")
    return perm[:cut].sort().values, perm[cut:].sort().values


# ---------------------------------------------------------------- torchvision by name

_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
}


def _torchvision(config, input_shape: list[int], progress) -> ImageData:
    import torchvision

    cls_name, folder = _TORCHVISION[config.name]
    root = Path(config.root).expanduser() if config.root else default_root()
    cls = getattr(torchvision.datasets, cls_name)
    try:  # torchvision prints download progress and every failed mirror: the error says what matters
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            train = cls(str(root), train=True, download=config.download)
            test = cls(str(root), train=False, download=config.download)
    except (RuntimeError, OSError) as e:  # "Dataset not found or corrupted", or the network failing
        if not config.download:
            raise DataError(f"dataset {config.name} not found in {root / folder}; add "
                            f"--set train.dataset.download=true to fetch it, or set train.dataset.root "
                            f"to where it is") from None
        lines = [line.strip(" <>") for line in str(e).splitlines() if line.strip()]
        raise DataError(f"dataset {config.name}: download into {root} failed ({lines[-1] if lines else type(e).__name__}); "
                        f"check the network, or put the files in {root / folder}") from None

    def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = ds.data
        x = torch.from_numpy(x) if not isinstance(x, torch.Tensor) else x
        # CIFAR keeps N,H,W,C numpy arrays, MNIST N,H,W tensors
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)
        return x.contiguous().to(torch.uint8), torch.as_tensor(ds.targets, dtype=torch.long)

    train_x, train_y = tensors(train)
    test_x, test_y = tensors(test)
    return ImageData(config.name, train_x, train_y, test_x, test_y, list(train.classes))


# ---------------------------------------------------------------- image folders

def _imagefolder(config, input_shape: list[int], progress) -> ImageData:
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset imagefolder: {root} is not a folder; set train.dataset.root to a "
                        f"folder of <class>/<image> subfolders")
    size = tuple(input_shape[1:]) if config.resize else None
    channels = input_shape[0]
    if config.split is not None:
        x, y, classes = _decode_folder_cached(root, channels, size, progress)
        train_idx, test_idx = _random_split(len(y), config.split, config.split_seed)
        return ImageData("imagefolder", x[train_idx], y[train_idx], x[test_idx], y[test_idx], classes)
    parts = {}
    for split in (config.train_dir, config.test_dir):
        if not (root / split).is_dir():
            raise DataError(f"dataset imagefolder: no folder {root / split}; create it or set "
                            f"train.dataset.split=0.8 to split {root}/<class>/* at random")
        parts[split] = _decode_folder_cached(root / split, channels, size, progress)
    (train_x, train_y, classes), (test_x, test_y, test_classes) = parts[config.train_dir], parts[config.test_dir]
    if test_classes != classes:
        raise DataError(f"dataset imagefolder: {root / config.test_dir} has classes {test_classes}, "
                        f"but {root / config.train_dir} has {classes}")
    return ImageData("imagefolder", train_x, train_y, test_x, test_y, classes)


def _scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    classes = sorted(d.name for d in os.scandir(folder) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"dataset imagefolder: {folder} has no class subfolders")
    files: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        names = sorted(e.name for e in os.scandir(folder / cls)
                       if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
        files.extend((str(folder / cls / n), label) for n in names)
    if not files:
        raise DataError(f"dataset imagefolder: no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return classes, files


def _decode_folder_cached(folder: Path, channels: int, size: tuple[int, int] | None, progress=_silent):
    """Decode every image under folder/<class>/ once; later runs read the cached tensor
    (decoding 60,000 JPEGs takes seconds to minutes, reading one file a fraction of one)."""
    classes, files = _scan(folder)
    # key: where, what, and when it last changed (a class folder's mtime moves when a file
    # is added, removed or renamed in it)
    stamp = [str(folder.resolve()), str(len(files)), str(channels), str(size)]
    stamp += [f"{c}:{os.stat(folder / c).st_mtime_ns}" for c in classes]
    key = hashlib.sha256("|".join(stamp).encode()).hexdigest()[:20]
    path = cache_dir() / f"imagefolder-{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return blob["x"], blob["y"], list(blob["classes"])
        except Exception:
            pass  # a damaged cache is rebuilt below
    progress(f"decoding {len(files):,} images under {folder} (once: later runs read the cache, {path})", 0, len(files))
    x = _decode_all([f for f, _ in files], channels, size, progress)
    y = torch.tensor([label for _, label in files], dtype=torch.long)
    _save_atomic({"x": x, "y": y, "classes": classes}, path)
    return x, y, classes


# what an image may be: the formats of IMAGE_SUFFIXES (a JPEG with an embedded preview, as
# cameras write them, is Pillow's MPO). Pillow is never asked to guess among the rest (EPS
# would start Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
# RGB -> gray as torchvision's decoder did it (libpng's rgb_to_gray with torchvision's
# 0.2989/0.587 weights, in libpng's 15-bit fixed point, truncated): the same pixels as before
GRAY_WEIGHTS = (9794, 19234, 3740)


def read_image(path: str, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """One image file as uint8 C×H×W (1 channel: grayscale, else RGB), resized to `size`
    (bilinear, antialiased) when given and different. Used by image folders and `netspec predict`,
    so a predicted image is prepared exactly as a test image is.

    Decoded by Pillow (torchvision's decoders are deprecated since 0.29), with torchvision's
    conversions kept: a JPEG is decoded straight to gray by libjpeg (its Y channel), other images
    are reduced by `GRAY_WEIGHTS`; 16-bit images keep their high byte (as Pillow reads 16-bit
    RGB). Refused with one line: what is not a regular file (a FIFO would block), not one of
    IMAGE_FORMATS, over MAX_PIXELS from its header, animated, or of a float or 32-bit pixel type."""
    import numpy as np
    from PIL import Image

    with _open_regular(path) as f:
        try:
            with warnings.catch_warnings():  # PIL warns (DecompressionBombWarning) before it refuses
                warnings.simplefilter("ignore")
                im = Image.open(f, formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as e:
            raise DataError(f"dataset imagefolder: {path}: {e}") from None
        except Image.UnidentifiedImageError:
            raise DataError(f"cannot read image {path}: not a JPEG, PNG, GIF, WebP or BMP image") from None
        except (OSError, ValueError, SyntaxError) as e:  # a header Pillow cannot parse
            raise DataError(f"cannot read image {path}: {first_line(e)}") from None
        with im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DataError(f"dataset imagefolder: {path} is {width}x{height} pixels, over the {MAX_PIXELS:,} "
                                f"an image may have (a decompression bomb?)")
            if getattr(im, "is_animated", False) and im.format != "MPO":  # MPO: the first image is the photo
                raise DataError(f"cannot read image {path}: an animated {im.format} ({width}x{height}); "
                                f"netspec reads still images (save the frame you mean as a PNG)")
            try:
                arr = _pixels(im, channels, np)
            except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
                raise DataError(f"cannot read image {path}: {first_line(e)}") from None
            if arr is None:
                raise DataError(f"cannot read image {path}: {im.format} with {im.mode} pixels (32-bit or "
                                f"floating point); netspec reads 8- and 16-bit images")
    img = torch.from_numpy(arr)
    if size is not None and tuple(img.shape[1:]) != tuple(size):
        img = torch.nn.functional.interpolate(img[None].float(), size=tuple(size), mode="bilinear",
                                              antialias=True, align_corners=False)[0]
        img = img.round().clamp(0, 255).to(torch.uint8)
    return img


def _pixels(im, channels: int, np):
    """The decoded pixels of a PIL image as a uint8 C×H×W array; None for a pixel type netspec
    does not read. (numpy makes the H×W×C -> C×H×W copy: torch's uint8 permute copy took 50 times
    as long.)"""
    if im.format in ("JPEG", "MPO") and channels == 1:
        im.draft("L", im.size)  # libjpeg's own gray output, at full size
    mode = im.mode
    if mode in ("I", "F"):
        return None
    if mode.startswith("I;16"):  # 16-bit gray: its high byte, as Pillow reads 16-bit RGB
        gray = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
    elif channels == 3:
        rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"))
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    elif mode in ("L", "LA", "1"):
        gray = np.array(im.convert("L"))
    else:
        rgb = np.asarray(im.convert("RGB"))
        weighted = sum(rgb[..., i].astype(np.uint32) * weight for i, weight in enumerate(GRAY_WEIGHTS))
        gray = (weighted >> 15).astype(np.uint8)
    return np.repeat(gray[None], channels, axis=0)


@contextlib.contextmanager
def _open_regular(path: str):
    """The file at `path`, opened for reading if it is a regular file: opened non-blocking
    (a FIFO's open would wait for a writer) and checked with fstat, not by its name."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"cannot read image {path}: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise DataError(f"cannot read image {path}: this is {kind}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        yield f


def _decode_all(paths: list[str], channels: int, size: tuple[int, int] | None, progress=_silent) -> torch.Tensor:
    # Pillow's decoders release the GIL, so threads decode in parallel
    with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        images = []
        for img in pool.map(lambda p: read_image(p, channels, size), paths, chunksize=256):
            images.append(img)
            if len(images) % 500 == 0 or len(images) == len(paths):
                progress("", len(images), len(paths))
    first = images[0].shape
    for path, img in zip(paths, images):
        if img.shape != first:
            raise DataError(f"dataset imagefolder: {path} is {list(img.shape)} but {paths[0]} is "
                            f"{list(first)}; add --set train.dataset.resize=true")
    return torch.stack(images)


def _save_atomic(obj, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        pass  # a cache we cannot write only costs time on the next run


DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": _digits,
    "synthetic": _synthetic,
    "cifar10": _torchvision,
    "cifar100": _torchvision,
    "mnist": _torchvision,
    "fashion_mnist": _torchvision,
    "imagefolder": _imagefolder,
}
