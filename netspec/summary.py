"""Analysis -> what people read: the summary table and the --json object.

Rows are the leaf modules, by their state_dict path, so every parameter appears
exactly once and the column sums equal the totals. The table is laid out here, in
two passes over the rows (widths, then lines): rich's Table measured and rendered
every cell as styled segments, about 1 ms a row, so 200,000 ReLUs took two minutes;
these lines cost microseconds. Must not import torch.
"""
from __future__ import annotations

import json
import unicodedata

from netspec.analysis import Analysis
from netspec.errors import one_line

_RIGHT = (False, False, False, True, True)   # params and MACs are right-aligned


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


def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cells(cells: tuple, widths: list[int]) -> str:
    out = []
    for text, width, right in zip(cells, widths, _RIGHT):
        pad = " " * (width - _width(text))
        out.append(pad + text if right else text + pad)
    return "│ " + " │ ".join(out) + " │"


def _rule(left: str, mid: str, right: str, fill: str, widths: list[int]) -> str:
    return left + mid.join(fill * (w + 2) for w in widths) + right


def render_table(analysis: Analysis, out) -> None:
    """Write the table to the text stream `out`: one line per leaf module, then the totals."""
    header = ("path", "type", "output", "params", "MACs")
    rows = [(one_line(row.path), one_line(row.type), str(row.output), f"{row.params:,}" if row.params else "-",
             human(row.macs) if row.macs else "-") for row in analysis.layers]
    footer = ("total", "", str(analysis.output), f"{analysis.params:,}", human(analysis.macs))
    widths = [max(map(_width, column)) for column in zip(header, footer, *rows)]
    frozen = analysis.params - analysis.trainable_params
    out.write(f"{one_line(analysis.name)}  input {analysis.input}\n")
    out.write(_rule("┏", "┳", "┓", "━", widths) + "\n" + _cells(header, widths).replace("│", "┃") + "\n")
    out.write(_rule("┡", "╇", "┩", "━", widths) + "\n")
    for start in range(0, len(rows), 4096):  # in chunks: one string per chunk, not per table
        out.write("".join(_cells(r, widths) + "\n" for r in rows[start:start + 4096]))
    out.write(_rule("├", "┼", "┤", "─", widths) + "\n" + _cells(footer, widths) + "\n")
    out.write(_rule("└", "┴", "┘", "─", widths) + "\n")
    out.write(f"params {analysis.params:,} ({human(analysis.params)})"
              f"{f', {frozen:,} frozen' if frozen else ''} · MACs {analysis.macs:,} ({human(analysis.macs)}) per sample"
              f" · output {analysis.output}\n")
    projected = auto_projections(analysis)
    if projected:
        out.write(one_line(f"shortcut: auto projected {len(projected)} residual{'s' if len(projected) > 1 else ''} "
                           "(input -> body output): " + ", ".join(f"{p['path']} {p['input']} -> {p['output']}"
                                                                  for p in projected)) + "\n")
