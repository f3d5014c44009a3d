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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from netspec.deploy import FORMATS, MIN_OPSET, TOLERANCE  # noqa: F401 (FORMATS: for callers)
from netspec.errors import CheckFailed, NetspecError, first_line

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

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE

    def __str__(self) -> str:
        return f"batch {self.batch}: max abs diff {self.max_abs:.2e}, max rel {self.max_rel:.2e}"


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


def export(model: torch.nn.Module, input_shape: list[int], fmt: str, path: str | os.PathLike, *,
           batch: int = 1, dynamic: bool = False, opset: int | None = None, metadata: dict | None = None,
           program=None) -> Exported:
    """Write `model` as `fmt` to `path`, read it back and compare it with the eager model.
    `program` reuses a trace (bench/export_zoo.py writes both formats from one)."""
    if fmt == "onnx":
        require_onnx()
    if opset is not None and (fmt != "onnx" or opset < MIN_OPSET):
        raise ExportError(f"--opset {opset}: " + ("only --format onnx has an opset" if fmt != "onnx"
                                                  else f"torch's exporter writes opset {MIN_OPSET} or newer"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = program if program is not None else trace(model, input_shape, batch, dynamic)
    meta = json.dumps({**(metadata or {}), "input": list(input_shape), "batch": "dynamic" if dynamic else batch})
    if fmt == "onnx":
        written, got_opset, run, runtime = _write_onnx(program, path, opset, meta)
    else:
        written, got_opset, run, runtime = _write_pt2(program, path, meta), None, run_pt2(path), "torch.export.load"
    batches = DYNAMIC_CHECKS if dynamic else (batch,)
    return Exported(path, fmt, runtime, compare(model, run, input_shape, batches), got_opset, written)


def _write_onnx(program, path: Path, opset: int | None, meta: str):
    import onnxruntime

    try:
        onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=opset, verbose=False,
                                         input_names=["input"], output_names=["logits"])
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
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    onnx_program.save(path)  # weights in the file, or beside it (.data) past protobuf's 2 GB limit
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
    return lambda x: torch.from_numpy(np.asarray(session.run(None, {name: x.numpy()})[0]))


def _write_pt2(program, path: Path, meta: str) -> tuple[Path, ...]:
    torch.export.save(program, path, extra_files={META_KEY + ".json": meta})
    return ()


def run_pt2(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The written .pt2 file, loaded back by torch.export.load."""
    module = torch.export.load(path).module()
    return lambda x: module(x)


@torch.no_grad()
def compare(model: torch.nn.Module, run: Callable[[torch.Tensor], torch.Tensor], input_shape: list[int],
            batches) -> list[Difference]:
    """The exported file against the eager model in eval mode, batch by batch."""
    model.eval()
    out = []
    for n in batches:
        x = seeded_input(n, input_shape)
        expected = model(x).float()
        got = run(x).float()
        if got.shape != expected.shape:
            raise CheckFailed(f"the exported file gives shape {list(got.shape)} at batch {n}, "
                              f"the model {list(expected.shape)}")
        diff = float((got - expected).abs().max())
        scale = float(expected.abs().max())
        out.append(Difference(n, diff, diff / scale if scale > 0 else diff))
    return out
