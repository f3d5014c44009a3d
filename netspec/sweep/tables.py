"""The sweep's results: results.md, results.csv, runs.csv and results.png in OUT.

One row per configuration: the varied values, params, MACs, the test score (mean ± std over
seeds: accuracy, or mIoU for segmentation runs), the best one, the figure reported elsewhere,
images/s and wall time, and a per-class table (accuracy, or IoU). Every file is replaced whole (temporary file + rename), so the tables are
consistent after every run. Imports no torch.
"""
from __future__ import annotations

import csv
import math
import os
import statistics
import textwrap
import warnings
from pathlib import Path

from netspec.errors import one_line
from netspec.sweep.plan import Plan, axis_names


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def metric(plan: Plan) -> tuple[str, str]:
    """(summary key, name) of the score a sweep compares: test accuracy, or mIoU when its runs
    are segmentation runs (netspec train's summary says `task: segmentation`)."""
    segmenting = any((r.summary or {}).get("task") == "segmentation" for c in plan.configs for r in c.runs)
    return ("test_miou", "mIoU") if segmenting else ("test_acc", "accuracy")


def aggregate(plan: Plan) -> list[dict]:
    key, _ = metric(plan)
    rows = []
    for c in plan.configs:
        done = [r for r in c.runs if r.summary is not None]
        acc, acc_std = _mean_std([r.summary.get(key) for r in done])
        best, _ = _mean_std([r.summary.get(f"best_{key}") for r in done])
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
    key, _ = metric(plan)
    short = "iou" if key == "test_miou" else "acc"
    w.writerow(["label", "variant", *[a for a in plan.axes], "params", "macs", "seeds", "done", "failed",
                f"{key}_mean", f"{key}_std", f"best_{key}_mean", f"reported_{short}", "images_per_s", "wall_s",
                *[f"{short}:{c}" for c in classes]])
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
    key, _ = metric(plan)
    w.writerow(["label", "seed", "status", "folder", key, f"best_{key}", "best_epoch", "epochs",
                "images_per_s", "wall_s", "error"])
    for run in plan.runs:
        s = run.summary or {}
        w.writerow([run.config.label, run.seed, run.status, os.path.relpath(run.folder, plan.out),
                    _num(s.get(key)), _num(s.get(f"best_{key}")), s.get("best_epoch", ""), s.get("epochs", ""),
                    _num(s.get("images_per_s"), "{:.1f}"), _num(s.get("wall_s"), "{:.1f}"), run.error])
    _atomic(plan.out / "runs.csv", buf.getvalue())


def _write_md(plan: Plan, rows: list[dict], classes: list[str]) -> None:
    short = axis_names(plan.axes)
    multi_variant = len({r["variant"] for r in rows}) > 1
    has_reported = any(r["reported_acc"] is not None for r in rows)
    lines = [f"# Sweep {plan.name}", ""]
    if plan.description:
        lines += [plan.description, ""]
    done = sum(r["done"] for r in rows)
    total = sum(r["seeds"] for r in rows)
    _, name = metric(plan)
    score = "test mIoU" if name == "mIoU" else "test acc"
    lines += [*_every_run(plan), f"{done} of {total} runs done. The test {name} is the last evaluation's, mean ± std "
              "over seeds; images/s is training throughput (mean over seeds); wall is the sum over seeds.", ""]
    head = (["variant"] if multi_variant else []) + [short[a] for a in plan.axes] + \
        ["params", "MACs", score, f"best {score}"] + (["reported"] if has_reported else []) + \
        ["seeds", "images/s", "wall"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        acc = "-" if r["test_acc_mean"] is None else \
            f"{100 * r['test_acc_mean']:.2f}%" + (f" ± {100 * r['test_acc_std']:.2f}" if r["done"] > 1 else "")
        cells = ([r["variant"]] if multi_variant else []) + [r[f"grid:{a}"] for a in plan.axes] + \
            [f"{r['params']:,}", _human(r["macs"]), acc, pct(r["best_test_acc_mean"])] + \
            ([_num(r["reported_acc"], "{:g}%") or "-"] if has_reported else []) + \
            [f"{r['done']}/{r['seeds']}" + (f" ({r['failed']} failed)" if r["failed"] else ""),
             _num(r["images_per_s"], "{:,.0f}") or "-", f"{r['wall_s']:.1f} s" if r["done"] else "-"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if classes:
        lines += ["", f"## Per-class test {'IoU' if name == 'mIoU' else 'accuracy'} (mean over seeds)", "", *_every_run(plan),
                  "| configuration | " + " | ".join(classes) + " |", "|" + " --- |" * (len(classes) + 1)]
        for r in rows:
            if r["per_class"]:
                lines.append(f"| {r['label'] or r['variant']} | " +
                             " | ".join(pct(r["per_class"].get(c)) for c in classes) + " |")
    lines += ["", f"![test {name}](results.png)", "", "Runs (one folder each, with the trainer's report): runs.csv", ""]
    _atomic(plan.out / "results.md", "\n".join(lines))


def _every_run(plan: Plan) -> list[str]:
    """The sweep-wide settings above a table: a figure from `train.epochs=1` is not the real one."""
    if not plan.common:
        return []
    return ["Every run with " + " ".join(f"`--set {s}`" for s in plan.common) + ".", ""]


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _plot(plan: Plan, rows: list[dict]) -> None:
    with warnings.catch_warnings():  # a label's glyphs missing from the font: a warning per glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        _draw(plan, rows)


def _draw(plan: Plan, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["test_acc_mean"] is not None]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 4))
    labels = [one_line(r["label"] or r["variant"]) for r in rows]   # the user's text: no control characters drawn
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
        ax.set_xlabel(one_line(plan.axes[0]))
    else:
        pos = range(len(rows))
        ax.bar(pos, means, yerr=stds, capsize=3, color="tab:blue", label="measured")
        rep = [(i, r["reported_acc"]) for i, r in enumerate(rows) if r["reported_acc"] is not None]
        if rep:
            ax.plot(*zip(*rep), "s", color="gray", label="reported")
            ax.legend()
        ax.set_xticks(list(pos))
        ax.set_xticklabels(labels, rotation=30 if max(map(len, labels)) > 8 else 0, ha="right")
    ax.set_ylabel(f"test {metric(plan)[1]} (%)")
    every = textwrap.fill(one_line("every run with " + ", ".join(plan.common)), 100) if plan.common else ""
    ax.set_title(one_line(f"sweep {plan.name}") + (f"\n{every}" if every else ""), fontsize=10 if every else None)
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
