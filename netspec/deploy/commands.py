"""`netspec export` and `netspec predict`, and the weight options every command shares.

Owns `add_commands(subparsers)` (cli.py calls it) and `add_init_options(parser)` (train and
eval call it for `--init` / `--init-skip`, and `--ckpt` where it applies). Handlers return
the exit code; what netspec.weights reports about loaded weights goes to stderr, so the
stdout of `--json` stays one JSON object per line.

Must not import torch at module level: the CLI imports this at start-up. Handlers import
netspec.weights and netspec.deploy.export / predict when they run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from netspec.deploy import FORMATS, MIN_OPSET, TOLERANCE
from netspec.errors import EXIT_INVALID, EXIT_OK, CheckFailed
from netspec.budget import positive  # the one positive-integer argument type

INIT_HELP = ("weights to start from: a state_dict file (.pt/.pth, read with torch.load(weights_only=True)), "
             "a .safetensors file, a netspec checkpoint, or torchvision:ENUM.MEMBER "
             "(e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2, from torchvision's download cache). "
             "Strict: every key must match, or the command stops listing what does not")
SKIP_HELP = ("leave keys matching this glob at their initialization (e.g. 'fc.*' for a new head); "
             "repeatable; every skipped key is listed")


def add_init_options(parser: argparse.ArgumentParser, ckpt: str | None = None, required: bool = False) -> None:
    """`--init SOURCE` and `--init-skip PATTERN`; with `ckpt` (its help), also `--ckpt FILE`,
    exclusive with `--init`; `required`: one of the two must be given."""
    if ckpt is None:
        parser.add_argument("--init", metavar="SOURCE", help=INIT_HELP)
    else:
        group = parser.add_mutually_exclusive_group(required=required)
        group.add_argument("--ckpt", metavar="FILE", help=ckpt)
        group.add_argument("--init", metavar="SOURCE", help=INIT_HELP)
    parser.add_argument("--init-skip", action="append", default=[], metavar="PATTERN", help=SKIP_HELP)


def read_weights(args):
    """The Weights of `--ckpt` / `--init` (None when neither was given); --init-skip alone is an error."""
    from netspec import weights

    source = weights.pick(getattr(args, "ckpt", None), args.init)
    if source is None and args.init_skip:
        raise weights.WeightsError("--init-skip needs --init SOURCE (or --ckpt FILE): there is nothing to skip from")
    return source


def report(lines: list[str]) -> None:
    print("\n".join(lines), file=sys.stderr, flush=True)


def add_commands(subparsers, shape_type) -> None:
    """Add `export` and `predict` to an argparse subparsers object."""
    ex = subparsers.add_parser(
        "export", help="write the model as ONNX or torch.export (.pt2), verified against the eager model",
        description="Export the spec's model (with --ckpt or --init weights) and verify the written file: "
                    "onnxruntime (CPU) or torch.export.load runs it on a seeded input and the largest "
                    f"difference to the eager model must be within {TOLERANCE:g} of the output's scale. "
                    "Exit codes: 0 written and verified, 1 export or verification failed, 2 invalid input "
                    "or the export extra missing.")
    ex.add_argument("spec", metavar="SPEC")
    add_init_options(ex, ckpt="a netspec checkpoint (last.pt or best.pt of a run)")
    ex.add_argument("--format", required=True, choices=FORMATS, help="onnx (needs the export extra) or pt2")
    ex.add_argument("-o", "--output", metavar="FILE", help="where to write (default SPEC-STEM.onnx / .pt2 here)")
    batch = ex.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=positive, default=1, metavar="N", help="fixed batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="any batch size (verified at 1 and 3)")
    ex.add_argument("--opset", type=int, metavar="N", help=f"ONNX opset ({MIN_OPSET} or newer; default torch's)")
    ex.add_argument("--input", type=shape_type, metavar="C,H,W", help="input shape instead of the spec's `input`")
    ex.set_defaults(func=_export)

    pr = subparsers.add_parser(
        "predict", help="top classes of images (files or folders) with a trained model",
        description="Classify images with the spec's model and --ckpt or --init weights, prepared as "
                    "evaluation prepares test images (grayscale or RGB as the spec's input, resized to its "
                    "size, normalized as in training). Folders are walked in sorted order. --json prints one "
                    "object per image per line. Exit codes: 0 every image read, 2 some image could not be "
                    "read (one line each on stderr; the others are still predicted) or invalid input.")
    pr.add_argument("spec", metavar="SPEC")
    add_init_options(pr, ckpt="a netspec checkpoint (last.pt or best.pt of a run)", required=True)
    pr.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    pr.add_argument("--top", type=positive, default=5, metavar="K", help="classes shown per image (default 5)")
    pr.add_argument("--json", action="store_true", help="one JSON object per image per line")
    pr.add_argument("--device", choices=("cpu", "cuda"), help="where to run (default: train.device, auto)")
    pr.set_defaults(func=_predict)


def _export(args) -> int:
    import torch

    import netspec
    from netspec.deploy import export as ex
    from netspec.deploy.predict import padded
    from netspec.document.train import TrainConfig
    from netspec.train.evaluate import normalization
    from netspec.weights import load_into

    if args.format == "onnx":
        ex.require_onnx()  # before anything is built
    source = read_weights(args)
    spec = netspec.load(args.spec, overrides=args.set)
    analysis = netspec.analyze(spec, input=args.input)
    torch.manual_seed(0)  # initial weights (no --init) are the same each time
    model = netspec.build(analysis)
    meta: dict = {"name": spec.name}  # what a caller needs to prepare inputs, where it is known
    if source is not None:
        report(load_into(model, source, args.init_skip, spec.name).lines())
        if source.classes and len(analysis.output) == 1 and len(source.classes) <= analysis.output[0]:
            meta["classes"] = padded(source.classes, analysis.output[0])
    else:
        report(["init: no --ckpt or --init: exporting the spec's initial (random, seed 0) weights"])
    stats = normalization(spec.train or TrainConfig(), None, source)
    if stats is not None:
        meta["mean"], meta["std"] = stats
    out = Path(args.output or f"{Path(args.spec).stem}.{args.format}")
    result = ex.export(model, list(analysis.input), args.format, out, batch=args.batch, dynamic=args.dynamic_batch,
                       opset=args.opset, metadata=meta)
    what = f"{args.format}" + (f" opset {result.opset}" if result.opset else "")
    shape = f"input [{'batch' if args.dynamic_batch else args.batch}, {', '.join(map(str, analysis.input))}]"
    diffs = "; ".join(map(str, result.differences))
    if not result.ok:
        raise CheckFailed(f"{out} ({what}, {shape}) differs from the eager model by more than the "
                          f"{ex.TOLERANCE:g} tolerance (relative to the output's scale), run by "
                          f"{result.runtime}: {diffs}; the file is kept for inspection, do not use it", args.spec)
    extra = f" + {', '.join(map(str, result.extra_files))}" if result.extra_files else ""
    size = sum(p.stat().st_size for p in (out, *result.extra_files)) / 2**20
    print(f"wrote {out}{extra} ({what}, {shape}, {size:.1f} MiB); "
          f"verified with {result.runtime} against the eager model: {diffs} (tolerance {ex.TOLERANCE:g})")
    return EXIT_OK


def _predict(args) -> int:
    import netspec
    from netspec.data.datasets import IMAGE_SUFFIXES, DataError
    from netspec.deploy.predict import predict
    from netspec.train.loop import Job

    source = read_weights(args)
    job = Job.from_spec(netspec.load(args.spec, overrides=args.set), source=args.spec)
    unreadable = 0

    def on_error(path: str, message: str) -> None:
        nonlocal unreadable
        unreadable += 1
        print(f"error: {message}", file=sys.stderr, flush=True)

    seen = 0
    for p in predict(job, source, args.images, top=args.top, device=args.device, skip=args.init_skip,
                     on_error=on_error, on_report=report):
        seen += 1
        print(json.dumps(p.as_dict()) if args.json else str(p), flush=True)
    if seen == 0 and unreadable == 0:
        raise DataError(f"no images under {' '.join(args.images)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return EXIT_INVALID if unreadable else EXIT_OK
