"""Checkpoints: written atomically, read without running code.

Owns the checkpoint file format (a dict of tensors, numbers, strings and lists, version
`FORMAT`), `save` (temporary file in the same folder + fsync + rename + fsync of the
folder, so a crash leaves the old file or the new one, never half of one), `load`
(`torch.load(weights_only=True)`: a checkpoint can never execute code) and the RNG
state capture/restore that makes a resumed run replay exactly.

Imports torch only. Must not import the loop, data or build.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from netspec.errors import NetspecError

FORMAT = 1


class CheckpointError(NetspecError):
    """A checkpoint is missing, unreadable or from another spec (exit 2)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


def save(state: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"netspec_checkpoint": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the folder's entry is on disk
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle refusing a non-tensor object, truncation, not a zip...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or state.get("netspec_checkpoint") != FORMAT:
        raise CheckpointError(f"{path} is not a netspec checkpoint (format {FORMAT})")
    return state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
