"""The sweep's plan: the sweep file (or command line) -> configurations and runs.

A configuration is a variant at one grid point; a run is a configuration with one seed,
trained into OUT/runs/<id>/. Owns the sweep-file model, the labels and folder names, and
parsing of --grid/--seeds. Imports no torch and nothing of netspec.train.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from netspec.errors import SpecError

MAX_RUNS = 10_000   # variants x grid points x seeds; checked before the product is built
SEED_PATH = "train.seed"   # set per run from seeds:, so never a grid axis or a sweep-wide --set


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
    common: list[str] = field(default_factory=list)   # PATH=VALUE set in every run (sweep file's set:, --set)

    @property
    def runs(self) -> list[Run]:
        return [r for c in self.configs for r in c.runs]


def _value_text(value) -> str:
    """A YAML value for `--set PATH=VALUE` (JSON is YAML)."""
    return json.dumps(value)


def value_label(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def slug(text: str) -> str:
    """A folder name for a label; lossy slugs get a hash of the label, so they stay distinct."""
    slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")
    if slug != text or len(slug) > 80:
        slug = slug[:60].strip("-") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return slug.lstrip("-")


def axis_names(axes: list[str]) -> dict[str, str]:
    """Short names for the table: the last path segment unless two axes share it."""
    last = [a.split(".")[-1] for a in axes]
    return {a: (s if last.count(s) == 1 else a) for a, s in zip(axes, last)}


def plan_sweep(*, name: str, description: str = "", variants: list[tuple[str, str, list[str]]],
               grid: dict[str, list[tuple[str, Any]]], seeds: list[int], common: list[str], out: str | os.PathLike,
               reported: dict[str, float] | None = None) -> Plan:
    """variants: (label, spec file, overrides); grid: axis -> [(value label, value)]."""
    problem = plan_problem(grid, seeds, common)
    if problem is not None:
        message, where = problem
        raise SpecError(message, file=f"--{where[0]}")
    axes = list(grid)
    size = len(variants) * len(seeds)
    for values in grid.values():
        size *= len(values)
    if size > MAX_RUNS:
        shape = " x ".join(map(str, [len(variants), *(len(v) for v in grid.values()), len(seeds)]))
        raise SpecError(f"the sweep has {size:,} runs (variants x grid values x seeds: {shape}), "
                        f"over the {MAX_RUNS:,} a sweep may plan; split it", file="sweep")
    short = axis_names(axes)
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
            run_id = f"{slug(c.label.replace(' / ', '_')) or 'run'}_seed{seed}"
            c.runs.append(Run(c, seed, run_id, out / "runs" / run_id, [*c.overrides, f"train.seed={seed}"]))
    return Plan(name, description, out, axes, configs, dict(reported or {}), list(common))


def plan_problem(grid: dict, seeds: list[int], common: list[str]) -> tuple[str, tuple] | None:
    """What would plan other runs than were asked, as (message, path in a sweep file):
    an axis with no values (0 runs, exit 0), two values with one label (one folder for
    both), train.seed on an axis or in a sweep-wide set (the seeds set it per run and
    would override it silently), a seed given twice (one folder trained twice)."""
    for axis, values in grid.items():
        if not values:
            return f"grid axis {axis} has no values", ("grid", axis)
        labels = [label for label, _ in values]
        dup = next((i for i, lab in enumerate(labels) if lab in labels[:i]), None)
        if dup is not None:
            return f"grid axis {axis} has the value {labels[dup]!r} twice", ("grid", axis, dup)
        if axis.replace("[", ".").replace("]", "").strip(".") == SEED_PATH:
            return f"{SEED_PATH} is not a grid axis: the sweep's seeds set it per run", ("grid", axis)
    for i, text in enumerate(common):
        if text.split("=", 1)[0].strip() == SEED_PATH:
            return f"{text}: the sweep's seeds set {SEED_PATH} per run; give seeds instead", ("set", i)
    dup = next((i for i, seed in enumerate(seeds) if seed in seeds[:i]), None)
    if dup is not None:
        return f"seed {seeds[dup]} is given twice", ("seeds", dup)
    return None


def load_sweep_file(path: str, extra_grid: dict, seeds: list[int] | None, common: list[str], out: str | None) -> Plan:
    from netspec.document.load import read
    from netspec.document.locate import validation_error

    source = read(path)
    for key in source.data:  # suggest sweep fields, not spec fields
        if key not in SweepFile.model_fields:
            from netspec.document.locate import did_you_mean
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
    grid = {axis: (list(values.items()) if isinstance(values, dict) else [(value_label(v), v) for v in values])
            for axis, values in sweep.grid.items()}
    problem = plan_problem(grid, sweep.seeds if seeds is None else [], sweep.set)
    if problem is not None:
        raise source.error(*problem)
    grid.update(extra_grid)
    try:
        plan = plan_sweep(name=sweep.sweep, description=sweep.description, variants=variants, grid=grid,
                          seeds=seeds or sweep.seeds, common=[*sweep.set, *common],
                          out=out or os.path.join("runs", f"sweep-{slug(sweep.sweep)}"), reported=sweep.reported)
    except SpecError as e:
        if e.file != "sweep":  # a command-line option's
            raise
        raise source.error(e.message, ("grid",) if sweep.grid else ("variants",) if sweep.variants else ()) from None
    unknown = [k for k in sweep.reported if k not in {c.label for c in plan.configs}]
    if unknown:
        raise source.error(f"reported: {unknown[0]!r} is not a configuration of this sweep "
                           f"(labels: {', '.join(c.label for c in plan.configs)})", ("reported", unknown[0]), on_key=True)
    return plan


def parse_grid(texts: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """--grid PATH=V1,V2,... (the values are a YAML flow sequence without brackets)."""
    from netspec.document.load import parse

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
        grid[axis] = [(value_label(v), v) for v in parsed]
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
