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

Owns the sweep-file model and the tables; trains through netspec.train (Job, fit) and
imports torch only when a run starts.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netspec.errors import EXIT_CHECK_FAILED, NetspecError, SpecError


# -- the sweep file -------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Variant(_Strict):
    spec: str = Field(description="Spec file, relative to the sweep file.")
    set: list[str] = Field(default_factory=list, description="PATH=VALUE overrides for this variant only.")


class SweepFile(_Strict):
    """A sweep: variants and/or a grid, seeds, and figures reported elsewhere to compare with."""

    sweep: str = Field(min_length=1, description="Sweep name (the default output folder is runs/sweep-<name>).")
    description: str = Field("", description="What the sweep asks.")
    spec: str | None = Field(None, description="One spec to sweep (relative to this file); or give variants.")
    variants: dict[str, str | Variant] | None = Field(None, description="Label -> spec file (or {spec, set}).")
    set: list[str] = Field(default_factory=list, description="PATH=VALUE overrides applied to every run.")
    grid: dict[str, list[Any] | dict[str, Any]] = Field(default_factory=dict, description="PATH -> values (a list, or label -> value); every combination is run.")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="train.seed of the runs of each configuration.")
    reported: dict[str, float] = Field(default_factory=dict, description="Configuration label -> test accuracy (%) reported elsewhere, shown beside the measured one.")


@dataclass
class Config:
    """One configuration: a variant at one grid point (all its seeds)."""
    label: str
    variant: str
    spec: str
    overrides: list[str]
    values: dict[str, str]                 # axis -> value label
    seeds: list[int]
    params: int = 0
    macs: int = 0
    runs: list["Run"] = field(default_factory=list)


@dataclass
class Run:
    config: Config
    seed: int
    id: str
    folder: Path
    overrides: list[str]
    summary: dict | None = None
    per_class: dict[str, float] | None = None
    status: str = "pending"   # pending | cached | trained | failed
    error: str = ""


@dataclass
class Plan:
    name: str
    description: str
    out: Path
    axes: list[str]
    configs: list[Config]
    reported: dict[str, float]

    @property
    def runs(self) -> list[Run]:
        return [r for c in self.configs for r in c.runs]


def _value_text(value) -> str:
    """A YAML value for `--set PATH=VALUE` (JSON is YAML)."""
    return json.dumps(value)


def _value_label(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _slug(text: str) -> str:
    """A folder name for a label; lossy slugs get a hash of the label, so they stay distinct."""
    slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")
    if slug != text or len(slug) > 80:
        slug = slug[:60].strip("-") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return slug.lstrip("-")


def _axis_names(axes: list[str]) -> dict[str, str]:
    """Short names for the table: the last path segment unless two axes share it."""
    last = [a.split(".")[-1] for a in axes]
    return {a: (s if last.count(s) == 1 else a) for a, s in zip(axes, last)}


def plan_sweep(*, name: str, description: str = "", variants: list[tuple[str, str, list[str]]],
               grid: dict[str, list[tuple[str, Any]]], seeds: list[int], common: list[str], out: str | os.PathLike,
               reported: dict[str, float] | None = None) -> Plan:
    """variants: (label, spec file, overrides); grid: axis -> [(value label, value)]."""
    axes = list(grid)
    short = _axis_names(axes)
    points: list[list[tuple[str, str, Any]]] = [[]]
    for axis in axes:
        points = [p + [(axis, label, value)] for p in points for label, value in grid[axis]]
    configs = []
    for vlabel, spec, vsets in variants:
        for point in points:
            parts = ([vlabel] if len(variants) > 1 or not axes else []) + \
                    [(f"{short[a]}={lab}" if len(axes) > 1 else lab) for a, lab, _ in point]
            label = " / ".join(parts)
            overrides = [*common, *vsets, *(f"{a}={_value_text(v)}" for a, _, v in point)]
            configs.append(Config(label, vlabel, spec, overrides, {a: lab for a, lab, _ in point}, list(seeds)))
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise SpecError(f"two configurations are both labelled {dup!r}; give the variants or values distinct labels", file="sweep")
    out = Path(out)
    for c in configs:
        for seed in c.seeds:
            run_id = f"{_slug(c.label.replace(' / ', '_')) or 'run'}_seed{seed}"
            c.runs.append(Run(c, seed, run_id, out / "runs" / run_id, [*c.overrides, f"train.seed={seed}"]))
    return Plan(name, description, out, axes, configs, dict(reported or {}))


def load_sweep_file(path: str, extra_grid: dict, seeds: list[int] | None, common: list[str], out: str | None) -> Plan:
    from netspec.spec.load import read
    from netspec.spec.locate import validation_error

    source = read(path)
    for key in source.data:  # suggest sweep fields, not spec fields
        if key not in SweepFile.model_fields:
            from netspec.spec.locate import did_you_mean
            raise source.error(f"unknown field '{key}'{did_you_mean(key, SweepFile.model_fields)}", (key,), on_key=True)
    try:
        sweep = SweepFile.model_validate(source.data)
    except ValidationError as e:
        raise validation_error(e, source) from None
    if (sweep.spec is None) == (sweep.variants is None):
        raise source.error("give either spec: (one spec) or variants: (label -> spec)", ("spec",) if sweep.spec else ())
    folder = os.path.dirname(path)
    rel = lambda p: os.path.normpath(os.path.join(folder, p))  # noqa: E731
    if sweep.variants is not None:
        variants = [(label, rel(v if isinstance(v, str) else v.spec), [] if isinstance(v, str) else list(v.set))
                    for label, v in sweep.variants.items()]
    else:
        variants = [(Path(sweep.spec).stem, rel(sweep.spec), [])]
    for label, spec, _ in variants:
        if not os.path.isfile(spec):
            where = ("variants", label) if sweep.variants is not None else ("spec",)
            raise source.error(f"spec file {spec} not found", where)
    grid = {axis: (list(values.items()) if isinstance(values, dict) else [(_value_label(v), v) for v in values])
            for axis, values in sweep.grid.items()}
    grid.update(extra_grid)
    plan = plan_sweep(name=sweep.sweep, description=sweep.description, variants=variants, grid=grid,
                      seeds=seeds or sweep.seeds, common=[*sweep.set, *common],
                      out=out or os.path.join("runs", f"sweep-{_slug(sweep.sweep)}"), reported=sweep.reported)
    unknown = [k for k in sweep.reported if k not in {c.label for c in plan.configs}]
    if unknown:
        raise source.error(f"reported: {unknown[0]!r} is not a configuration of this sweep "
                           f"(labels: {', '.join(c.label for c in plan.configs)})", ("reported", unknown[0]), on_key=True)
    return plan


def parse_grid(texts: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """--grid PATH=V1,V2,... (the values are a YAML flow sequence without brackets)."""
    from netspec.spec.load import parse

    grid = {}
    for text in texts:
        if "=" not in text:
            raise SpecError(f"--grid takes PATH=V1,V2,..., got {text!r}", file="--grid")
        axis, values = text.split("=", 1)
        try:
            parsed = parse(f"v: [{values}]\n", "--grid").data["v"]
        except SpecError as e:
            raise SpecError(f"--grid {text}: {e.message}", file="--grid") from None
        if not axis or not parsed:
            raise SpecError(f"--grid {text}: needs a path and at least one value", file="--grid")
        grid[axis] = [(_value_label(v), v) for v in parsed]
    return grid


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpecError(f"--seeds takes integers separated by commas, e.g. 0,1,2; got {text!r}", file="--seeds") from None
    if not seeds:
        raise SpecError("--seeds needs at least one seed", file="--seeds")
    return seeds


# -- running ------------------------------------------------------------------------------------
def check_plan(plan: Plan) -> None:
    """Load and analyse every configuration before anything trains (bad input: exit 2)."""
    import netspec

    for c in plan.configs:
        for run in c.runs:
            spec = netspec.load(c.spec, overrides=run.overrides)
            analysis = netspec.analyze(spec)
            c.params, c.macs = analysis.params, analysis.macs


def _plan_record(run: Run) -> dict:
    return {"spec": os.path.abspath(run.config.spec), "overrides": run.overrides, "seed": run.seed}


def run_sweep(plan: Plan, device: str | None = None, quiet: bool = False, log=print) -> int:
    check_plan(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
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
        f"{len(runs) - len(todo)} already done; results in {plan.out}")
    write_results(plan)
    for n, run in enumerate(todo, 1):
        _train(run, device, quiet, f"[{n}/{len(todo)}]", log)
        write_results(plan)
    failed = [r for r in runs if r.status == "failed"]
    log(f"results: {plan.out / 'results.md'}, {plan.out / 'results.csv'}"
        + (f"; {len(failed)} run(s) failed" if failed else ""))
    return EXIT_CHECK_FAILED if failed else 0


def _train(run: Run, device: str | None, quiet: bool, counter: str, log) -> None:
    import netspec
    from netspec.train.loop import Job, fit

    spec = netspec.load(run.config.spec, overrides=run.overrides)
    job = Job.from_spec(spec, source=run.config.spec)
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / "sweep.json").write_text(json.dumps(_plan_record(run), indent=2) + "\n")
    resume = run.folder if (run.folder / "last.pt").is_file() else None
    what = f"{counter} {run.config.label or run.config.variant} seed {run.seed}"
    log(f"{what}: {'resuming' if resume else 'training'} in {run.folder}")
    command = ["netspec", "train", run.config.spec, *[a for o in run.overrides for a in ("--set", o)]]
    try:
        fit(job, out=None if resume else run.folder, resume=resume, device=device, quiet=quiet, command=command)
    except NetspecError as e:
        if getattr(e, "exit_code", 2) in (2, 130):   # invalid input, interrupted: stop the sweep
            raise
        run.status, run.error = "failed", str(e)
        log(f"{what}: failed: {e}")
        return
    _collect(run, "trained")
    s = run.summary
    log(f"{what}: test {_pct(s.get('test_acc'))} (best {_pct(s.get('best_test_acc'))}), "
        f"{s.get('images_per_s') or 0:,.0f} images/s, {s.get('wall_s') or 0:.1f} s")


def _collect(run: Run, status: str) -> None:
    run.summary = json.loads((run.folder / "summary.json").read_text())
    run.per_class = _per_class(run.folder / "report.md")
    run.status = status


_ROW = re.compile(r"^\| (?P<cls>[^|]+?) \| (?P<acc>[0-9.]+)% \| \d+ / \d+ \|$")


def _per_class(report: Path) -> dict[str, float] | None:
    """Per-class accuracy from the trainer's report.md (its 'Per-class accuracy' table)."""
    if not report.is_file():
        return None
    out, inside = {}, False
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            inside = line.startswith("## Per-class accuracy")
            continue
        m = _ROW.match(line) if inside else None
        if m:
            out[m["cls"]] = float(m["acc"]) / 100
    return out or None


# -- tables ---------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(plan: Plan) -> list[dict]:
    rows = []
    for c in plan.configs:
        done = [r for r in c.runs if r.summary is not None]
        acc, acc_std = _mean_std([r.summary.get("test_acc") for r in done])
        best, _ = _mean_std([r.summary.get("best_test_acc") for r in done])
        ips, _ = _mean_std([r.summary.get("images_per_s") for r in done])
        wall = sum(r.summary.get("wall_s") or 0 for r in done)
        classes: dict[str, list[float]] = {}
        for r in done:
            for cls, v in (r.per_class or {}).items():
                classes.setdefault(cls, []).append(v)
        rows.append({
            "label": c.label, "variant": c.variant, **{f"grid:{a}": c.values.get(a, "") for a in plan.axes},
            "params": c.params, "macs": c.macs, "seeds": len(c.seeds), "done": len(done),
            "failed": sum(r.status == "failed" for r in c.runs),
            "test_acc_mean": acc, "test_acc_std": acc_std, "best_test_acc_mean": best,
            "reported_acc": plan.reported.get(c.label), "images_per_s": ips, "wall_s": wall,
            "per_class": {cls: statistics.fmean(v) for cls, v in classes.items()},
        })
    return rows


def write_results(plan: Plan) -> None:
    rows = aggregate(plan)
    classes = list(dict.fromkeys(cls for r in rows for cls in r["per_class"]))
    _write_csv(plan, rows, classes)
    _write_runs_csv(plan)
    _write_md(plan, rows, classes)
    if any(r["done"] for r in rows):
        _plot(plan, rows)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _num(x, fmt="{:.6g}") -> str:
    return "" if x is None else fmt.format(x)


def _write_csv(plan: Plan, rows: list[dict], classes: list[str]) -> None:
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    grid_cols = [f"grid:{a}" for a in plan.axes]
    w.writerow(["label", "variant", *[a for a in plan.axes], "params", "macs", "seeds", "done", "failed",
                "test_acc_mean", "test_acc_std", "best_test_acc_mean", "reported_acc", "images_per_s", "wall_s",
                *[f"acc:{c}" for c in classes]])
    for r in rows:
        w.writerow([r["label"], r["variant"], *[r[g] for g in grid_cols], r["params"], r["macs"], r["seeds"], r["done"],
                    r["failed"], _num(r["test_acc_mean"]), _num(r["test_acc_std"]), _num(r["best_test_acc_mean"]),
                    _num(r["reported_acc"]), _num(r["images_per_s"], "{:.1f}"), _num(r["wall_s"], "{:.1f}"),
                    *[_num(r["per_class"].get(c)) for c in classes]])
    _atomic(plan.out / "results.csv", buf.getvalue())


def _write_runs_csv(plan: Plan) -> None:
    import io
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["label", "seed", "status", "folder", "test_acc", "best_test_acc", "best_epoch", "epochs",
                "images_per_s", "wall_s", "error"])
    for run in plan.runs:
        s = run.summary or {}
        w.writerow([run.config.label, run.seed, run.status, os.path.relpath(run.folder, plan.out),
                    _num(s.get("test_acc")), _num(s.get("best_test_acc")), s.get("best_epoch", ""), s.get("epochs", ""),
                    _num(s.get("images_per_s"), "{:.1f}"), _num(s.get("wall_s"), "{:.1f}"), run.error])
    _atomic(plan.out / "runs.csv", buf.getvalue())


def _write_md(plan: Plan, rows: list[dict], classes: list[str]) -> None:
    short = _axis_names(plan.axes)
    multi_variant = len({r["variant"] for r in rows}) > 1
    has_reported = any(r["reported_acc"] is not None for r in rows)
    lines = [f"# Sweep {plan.name}", ""]
    if plan.description:
        lines += [plan.description, ""]
    done = sum(r["done"] for r in rows)
    total = sum(r["seeds"] for r in rows)
    lines += [f"{done} of {total} runs done. Test accuracy is the last evaluation, mean ± std over seeds; "
              "images/s is training throughput (mean over seeds); wall is the sum over seeds.", ""]
    head = (["variant"] if multi_variant else []) + [short[a] for a in plan.axes] + \
        ["params", "MACs", "test acc", "best test acc"] + (["reported"] if has_reported else []) + \
        ["seeds", "images/s", "wall"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        acc = "-" if r["test_acc_mean"] is None else \
            f"{100 * r['test_acc_mean']:.2f}%" + (f" ± {100 * r['test_acc_std']:.2f}" if r["done"] > 1 else "")
        cells = ([r["variant"]] if multi_variant else []) + [r[f"grid:{a}"] for a in plan.axes] + \
            [f"{r['params']:,}", _human(r["macs"]), acc, _pct(r["best_test_acc_mean"])] + \
            ([_num(r["reported_acc"], "{:g}%") or "-"] if has_reported else []) + \
            [f"{r['done']}/{r['seeds']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
             _num(r["images_per_s"], "{:,.0f}") or "-", f"{r['wall_s']:.1f} s" if r["done"] else "-"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if classes:
        lines += ["", "## Per-class test accuracy (mean over seeds)", "",
                  "| configuration | " + " | ".join(classes) + " |", "|" + " --- |" * (len(classes) + 1)]
        for r in rows:
            if r["per_class"]:
                lines.append(f"| {r['label'] or r['variant']} | " +
                             " | ".join(_pct(r["per_class"].get(c)) for c in classes) + " |")
    lines += ["", "![test accuracy](results.png)", "", "Runs (one folder each, with the trainer's report): runs.csv", ""]
    _atomic(plan.out / "results.md", "\n".join(lines))


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _plot(plan: Plan, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["test_acc_mean"] is not None]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    labels = [r["label"] or r["variant"] for r in rows]
    means = [100 * r["test_acc_mean"] for r in rows]
    stds = [100 * (r["test_acc_std"] or 0) for r in rows]
    numeric = len(plan.axes) == 1 and len({r["variant"] for r in rows}) == 1 and \
        all(_is_number(r[f"grid:{plan.axes[0]}"]) for r in rows)
    if numeric:
        xs = [float(r[f"grid:{plan.axes[0]}"]) for r in rows]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label="measured")
        rep = [(x, r["reported_acc"]) for x, r in zip(xs, rows) if r["reported_acc"] is not None]
        if rep:
            ax.plot(*zip(*rep), "s--", color="gray", label="reported")
            ax.legend()
        ax.set_xlabel(plan.axes[0])
    else:
        pos = range(len(rows))
        ax.bar(pos, means, yerr=stds, capsize=3, color="tab:blue", label="measured")
        rep = [(i, r["reported_acc"]) for i, r in enumerate(rows) if r["reported_acc"] is not None]
        if rep:
            ax.plot(*zip(*rep), "s", color="gray", label="reported")
            ax.legend()
        ax.set_xticks(list(pos))
        ax.set_xticklabels(labels, rotation=30 if max(map(len, labels)) > 8 else 0, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"sweep {plan.name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = plan.out / ".results.png.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, plan.out / "results.png")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# -- command ------------------------------------------------------------------------------------
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
    p.add_argument("--dry-run", action="store_true", help="check every configuration and list the runs; train nothing")
    p.set_defaults(func=cmd_sweep)


def _is_sweep_file(path: str) -> bool:
    from netspec.spec.load import read
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
                          out=args.out or os.path.join("runs", f"sweep-{_slug(name)}"))
    if args.dry_run:
        check_plan(plan)
        print(f"sweep {plan.name}: {len(plan.configs)} configurations, {len(plan.runs)} runs -> {plan.out}")
        for run in plan.runs:
            done = (run.folder / "summary.json").is_file()
            print(f"  {run.id}{'  (done)' if done else ''}: {run.config.spec} "
                  + " ".join(f"--set {o}" for o in run.overrides))
        return 0
    return run_sweep(plan, device=args.device, quiet=args.quiet, log=lambda s: print(s, flush=True))


__all__ = ["SweepFile", "plan_sweep", "load_sweep_file", "run_sweep", "write_results", "add_command"]
