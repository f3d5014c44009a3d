"""`netspec train` and `netspec eval`: parse → call the trainer → print → exit code.

Owns `add_commands(subparsers)`, which cli.py calls; each subcommand's handler returns
the exit code and turns every NetspecError into its one line on stderr. The train help
lists every `train.*` field (from the TrainConfig models) so `--set` paths are
discoverable.

Must not import torch at module level: the CLI imports this at start-up, and
`netspec check` must start fast. Handlers import the trainer when they run.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from netspec.budget import DEFAULT_MAX_PARAMS, max_params
from netspec.deploy.commands import add_init_options, add_precision_option, precision_note, precision_set, read_weights, report
from netspec.errors import one_line


def _train_epilog() -> str:
    from netspec.document.train import field_reference

    lines = ["train section fields (set any with --set PATH=VALUE, e.g. --set train.optimizer.lr=0.05;",
             "a [name] marks the fields of that choice of optimizer/schedule/dataset):", ""]
    for path, typ, default, desc in field_reference():
        lines.append(f"  {path}  ({typ}, default {default})")
        lines.append(f"      {desc}")
    lines += ["", "Several processes: torchrun --nproc_per_node=N -m netspec train SPEC",
              "(train.batch_size is the global batch; each process takes batch_size/N).",
              "Exit codes: 0 trained (or --resume of a finished run: nothing to do), 1 training failed (NaN loss,",
              "out of memory), 2 invalid input or a run folder that cannot be written (a full disk) or is in use,",
              "130 stopped by Ctrl-C/SIGTERM after saving a resumable checkpoint."]
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Add `train` and `eval` to an argparse subparsers object."""
    train = subparsers.add_parser(
        "train", help="train a spec's model (its train: section) and write a run folder",
        description="Train the spec's model as its train: section says; writes the run folder "
                    "(metrics, checkpoints, curves, report, summary.json).",
        epilog=_train_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("spec", nargs="?", help="the spec file (YAML or JSON); with --resume, default the run folder's spec.yaml")
    train.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>-<timestamp>)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last.pt (`netspec train --resume DIR` alone works)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: train.device, auto)")
    train.add_argument("--quiet", action="store_true", help="no progress output; only the final line")
    add_init_options(train)
    train.add_argument("--max-params", type=max_params, default=DEFAULT_MAX_PARAMS, metavar="N",
                       help=f"refuse specs with more parameters (default {DEFAULT_MAX_PARAMS:.0e}), as compile does")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on the spec's test set",
        description="Accuracy and per-class accuracy of a checkpoint (last.pt or best.pt of a run) "
                    "on the test split of the spec's train.dataset.")
    ev.add_argument("spec", help="the spec file the checkpoint was trained from")
    add_init_options(ev, ckpt="checkpoint file (loaded with weights_only=True)", required=True)
    ev.add_argument("--device", choices=("cpu", "cuda"), help="where to evaluate (default: train.device, auto)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    add_precision_option(ev)
    ev.set_defaults(func=_eval)


def _load_job(args):
    import netspec
    from netspec.train.loop import Job

    spec = netspec.load(args.spec, overrides=list(getattr(args, "set", None) or []))
    return Job.from_spec(spec, source=args.spec, max_params=getattr(args, "max_params", DEFAULT_MAX_PARAMS))


def _resume_command(args, spec_given: bool) -> list[str]:
    """This command without --out/--resume: `+ --resume DIR` continues the run. Started
    as `python -m netspec`, it says so (the `netspec` script may not be on PATH)."""
    prog = ["netspec"] if os.path.basename(sys.argv[0]) == "netspec" else [sys.executable, "-m", "netspec"]
    return [*prog, "train", *([args.spec] if spec_given else []), *[a for s in args.set for a in ("--set", s)],
            *(["--device", args.device] if args.device else []), *(["--quiet"] if args.quiet else [])]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _fail(error) -> int:
    print(str(error), file=sys.stderr)
    return getattr(error, "exit_code", 2)


def _check_arguments(args) -> bool:
    """Refuse contradicting arguments, each as one line naming the argument; -> whether a SPEC was given."""
    from netspec.errors import SpecError

    if args.resume and args.out:
        raise SpecError("continues a run in its own folder; leave out --out", file=f"--resume {args.resume}")
    if args.resume and not os.path.isfile(os.path.join(args.resume, "last.pt")):
        raise SpecError("no last.pt there to continue from", file=f"--resume {args.resume}")
    if args.resume and args.init:
        raise SpecError("--init starts a run from weights; --resume continues one from its last.pt: use one",
                        file=f"--resume {args.resume}")
    if args.spec is not None:
        return True
    if not args.resume:
        raise SpecError("needs a SPEC (or --resume DIR: the run folder holds its spec) (netspec train --help)",
                        file="netspec train")
    args.spec = os.path.join(args.resume, "spec.yaml")  # the resolved spec, --set values in it
    return False


def _train(args) -> int:
    from netspec.errors import NetspecError

    try:
        spec_given = _check_arguments(args)
        init = read_weights(args)  # a bad source fails before the data is loaded
        job = _load_job(args)
        from netspec.train.loop import fit

        if init is not None:
            from netspec.weights import init_job

            init_job(job, init, args.init_skip)
        summary = fit(job, out=args.out, resume=args.resume, device=args.device, quiet=args.quiet,
                      command=["netspec", *sys.argv[1:]], resume_command=_resume_command(args, spec_given))
    except NetspecError as e:
        return _fail(e)
    except KeyboardInterrupt:  # a second Ctrl-C
        print("aborted", file=sys.stderr)
        return 130
    if summary.get("complete"):  # --resume of a finished run: nothing was done
        more = [*_resume_command(args, spec_given), "--resume", summary["run_dir"], "--set",
                f"train.epochs={2 * summary['epochs']}"]
        print(one_line(f"{summary['run_dir']}: complete, {_plural(summary['epochs'], 'epoch')} trained (test accuracy "
                       f"{100 * (summary.get('test_acc') or 0):.2f}%); nothing was changed. To train it further, give it "
                       f"more epochs: {shlex.join(more)}"), flush=True)
    elif "run_dir" in summary and summary.get("task") == "segmentation":
        print(one_line(f"{summary['name']}: test mIoU {100 * summary['test_miou']:.2f}% (best "
                       f"{100 * summary['best_test_miou']:.2f}% at epoch {summary['best_epoch']}), pixel accuracy "
                       f"{100 * summary['test_acc']:.2f}%, {_plural(summary['epochs'], 'epoch')}, "
                       f"{summary['images_per_s']:,.0f} images/s, {summary['wall_s']:.1f} s; run folder {summary['run_dir']}"),
              flush=True)
    elif "run_dir" in summary:  # rank 0 only
        acc, best = summary["test_acc"], summary["best_test_acc"]
        print(one_line(f"{summary['name']}: test accuracy {100 * acc:.2f}% (best {100 * best:.2f}% at epoch "
                       f"{summary['best_epoch']}), {_plural(summary['epochs'], 'epoch')}, {summary['images_per_s']:,.0f} images/s, "
                       f"{summary['wall_s']:.1f} s; run folder {summary['run_dir']}"), flush=True)
    return 0


def _eval(args) -> int:
    from netspec.errors import NetspecError

    try:
        source = read_weights(args)
        args.set = precision_set(args)
        job = _load_job(args)
        report(precision_note(job, args, "eval"))
        from netspec.train.evaluate import evaluate_weights

        result = evaluate_weights(job, source, device=args.device, skip=args.init_skip, on_report=report)
    except NetspecError as e:
        return _fail(e)
    result["precision"] = job.config.precision
    if args.json:
        print(json.dumps(result))
        return 0
    if "miou" in result:   # segmentation: mIoU, pixel accuracy, and IoU per class
        print(one_line(f"{job.name}: mIoU {100 * result['miou']:.2f}%, pixel accuracy {100 * result['pixel_accuracy']:.2f}% "
                       f"on {_plural(result['images'], 'image')} ({result['pixels']:,} pixels), loss {result['test_loss']:.4f} "
                       f"({args.ckpt or args.init}" + (f", epoch {result['epoch']})" if result["epoch"] is not None else ")")))
        width = max(len(c) for c in result["classes"])
        for cls, iou, acc in zip(result["classes"], result["per_class_iou"], result["per_class_acc"]):
            if iou is not None:
                print(one_line(f"  {cls:<{width}}  IoU {100 * iou:6.2f}%  accuracy {100 * acc:6.2f}%"))
        return 0
    print(one_line(f"{job.name}: test accuracy {100 * result['test_acc']:.2f}% on {_plural(result['images'], 'image')}, "
                   f"loss {result['test_loss']:.4f} ({args.ckpt or args.init}"
                   + (f", epoch {result['epoch']})" if result["epoch"] is not None else ")")))
    width = max(len(c) for c in result["classes"])
    for cls, acc, row in zip(result["classes"], result["per_class_acc"], result["confusion"]):
        if sum(row):
            print(one_line(f"  {cls:<{width}}  {100 * acc:6.2f}%  ({row[result['classes'].index(cls)]:,}/{sum(row):,})"))
    return 0
