"""Shared pieces of the trainer tests: a tiny spec on synthetic data that trains in
well under a second on one CPU core."""
from __future__ import annotations

import copy


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
