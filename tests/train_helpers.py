"""Shared pieces of the trainer tests: a tiny spec on synthetic data that trains in
well under a second on one CPU core."""
from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from pathlib import Path


def tiny_spec(**train) -> dict:
    """A small conv net (with dropout, so resume must restore the RNG) on 3x8x8 synthetic data."""
    doc = {
        "netspec": 1,
        "name": "tiny",
        "input": [3, 8, 8],
        "vars": {"classes": 4},
        "layers": [
            {"conv": {"out": 8, "k": 3, "padding": 1, "bias": False}},
            "bn",
            "relu",
            {"dropout": {"p": 0.2}},
            {"maxpool": 2},
            "flatten",
            {"linear": {"out": "$classes"}},
        ],
        "train": {
            "dataset": {"name": "synthetic", "train_size": 96, "test_size": 40, "classes": 4, "seed": 1},
            "augmentation": {"crop_padding": 1, "flip": True},
            "epochs": 3,
            "batch_size": 16,
            "optimizer": {"name": "sgd", "lr": 0.05},
            "seed": 3,
            "device": "cpu",
        },
    }
    doc["train"] = _merge(doc["train"], train)
    return doc


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@contextlib.contextmanager
def lock_held_elsewhere(folder, command: list[str]):
    """Another process holding `folder`'s lock, as a running `train` or `sweep` does
    (-> its pid); killed with SIGKILL at the end, which drops the lock."""
    code = ("import time; from netspec.locks import FolderLock; "
            f"FolderLock({str(folder)!r}, 'folder').acquire({command!r}); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
