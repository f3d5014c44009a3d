"""`netspec sweep`: train a set of variants and/or a grid of overrides, a few seeds
each, then one table of results (results.md, results.csv, results.png).

A sweep is a sweep file (see docs/ablations.md) or the command line:

    netspec sweep sweeps/elexnet_lr.yaml
    netspec sweep specs/elexnet/{a,b,c,d}.yaml --grid train.optimizer.lr=0.001,0.002 --seeds 0,1 --out runs/x

Runs are every (variant, grid point, seed). Each gets OUT/runs/<id>/ (the trainer's run
folder plus sweep.json, the run's plan). Resumable: a run whose summary.json exists is
not run again; one stopped midway continues from its last.pt. Every spec is loaded and
analysed before anything trains, so bad input fails at once (exit 2). The tables are
rewritten after every run. Exit 0 when every run trained, 1 when some failed.

    plan.py      sweep file / command line -> configurations and runs
    execute.py   train the runs not done yet (in this process, or --jobs N subprocesses)
    tables.py    results.md, results.csv, runs.csv, results.png
    command.py   the `netspec sweep` subcommand

Trains through netspec.train (Job, fit) and imports torch only when a run starts.
"""
from netspec.sweep.command import add_command
from netspec.sweep.execute import run_sweep
from netspec.sweep.plan import SweepFile, load_sweep_file, plan_sweep
from netspec.sweep.tables import write_results

__all__ = ["SweepFile", "plan_sweep", "load_sweep_file", "run_sweep", "write_results", "add_command"]
