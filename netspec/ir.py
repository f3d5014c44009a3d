"""The resolved graph: values passed from resolve to analysis.

After resolve there are no blocks, repeats, variables or expressions left: only
concrete layers (`Leaf`) inside constructs (`Node`: sequence, residual, concat, split,
dense, gate — `netspec.constructs` owns each one's rules). A node's children sit in
named slots (a residual's `body`, `shortcut`, `post`); a `flat` node adds no module
level: its children register on the enclosing module. `src` is the path of the spec
node that produced the value, so later stages can point errors at the document.
`str(graph)` prints it. Imports no torch.
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


@dataclass
class Graph:
    name: str
    input: tuple[int, ...]
    root: Node

    def __str__(self) -> str:
        lines = [f"graph {self.name} input={list(self.input)}"]
        _dump(self.root, 0, lines)
        return "\n".join(lines)


def _dump(node: Item, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    label = node.name if node.name is not None else "(flat)"
    if isinstance(node, Leaf):
        args = ", ".join(f"{k}={v}" for k, v in node.layer.settings().items())
        lines.append(f"{pad}{label}: {node.layer.tag}({args})")
        return
    args = ", ".join(f"{k}={v}" for k, v in node.construct.describe(node).items())
    lines.append(f"{pad}{label}: {node.kind}{f'({args})' if args else ''}")
    for slot, children in node.slots.items():
        for child in children:
            _dump(child, depth + 1, lines)
