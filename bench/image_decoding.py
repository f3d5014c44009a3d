"""Image decoding: netspec's `read_image` (Pillow, since torchvision 0.29 deprecated its own
decoders) against the torchvision.io call it replaced, on the same files, as ratios.

    python bench/image_decoding.py [--rounds 5]

Writes half PNGs, half JPEGs at two sizes (32x32, as CIFAR-sized image folders; 320x256, as
photos) into a temporary folder and decodes every file to RGB and to gray with each decoder,
alternating, sequentially; prints the median milliseconds per image and new/old. Decoding
happens once per image folder (the tensors are cached) and once per image in `predict`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from netspec.data.datasets import read_image  # noqa: E402


def pictures(folder: Path, h: int, w: int, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        noise = rng.integers(0, 40, (h, w))
        pixels = np.dstack([(x * 8 + i) % 256, (y * 8) % 256, (noise + x // 2) % 256]).astype(np.uint8)
        path = folder / f"{h}x{w}_{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # the old decoder's, the point of the change
    from torchvision.io import ImageReadMode, decode_image, read_file

    def old(path: str, channels: int):
        return decode_image(read_file(path), mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)

    def new(path: str, channels: int):
        return read_image(path, channels, None)

    print("| images | channels | torchvision.io ms/image | read_image ms/image | new/old |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for h, w, n in ((32, 32, 600), (256, 320, 100)):
            paths = pictures(Path(tmp), h, w, n)
            for channels in (3, 1):
                times: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(args.rounds):
                    for name, decode in (("old", old), ("new", new)):
                        start = time.perf_counter()
                        for path in paths:
                            decode(path, channels)
                        times[name].append((time.perf_counter() - start) / n * 1e3)
                o, m = statistics.median(times["old"]), statistics.median(times["new"])
                print(f"| {n} of {w}x{h}, half PNG | {channels} | {o:.3f} | {m:.3f} | {m / o:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
