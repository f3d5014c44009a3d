"""Weights in: `--init SOURCE` (and `--ckpt FILE`) of train, eval, export and predict.

Owns reading a weight source into a state_dict, with what the source knows about its data
(class names, normalization), and loading it into a model strictly: a key the model has and
the source lacks, a key only the source has, or a shape that differs is an error listing
them (exit 2); `--init-skip GLOB` names keys to leave at their initialization, and every
key it skips is listed, so a silent partial load cannot happen.

Sources: a netspec checkpoint (the weights `netspec eval` evaluates: the moving average where
it has one), a state_dict file (`torch.load(weights_only=True)`), a `.safetensors` file, or
`torchvision:<Enum>.<MEMBER>`, looked up by name in torchvision's own weight enums and read
from its download cache. Nothing read is ever executed.

Imports torch (torchvision and safetensors only for the sources that need them). Must not
import netspec.cli.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import torch

from netspec.errors import NetspecError, first_line
from netspec.train import checkpoint

TORCHVISION = "torchvision:"
SHOWN = 5  # keys listed per kind in an error line; the rest are counted


class WeightsError(NetspecError):
    """A weight source cannot be read or does not fit the model (exit 2, one line)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass
class Weights:
    """A state_dict and what its source recorded about the data it was trained on."""

    state: dict[str, torch.Tensor]
    origin: str                       # for messages: what was read, from where
    classes: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    epoch: int | None = None
    spec: str | None = None           # the name of the spec a netspec checkpoint was trained from


# ---------------------------------------------------------------- reading

def pick(ckpt: str | None, init: str | None) -> Weights | None:
    """The weights of a command's `--ckpt FILE` (a netspec checkpoint) or `--init SOURCE`."""
    if ckpt is not None:
        return from_checkpoint(ckpt)
    return read(init) if init is not None else None


def from_checkpoint(path: str | os.PathLike) -> Weights:
    """A netspec checkpoint (`--ckpt`): anything else is refused."""
    return _checkpoint_weights(checkpoint.load(path), Path(path))


def read(source: str) -> Weights:
    """Any `--init SOURCE`."""
    if source.startswith(TORCHVISION):
        return _torchvision(source[len(TORCHVISION):])
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"--init {source}: no such file (expected a state_dict .pt/.pth, a .safetensors "
                           f"file, a netspec checkpoint, or {TORCHVISION}<Enum>.<WEIGHTS>)")
    if path.suffix == ".safetensors":
        return Weights(_safetensors(path), f"{path} (safetensors)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, truncation, not a torch file
        raise WeightsError(f"--init {path}: cannot read it as a weights-only torch file: {first_line(e)}") from None
    if isinstance(obj, dict) and "netspec_checkpoint" in obj:
        if obj["netspec_checkpoint"] != checkpoint.FORMAT:
            raise WeightsError(f"--init {path}: netspec checkpoint format {obj['netspec_checkpoint']!r}, "
                               f"this netspec reads format {checkpoint.FORMAT}")
        return _checkpoint_weights(obj, path)
    if _is_state(obj):
        return Weights(dict(obj), f"{path} (state_dict)")
    for entry in ("state_dict", "model"):  # the usual wrappers of a training script's checkpoint
        if isinstance(obj, dict) and _is_state(obj.get(entry)):
            return Weights(dict(obj[entry]), f"{path} (its {entry!r} entry)")
    what = f"a dict with keys {', '.join(map(repr, list(obj)[:8]))}" if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f"--init {path}: holds {what}, not a state_dict (a dict of tensors)")


def _is_state(obj) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _checkpoint_weights(state: dict, path: Path) -> Weights:
    checkpoint.check_fields(state, path, checkpoint.EVAL)  # a crafted file is one line, not a crash later
    averaged = "ema" in state  # last.pt of a train.ema run; best.pt already holds the evaluated weights
    epoch = state.get("epoch")
    name = state.get("name") if isinstance(state.get("name"), str) else None  # the spec it was trained from
    spec = f"spec {name!r}, " if name else ""
    origin = f"{path} (netspec checkpoint, {spec}epoch {epoch}{', moving-average weights' if averaged else ''})"
    return Weights(state["ema"]["model"] if averaged else state["model"], origin,
                   classes=state.get("classes"), mean=state.get("mean"), std=state.get("std"), epoch=epoch,
                   spec=name)


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # bad header, truncated file
        raise WeightsError(f"--init {path}: not a readable safetensors file: {first_line(e)}") from None


# DenseNet's published weights predate torchvision's module names ("norm.1" for "norm1");
# torchvision renames them on load with this pattern (models/densenet.py), and so do we
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _torchvision(name: str) -> Weights:
    import torchvision.models as tvm

    try:  # a lookup by name in torchvision's enums; nothing is imported or evaluated from the text
        weights = tvm.get_weight(name)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise WeightsError(f"--init {TORCHVISION}{name}: torchvision has no such weights{_did_you_mean(name)}") from None
    url = weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():  # torchvision's download cache: fetched on first use, hash-checked
        digest = torch.hub.HASH_REGEX.search(cached.name)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), digest.group(1) if digest else None,
                                           progress=sys.stderr.isatty())
        except (OSError, RuntimeError) as e:  # no network (URLError is an OSError), a bad hash
            raise WeightsError(f"--init {TORCHVISION}{name}: {cached} is not there and downloading {url} failed "
                               f"({first_line(e)}); fetch that URL elsewhere and put the file at {cached}") from None
    try:
        state = torch.load(cached, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file
        raise WeightsError(f"--init {TORCHVISION}{name}: cannot read {cached}: {first_line(e)}") from None
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    transforms = weights.transforms()
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    return Weights(state, f"{TORCHVISION}{name} ({cached})", classes=weights.meta.get("categories"),
                   mean=list(mean) if mean else None, std=list(std) if std else None)


def _did_you_mean(name: str) -> str:
    import torchvision.models as tvm

    names = []
    for model in tvm.list_models():
        enum = tvm.get_model_weights(model)
        names += [f"{enum.__name__}.{member}" for member in enum.__members__]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    if name.lower() in tvm.list_models():  # a model's name: its default weights
        close = [f"{tvm.get_model_weights(name.lower()).__name__}.DEFAULT"]
    if close:
        return f" (did you mean {TORCHVISION}{close[0]}?)"
    return f"; names look like {TORCHVISION}ResNet50_Weights.IMAGENET1K_V2"


# ---------------------------------------------------------------- loading

@dataclass
class Report:
    """What `load_into` did: keys loaded, keys skipped by --init-skip (with the model's and the
    source's shapes), and BatchNorm counters the source lacked."""

    origin: str
    loaded: int
    skipped: list[tuple[str, list[int] | None, list[int] | None]]
    patterns: list[str]
    filled: int

    def lines(self) -> list[str]:
        """The report printed (to stderr) by every command that loads weights."""
        head = f"init: {self.loaded} tensors from {self.origin}"
        if self.filled:
            head += (f"; {self.filled} BatchNorm num_batches_tracked counters not in the file kept at 0 "
                     f"(as torch's own loading does)")
        if not self.skipped:
            return [head]
        pats = " ".join(f"'{p}'" for p in self.patterns)
        out = [f"{head}; {len(self.skipped)} skipped by --init-skip {pats} (the model's keep their fresh "
               f"initialization, the file's are not used):"]
        width = max(len(k) for k, _, _ in self.skipped)
        for key, mine, theirs in self.skipped:
            out.append(f"  skipped {key:<{width}}  model {_shape(mine)}  file {_shape(theirs)}")
        return out


def _shape(shape) -> str:
    return "-" if shape is None else str(list(shape))


def load_into(model: torch.nn.Module, weights: Weights, skip: list[str] | tuple[str, ...] = (),
              spec: str | None = None) -> Report:
    """Load `weights` into `model` (built from the spec named `spec`) strictly, except keys
    matching a `skip` glob (fnmatch on the full key, e.g. 'fc.*'). A model on the meta device
    takes the tensors (assign)."""
    mine = model.state_dict()
    theirs = weights.state
    skip = list(skip)
    for pattern in skip:
        if not any(fnmatchcase(k, pattern) for k in (*mine, *theirs)):
            raise WeightsError(f"--init-skip '{pattern}' matches no key of the model or of {weights.origin} "
                               f"(keys look like {next(iter(mine), '?')!r})")

    def skipped(key: str) -> bool:
        return any(fnmatchcase(key, p) for p in skip)

    missing = [k for k in mine if k not in theirs and not skipped(k)]
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in counters]
    unexpected = [k for k in theirs if k not in mine and not skipped(k)]
    mismatched = [f"{k} file {list(theirs[k].shape)} model {list(mine[k].shape)}" for k in mine
                  if k in theirs and not skipped(k) and theirs[k].shape != mine[k].shape]
    if missing or unexpected or mismatched:
        matched = sum(1 for k in mine if k in theirs and not skipped(k)) - len(mismatched)
        problems = [_listed(len(missing), "missing from the file", missing),
                    _listed(len(unexpected), "not in the model", unexpected),
                    _listed(len(mismatched), "of another shape", mismatched)]
        other = weights.spec is not None and spec is not None and weights.spec != spec
        cause = (f"{weights.origin} was trained from spec {weights.spec!r}, not this spec {spec!r}, and does not "
                 f"fit its model" if other else f"{weights.origin} does not fit the spec's model")
        raise WeightsError(f"{cause}: "
                           f"{'; '.join(p for p in problems if p)}; {matched} match "
                           f"(to leave keys at their initialization: --init-skip PATTERN)")
    keep = set(counters) | {k for k in mine if skipped(k)}
    full = {k: (mine[k] if k in keep else theirs[k]) for k in mine}
    on_meta = any(t.is_meta for t in mine.values())
    model.load_state_dict(full, strict=True, assign=on_meta)
    listed = sorted({k for k in (*mine, *theirs) if skipped(k)}, key=lambda k: (k not in mine, k))
    return Report(weights.origin, len(mine) - len(keep), [
        (k, list(mine[k].shape) if k in mine else None, list(theirs[k].shape) if k in theirs else None)
        for k in listed], skip, len(counters))


def _listed(n: int, what: str, keys: list[str]) -> str:
    if not n:
        return ""
    more = f" and {n - SHOWN} more" if n > SHOWN else ""
    return f"{n} {what}: {', '.join(keys[:SHOWN])}{more}"


def init_job(job, weights: Weights, skip: list[str] | tuple[str, ...] = ()) -> None:
    """Make `job.build()` (the trainer's) load `weights` into every model it builds and print the report."""
    build = job.build
    said = []

    def build_with_weights() -> torch.nn.Module:
        model = build()
        report = load_into(model, weights, skip, job.name)
        if os.environ.get("RANK", "0") == "0" and not said:  # once per run, not per process or per build
            print("\n".join(report.lines()), file=sys.stderr, flush=True)
            said.append(True)
        return model

    job.build = build_with_weights
