"""The resolved graph: values passed from resolve to analysis.

After resolve there are no blocks, repeats, variables or expressions left: only
concrete layers (`Leaf`) inside constructs (`Node`: sequence, residual, concat, split,
dense, gate, graph — `netspec.constructs` owns each one's rules). A node's children sit in
named slots (a residual's `body`, `shortcut`, `post`); a `flat` node adds no module
level: its children register on the enclosing module. `src` is the path of the spec
node that produced the value, so later stages can point errors at the document.
`str(graph)` prints it (`dump`).

Values flowing between modules, as the static stages see them: a tensor is its sample
shape (a tuple of ints), a `Record` names several values (a dict in order, or a list),
as a graph's outputs, torchvision's `{'out': ..., 'aux': ...}` or an FPN's feature maps;
a leaf that takes several inputs (a merge) gets a plain list of shapes. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from netspec.layers import Layer


@dataclass
class Leaf:
    name: str | None
    layer: Layer
    src: tuple
    kind = "leaf"


@dataclass
class Node:
    """One construct. `construct` is its class in netspec.constructs (the rules),
    `settings` its resolved fields other than children and name."""
    kind: str
    name: str | None
    slots: dict[str, list["Item"]]
    src: tuple
    construct: Any
    settings: dict = field(default_factory=dict)
    flat: bool = False

    @property
    def children(self) -> list["Item"]:
        return [child for nodes in self.slots.values() for child in nodes]


Item = Union[Leaf, Node]


class Record(dict):
    """Named values in order (a dict), or with `is_list` a list of values (keys '0', '1', ...):
    what a graph, or a block with `outputs:`, returns. A value is a tensor's shape (a tuple)
    or a Record."""

    __slots__ = ("is_list",)

    def __init__(self, items=(), is_list: bool = False):
        super().__init__(items)
        self.is_list = is_list

    @classmethod
    def of_list(cls, values) -> "Record":
        return cls(((str(i), v) for i, v in enumerate(values)), is_list=True)


def is_tensor(value) -> bool:
    return isinstance(value, tuple)


def form(value):
    """A value as plain data (JSON, `expect.output`): a tensor [C, H, W], a record
    {name: form}, a list [form, ...]."""
    if isinstance(value, Record):
        return [form(v) for v in value.values()] if value.is_list else {k: form(v) for k, v in value.items()}
    if isinstance(value, list):   # the inputs of a merge
        return [form(v) for v in value]
    return list(value)


def show_form(value) -> str:
    """A value's plain form (`form`, `expect.output`) as written in a spec: [10],
    {out: [21, 8, 8], aux: [21, 8, 8]}."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show_form(v)}" for k, v in value.items()) + "}"
    if value and isinstance(value[0], (list, dict)):
        return "[" + ", ".join(show_form(v) for v in value) + "]"
    return str(list(value))


def show(value) -> str:
    """A value for a table cell or a message: [3, 32, 32], {out: [21, 8, 8], aux: [...]};
    the inputs of a merge in parentheses."""
    if isinstance(value, list):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return show_form(form(value))


@dataclass
class Graph:
    name: str
    input: tuple[int, ...]
    root: Node

    def __str__(self) -> str:
        lines = [f"graph {self.name} input={list(self.input)}"]
        dump(self.root, 0, lines)
        return "\n".join(lines)


def dump(item, depth: int, lines: list[str], note=None) -> None:
    """The tree under `item`, one line per item: an IR item, or an analysed module (anything
    with `.node` and `.slots`: what the analysis added, an `auto` projection, is in its slots).
    A construct of several slots (a residual's body, shortcut, post) labels each;
    `note(item)` gives settings to show besides the construct's own."""
    node = getattr(item, "node", item)
    pad = "  " * depth
    label = node.name if node.name is not None else "(flat)"
    if isinstance(node, Leaf):
        args = ", ".join(f"{k}={v}" for k, v in node.layer.settings().items())
        lines.append(f"{pad}{label}: {node.layer.tag}({args})")
        return
    settings = {**node.construct.describe(node), **(note(item) if note else {})}
    args = ", ".join(f"{k}={v}" for k, v in settings.items())
    lines.append(f"{pad}{label}: {node.kind}{f'({args})' if args else ''}")
    notes = node.construct.notes(node)
    labelled = len(node.construct.slots) > 1
    for slot, children in item.slots.items():
        if labelled and children:
            lines.append(f"{pad}  {slot}:")
        for i, child in enumerate(children):
            if notes:
                lines.append(f"{pad}{'  ' * (1 + labelled)}# {notes[i]}")
            dump(child, depth + 1 + labelled, lines, note)
