"""Analysis -> what people read: the summary table (rich) and the --json object.

Rows are the leaf modules, by their state_dict path, so every parameter appears
exactly once and the column sums equal the totals. Must not import torch.
"""
from __future__ import annotations

import json

from netspec.analysis import Analysis


def human(n: int) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _auto_projection(m):
    """The projection the analysis chose for a residual's `shortcut: auto`, else None
    (the one line that knows where the analysed tree keeps it)."""
    auto = getattr(m.node, "kind", None) == "residual" and m.node.settings["shortcut"] == "auto"
    return m.slots["shortcut"][0] if auto and m.slots.get("shortcut") else None


def auto_projections(analysis: Analysis) -> list[dict]:
    """The residuals whose `shortcut: auto` became a projection (the body changes the
    shape), in module order: a body whose last conv has the wrong width shows up here."""
    found, stack = [], [analysis.tree]
    while stack:
        m = stack.pop()
        projection = _auto_projection(m)
        if projection is not None:
            found.append({"path": m.path or "<root>", "input": list(m.input), "output": list(projection.output)})
        stack.extend(reversed(m.children))
    return found


def as_json(analysis: Analysis) -> str:
    return json.dumps({**analysis.as_dict(), "auto_projections": auto_projections(analysis)})


def render_table(analysis: Analysis, console) -> None:
    from rich.table import Table

    table = Table(title=f"{analysis.name}  input {analysis.input}", title_justify="left",
                  show_footer=True, header_style="bold", footer_style="bold")
    frozen = analysis.params - analysis.trainable_params
    table.add_column("path", footer="total")
    table.add_column("type")
    table.add_column("output", footer=str(analysis.output))
    table.add_column("params", justify="right", footer=f"{analysis.params:,}")
    table.add_column("MACs", justify="right", footer=human(analysis.macs))
    for row in analysis.layers:
        table.add_row(row.path, row.type, str(row.output), f"{row.params:,}" if row.params else "-",
                      human(row.macs) if row.macs else "-")
    console.print(table)
    console.print(f"params {analysis.params:,} ({human(analysis.params)})"
                  f"{f', {frozen:,} frozen' if frozen else ''} · MACs {analysis.macs:,} ({human(analysis.macs)}) per sample"
                  f" · output {analysis.output}")
    projected = auto_projections(analysis)
    if projected:
        console.print(f"shortcut: auto projected {len(projected)} residual{'s' if len(projected) > 1 else ''} "
                      "(input -> body output): " + ", ".join(f"{p['path']} {p['input']} -> {p['output']}" for p in projected),
                      soft_wrap=True)
