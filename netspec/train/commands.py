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
import sys

from netspec.budget import DEFAULT_MAX_PARAMS, max_params
from netspec.errors import one_line


def _train_epilog() -> str:
    from netspec.spec.train import field_reference

    lines = ["train section fields (set any with --set PATH=VALUE, e.g. --set train.optimizer.lr=0.05;",
             "a [name] marks the fields of that choice of optimizer/schedule/dataset):", ""]
    for path, typ, default, desc in field_reference():
        lines.append(f"  {path}  ({typ}, default {default})")
        lines.append(f"      {desc}")
    lines += ["", "Several processes: torchrun --nproc_per_node=N -m netspec train SPEC",
              "(train.batch_size is the global batch; each process takes batch_size/N).",
              "Exit codes: 0 trained, 1 training failed (NaN loss, out of memory), 2 invalid input,",
              "130 stopped by Ctrl-C/SIGTERM after saving a resumable checkpoint."]
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Add `train` and `eval` to an argparse subparsers object."""
    train = subparsers.add_parser(
        "train", help="train a spec's model (its train: section) and write a run folder",
        description="Train the spec's model as its train: section says; writes the run folder "
                    "(metrics, checkpoints, curves, report, summary.json).",
        epilog=_train_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("spec", help="the spec file (YAML or JSON)")
    train.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>-<timestamp>)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last.pt")
    train.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: train.device, auto)")
    train.add_argument("--quiet", action="store_true", help="no progress output; only the final line")
    train.add_argument("--max-params", type=max_params, default=DEFAULT_MAX_PARAMS, metavar="N",
                       help=f"refuse specs with more parameters (default {DEFAULT_MAX_PARAMS:.0e}), as compile does")
    train.set_defaults(func=_train)

    ev = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on the spec's test set",
        description="Accuracy and per-class accuracy of a checkpoint (last.pt or best.pt of a run) "
                    "on the test split of the spec's train.dataset.")
    ev.add_argument("spec", help="the spec file the checkpoint was trained from")
    ev.add_argument("--ckpt", required=True, metavar="FILE", help="checkpoint file (loaded with weights_only=True)")
    ev.add_argument("--device", choices=("cpu", "cuda"), help="where to evaluate (default: train.device, auto)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=_eval)


def _load_job(args):
    import netspec
    from netspec.train.loop import Job

    spec = netspec.load(args.spec, overrides=list(getattr(args, "set", None) or []))
    return Job.from_spec(spec, source=args.spec, max_params=getattr(args, "max_params", DEFAULT_MAX_PARAMS))


def _fail(error) -> int:
    print(str(error), file=sys.stderr)
    return getattr(error, "exit_code", 2)


def _train(args) -> int:
    from netspec.errors import NetspecError

    if args.resume and args.out:
        print("error: --resume continues in its own folder; leave out --out", file=sys.stderr)
        return 2
    if args.resume and not os.path.isfile(os.path.join(args.resume, "last.pt")):
        print(one_line(f"error: --resume {args.resume}: no last.pt there to continue from"), file=sys.stderr)
        return 2
    try:
        job = _load_job(args)
        from netspec.train.loop import fit

        summary = fit(job, out=args.out, resume=args.resume, device=args.device, quiet=args.quiet,
                      command=["netspec", *sys.argv[1:]])
    except NetspecError as e:
        return _fail(e)
    except KeyboardInterrupt:  # a second Ctrl-C
        print("aborted", file=sys.stderr)
        return 130
    if "run_dir" in summary:  # rank 0 only
        acc, best = summary["test_acc"], summary["best_test_acc"]
        print(one_line(f"{summary['name']}: test accuracy {100 * acc:.2f}% (best {100 * best:.2f}% at epoch "
                       f"{summary['best_epoch']}), {summary['epochs']} epochs, {summary['images_per_s']:,.0f} images/s, "
                       f"{summary['wall_s']:.1f} s; run folder {summary['run_dir']}"), flush=True)
    return 0


def _eval(args) -> int:
    from netspec.errors import NetspecError

    try:
        job = _load_job(args)
        from netspec.train.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(job, args.ckpt, device=args.device)
    except NetspecError as e:
        return _fail(e)
    if args.json:
        print(json.dumps(result))
        return 0
    print(one_line(f"{job.name}: test accuracy {100 * result['test_acc']:.2f}% on {result['images']} images, "
                   f"loss {result['test_loss']:.4f} ({args.ckpt}, epoch {result['epoch']})"))
    width = max(len(c) for c in result["classes"])
    for cls, acc, row in zip(result["classes"], result["per_class_acc"], result["confusion"]):
        if sum(row):
            print(one_line(f"  {cls:<{width}}  {100 * acc:6.2f}%  ({row[result['classes'].index(cls)]}/{sum(row)})"))
    return 0
