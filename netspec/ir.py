"""The resolved graph: frozen-shape-free values passed from resolve to analysis.

After resolve there are no blocks, repeats, variables or expressions left: only
concrete layers (`Leaf`) inside six kinds of containers, each of which becomes one
torch module. `src` is the path of the spec node that produced the value, so later
stages can point errors at the document. `str(graph)` prints it. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from netspec.layers import Layer


@dataclass
class Leaf:
    name: str
    layer: Layer
    src: tuple
    kind = "leaf"


@dataclass
class Seq:
    """Children applied in order (nn.Sequential)."""
    name: str
    children: list["Node"]
    src: tuple
    kind = "sequence"


@dataclass
class Residual:
    """post(body(x) + shortcut(x)); body and post children are registered directly
    on the residual module, the shortcut under `shortcut_name`."""
    name: str
    body: list["Node"]
    shortcut: Literal["auto", "identity"] | "Node"
    shortcut_name: str
    post: list["Node"]
    src: tuple
    kind = "residual"


@dataclass
class Concat:
    """Branches on the same input, concatenated along channels."""
    name: str
    branches: list["Node"]
    src: tuple
    kind = "concat"


@dataclass
class Dense:
    """Layer i sees cat(input, out_0..out_{i-1}); the output is cat(input, all outs)."""
    name: str
    layers: list["Node"]
    src: tuple
    kind = "dense"


@dataclass
class Gate:
    """x * body(x), body's output broadcast over x (squeeze-excitation)."""
    name: str
    body: list["Node"]
    src: tuple
    kind = "gate"


Node = Union[Leaf, Seq, Residual, Concat, Dense, Gate]


@dataclass
class Graph:
    name: str
    input: tuple[int, ...]
    root: Seq

    def __str__(self) -> str:
        lines = [f"graph {self.name} input={list(self.input)}"]
        _dump(self.root, 0, lines)
        return "\n".join(lines)


def _dump(node: Node, depth: int, lines: list[str]) -> None:
    pad = "  " * depth
    if isinstance(node, Leaf):
        args = ", ".join(f"{k}={v}" for k, v in node.layer.settings().items())
        lines.append(f"{pad}{node.name}: {node.layer.tag}({args})")
        return
    if isinstance(node, Residual):
        lines.append(f"{pad}{node.name}: residual")
        for child in node.body:
            _dump(child, depth + 1, lines)
        if isinstance(node.shortcut, str):
            lines.append(f"{pad}  {node.shortcut_name}: {node.shortcut}")
        else:
            _dump(node.shortcut, depth + 1, lines)
        for child in node.post:
            _dump(child, depth + 1, lines)
        return
    lines.append(f"{pad}{node.name}: {node.kind}")
    for child in (node.children if isinstance(node, Seq) else node.body if isinstance(node, Gate) else
                  node.branches if isinstance(node, Concat) else node.layers):
        _dump(child, depth + 1, lines)
