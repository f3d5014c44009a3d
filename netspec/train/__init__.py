"""The generic trainer behind `netspec train` / `netspec eval`.

loop.py (fit) reads top to bottom; optim.py, checkpoint.py, evaluate.py, runs.py and
distributed.py are its parts; commands.py is the CLI glue. Importing this package must
not import torch (the CLI imports commands.py at start-up), so `fit` and `evaluate_checkpoint`
are thin forwards.
"""
from __future__ import annotations


def fit(*args, **kwargs):
    """See netspec.train.loop.fit."""
    from netspec.train.loop import fit as _fit

    return _fit(*args, **kwargs)


def evaluate_checkpoint(*args, **kwargs):
    """See netspec.train.evaluate.evaluate_checkpoint."""
    from netspec.train.evaluate import evaluate_checkpoint as _evaluate_checkpoint

    return _evaluate_checkpoint(*args, **kwargs)
