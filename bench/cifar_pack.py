"""Pack an ImageFolder tree of small files into one .npz blob and back.

The device tool carries at most 64 MiB and counts 60,000 small JPEGs as far more than their
bytes; one file of the concatenated JPEG bytes (56 MB for CIFAR-10) travels, and is unpacked
into the same tree on the GPU machine before training:
    python bench/cifar_pack.py pack ../shared/data/cifar10 .gpupack/cifar10.npz
    python bench/cifar_pack.py unpack .gpupack/cifar10.npz /tmp/cifar10
"""
from __future__ import annotations

import os
import sys

import numpy as np


def pack(root: str, out: str) -> None:
    names, blobs = [], []
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                path = os.path.join(dirpath, f)
                names.append(os.path.relpath(path, root))
                with open(path, "rb") as fh:
                    blobs.append(fh.read())
    sizes = np.array([len(b) for b in blobs], dtype=np.int64)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    np.savez(out, data=np.frombuffer(b"".join(blobs), dtype=np.uint8), sizes=sizes, names=np.array(names, dtype="S"))  # bytes: 4x smaller than str
    print(f"{len(names)} files, {sizes.sum() / 1e6:.1f} MB -> {out}")


def unpack(blob: str, root: str) -> None:
    z = np.load(blob)
    data, sizes, names = z["data"], z["sizes"], z["names"]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for i, name in enumerate(names):
        path = os.path.join(root, name.decode())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data[offsets[i]:offsets[i + 1]].tobytes())
    print(f"{len(names)} files -> {root}")


if __name__ == "__main__":
    {"pack": pack, "unpack": unpack}[sys.argv[1]](sys.argv[2], sys.argv[3])
