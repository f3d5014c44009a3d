"""Checkpoints: written atomically, read without running code.

Owns the checkpoint file format (a dict of tensors, numbers, strings and lists, version
`FORMAT`; `FIELDS` says what each field holds), `save` (temporary file in the same folder
+ fsync + rename + fsync of the folder, so a crash or a full disk leaves the old file or
the new one, never half of one), `load` (`torch.load(weights_only=True)`: a checkpoint
can never execute code; the fields a use `needs` are checked, so a crafted or cut-down
file is one line) and the RNG state capture/restore that makes a resumed run replay exactly.

Imports torch only. Must not import the loop, data or build.
"""
from __future__ import annotations

import errno
import math
import os
import tempfile
import warnings
from pathlib import Path

import torch

from netspec.document.train import MIN_STD
from netspec.errors import EXIT_CHECK_FAILED, NetspecError

FORMAT = 1


class CheckpointError(NetspecError):
    """A checkpoint is missing, unreadable or from another spec (exit 2)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


class SaveFailed(CheckpointError):
    """A checkpoint could not be written (a full disk, a folder made read-only): the
    previous file of that name is untouched. Exit 2: the fix is the machine's (space,
    permissions), then --resume from the previous checkpoint."""


class _WriteAll:
    """A file whose write() writes every byte or raises, and remembers its OSError. A nearly
    full disk writes part of a buffer (the count says so; the next write fails), and torch's
    zip writer turns the OSError of some writes into its own "unexpected pos 704 vs 598"."""

    def __init__(self, fd: int):
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                written = os.write(self.fd, view[done:])
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += written
        except OSError as e:
            self.error = e
            raise
        return done

    def flush(self) -> None:
        pass


def save(state: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb", buffering=0) as f:
            out = _WriteAll(f.fileno())
            try:
                torch.save({"netspec_checkpoint": FORMAT, **state}, out)
            except RuntimeError:
                if out.error is None:
                    raise
                raise out.error from None
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        kept = "the previous one is kept" if path.exists() else "none had been written"
        raise SaveFailed(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    except BaseException:
        if tmp is not None:
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


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", needs: tuple[str, ...] = ()) -> dict:
    """The checkpoint at path, with the fields in `needs` (EVAL, RESUME) checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on its way to refusing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle refusing a non-tensor object, truncation, not a zip...
        raise CheckpointError(f"cannot read checkpoint {path}: {unreadable(e)}") from None
    if not isinstance(state, dict) or state.get("netspec_checkpoint") != FORMAT:
        raise CheckpointError(f"{path} is not a netspec checkpoint (format {FORMAT})")
    check_fields(state, path, needs)
    return state


def unreadable(e: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in one line."""
    if "Weights only load failed" in str(e):
        return "it holds objects other than tensors, numbers, strings and containers, and loading them would run code"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_fields(state: dict, path, needs: tuple[str, ...]) -> None:
    """Refuse a checkpoint (a loaded dict) that lacks a field of `needs` or holds one of another kind."""
    for key in (*needs, *(("ema",) if "ema" in state else ())):
        what, fits = FIELDS[key]
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} ({what}); it is not a complete netspec checkpoint")
        if not fits(state[key]):
            raise CheckpointError(f"checkpoint {path}: {key!r} is not {what}")


# -- what a checkpoint holds, so a crafted or cut-down file is one line, not a crash later
def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _weights(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _row(r) -> bool:
    return isinstance(r, dict) and all(k in r and (r[k] is None or _number(r[k])) for k in HISTORY_ROW)


HISTORY_ROW = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "epoch_s")
FIELDS = {
    "model": ("a mapping of parameter names to tensors", _weights),
    "mean": ("a list of numbers", lambda v: isinstance(v, list) and len(v) > 0 and all(map(_number, v))),
    "std": (f"a list of positive numbers (at least {MIN_STD:g})",
            lambda v: isinstance(v, list) and len(v) > 0 and all(_number(x) and x >= MIN_STD for x in v)),
    "epoch": ("an epoch count", _int),
    "step": ("a step count", _int),
    "optimizer": ("an optimizer state (a mapping)", lambda v: isinstance(v, dict)),
    "scheduler": ("a schedule state (a mapping)", lambda v: isinstance(v, dict)),
    "scaler": ("a loss-scaler state (a mapping)", lambda v: isinstance(v, dict)),
    "rng": ("a random-generator state (a mapping with a 'torch' tensor)",
            lambda v: isinstance(v, dict) and isinstance(v.get("torch"), torch.Tensor) and v["torch"].dtype == torch.uint8),
    "history": ("a list of epoch rows", lambda v: isinstance(v, list) and all(map(_row, v))),
    "best_acc": ("a number", _number),
    "best_epoch": ("an epoch count", _int),
    "wall_s": ("a number of seconds", _number),
    "train_config": ("the train section it was trained with (a string)", lambda v: isinstance(v, str)),
    "partial": ("null or the sums of a part-done epoch",
                lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("losses"), torch.Tensor)
                                        and isinstance(v.get("correct"), torch.Tensor) and _number(v.get("train_s")))),
    "ema": ("a weight average (a mapping of model weights and n_averaged)",
            lambda v: isinstance(v, dict) and _weights(v.get("model")) and _int(v.get("n_averaged"))),
}
EVAL = ("model", "mean", "std")
RESUME = ("epoch", "step", "model", "optimizer", "scheduler", "scaler", "rng", "history", "best_acc", "best_epoch",
          "wall_s", "partial", "train_config", "mean", "std")


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
