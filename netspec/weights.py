"""Weights in: `--init SOURCE` (and `--ckpt FILE`) of train, eval, export and predict.

Owns reading a weight source into a state_dict, with what the source knows about its data
(class names, normalization), and loading it into a model strictly: a key the model has and
the source lacks, a key only the source has, a shape that differs, a tensor of another kind
(int64 into float32 would truncate every weight) or not dense, data that is not finite, is an
error listing them (exit 2); `--init-skip GLOB` names keys to leave at their initialization,
every key it skips is listed, so a silent partial load cannot happen, and skipping them all is
refused. A torch file's shapes are compared with the model's before its data is read, and the
data read is bounded by what the file declares (no zip bomb inflates first).

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
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable

import torch

from netspec.errors import NetspecError, first_line, one_line
from netspec.train import checkpoint

TORCHVISION = "torchvision:"
SHOWN = 5  # keys listed per kind in an error line; the rest are counted
# a file may hold this many times the bytes of the tensors it gives the model, plus EXTRA (a
# checkpoint holds the weights, their moving average and Adam's two moments; a file of another
# head, or GoogLeNet's auxiliary classifiers, more): past that it is refused before it is read
MAX_FILE_RATIO = 8
EXTRA = 64 * 2**20
RECORD_SLACK = 2**20  # a torch zip's records besides the tensors' storages: the pickle, version, byte order


class WeightsError(NetspecError):
    """A weight source cannot be read or does not fit the model (exit 2, one line)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass
class Weights:
    """A state_dict and what its source recorded about the data it was trained on.

    A torch file is read in two steps: its structure first, with meta tensors (the shapes and
    dtypes, no data read or inflated), which `load_into` compares with the model; then, once they
    fit, its data (`data()`), bounded by what the structure declared."""

    state: dict[str, torch.Tensor]    # the tensors, or meta tensors of their shapes until data() reads them
    origin: str                       # for messages: what was read, from where
    classes: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    epoch: int | None = None
    spec: str | None = None           # the name of the spec a netspec checkpoint was trained from
    reader: Callable[[], dict[str, torch.Tensor]] | None = field(default=None, repr=False)
    stored: int = 0                   # bytes of every tensor storage in the source (what reading it allocates)
    under: str | None = None          # --init-prefix: its keys are the model's under this prefix (`backbone.`)

    def check_channels(self, channels: int) -> None:
        """Refuse a normalization recorded for another number of input channels than the model's."""
        for values in (self.mean, self.std):
            if values is not None and len(values) != channels:
                raise WeightsError(f"{self.origin} normalizes {len(values)} channels; the spec's input has {channels}")

    def data(self) -> dict[str, torch.Tensor]:
        """The tensors themselves, read now if only their shapes were."""
        if self.reader is not None:
            self.state, self.reader = self.reader(), None
        return self.state


def with_prefix(weights: Weights, prefix: str) -> Weights:
    """`--init-prefix PREFIX`: every key of `weights` as the model's key PREFIX+key, and the load
    confined to the model's keys under PREFIX (the rest keep their initialization, and say so):
    a classifier's weights into the backbone of a segmentation model (`backbone.`)."""
    if not prefix or any(c.isspace() for c in prefix):
        raise WeightsError(f"--init-prefix takes a key prefix such as 'backbone.', got {prefix!r}")
    reader = weights.reader
    return replace(weights, state={prefix + k: v for k, v in weights.state.items()},
                   reader=(lambda: {prefix + k: v for k, v in reader().items()}) if reader is not None else None,
                   under=prefix)


# ---------------------------------------------------------------- reading

def pick(ckpt: str | None, init: str | None) -> Weights | None:
    """The weights of a command's `--ckpt FILE` (a netspec checkpoint) or `--init SOURCE`."""
    if ckpt is not None:
        return from_checkpoint(ckpt)
    return read(init) if init is not None else None


def from_checkpoint(path: str | os.PathLike) -> Weights:
    """A netspec checkpoint (`--ckpt`): anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise checkpoint.CheckpointError(f"no checkpoint at {path}")
    outline, reader, stored = _torch_file(path, f"cannot read checkpoint {path}", checkpoint.CheckpointError)
    if not isinstance(outline, dict) or outline.get("netspec_checkpoint") != checkpoint.FORMAT:
        raise checkpoint.CheckpointError(f"{path} is not a netspec checkpoint (format {checkpoint.FORMAT})")
    return _checkpoint_weights(outline, reader, stored, path)


def read(source: str) -> Weights:
    """Any `--init SOURCE`."""
    if source.startswith(TORCHVISION):
        return _torchvision(source[len(TORCHVISION):])
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"--init {source}: no such file (expected a state_dict .pt/.pth, a .safetensors "
                           f"file, a netspec checkpoint, or {TORCHVISION}<Enum>.<WEIGHTS>)")
    if path.suffix == ".safetensors":
        state = _safetensors(path)
        return Weights(state, f"{path} (safetensors)", stored=sum(t.nbytes for t in state.values()))
    obj, reader, stored = _torch_file(path, f"--init {path}: cannot read it as a weights-only torch file")
    if isinstance(obj, dict) and "netspec_checkpoint" in obj:
        if obj["netspec_checkpoint"] != checkpoint.FORMAT:
            raise WeightsError(f"--init {path}: netspec checkpoint format {obj['netspec_checkpoint']!r}, "
                               f"this netspec reads format {checkpoint.FORMAT}")
        return _checkpoint_weights(obj, reader, stored, path)
    for entry in (None, "state_dict", "model"):  # the usual wrappers of a training script's checkpoint
        state = obj if entry is None else obj.get(entry) if isinstance(obj, dict) else None
        if _is_state(state):
            where = "state_dict" if entry is None else f"its {entry!r} entry"
            return Weights(dict(state), f"{path} ({where})", reader=_entry(reader, (entry,) if entry else (), path),
                           stored=stored)
    what = f"a dict with keys {', '.join(map(repr, list(obj)[:8]))}" if isinstance(obj, dict) else type(obj).__name__
    raise WeightsError(f"--init {path}: holds {what}, not a state_dict (a dict of tensors)")


def _is_state(obj) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _torch_file(path: Path, reading: str, error=None):
    """(the object in a weights-only torch file with meta tensors, a function that reads it with
    its data or None when it was read whole, the bytes of its tensors' storages). Nothing of
    the data is read for the first: a file whose records would inflate past what its tensors
    declare is refused before the second reads it. `reading` starts the error line."""
    error = error or WeightsError
    try:
        outline = _torch_load(path, "meta")
    except Exception:  # sparse tensors (torch checks their indices, which needs their data), or an
        # unreadable file (the full read below says why): read whole, bounded by the file's size
        _check_records(path, path.stat().st_size, "the file's size", reading, error)
        obj = _torch_load_or_fail(path, reading, error)
        return obj, None, _storage_bytes(obj)
    stored = _storage_bytes(outline)

    def read_data():
        _check_records(path, stored, "the storages its tensors declare", reading, error)
        return _torch_load_or_fail(path, reading, error)
    return outline, read_data, stored


def _torch_load(path: Path, device: str):
    with warnings.catch_warnings():  # torch warns about pickle protocols, sparse checks... on its way
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=device, weights_only=True)


def _torch_load_or_fail(path: Path, reading: str, error):
    try:
        return _torch_load(path, "cpu")
    except Exception as e:  # a pickle with code in it, truncation, not a torch file
        raise error(f"{reading}: {checkpoint.unreadable(e)}") from None


def _storage_bytes(obj) -> int:
    """Bytes of the distinct tensor storages anywhere in `obj` (a torch file's object)."""
    seen: dict[int, int] = {}
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            try:
                storage = item.untyped_storage()
                seen[storage._cdata] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # sparse: its values and indices
                seen[id(item)] = item.element_size() * item.numel()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sum(seen.values())


def _check_records(path: Path, limit: int, what: str, reading: str, error) -> None:
    """A torch zip whose records unpack to more than `limit` bytes (plus its small records) is
    refused from the zip's directory, before anything is unpacked."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch's older format (not a zip, nothing compressed), or not a torch file: torch says
    if total > limit + RECORD_SLACK:
        raise error(f"{reading}: its zip records unpack to {total:,} bytes, more than {what} ({limit:,} bytes) "
                    f"allow; refused before unpacking (a zip bomb?)")


def _entry(reader, keys: tuple, path: Path):
    """A reader of the state_dict at `keys` inside the object `reader` reads (None: no reader)."""
    if reader is None:
        return None

    def read_entry():
        obj = reader()
        for key in keys:
            obj = obj.get(key) if isinstance(obj, dict) else None
        if not _is_state(obj):  # the file changed between the two reads
            raise WeightsError(f"{path} changed while it was read; run the command again")
        return dict(obj)
    return read_entry


def _checkpoint_weights(state: dict, reader, stored: int, path: Path) -> Weights:
    checkpoint.check_fields(state, path, checkpoint.EVAL)  # a crafted file is one line, not a crash later
    classes = state.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise checkpoint.CheckpointError(f"checkpoint {path}: 'classes' is not a list of class names")
    averaged = "ema" in state  # last.pt of a train.ema run; best.pt already holds the evaluated weights
    epoch = state.get("epoch")
    name = state.get("name") if isinstance(state.get("name"), str) else None  # the spec it was trained from
    spec = f"spec {name!r}, " if name else ""
    origin = f"{path} (netspec checkpoint, {spec}epoch {epoch}{', moving-average weights' if averaged else ''})"
    keys = ("ema", "model") if averaged else ("model",)
    return Weights(state["ema"]["model"] if averaged else state["model"], origin, classes=classes,
                   mean=state.get("mean"), std=state.get("std"), epoch=epoch, spec=name,
                   reader=_entry(reader, keys, path), stored=stored)


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
    what = f"--init {TORCHVISION}{name}"
    outline, reader, stored = _torch_file(cached, f"{what}: cannot read {cached}")
    if not _is_state(outline):  # a damaged or replaced cache file
        raise WeightsError(f"{what}: {cached} holds {type(outline).__name__}, not a state_dict with names as keys; "
                           f"delete it and it is downloaded again")

    def renamed(state: dict) -> dict:
        return {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}

    read_data = (lambda: renamed(_entry(reader, (), cached)())) if reader is not None else None
    transforms = weights.transforms()
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    return Weights(renamed(outline), f"{TORCHVISION}{name} ({cached})", classes=weights.meta.get("categories"),
                   mean=list(mean) if mean else None, std=list(std) if std else None, reader=read_data,
                   stored=stored)


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
    under: str | None = None   # --init-prefix
    outside: int = 0           # the model's tensors outside it (they keep their initialization)

    def lines(self) -> list[str]:
        """The report printed (to stderr) by every command that loads weights; what came from the
        file (its name, keys) is escaped, as error lines are."""
        head = f"init: {self.loaded} tensors from {self.origin}"
        if self.under is not None:
            head += (f" as the model's {self.under}* (--init-prefix); the model's {self.outside} tensors outside "
                     f"{self.under}* keep their initialization")
        if self.filled:
            head += (f"; {self.filled} BatchNorm num_batches_tracked counters not in the file kept at 0 "
                     f"(as torch's own loading does)")
        if not self.skipped:
            return [one_line(head)]
        pats = " ".join(f"'{p}'" for p in self.patterns)
        out = [f"{head}; {len(self.skipped)} skipped by --init-skip {pats} (the model's keep their fresh "
               f"initialization, the file's are not used):"]
        width = max(len(k) for k, _, _ in self.skipped)
        for key, mine, theirs in self.skipped:
            out.append(f"  skipped {key:<{width}}  model {_shape(mine)}  file {_shape(theirs)}")
        return [one_line(line) for line in out]


def _shape(shape) -> str:
    return "-" if shape is None else str(list(shape))


def load_into(model: torch.nn.Module, weights: Weights, skip: list[str] | tuple[str, ...] = (),
              spec: str | None = None, fresh: bool = False) -> Report:
    """Load `weights` into `model` (built from the spec named `spec`) strictly, except keys
    matching a `skip` glob (fnmatch on the full key, e.g. 'fc.*'). The file's keys, shapes and
    dtypes are compared with the model's before its data is read; the data must be finite. A
    model on the meta device takes the tensors (assign), and needs no data. `fresh`: keys left at
    their initialization are of use (training), so an error may suggest --init-skip for them."""
    mine = model.state_dict()
    skip = list(skip)
    for pattern in skip:
        if not any(fnmatchcase(k, pattern) for k in (*mine, *weights.state)):
            raise WeightsError(f"--init-skip '{pattern}' matches no key of the model or of {weights.origin} "
                               f"(keys look like {next(iter(mine), '?')!r})")
    under = weights.under
    if under is not None and not any(k.startswith(under) for k in mine):
        raise WeightsError(f"--init-prefix '{under}': the model has no key under it (keys look like "
                           f"{next(iter(mine), '?')!r})")
    outside = {k for k in mine if under is not None and not k.startswith(under)}   # --init-prefix leaves these

    def skipped(key: str) -> bool:
        return key in outside or any(fnmatchcase(key, p) for p in skip)

    counters = _fit(mine, weights.state, skipped, weights, spec, fresh)
    keep = set(counters) | {k for k in mine if skipped(k)}  # the model's own tensors
    if len(keep) == len(mine) and mine:
        raise WeightsError(f"--init-skip {' '.join(repr(p) for p in skip)} skips every tensor of the model: "
                           f"nothing would be loaded from {weights.origin}, and the model would keep its "
                           f"random initialization; refused")
    on_meta = any(t.is_meta for t in mine.values())
    theirs = weights.state
    if not on_meta:
        wanted = sum(mine[k].nbytes for k in mine if k not in keep)
        if weights.stored > MAX_FILE_RATIO * wanted + EXTRA:
            raise WeightsError(f"{weights.origin} holds {weights.stored:,} bytes of tensors for the {wanted:,} "
                               f"the model takes from it (over {MAX_FILE_RATIO}x); refused before reading them")
        theirs = weights.data()
        _fit(mine, theirs, skipped, weights, spec, fresh)  # what was read is what was compared
        _check_values(theirs, [k for k in mine if k not in keep], weights.origin)
    full = {k: (mine[k] if k in keep else theirs[k]) for k in mine}
    model.load_state_dict(full, strict=True, assign=on_meta)
    listed = sorted({k for k in (*mine, *theirs) if skipped(k) and k not in outside}, key=lambda k: (k not in mine, k))
    return Report(weights.origin, len(mine) - len(keep), [
        (k, list(mine[k].shape) if k in mine else None, list(theirs[k].shape) if k in theirs else None)
        for k in listed], skip, len(counters), under, len(outside))


def _fit(mine: dict, theirs: dict, skipped, weights: Weights, spec: str | None, fresh: bool) -> list[str]:
    """Refuse, listing each kind, a file whose keys, shapes, dtypes or layouts do not fit the model's
    (skipped keys aside); the BatchNorm counters the file lacks, which the model keeps."""
    missing = [k for k in mine if k not in theirs and not skipped(k)]
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in counters]
    unexpected = [k for k in theirs if k not in mine and not skipped(k)]
    common = [k for k in mine if k in theirs and not skipped(k)]
    mismatched = [f"{k} file {list(theirs[k].shape)} model {list(mine[k].shape)}" for k in common
                  if theirs[k].shape != mine[k].shape]
    other_dtype = [f"{k} file {_dtype(theirs[k])} model {_dtype(mine[k])}" for k in common
                   if _kind(theirs[k]) != _kind(mine[k])]
    not_dense = [f"{k} ({str(theirs[k].layout).removeprefix('torch.')})" for k in common
                 if theirs[k].layout != torch.strided]
    if not (missing or unexpected or mismatched or other_dtype or not_dense):
        return counters
    matched = len(common) - len(mismatched)
    problems = [_listed(len(missing), "missing from the file", missing),
                _listed(len(unexpected), "not in the model", unexpected),
                _listed(len(mismatched), "of another shape", mismatched),
                _listed(len(other_dtype), "of another dtype", other_dtype),
                _listed(len(not_dense), "not dense tensors", not_dense)]
    other = weights.spec is not None and spec is not None and weights.spec != spec
    cause = (f"{weights.origin} was trained from spec {weights.spec!r}, not this spec {spec!r}, and does not "
             f"fit its model" if other else f"{weights.origin} does not fit the spec's model")
    # --init-skip leaves the model's keys at their random initialization: suggested only where
    # that is of use (training a new head), never for the weights the model is made of
    if not (missing or mismatched or other_dtype or not_dense):
        hint = " (to ignore the file's keys the model does not have: --init-skip PATTERN)"
    elif fresh and not other and matched >= len(missing) + len(mismatched):
        hint = " (to leave keys at their initialization: --init-skip PATTERN)"
    else:
        hint = ""
    raise WeightsError(f"{cause}: {'; '.join(p for p in problems if p)}; {matched} match{hint}")


def _kind(t: torch.Tensor) -> str:
    """What a tensor's numbers are; a file's tensor must be of the model's kind (float16 into
    float32 is a cast, int64 into float32 a truncation of every weight)."""
    return ("floating" if t.is_floating_point() else "complex" if t.is_complex()
            else "bool" if t.dtype == torch.bool else "integer")


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_values(theirs: dict, keys: list[str], origin: str) -> None:
    """Refuse tensors without data (meta) or with values that are not finite, listing them."""
    no_data = [k for k in keys if theirs[k].is_meta]
    bad = [f"{k} ({_count_non_finite(theirs[k])})" for k in keys
           if not theirs[k].is_meta and theirs[k].is_floating_point() and not torch.isfinite(theirs[k]).all()]
    if no_data or bad:
        problems = [_listed(len(no_data), "without data (meta tensors)", no_data),
                    _listed(len(bad), "not finite", bad)]
        raise WeightsError(f"{origin} cannot be loaded: {'; '.join(p for p in problems if p)}")


def _count_non_finite(t: torch.Tensor) -> str:
    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    return ", ".join(part for part in (f"{nan:,} NaN" if nan else "", f"{inf:,} inf" if inf else "") if part)


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
        report = load_into(model, weights, skip, job.name, fresh=True)
        if os.environ.get("RANK", "0") == "0" and not said:  # once per run, not per process or per build
            print("\n".join(report.lines()), file=sys.stderr, flush=True)
            said.append(True)
        return model

    job.build = build_with_weights
