"""Analysis -> what people read: the summary table and the --json object.

Rows follow the module tree in order: every leaf module by its state_dict path, and every
construct (residual, concat, gate, dense, named sequence) as a row of its own, showing its
output and its subtotals. `depth` folds what lies deeper into the row at that depth. The
columns are chosen by name (`COLUMNS`); what a column needs (the training-step memory
model, netspec.autograd) is computed only when it is shown. MACs are multiply-accumulates
(1 MAC = 2 FLOPs), labelled so everywhere.

The table is laid out here, in two passes over the rows (widths, then lines): rich's Table
measured and rendered every cell as styled segments, about 1 ms a row, so 200,000 ReLUs
took two minutes; these lines cost microseconds. Must not import torch.
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

from netspec.analysis import Analysis, Module, graph_sources
from netspec.errors import one_line
from netspec.ir import Leaf, dump, form, show, show_form


def human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def human_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


# -- what a row shows -------------------------------------------------------------------
@dataclass
class Row:
    module: Module
    depth: int                 # path segments (a flat construct: its enclosing module's)
    folded: bool               # deeper modules are folded into this row (--depth)


@dataclass
class Column:
    header: str
    right: bool                # right-aligned (numbers)
    needs_memory: bool = False


COLUMNS = {
    "from": Column("from", False),
    "input": Column("input", False),
    "settings": Column("settings", False),
    "output": Column("output", False),
    "params": Column("params", True),
    "trainable": Column("trainable", True),
    "macs": Column("fwd MACs", True),
    "bwd_macs": Column("bwd MACs", True, needs_memory=True),
    "memory": Column("kept for bwd", True, needs_memory=True),
    "rf": Column("receptive field", False),
}
DEFAULT_COLUMNS = ("settings", "output", "params", "macs")
MEMORY_COLUMNS = DEFAULT_COLUMNS + ("memory", "bwd_macs")


def default_columns(analysis: Analysis, memory: bool = False) -> tuple[str, ...]:
    """The table's columns when none are chosen: `from` first when the spec has a graph."""
    columns = MEMORY_COLUMNS if memory else DEFAULT_COLUMNS
    return ("from", *columns) if _sources(analysis.tree) else columns


def _sources(tree: Module) -> dict[int, str]:
    """What each graph node reads, as written (`lat4, up5`), by id() of its analysed module."""
    out, stack = {}, [tree]
    while stack:
        m = stack.pop()
        for child, node_id, source in graph_sources(m):
            named = getattr(child.node, "name", None) == node_id   # else the id is worth showing
            out[id(child)] = source if named else f"{node_id} <- {source}"
        stack.extend(m.children)
    return out


class _Figures:
    """Per-module figures of one table: a construct's are its subtree's sums."""

    def __init__(self, analysis: Analysis, columns=(), memory=None):
        self.fields = {}
        if "rf" in columns:  # only then: the receptive module is not imported for a plain table
            from netspec.receptive import fields
            self.fields = fields(analysis)
        self.memory = memory
        self.sources = _sources(analysis.tree) if "from" in columns else {}
        self.kept = memory.by_module() if memory is not None else {}
        self.backward = memory.layer_backward_macs if memory is not None else {}

    def subtree_paths(self, m: Module) -> set[str]:
        paths, stack = set(), [m]
        while stack:
            n = stack.pop()
            paths.add(n.path)
            stack.extend(n.children)
        return paths

    def cell(self, name: str, m: Module) -> str:
        if name == "from":
            return one_line(self.sources.get(id(m), ""))
        if name == "input":
            return show(m.input)
        if name == "output":
            return show(m.output)
        if name == "settings":
            if not isinstance(m.node, Leaf):
                return ""
            return one_line(", ".join(f"{k}={_short(v)}" for k, v in m.node.layer.settings().items()))
        if name == "params":
            frozen = "" if m.trainable_params == m.params else " frozen" if not m.trainable_params else " part frozen"
            return f"{m.params:,}{frozen}" if m.params else "-"
        if name == "trainable":
            return f"{m.trainable_params:,}" if m.params else "-"
        if name == "macs":
            return human(m.macs) if m.macs else "-"
        if name == "rf":
            field = self.fields.get(m.path)
            return str(field) if field is not None else "-"
        if name == "bwd_macs":
            total = self.total(self.backward, m)
            return human(total) if total else "-"
        if name == "memory":
            total = self.total(self.kept, m)
            return human_bytes(total) if total else "-"
        raise KeyError(name)

    def total(self, by_path: dict[str, int], m: Module) -> int:
        """m's figure in `by_path` (keyed by module path), its subtree's for a construct."""
        paths = {m.path} if isinstance(m.node, Leaf) else self.subtree_paths(m)
        return sum(by_path.get(p, 0) for p in paths)

    def footer(self, name: str, analysis: Analysis) -> str:
        m = self.memory
        return {"input": str(analysis.input), "settings": "", "output": show_form(analysis.output),
                "params": f"{analysis.params:,}", "trainable": f"{analysis.trainable_params:,}",
                "macs": human(analysis.macs), "bwd_macs": human(m.backward_macs) if m else "",
                "memory": human_bytes(m.saved_bytes) if m else "", "rf": "", "from": ""}[name]


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(map(str, v)) if all(isinstance(x, int) for x in v) else str(list(v))
    return str(v)


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """Modules in order (the root excluded): leaves, and constructs with their subtotals;
    with `depth`, nothing deeper than that many path segments (it is folded into its row)."""
    out: list[Row] = []
    stack = list(reversed(analysis.tree.children))
    while stack:
        m = stack.pop()
        level = m.path.count(".") + 1 if m.path else 0
        leaf = isinstance(m.node, Leaf)
        fold = depth is not None and level >= depth and not leaf
        if depth is None or level <= depth:
            out.append(Row(m, level, fold))
        if not leaf and not fold:
            stack.extend(reversed(m.children))
    return out


# -- the table ----------------------------------------------------------------------------
def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cells(cells: tuple, widths: list[int], right: tuple) -> str:
    out = []
    for text, width, r in zip(cells, widths, right):
        pad = " " * (width - _width(text))
        out.append(pad + text if r else text + pad)
    return "│ " + " │ ".join(out) + " │"


def _rule(left: str, mid: str, right: str, fill: str, widths: list[int]) -> str:
    return left + mid.join(fill * (w + 2) for w in widths) + right


def render_table(analysis: Analysis, out, columns=None, depth: int | None = None, memory=None) -> None:
    """Write the table to the text stream `out`, then the totals (and, given the training-step
    `memory` (netspec.autograd.Memory), what a training step holds and costs); `columns`
    default to `default_columns`."""
    columns = columns or default_columns(analysis, memory is not None)
    figures = _Figures(analysis, columns, memory)
    header = ("path", "type", *(COLUMNS[c].header for c in columns))
    right = (False, False, *(COLUMNS[c].right for c in columns))
    table = [(one_line(label(r.module)), one_line(_type(r)), *(figures.cell(c, r.module) for c in columns))
             for r in rows(analysis, depth)]
    footer = ("total", "", *(figures.footer(c, analysis) for c in columns))
    widths = [max(map(_width, column)) for column in zip(header, footer, *table)]
    frozen = analysis.params - analysis.trainable_params
    out.write(f"{one_line(analysis.name)}  input {analysis.input}\n")
    out.write(_rule("┏", "┳", "┓", "━", widths) + "\n" + _cells(header, widths, right).replace("│", "┃") + "\n")
    out.write(_rule("┡", "╇", "┩", "━", widths) + "\n")
    for start in range(0, len(table), 4096):  # in chunks: one string per chunk, not per table
        out.write("".join(_cells(r, widths, right) + "\n" for r in table[start:start + 4096]))
    out.write(_rule("├", "┼", "┤", "─", widths) + "\n" + _cells(footer, widths, right) + "\n")
    out.write(_rule("└", "┴", "┘", "─", widths) + "\n")
    buffers = f" · buffers {analysis.buffers:,} ({human_bytes(analysis.buffer_bytes)})" if analysis.buffers else ""
    out.write(f"params {analysis.params:,} ({human(analysis.params)})"
              f"{f', {frozen:,} frozen' if frozen else ''}{buffers} · forward {analysis.macs:,} MACs ({human(analysis.macs)}; "
              f"1 MAC = 2 FLOPs) per sample · output {show_form(analysis.output)}\n")
    projected = auto_projections(analysis)
    if projected:
        out.write(one_line(f"shortcut: auto projected {len(projected)} residual{'s' if len(projected) > 1 else ''} "
                           "(input -> body output): " + ", ".join(f"{p['path']} {p['input']} -> {p['output']}"
                                                                  for p in projected)) + "\n")
    if memory is not None:
        out.write(memory_lines(analysis, memory))


def label(m: Module) -> str:
    """A row's path: a module's state_dict path; a flat construct, which is no module, as
    the modules it registers on its owner (`features.3.{expand1x1..expand3x3_activation}`)."""
    if isinstance(m.node, Leaf) or not m.node.flat:
        return m.path
    names = [c.path.rsplit(".", 1)[-1] for c in _registered(m)]
    inside = ",".join(names) if len(names) <= 3 else f"{names[0]}..{names[-1]}"
    return f"{m.path}.{{{inside}}}" if m.path else f"{{{inside}}}"


def _registered(m: Module):
    """The modules a flat construct registers on its owner (a flat child's, in turn)."""
    for child in m.children:
        if not isinstance(child.node, Leaf) and child.node.flat:
            yield from _registered(child)
        else:
            yield child


def _type(row: Row) -> str:
    m = row.module
    if isinstance(m.node, Leaf):
        return m.type
    kind = m.type + (" (flat)" if m.node.flat else "")
    return kind + (" …" if row.folded and m.children else "")


def memory_lines(analysis: Analysis, memory) -> str:
    """What one training step holds and costs, in words and bytes."""
    m = memory
    copies = f", autocast weight copies {human_bytes(m.weight_copy_bytes)}" if m.weight_copy_bytes else ""
    fwd_bwd = analysis.macs + m.backward_macs
    return (f"training step at batch {m.batch}, {m.precision}, {m.optimizer.replace('_', ' with ')}: "
            f"parameters {human_bytes(m.params_bytes)}"
            f"{f' · buffers {human_bytes(m.buffers_bytes)}' if m.buffers_bytes else ''} · gradients {human_bytes(m.grads_bytes)} · optimizer state "
            f"{human_bytes(m.optimizer_bytes)} · kept for backward {human_bytes(m.saved_bytes)} (activations "
            f"{human_bytes(m.activation_bytes)}{copies}) · peak ≈ {human_bytes(m.peak_bytes)}\n"
            f"backward {m.backward_macs:,} MACs ({human(m.backward_macs)}) per sample (input and weight gradients); "
            f"forward + backward {human(fwd_bwd)} MACs = {human(2 * fwd_bwd)} FLOPs per sample, "
            f"{human(2 * fwd_bwd * m.batch)} FLOPs per step\n")


# -- `resolve`: the graph as analysed ----------------------------------------------------------
def resolved(analysis: Analysis) -> str:
    """The resolved graph (as `str(Graph)`), with what the analysis decided: what each
    `shortcut: auto` became, and its projection in the shortcut slot."""
    def note(m) -> dict:
        if getattr(m.node, "kind", None) != "residual" or m.node.settings["shortcut"] != "auto":
            return {}
        return {"shortcut": f"auto -> {'projection' if _auto_projection(m) else 'identity'}"}
    lines = [f"graph {analysis.name} input={list(analysis.input)}"]
    dump(analysis.tree, 0, lines, note)
    return "\n".join(lines)


# -- --json and the auto-projection note --------------------------------------------------
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


def as_json(analysis: Analysis, file: str | None = None, memory=None, receptive: bool = False) -> str:
    """One line of JSON: the analysis (leaf `layers`, and `modules`: every row of the table,
    constructs included; with `receptive`, each one's receptive field), the auto projections
    and, given `memory`, the training step."""
    figures = _Figures(analysis, ("rf",) if receptive else (), memory)
    data = {"file": file, **analysis.as_dict(), "auto_projections": auto_projections(analysis)}
    data["modules"] = [{"path": r.module.path, "type": r.module.type,
                        **({"flat": label(r.module)} if label(r.module) != r.module.path else {}),
                        "input": form(r.module.input), "output": form(r.module.output), "params": r.module.params,
                        "trainable_params": r.module.trainable_params, "macs": r.module.macs,
                        **({"settings": r.module.node.layer.settings()} if isinstance(r.module.node, Leaf) else {}),
                        **({"receptive_field": str(figures.fields[r.module.path])}
                           if r.module.path in figures.fields else {}),
                        **({"saved_bytes": figures.total(figures.kept, r.module),
                            "backward_macs": figures.total(figures.backward, r.module)} if memory else {})}
                       for r in rows(analysis)]
    if memory is not None:
        data["memory"] = memory.as_dict()
    return json.dumps(data)

