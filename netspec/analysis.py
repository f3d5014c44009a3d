"""Graph + input shape -> Analysis: output shape, parameters and MACs of every module,
from shapes alone (no tensor, no module, no torch import), and the `expect` check.

Each leaf's numbers come from its layer type's own rules (`infer`, `param_count`,
`macs`); containers combine their children. `auto` shortcuts are decided here, since
only shapes can tell identity from projection. The analysed tree is what `build` turns
into modules. Time is linear in the number of layers and independent of input size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netspec.errors import LayerError
from netspec.ir import Concat, Dense, Gate, Graph, Leaf, Node, Residual, Seq
from netspec.layers import REGISTRY, Shape

_MAX_ELEMENTS = 2**62  # a shape bigger than this is nonsense; refuse rather than overflow torch


@dataclass
class Module:
    """One analysed module: an IR node with its path, shapes and costs."""
    node: Node
    path: str
    input: Shape
    output: Shape
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    children: list["Module"] = field(default_factory=list)
    shortcut: "Module | None" = None  # residual only: None means identity

    @property
    def type(self) -> str:
        return self.node.layer.tag if isinstance(self.node, Leaf) else self.node.kind


@dataclass
class LayerRow:
    path: str
    type: str
    input: list[int]
    output: list[int]
    params: int
    trainable_params: int
    macs: int

    def as_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "output": self.output,
                "params": self.params, "macs": self.macs}


@dataclass
class Analysis:
    name: str
    input: list[int]
    output: list[int]
    params: int
    trainable_params: int
    macs: int
    layers: list[LayerRow]
    tree: Module
    graph: Graph
    spec: object = None

    def tree_leaves(self):
        stack = [self.tree]
        while stack:
            m = stack.pop()
            if isinstance(m.node, Leaf):
                yield m
            stack.extend(m.children)
            if m.shortcut is not None:
                stack.append(m.shortcut)

    def as_dict(self) -> dict:
        return {"name": self.name, "input": self.input, "output": self.output, "params": self.params,
                "trainable_params": self.trainable_params, "macs": self.macs,
                "layers": [row.as_dict() for row in self.layers]}


def analyze_graph(graph: Graph, source, spec=None) -> Analysis:
    walker = _Walker(source)
    tree = walker.module(graph.root, "", tuple(graph.input))
    return Analysis(graph.name, list(graph.input), list(tree.output), tree.params, tree.trainable_params,
                    tree.macs, walker.rows, tree, graph, spec)


class _Walker:
    def __init__(self, source):
        self.source = source
        self.rows: list[LayerRow] = []

    def fail(self, node: Node, path: str, message: str, field_name: str | None = None):
        where = node.src + ((field_name,) if field_name else ())
        return self.source.error(f"{message} (module {path or '<root>'})", where)

    def module(self, node: Node, parent: str, shape: Shape) -> Module:
        path = f"{parent}.{node.name}" if parent else node.name
        if isinstance(node, Leaf):
            return self.leaf(node, path, shape)
        m = Module(node, path, shape, shape)
        if isinstance(node, Seq):
            m.output = self.chain(m, node.children, shape)
        elif isinstance(node, Residual):
            self.residual(m, node, shape)
        elif isinstance(node, Concat):
            self.concat(m, node, shape)
        elif isinstance(node, Gate):
            gate = self.chain(m, node.body, shape)
            if len(gate) != len(shape) or any(g not in (1, s) for g, s in zip(gate, shape)):
                raise self.fail(node, m.path, f"gate output {list(gate)} does not broadcast over its input {list(shape)}")
        else:
            self.dense(m, node, shape)
        return m

    def leaf(self, node: Leaf, path: str, shape: Shape) -> Module:
        layer = node.layer
        try:
            out = tuple(layer.infer(shape))
        except LayerError as e:
            raise self.fail(node, path, f"{e.message}; input is {list(shape)}", e.field) from None
        n = 1
        for d in out:
            n *= d
        if n > _MAX_ELEMENTS or any(d <= 0 for d in out):
            raise self.fail(node, path, f"output shape {list(out)} is not a usable tensor")
        params = layer.param_count(shape)
        m = Module(node, path, shape, out, params, 0 if layer.frozen else params, layer.macs(shape, out))
        self.rows.append(LayerRow(path, layer.tag, list(shape), list(out), m.params, m.trainable_params, m.macs))
        return m

    def adopt(self, m: Module, child: Module) -> Module:
        m.children.append(child)
        m.params += child.params
        m.trainable_params += child.trainable_params
        m.macs += child.macs
        return child

    def chain(self, m: Module, nodes: list[Node], shape: Shape) -> Shape:
        for node in nodes:
            shape = self.adopt(m, self.module(node, m.path, shape)).output
        return shape

    def residual(self, m: Module, node: Residual, shape: Shape) -> None:
        out = self.chain(m, node.body, shape)
        shortcut = node.shortcut
        if shortcut == "auto":
            shortcut = "identity" if out == shape else self.projection(node, m.path, shape, out)
        if shortcut == "identity":
            if out != shape:
                raise self.fail(node, m.path, f"residual body turns {list(shape)} into {list(out)}, which cannot be added "
                                              f"to the identity shortcut (use shortcut: auto, or a projection)", "shortcut")
        else:
            m.shortcut = self.module(shortcut, m.path, shape)
            m.params += m.shortcut.params
            m.trainable_params += m.shortcut.trainable_params
            m.macs += m.shortcut.macs
            if m.shortcut.output != out:
                raise self.fail(node, m.path, f"residual branches cannot be added: body gives {list(out)}, "
                                              f"shortcut gives {list(m.shortcut.output)}", "shortcut")
        m.output = self.chain(m, node.post, out)

    def projection(self, node: Residual, path: str, shape: Shape, out: Shape) -> Node:
        """The `auto` shortcut for a shape change: 1x1 conv with the matching stride, then bn."""
        if len(shape) != 3 or len(out) != 3:
            raise self.fail(node, path, f"shortcut: auto projects only [C, H, W] maps; body turns {list(shape)} into {list(out)}", "shortcut")
        stride = max(1, round(shape[1] / out[1])), max(1, round(shape[2] / out[2]))
        conv = REGISTRY["conv"](out=out[0], k=1, stride=list(stride), bias=False)
        if conv.infer(shape) != out:
            raise self.fail(node, path, f"shortcut: auto cannot map {list(shape)} to {list(out)} with a strided 1x1 conv; "
                                        f"give an explicit projection", "shortcut")
        return Seq(node.shortcut_name, [Leaf("0", conv, node.src), Leaf("1", REGISTRY["bn"](), node.src)], node.src)

    def concat(self, m: Module, node: Concat, shape: Shape) -> None:
        outs = [self.adopt(m, self.module(b, m.path, shape)) for b in node.branches]
        first = outs[0]
        for other in outs[1:]:
            if len(other.output) != len(first.output) or other.output[1:] != first.output[1:]:
                raise self.fail(node, m.path, f"concat needs equal sizes apart from channels: branch '{first.node.name}' "
                                              f"gives {list(first.output)}, branch '{other.node.name}' gives {list(other.output)}")
        m.output = (sum(o.output[0] for o in outs), *first.output[1:])

    def dense(self, m: Module, node: Dense, shape: Shape) -> None:
        channels = shape[0]
        for layer in node.layers:
            child = self.adopt(m, self.module(layer, m.path, (channels, *shape[1:])))
            if child.output[1:] != shape[1:]:
                raise self.fail(node, m.path, f"a dense layer must keep the spatial size {list(shape[1:])} so outputs can be "
                                              f"concatenated; layer '{layer.name}' gives {list(child.output)}")
            channels += child.output[0]
        m.output = (channels, *shape[1:])


def check_expect(analysis: Analysis) -> list[str]:
    """Mismatches between `expect:` and the analysis, as 'what: expected X, got Y'."""
    expect = getattr(analysis.spec, "expect", None)
    if expect is None:
        return ["the spec has no `expect:` section to check (add expect: {params: ..., output: [...]})"]
    problems = []
    for key in ("params", "trainable_params", "macs", "output"):
        want = getattr(expect, key)
        got = getattr(analysis, key)
        if want is not None and want != got:
            fmt = (lambda v: f"{v:,}") if key != "output" else (lambda v: str(list(v)))
            delta = f" (off by {got - want:+,})" if key != "output" else ""
            problems.append(f"{key}: expected {fmt(want)}, got {fmt(got)}{delta}")
    return problems
