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


def as_json(analysis: Analysis) -> str:
    return json.dumps(analysis.as_dict())


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
