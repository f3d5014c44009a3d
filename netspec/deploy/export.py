"""`netspec export`: a built model to an ONNX or a torch.export (.pt2) file, verified.

Owns tracing (`torch.export.export`, once, with a dynamic batch dimension on request),
writing each format, reading the written file back with its own runtime (onnxruntime's
CPUExecutionProvider; `torch.export.load`) and comparing it with the eager module in eval mode
on seeded inputs: the largest absolute difference and the largest relative to the output's
scale, over `TOLERANCE` being a failed check (exit 1).

ONNX goes through torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`, torch's
default and recommended path), fed the same ExportedProgram the .pt2 file is made of, so both
formats come from one trace with one notion of a dynamic dimension; the TorchScript exporter
(dynamo=False) is deprecated with TorchScript itself. It needs onnx and onnxscript, and
verification needs onnxruntime: the `export` extra.

Imports torch; onnx, onnxscript and onnxruntime inside the ONNX functions. Must not import netspec.cli.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from netspec.deploy import FORMATS, MIN_OPSET, TOLERANCE  # noqa: F401 (FORMATS: for callers)
from netspec.errors import CheckFailed, NetspecError, SpecError, first_line

TRACE_BATCH = 2           # a dynamic batch is traced at 2: torch.export specializes sizes 0 and 1
DYNAMIC_CHECKS = (1, 3)   # ... and verified at two other sizes, 1 included
META_KEY = "netspec"      # ONNX metadata_props key / .pt2 extra file holding the metadata JSON
EXTRA = "pip install -e '.[export]' (from a clone) or pip install 'netspec[export]'"


class ExportError(NetspecError):
    """Invalid export arguments, or a missing optional dependency (exit 2)."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass
class Difference:
    batch: int
    max_abs: float
    max_rel: float
    output: str = "logits"   # which of a record's outputs (`out`, `aux`, an FPN's `0`..`pool`)

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE

    def __str__(self) -> str:
        which = f" output {self.output}" if self.output != "logits" else ""
        return f"batch {self.batch}{which}: max abs diff {self.max_abs:.2e}, max rel {self.max_rel:.2e}"


@dataclass
class Exported:
    path: Path
    format: str
    runtime: str                      # what ran the file back
    differences: list[Difference]
    opset: int | None = None
    extra_files: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.differences)


def require_onnx() -> None:
    """onnx, onnxscript (the exporter) and onnxruntime (the check), or one line naming the extra."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"netspec export --format onnx needs {', '.join(missing)} (the 'export' extra): {EXTRA}")


def trace(model: torch.nn.Module, input_shape: list[int], batch: int, dynamic: bool):
    """The ExportedProgram of `model` in eval mode; its batch dimension is `batch`, or dynamic."""
    model.eval()
    n = TRACE_BATCH if dynamic else batch
    example = (seeded_input(n, input_shape),)
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    try:
        return torch.export.export(model, example, dynamic_shapes=shapes)
    except Exception as e:  # an op torch.export cannot trace, a size the batch cannot vary
        raise CheckFailed(f"torch.export failed: {first_line(e)}") from None


def seeded_input(batch: int, input_shape: list[int]) -> torch.Tensor:
    """The verification input: normal noise (a normalized image's scale), seeded by its batch size."""
    return torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(batch))


def check_opset(opset: int | None, fmt: str) -> None:
    """`--opset N`: ONNX only, from MIN_OPSET to the newest the installed onnx knows."""
    if opset is None:
        return
    if fmt != "onnx":
        raise SpecError("only --format onnx has an opset", file=f"--opset {opset}")
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise SpecError(f"torch's exporter writes opset {MIN_OPSET} or newer, and onnx {onnx.__version__} knows "
                        f"opsets up to {newest}", file=f"--opset {opset}")


def check_target(path: str | os.PathLike, protected: dict[str, str] | None = None) -> Path:
    """`-o FILE` where an export may go: not a folder, a device or a FIFO, not one of the
    `protected` files (the spec, the weights: {path: what}); its folder made. A symlink is
    replaced by the file, never written through."""
    path = Path(path)
    argument = f"-o {path}"
    if not path.is_symlink() and path.exists():
        if path.is_dir():
            raise SpecError("is a folder; name the file to write", file=argument)
        if not path.is_file():
            raise SpecError("is not a regular file (a device, FIFO or socket); name a file to write", file=argument)
        for other, what in (protected or {}).items():
            if os.path.exists(other) and os.path.samefile(path, other):
                raise SpecError(f"is {what}; the export would overwrite it: name another file", file=argument)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        above = next((p for p in path.parents if p.exists()), None)
        why = f"{above} is a file, not a folder" if above and not above.is_dir() else e.strerror or str(e)
        raise SpecError(f"cannot make its folder {path.parent}: {why}", file=argument) from None
    try:  # can a file be made there (not /proc, not a read-only folder)? A nameless one, gone on close
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise SpecError(f"cannot write into {path.parent}: {e.strerror or e}", file=argument) from None
    return path


def export(model: torch.nn.Module, input_shape: list[int], fmt: str, path: str | os.PathLike, *,
           batch: int = 1, dynamic: bool = False, opset: int | None = None, metadata: dict | None = None,
           program=None) -> Exported:
    """Write `model` as `fmt` to `path`, read it back and compare it with the eager model; only a
    file that agrees replaces `path` (written beside it under a temporary name, verified, renamed
    into place: a crash, a full disk or a failed check leaves the previous file). `program`
    reuses a trace (bench/export_zoo.py writes both formats from one)."""
    if fmt == "onnx":
        require_onnx()
    check_opset(opset, fmt)
    path = check_target(path)
    program = program if program is not None else trace(model, input_shape, batch, dynamic)
    with torch.no_grad():   # a record's outputs are the file's outputs, by name (a tensor's: logits)
        names = [name for name, _ in flatten(model.eval()(seeded_input(batch if not dynamic else TRACE_BATCH, input_shape)))]
    meta = json.dumps({**(metadata or {}), "input": list(input_shape), "batch": "dynamic" if dynamic else batch,
                       "outputs": names})
    batches = DYNAMIC_CHECKS if dynamic else (batch,)
    with _staging(path) as staged:
        try:
            if fmt == "onnx":
                written, got_opset, run, runtime = _write_onnx(program, staged, opset, meta, names)
            else:
                written, got_opset, run, runtime = _write_pt2(program, staged, meta), None, run_pt2(staged), "torch.export.load"
            for f in (staged, *written):
                _fsync(f)
        except OSError as e:  # a full disk, a quota
            kept = "the previous file is kept" if path.exists() else "nothing was written"
            raise SpecError(f"cannot write it: {e.strerror or e}; {kept}", file=f"-o {path}") from None
        result = Exported(path, fmt, runtime, compare(model, run, input_shape, batches), got_opset,
                          tuple(path.with_name(f.name) for f in written))
        if result.ok:
            try:
                for f in (*written, staged):  # the data first: the model file never points at a missing one
                    os.replace(f, path.with_name(f.name))
            except OSError as e:
                raise SpecError(f"cannot move the verified file into place: {e.strerror or e}", file=f"-o {path}") from None
            _fsync(path.parent)
    return result


@contextlib.contextmanager
def _staging(path: Path):
    """A temporary folder beside `path` for writing it, under the lock on `path`; yields the file
    to write in it (named as `path`: an ONNX file refers to its .data file by name)."""
    def cannot(e: OSError) -> SpecError:  # a read-only folder, /proc
        return SpecError(f"cannot write into {path.parent}: {e.strerror or e}", file=f"-o {path}")

    try:
        fd, lock = _lock(path)
    except OSError as e:
        raise cannot(e) from None
    try:
        try:
            folder = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as e:
            raise cannot(e) from None
        try:
            yield Path(folder) / path.name
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.unlink(lock)
        os.close(fd)


def _lock(path: Path) -> tuple[int, Path]:
    """One export at a time per output file: a second is refused with one line, not interleaved.
    The lock is a `.NAME.lock` file beside it (the caller removes it, then closes the descriptor)."""
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpecError("another netspec export is writing this file now; wait for it to finish",
                            file=f"-o {path}") from None
        try:  # the holder before us may have removed the file we locked: lock the one that is there
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return fd, lock
        except FileNotFoundError:
            pass
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # folders on some filesystems
    finally:
        os.close(fd)


def flatten(out, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """A model's output as (name, tensor) in the order torch.export flattens it: a tensor is
    `logits`; a record's tensors are named by their keys (`out`, `aux`; nested: `a.b`), a
    list's by their positions."""
    if isinstance(out, dict):
        return [pair for k, v in out.items() for pair in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(out, (list, tuple)):
        return [pair for i, v in enumerate(out) for pair in flatten(v, f"{prefix}.{i}" if prefix else str(i))]
    return [(prefix or "logits", out)]


def _write_onnx(program, path: Path, opset: int | None, meta: str, names: list[str]):
    import onnxruntime

    try:
        onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=opset, verbose=False,
                                         input_names=["input"], output_names=names)
    except Exception as e:
        raise CheckFailed(f"ONNX export failed: {first_line(e)}") from None
    graph = onnx_program.model.graph
    batch_dim = graph.inputs[0].shape[0]
    if not isinstance(batch_dim, int):  # the exporter names it s0, s31...: call it what it is
        onnx_program.rename_axes({batch_dim.value: "batch"})
    onnx_program.model.metadata_props[META_KEY] = meta
    got = onnx_program.model.opset_imports.get("", None)
    if opset is not None and got != opset:
        raise CheckFailed(f"ONNX export wrote opset {got}, not the --opset {opset} asked for")
    onnx_program.save(path)  # weights in the file, or beside it (.data) past protobuf's 2 GB limit
    data = path.with_name(path.name + ".data")
    written = (data,) if data.exists() else ()
    return written, got, run_onnx(path), f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider"


def run_onnx(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The written ONNX file, run by onnxruntime on the CPU."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise CheckFailed(f"onnxruntime cannot load {path}: {first_line(e)}") from None
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(np.asarray(y)) for y in session.run(None, {name: x.numpy()})]


def _write_pt2(program, path: Path, meta: str) -> tuple[Path, ...]:
    # through memory: torch's C++ writer ends the process (terminate, exit 134) when a write into
    # a file fails; Python's write raises an OSError
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META_KEY + ".json": meta})
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())
    return ()


def run_pt2(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The written .pt2 file, loaded back by torch.export.load."""
    module = torch.export.load(path).module()
    return lambda x: [t for _, t in flatten(module(x))]


@torch.no_grad()
def compare(model: torch.nn.Module, run: Callable[[torch.Tensor], torch.Tensor], input_shape: list[int],
            batches) -> list[Difference]:
    """The exported file against the eager model in eval mode, batch by batch."""
    model.eval()
    out = []
    for n in batches:
        x = seeded_input(n, input_shape)
        expected = flatten(model(x))
        got = run(x)
        if len(got) != len(expected):
            raise CheckFailed(f"the exported file gives {len(got)} outputs at batch {n}, the model {len(expected)}")
        for (name, want), have in zip(expected, got):   # each output against its own scale
            want, have = want.float(), have.float()
            if have.shape != want.shape:
                raise CheckFailed(f"the exported file gives {name} of shape {list(have.shape)} at batch {n}, "
                                  f"the model {list(want.shape)}")
            diff = float((have - want).abs().max())
            scale = float(want.abs().max())
            out.append(Difference(n, diff, diff / scale if scale > 0 else diff, name))
    return out
