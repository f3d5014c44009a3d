"""`netspec sweep`: the subcommand's arguments and handler (cli.py adds it).

Parses a sweep file or spec files plus --grid/--seeds into a plan (netspec.sweep.plan),
then runs it (netspec.sweep.execute). Imports no torch.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from netspec.budget import positive
from netspec.errors import SpecError, one_line
from netspec.sweep.execute import check_plan, run_sweep, train_command
from netspec.sweep.plan import load_sweep_file, parse_grid, parse_seeds, plan_sweep, slug


def add_command(sub) -> None:
    p = sub.add_parser("sweep", help="train variants and/or a grid of overrides, then one results table",
                       description="Train every (variant, grid point, seed), then write OUT/results.md, results.csv, "
                                   "runs.csv and results.png. Resumable: finished runs are not run again. Give one "
                                   "sweep file (see docs/ablations.md) or spec files (the variants).")
    p.add_argument("files", nargs="+", metavar="SWEEP_OR_SPEC", help="a sweep file, or one or more spec files")
    p.add_argument("--grid", action="append", default=[], metavar="PATH=V1,V2,...",
                   help="an axis of the grid, e.g. train.optimizer.lr=0.0008,0.001,0.0012 (repeatable)")
    p.add_argument("--seeds", metavar="S1,S2,...", help="train.seed values of each configuration (default: the sweep's, else 0)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/sweep-<name>); run again to resume")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where to train (default: each spec's train.device)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress; one line per run")
    p.add_argument("--jobs", type=positive, default=1, metavar="N",
                   help="train up to N runs at once, each a `netspec train` process logging to RUN/train.log "
                        "(small models share one GPU; default 1: one after another in this process)")
    p.add_argument("--dry-run", action="store_true", help="check every configuration and list the runs; train nothing")
    p.set_defaults(func=cmd_sweep)


def _is_sweep_file(path: str) -> bool:
    from netspec.document.load import read
    try:
        data = read(path).data
    except SpecError:
        return False
    return isinstance(data, dict) and "sweep" in data


def cmd_sweep(args) -> int:
    grid = parse_grid(args.grid)
    seeds = parse_seeds(args.seeds)
    if len(args.files) == 1 and _is_sweep_file(args.files[0]):
        plan = load_sweep_file(args.files[0], grid, seeds, list(args.set), args.out)
    else:
        for f in args.files:
            if _is_sweep_file(f):
                raise SpecError("a sweep file is given alone (not with spec files)", file=f)
        stems = [Path(f).stem for f in args.files]
        labels = stems if len(set(stems)) == len(stems) else list(args.files)
        name = stems[0] if len(stems) == 1 else "-".join(stems) if len(stems) <= 4 else f"{stems[0]}-and-{len(stems) - 1}"
        plan = plan_sweep(name=name, variants=[(lab, f, []) for lab, f in zip(labels, args.files)], grid=grid,
                          seeds=seeds or [0], common=list(args.set),
                          out=args.out or os.path.join("runs", f"sweep-{slug(name)}"))
    log = lambda text: print(one_line(text), flush=True)  # noqa: E731  names and labels are the user's: escaped
    if args.dry_run:
        check_plan(plan)
        log(f"sweep {plan.name}: {len(plan.configs)} configurations, {len(plan.runs)} runs -> {plan.out}")
        for run in plan.runs:  # each line's command pasted into a shell trains that run
            done = (run.folder / "summary.json").is_file()
            log(f"  {run.id}{'  (done)' if done else ''}: "
                + shlex.join([*train_command(run, args.device), "--out", str(run.folder)]))
        return 0
    return run_sweep(plan, device=args.device, quiet=args.quiet, log=log, jobs=args.jobs,
                     command=["netspec", "sweep", *sys.argv[1:]])
