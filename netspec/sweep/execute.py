"""Running a sweep's plan: every run that is not done yet, then the tables.

With `jobs=1` the runs train one after another in this process (netspec.train's `fit`).
With `jobs=N` up to N runs train at once, each a `netspec train` subprocess writing its
output to RUN/train.log: a small model leaves most of a big GPU idle (and its start-up,
data loading and compilation are CPU work), so several runs share the device. Either
way a run that stopped midway resumes from its last.pt, one whose summary.json exists is
not run again, the tables are rewritten after every run, and Ctrl-C / SIGTERM stop every
running run at its next check point with a resumable checkpoint (exit 130).

Imports torch only through netspec.train, when a run starts in this process.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from netspec.errors import EXIT_CHECK_FAILED, NetspecError, SpecError
from netspec.locks import FolderLock
from netspec.sweep.plan import Plan, Run
from netspec.sweep.tables import pct, write_results

_STOP_CODES = (2, 130)  # invalid input, interrupted: the whole sweep stops


def check_plan(plan: Plan) -> None:
    """Load and analyse every configuration and check its dataset folder before anything
    trains (bad input: exit 2)."""
    import netspec
    from netspec.document import check_dataset_root

    for c in plan.configs:
        for run in c.runs:
            spec = netspec.load(c.spec, overrides=run.overrides)
            analysis = netspec.analyze(spec)
            check_dataset_root(spec)
            c.params, c.macs = analysis.params, analysis.macs


def _plan_record(run: Run) -> dict:
    return {"spec": os.path.abspath(run.config.spec), "overrides": run.overrides, "seed": run.seed}


def run_sweep(plan: Plan, device: str | None = None, quiet: bool = False, log=print, jobs: int = 1,
              command: list[str] | None = None) -> int:
    """Train the plan's runs not done yet; the sweep's folder is locked to this process
    meanwhile (`command` names it to a second sweep refused there)."""
    check_plan(plan)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        (plan.out / "runs").mkdir(exist_ok=True)
        lock = FolderLock(plan.out, "sweep folder").acquire(command or ["netspec", "sweep", plan.name])
    except OSError as e:
        reason = "it is a file" if plan.out.is_file() or (plan.out / "runs").is_file() else e.strerror or str(e)
        raise SpecError(f"cannot use {plan.out} as the sweep's folder: {reason}", file="--out") from None
    with lock:
        return _run_sweep(plan, device, quiet, log, jobs)


def _run_sweep(plan: Plan, device: str | None, quiet: bool, log, jobs: int) -> int:
    runs = plan.runs
    for run in runs:  # what is already there
        record = run.folder / "sweep.json"
        if record.is_file():
            if json.loads(record.read_text()) != _plan_record(run):
                raise SpecError(f"{run.folder} holds a run of another configuration; use another --out", file="sweep")
            if (run.folder / "summary.json").is_file():
                _collect(run, "cached")
    todo = [r for r in runs if r.status == "pending"]
    log(f"sweep {plan.name}: {len(plan.configs)} configurations x seeds = {len(runs)} runs; "
        f"{len(runs) - len(todo)} already done; results in {plan.out}"
        + (f"; up to {jobs} at a time" if jobs > 1 and len(todo) > 1 else ""))
    write_results(plan)
    if jobs > 1 and len(todo) > 1:
        _Pool(plan, todo, device, jobs, log).run()
    else:
        for n, run in enumerate(todo, 1):
            try:
                _train(run, device, quiet, _what(run, n, len(todo)), log)
            except NetspecError as e:
                if e.exit_code != 130:
                    raise
                stop = NetspecError(_resume_hint(plan))  # the sweep's command resumes it, not the run's
                stop.exit_code = 130
                raise stop from None
            write_results(plan)
    failed = [r for r in runs if r.status == "failed"]
    log(f"results: {plan.out / 'results.md'}, {plan.out / 'results.csv'}"
        + (f"; {len(failed)} run(s) failed" if failed else ""))
    return EXIT_CHECK_FAILED if failed else 0


def _what(run: Run, n: int, total: int) -> str:
    return f"[{n}/{total}] {run.config.label or run.config.variant} seed {run.seed}"


def _prepare(run: Run, what: str, log) -> Path | None:
    """Make the run folder and record its plan; -> the folder to resume from, if any."""
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / "sweep.json").write_text(json.dumps(_plan_record(run), indent=2) + "\n")
    resume = run.folder if (run.folder / "last.pt").is_file() else None
    log(f"{what}: {'resuming' if resume else 'training'} in {run.folder}")
    return resume


def _train(run: Run, device: str | None, quiet: bool, what: str, log) -> None:
    """One run in this process."""
    import netspec
    from netspec.train.loop import Job, fit

    spec = netspec.load(run.config.spec, overrides=run.overrides)
    job = Job.from_spec(spec, source=run.config.spec)
    resume = _prepare(run, what, log)
    try:
        fit(job, out=None if resume else run.folder, resume=resume, device=device, quiet=quiet,
            command=train_command(run, None))
    except NetspecError as e:
        if getattr(e, "exit_code", 2) in _STOP_CODES:
            raise
        _failed(run, str(e), what, log)
        return
    _trained(run, what, log)


def train_command(run: Run, device: str | None) -> list[str]:
    """The `netspec train` command line of a run (what its run folder records)."""
    return ["netspec", "train", run.config.spec, *[a for o in run.overrides for a in ("--set", o)],
            *(["--device", device] if device else [])]


def _trained(run: Run, what: str, log) -> None:
    _collect(run, "trained")
    s = run.summary
    key = "test_miou" if s.get("task") == "segmentation" else "test_acc"
    name = "mIoU " if key == "test_miou" else ""
    log(f"{what}: test {name}{pct(s.get(key))} (best {pct(s.get('best_' + key))}), "
        f"{s.get('images_per_s') or 0:,.0f} images/s, {s.get('wall_s') or 0:.1f} s")


def _failed(run: Run, error: str, what: str, log) -> None:
    run.status, run.error = "failed", error
    log(f"{what}: failed: {error}")


class _Pool:
    """Up to `jobs` runs at once, each `python -m netspec train ... --quiet` with its output
    in RUN/train.log. A run that fails (exit 1: NaN loss, out of memory) is recorded and the
    others go on; invalid input (exit 2) or an interrupted run (130) starts nothing more,
    lets the running ones finish, and ends the sweep with that run's error line."""

    def __init__(self, plan: Plan, todo: list[Run], device: str | None, jobs: int, log):
        self.plan, self.device, self.jobs, self.log = plan, device, jobs, log
        self.waiting = [(run, _what(run, n, len(todo))) for n, run in enumerate(todo, 1)]
        self.running: dict[subprocess.Popen, tuple[Run, str]] = {}
        self.stop: NetspecError | None = None   # set: start nothing more, then raise it
        self.interrupted = False

    def run(self) -> None:
        main = threading.current_thread() is threading.main_thread()  # only it may set handlers
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            while self.waiting or self.running:
                while self.waiting and self.stop is None and len(self.running) < self.jobs:
                    self._start(*self.waiting.pop(0))
                if not self.running:
                    break
                self._reap()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            for proc in self.running:  # only after a second Ctrl-C: abort at once
                proc.kill()
        if self.stop is not None:
            raise self.stop

    def _start(self, run: Run, what: str) -> None:
        resume = _prepare(run, what, self.log)
        command = [sys.executable, "-m", *train_command(run, self.device), "--quiet",
                   *(["--resume", str(resume)] if resume else ["--out", str(run.folder)])]
        with open(run.folder / "train.log", "a") as log_file:  # the child keeps its own handle
            self.running[subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)] = (run, what)

    def _reap(self) -> None:
        """Wait for one run to end and record it."""
        while True:
            done = [p for p in self.running if p.poll() is not None]
            if done:
                break
            time.sleep(0.2)
        for proc in done:
            run, what = self.running.pop(proc)
            code = proc.returncode
            if code == 0:
                _trained(run, what, self.log)
            elif code in _STOP_CODES:
                self.log(f"{what}: {'stopped' if code == 130 else 'refused'}: {_last_line(run)}")
                if self.stop is None:
                    self.stop = NetspecError(_last_line(run) if code == 2 else _resume_hint(self.plan))
                    self.stop.exit_code = code
            else:
                _failed(run, _last_line(run) or f"exit code {code}", what, self.log)
            write_results(self.plan)

    def _on_signal(self, signum, frame) -> None:
        if self.interrupted and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C
        self.interrupted = True
        self.stop = NetspecError(_resume_hint(self.plan))
        self.stop.exit_code = 130
        self.log("stopping: every running run saves a resumable checkpoint (Ctrl-C again to abort)")
        for proc in self.running:  # a terminal's Ctrl-C reaches them too; a SIGTERM to us does not
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)


def _last_line(run: Run) -> str:
    try:
        lines = (run.folder / "train.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _resume_hint(plan: Plan) -> str:
    return f"stopped: sweep {plan.name}; run the same command again to resume (results so far in {plan.out})"


def _collect(run: Run, status: str) -> None:
    run.summary = json.loads((run.folder / "summary.json").read_text())
    run.per_class = _per_class(run.folder / "report.md")
    run.status = status


_ROW = re.compile(r"^\| (?P<cls>[^|]+?) \| (?P<acc>[0-9.]+)% \| (?:[0-9.]+% \| )?[\d,]+ / [\d,]+ \|$")


def _per_class(report: Path) -> dict[str, float] | None:
    """Per-class accuracy from the trainer's report.md (its 'Per-class accuracy' table), or for a
    segmentation run its IoU (the first column of 'Per-class IoU and accuracy')."""
    if not report.is_file():
        return None
    out, inside = {}, False
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith("## Per-class accuracy") or line.startswith("## Per-class IoU")
            continue
        m = _ROW.match(line) if inside else None
        if m:
            out[m["cls"]] = float(m["acc"]) / 100
    return out or None
