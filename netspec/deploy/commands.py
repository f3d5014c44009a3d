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

from netspec.deploy import FORMATS, MIN_OPSET, PRECISIONS, TOLERANCE
from netspec.errors import EXIT_OK, CheckFailed, SpecError, one_line
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
    parser.add_argument("--init-prefix", metavar="PREFIX",
                        help="load --init's keys as the model's PREFIX+key and only the model's keys under PREFIX "
                             "(the others keep their initialization): a classifier's weights into a model's "
                             "'backbone.'; the source's keys with no place there need --init-skip, and are listed")


def read_weights(args):
    """The Weights of `--ckpt` / `--init` (None when neither was given); --init-skip alone is an error."""
    from netspec import weights

    source = weights.pick(getattr(args, "ckpt", None), args.init)
    if source is None and args.init_skip:
        raise weights.WeightsError("--init-skip needs --init SOURCE (or --ckpt FILE): there is nothing to skip from")
    prefix = getattr(args, "init_prefix", None)
    if prefix is not None:
        if args.init is None:
            raise weights.WeightsError("--init-prefix needs --init SOURCE (a --ckpt is the spec's own model)")
        source = weights.with_prefix(source, prefix)
    return source


def report(lines: list[str]) -> None:
    if lines:
        print("\n".join(lines), file=sys.stderr, flush=True)


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """`--precision` of predict and eval: the arithmetic they run the model in (default the spec's
    train.precision, as the model was evaluated in training; an exported file is fp32)."""
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="fp32, or bf16/fp16 autocast (default: the spec's train.precision). Exported files "
                             "compute in fp32: --precision fp32 gives their numbers")


def precision_set(args) -> list[str]:
    """The command's --set overrides, with --precision as the train.precision it stands for."""
    return [*args.set, *([f"train.precision={args.precision}"] if args.precision else [])]


def precision_note(job, args, command: str) -> list[str]:
    """The line saying a low precision is in use, and how to get an exported file's numbers."""
    precision = job.config.precision
    if precision == "fp32":
        return []
    given = "--precision" if args.precision else "the spec's train.precision"
    return [f"{command}: {precision} autocast ({given}); an exported file computes in fp32, so its "
            f"probabilities differ slightly: --precision fp32 gives its numbers"]


def add_commands(subparsers, shape_type, analyze) -> None:
    """Add `export` and `predict` to an argparse subparsers object; `analyze(path, args)` is the
    CLI's (an error that only --input causes names --input)."""
    ex = subparsers.add_parser(
        "export", help="write the model as ONNX or torch.export (.pt2), verified against the eager model",
        description="Export the spec's model (with --ckpt or --init weights) and verify the written file: "
                    "onnxruntime (CPU) or torch.export.load runs it on a seeded input and the largest "
                    f"difference to the eager model must be within {TOLERANCE:g} of the output's scale. "
                    "The file is written beside -o under a temporary name and moved into place only once "
                    "verified. Exit codes: 0 written and verified, 1 export or verification failed (an "
                    "existing file is kept), 2 invalid input or the export extra missing.")
    ex.add_argument("spec", metavar="SPEC")
    add_init_options(ex, ckpt="a netspec checkpoint (last.pt or best.pt of a run)")
    ex.add_argument("--format", choices=FORMATS,
                    help="onnx (needs the export extra) or pt2; default from -o's suffix (.onnx, .pt2)")
    ex.add_argument("-o", "--output", metavar="FILE",
                    help="where to write, FILE.onnx or FILE.pt2 (default SPEC-STEM.onnx / .pt2 here)")
    batch = ex.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=positive, default=1, metavar="N", help="fixed batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="any batch size (verified at 1 and 3)")
    ex.add_argument("--opset", type=int, metavar="N", help=f"ONNX opset ({MIN_OPSET} or newer; default torch's)")
    ex.add_argument("--input", type=shape_type, metavar="C,H,W", help="input shape instead of the spec's `input`")
    ex.set_defaults(func=lambda args: _export(args, analyze))

    pr = subparsers.add_parser(
        "predict", help="top classes of images (files or folders) with a trained model",
        description="Classify images with the spec's model and --ckpt or --init weights, prepared as "
                    "evaluation prepares test images (grayscale or RGB as the spec's input, resized to its "
                    "size, normalized as in training) and run at the spec's train.precision (--precision). "
                    "Folders are walked in sorted order. --json prints one object per image per line. Exit "
                    "codes: 0 every image predicted, 1 the model's output for some image was not finite, 2 "
                    "some image could not be read (one line each on stderr; the others are still predicted) "
                    "or invalid input.")
    pr.add_argument("spec", metavar="SPEC")
    add_init_options(pr, ckpt="a netspec checkpoint (last.pt or best.pt of a run)", required=True)
    pr.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    pr.add_argument("--top", type=positive, default=5, metavar="K", help="classes shown per image (default 5)")
    pr.add_argument("--json", action="store_true", help="one JSON object per image per line")
    pr.add_argument("--out", metavar="DIR", help="a segmentation model's masks go here: DIR/NAME.png (indexed, "
                                                 "VOC's palette, the image's size) and DIR/NAME_overlay.png")
    pr.add_argument("--device", choices=("cpu", "cuda"), help="where to run (default: train.device, auto)")
    add_precision_option(pr)
    pr.set_defaults(func=_predict)


def export_target(args) -> tuple[str, Path]:
    """The format and file of `export`: --format, or -o's suffix; one that contradicts the other,
    or a suffix that is neither, is refused."""
    fmt = args.format
    if args.output is None:
        if fmt is None:
            raise SpecError("netspec export needs --format onnx|pt2, or -o FILE.onnx|FILE.pt2", file="--format")
        return fmt, Path(f"{Path(args.spec).stem}.{fmt}")
    out = Path(args.output)
    suffix = out.suffix.lower().removeprefix(".")
    if suffix not in FORMATS:
        hint = f"; with --format {fmt}, name it {out.name}.{fmt}" if fmt else ""
        raise SpecError(f"the file name must end in .onnx or .pt2 (the format it holds){hint}", file=f"-o {out}")
    if fmt is not None and fmt != suffix:
        raise SpecError(f"--format {fmt} writes a .{fmt} file, not .{suffix}; leave out --format or name "
                        f"the file {out.with_suffix('.' + fmt).name}", file=f"-o {out}")
    return suffix, out


def _export(args, analyze) -> int:
    import torch

    import netspec
    from netspec.budget import physical_memory, refuse_running
    from netspec.deploy import export as ex
    from netspec.deploy.predict import padded
    from netspec.document.train import TrainConfig
    from netspec.train.evaluate import normalization
    from netspec.weights import TORCHVISION, load_into

    fmt, out = export_target(args)
    if fmt == "onnx":
        ex.require_onnx()  # before anything is built
    ex.check_opset(args.opset, fmt)
    source = read_weights(args)
    analysis = analyze(args.spec, args)
    spec = analysis.spec
    batch = ex.DYNAMIC_CHECKS[-1] if args.dynamic_batch else args.batch
    # the eager model, the written file and the runtime that checks it each hold the weights
    refuse_running(analysis, batch, physical_memory(), "this machine's memory", copies=3,
                   batch_argument=None if args.dynamic_batch else f"--batch {args.batch}")
    weights_file = args.ckpt or (args.init if args.init and not args.init.startswith(TORCHVISION) else None)
    out = ex.check_target(out, {args.spec: "the spec", **({weights_file: "the weights file"} if weights_file else {})})
    torch.manual_seed(0)  # initial weights (no --init) are the same each time
    model = netspec.build(analysis)
    train = spec.train or TrainConfig()
    meta: dict = {"name": spec.name, "precision": "fp32"}  # what a caller needs to prepare inputs, where known
    if source is not None:
        source.check_channels(analysis.input[0])
        report(load_into(model, source, args.init_skip, spec.name).lines())
        if source.classes and len(analysis.output) == 1 and len(source.classes) <= analysis.output[0]:
            meta["classes"] = padded(source.classes, analysis.output[0])
    else:
        report(["init: no --ckpt or --init: exporting the spec's initial (random, seed 0) weights"])
    stats = normalization(train, None, source)
    if stats is not None:
        meta["mean"], meta["std"] = stats
    meta["test_flip"] = train.augmentation.test_flip  # predict averages with the mirror image; the file does not
    if train.augmentation.test_flip:
        report([one_line(f"note: {spec.name}'s train.augmentation.test_flip makes predict and eval average each "
                         f"image's output with its mirror image's; the exported model does not (its metadata "
                         f"says test_flip: true): average the outputs of x and x.flip(-1) to match them")])
    result = ex.export(model, list(analysis.input), fmt, out, batch=args.batch, dynamic=args.dynamic_batch,
                       opset=args.opset, metadata=meta)
    what = f"{fmt}" + (f" opset {result.opset}" if result.opset else "")
    shape = f"input [{'batch' if args.dynamic_batch else args.batch}, {', '.join(map(str, analysis.input))}]"
    diffs = "; ".join(map(str, result.differences))
    if not result.ok:
        kept = f"{out} is left as it was" if out.exists() else f"nothing was written to {out}"
        raise CheckFailed(f"the {what} export ({shape}) differs from the eager model by more than the "
                          f"{ex.TOLERANCE:g} tolerance (relative to the output's scale), run by "
                          f"{result.runtime}: {diffs}; {kept}", args.spec)
    extra = f" + {', '.join(map(str, result.extra_files))}" if result.extra_files else ""
    size = sum(p.stat().st_size for p in (out, *result.extra_files)) / 2**20
    print(one_line(f"wrote {out}{extra} ({what}, {shape}, {size:.1f} MiB); "
                   f"verified with {result.runtime} against the eager model: {diffs} (tolerance {ex.TOLERANCE:g})"))
    return EXIT_OK


def _predict(args) -> int:
    import netspec
    from netspec.data.datasets import IMAGE_SUFFIXES, DataError
    from netspec.deploy.predict import predict, predict_masks
    from netspec.train.loop import Job

    source = read_weights(args)
    job = Job.from_spec(netspec.load(args.spec, overrides=precision_set(args)), source=args.spec)
    report(precision_note(job, args, "predict"))
    worst = EXIT_OK
    seen = 0

    def on_error(path: str, message: str, code: int) -> None:
        nonlocal worst, seen
        worst = max(worst, code)
        seen += 1
        print(one_line(f"error: {message}"), file=sys.stderr, flush=True)

    from netspec.document.train import task_of
    if task_of(job.outputs) == "segmentation":
        if args.out is None:
            raise SpecError("a segmentation model's predictions are masks: give --out DIR for them", file="--out")
        predictions = predict_masks(job, source, args.images, args.out, device=args.device, skip=args.init_skip,
                                    on_error=on_error, on_report=report)
    else:
        predictions = predict(job, source, args.images, top=args.top, device=args.device, skip=args.init_skip,
                              on_error=on_error, on_report=report)
    for p in predictions:
        seen += 1
        print(json.dumps(p.as_dict(), allow_nan=False) if args.json else str(p), flush=True)
    if seen == 0:
        raise DataError(f"no images under {' '.join(args.images)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return worst
