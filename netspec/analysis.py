"""Graph + input shape -> Analysis: output shape, parameters and MACs of every module,
from shapes alone (no tensor, no module, no torch import), and the `expect` check.

Each leaf's numbers come from its layer type's own rules (`infer`, `param_count`,
`macs`); each construct's from its own `infer` (netspec.constructs), which combines its
children. `auto` shortcuts are decided here, since only shapes can tell identity from
projection. The analysed tree is what `build` turns
into modules. Time is linear in the number of layers and independent of input size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netspec.errors import LayerError, SpecError
from netspec.ir import Graph, Item, Leaf, Record, form, is_tensor, show, show_form
from netspec.layers import Shape

_MAX_ELEMENTS = 2**62  # a shape bigger than this is nonsense; refuse rather than overflow torch


@dataclass
class Module:
    """One analysed module: an IR item with its path, values and costs. A construct's
    analysed children sit in its slots (an `auto` projection in a residual's `shortcut`).
    A flat construct's path is its enclosing module's: it adds no level. `input` and
    `output` are values (netspec.ir): a shape, a Record, or (a merge's input) a list."""
    node: Item
    path: str
    input: Shape
    output: Shape
    params: int = 0
    trainable_params: int = 0
    macs: int = 0
    slots: dict[str, list["Module"]] = field(default_factory=dict)
    # a leaf that overwrites its input (ReLU(inplace=True)); a residual that adds the
    # shortcut into the body's output: what `build` does unless inplace=False (see _Planner)
    inplace: bool = False
    wiring: object = None   # a graph's references resolved (netspec.constructs.graph.Wiring)

    @property
    def type(self) -> str:
        return self.node.layer.tag if isinstance(self.node, Leaf) else self.node.kind

    @property
    def children(self) -> list["Module"]:
        return [child for children in self.slots.values() for child in children]


def graph_sources(m: Module) -> list[tuple[Module, str, str]]:
    """What each node of an analysed graph reads, as written: (the node's module, its id,
    `lat4, up5`); none for a module that is no graph."""
    if m.wiring is None:
        return []
    notes = m.node.construct.notes(m.node)
    return [(child, *note.split(" <- ", 1)) for child, note in zip(m.slots["nodes"], notes)]


@dataclass
class LayerRow:
    path: str
    type: str
    input: list
    output: list
    params: int
    trainable_params: int
    macs: int
    runs: bool = True          # False: in a graph node that no output depends on

    def as_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "output": self.output,
                "params": self.params, "macs": self.macs}


@dataclass
class Analysis:
    name: str
    input: list[int]
    output: list | dict      # the model's output as plain data (netspec.ir.form)
    params: int
    trainable_params: int
    macs: int
    layers: list[LayerRow]
    tree: Module
    graph: Graph
    spec: object = None
    buffers: int = 0         # elements of the built model's buffers (Layer.buffers: running statistics, index tables)
    buffer_bytes: int = 0

    def tree_leaves(self):
        stack = [self.tree]
        while stack:
            m = stack.pop()
            if isinstance(m.node, Leaf):
                yield m
            stack.extend(m.children)

    def as_dict(self) -> dict:
        return {"name": self.name, "input": self.input, "output": self.output, "params": self.params,
                "trainable_params": self.trainable_params, "buffers": self.buffers, "buffer_bytes": self.buffer_bytes,
                "macs": self.macs,
                "layers": [row.as_dict() for row in self.layers]}


def analyze_graph(graph: Graph, source, spec=None) -> Analysis:
    walker = _Walker(source)
    try:
        tree = walker.module(graph.root, "", tuple(graph.input))
    except SpecError as e:
        if e.sizes and len(graph.input) == 3:   # two tensors of unequal sizes meet: which input sizes work?
            e.message += working_sizes(graph, source)
        raise
    _Planner().visit(tree, False)
    analysis = Analysis(graph.name, list(graph.input), form(tree.output), tree.params, tree.trainable_params,
                        tree.macs, walker.rows, tree, graph, spec)
    buffers = [b for m in analysis.tree_leaves() for b in m.node.layer.buffers(m.input)]
    analysis.buffers = sum(n for n, _ in buffers)
    analysis.buffer_bytes = sum(n * BUFFER_BYTES[dtype] for n, dtype in buffers)
    return analysis


BUFFER_BYTES = {"fp32": 4, "int64": 8}


def working_sizes(graph: Graph, source, seconds: float = 2.0) -> str:
    """Where tensors meet at unequal sizes (a U-Net's skip at an odd input): the square input
    sizes near the given one at which the spec analyses, as a hint ("multiples of 16: 560 or
    576"). Each analysis is milliseconds; the search stops after `seconds`."""
    import time
    c, h, w = graph.input
    side = max(h, w)
    start, good = time.perf_counter(), []
    for step in range(1, 129):
        for s in (side - step, side + step):
            if s < 1 or (good and abs(s - side) > abs(good[0] - side) + 256):
                continue
            try:
                _Walker(source).module(graph.root, "", (c, s, s))
                good.append(s)
            except SpecError:
                pass
        if len([g for g in good if g < side]) >= 2 and len([g for g in good if g > side]) >= 2:
            break
        if time.perf_counter() - start > seconds:
            break
    if not good:
        return ""
    below, above = max((g for g in good if g < side), default=None), min((g for g in good if g > side), default=None)
    near = " or ".join(str(g) for g in (below, above) if g is not None)
    ordered = sorted(good)
    steps = {b - a for a, b in zip(ordered, ordered[1:])}
    period = ordered[0] if len(steps) == 1 and ordered[0] % next(iter(steps)) == 0 and len(ordered) > 2 else None
    rule = f"H and W must be multiples of {next(iter(steps))}: " if period else "input sizes that work nearby: "
    return f"; at this input size the tensors that meet differ ({rule}{near}, e.g. --input {c},{below or above},{below or above})"


class _Walker:
    """The analysis' face towards constructs (their `infer` sees it as `a`)."""

    def __init__(self, source):
        self.source = source
        self.rows: list[LayerRow] = []
        self.row_of: dict[int, LayerRow] = {}   # id() of a leaf's Module -> its row
        self.paths: set[str] = set()  # registered module paths: resolve names them uniquely, and
        # an `auto` projection (decided here) must not take a sibling's name either
        self.owned: dict[str, str] = {}   # path -> the layer type that registers a tensor there (Layer.owned)

    def registered(self, node: Item, path: str, owner_of: str | None = None) -> None:
        if path in self.paths:
            tag = owner_of or self.owned.get(path)
            why = (f"{tag} registers {path.rsplit('.', 1)[-1]!r} on its enclosing module, which has one already "
                   f"(give each {tag} a module of its own, e.g. a named sequence)") if tag else \
                "a shortcut: auto projection takes the name of another module there (give shortcut_name another name)"
            raise self.fail(node, path, f"two modules at {path!r}: {why}")
        self.paths.add(path)
        if owner_of:
            self.owned[path] = owner_of

    def fail(self, node: Item, path: str, message: str, field_name: str | None = None):
        where = node.src + ((field_name,) if field_name else ())
        return self.source.error(f"{message} (module {path or '<root>'})", where)

    def module(self, node: Item, parent: str, shape, labels: list[str] | None = None) -> Module:
        """Analyse `node` on input `shape` (a value: netspec.ir), inside the module at path
        `parent`; `labels` name a merge's inputs for its messages."""
        if isinstance(node, Leaf):
            return self.leaf(node, f"{parent}.{node.name}" if parent else node.name, shape, labels)
        path = parent if node.flat else f"{parent}.{node.name}" if parent else node.name
        if not is_tensor(shape) and node.kind not in ("graph", "sequence"):
            raise self.fail(node, path, f"{node.kind} needs a tensor, got {_kind(shape)} {show(shape)}")
        if not node.flat:
            self.registered(node, path)
        m = Module(node, path, shape, shape)
        out = node.construct.infer(node, self, m, shape)
        m.output = out if isinstance(out, Record) else tuple(out)
        return m

    def leaf(self, node: Leaf, path: str, shape, labels: list[str] | None = None) -> Module:
        layer = node.layer
        fewest, most = layer.inputs
        several = fewest != 1 or most != 1
        if isinstance(shape, list) != several or not all(map(is_tensor, shape if isinstance(shape, list) else [shape])):
            raise self.fail(node, path, _arity_problem(layer, shape, labels))
        if several and not fewest <= len(shape) <= (most or len(shape)):
            given = f"{fewest}{'' if most == fewest else f' to {most}' if most else ' or more'}"
            how = " (from: [a, b, ...])" if not layer.refs else f" (from: and its {', '.join(layer.refs)})"
            raise self.fail(node, path, f"{layer.tag} takes {given} inputs{how}, got {len(shape)}")
        try:
            out = tuple(layer.infer(shape))
        except LayerError as e:
            seen = f"inputs are {', '.join(f'{n} {show(v)}' for n, v in zip(labels, shape))}" if labels and several else \
                f"input is {show(shape)}"
            error = self.fail(node, path, f"{e.message}; {seen}", e.field)
            error.sizes = several and not layer.refs   # tensors that meet (a merge): other input sizes may work
            raise error from None
        n = 1
        for d in out:
            n *= d
        if n > _MAX_ELEMENTS or any(d <= 0 for d in out):
            raise self.fail(node, path, f"output shape {list(out)} is not a usable tensor")
        if layer.owns_tensors:   # its tensors register on the enclosing module, under their own names
            host = path.rsplit(".", 1)[0] if "." in path else ""
            for name in layer.owned(shape):
                self.registered(node, f"{host}.{name}" if host else name, layer.tag)
        else:
            self.registered(node, path)
        params = layer.param_count(shape)
        m = Module(node, path, shape, out, params, 0 if layer.frozen else params, layer.macs(shape, out))
        self.rows.append(LayerRow(path, layer.tag, form(shape), list(out), m.params, m.trainable_params, m.macs))
        self.row_of[id(m)] = self.rows[-1]
        return m

    def idle(self, m: Module) -> None:
        """m never runs (a graph node no output depends on, the tail of a chain read only at
        its children): it costs no MACs (its own figure; its children are idled one by one)."""
        m.macs = 0
        row = self.row_of.get(id(m))
        if row is not None:
            row.macs, row.runs = 0, False

    def adopt(self, m: Module, slot: str, child: Module) -> Module:
        """Add an analysed child to m's slot and its costs to m's."""
        m.slots.setdefault(slot, []).append(child)
        m.params += child.params
        m.trainable_params += child.trainable_params
        m.macs += child.macs
        return child

    def chain(self, m: Module, slot: str, nodes: list, shape: Shape) -> Shape:
        """Analyse nodes applied one after another from `shape`, into m's slot."""
        m.slots.setdefault(slot, [])
        for node in nodes:
            shape = self.adopt(m, slot, self.module(node, m.path, shape)).output
        return shape


# -- in-place execution ----------------------------------------------------------------------
# torchvision runs ReLUs in place and adds residuals in place (`out += identity`), which saves
# an allocation and a memory pass per activation (about 3% of a ResNeXt-50 training step on
# CPU). netspec decides it from the graph instead of asking the spec author: a module may
# overwrite its input only if that input is a fresh tensor (made by the previous module, read
# by no other module and not kept by the previous module's backward). A construct's input is
# shared (a residual's body and shortcut, concat branches, a gate's body and product) or the
# caller's tensor, so the first module inside one never runs in place; each construct's
# `plan` says which of its children get a fresh input, and its `fresh_output` what it gives.
# The builder and the memory model both read the decisions (Module.inplace).

class _Planner:
    """The in-place decisions' face towards constructs (their `plan` sees it as `p`)."""

    def __init__(self):
        self.fresh_input: dict[int, bool] = {}  # id of a planned module -> was its input fresh

    def fresh(self, m: Module) -> bool:
        """Is m's output (m planned already) a new tensor that m's backward does not read?"""
        if isinstance(m.node, Leaf):
            layer = m.node.layer
            return layer.fresh_output or (layer.passes_input and self.fresh_input.get(id(m), False))
        return m.node.construct.fresh_output(m, self)

    def chain(self, modules: list[Module], first_fresh: bool) -> None:
        """Modules applied one after another; the first one's input is fresh iff first_fresh."""
        fresh = first_fresh
        for m in modules:
            self.visit(m, fresh)
            fresh = self.fresh(m)

    def visit(self, m: Module, fresh: bool) -> None:
        self.fresh_input[id(m)] = fresh
        if isinstance(m.node, Leaf):
            m.inplace = fresh and m.node.layer.runs_inplace
        else:
            m.node.construct.plan(m, self, fresh)


def _kind(value) -> str:
    return "a list" if isinstance(value, list) or (isinstance(value, Record) and value.is_list) else "a record"


def _arity_problem(layer, value, labels=None) -> str:
    """Why a leaf cannot take `value` (from the references `labels`): a tensor layer given
    several values or a record, a merge given one tensor."""
    if layer.inputs != (1, 1):
        refs = f" and its {', '.join(layer.refs)}:" if layer.refs else ""
        return (f"{layer.tag} takes several tensors: use it as a graph node's item, with from: [a, b, ...]{refs}"
                if not layer.refs else f"{layer.tag} reads its {', '.join(layer.refs)}: from the enclosing graph: use "
                                       f"it as a graph node's item (`{layer.tag}: {{{layer.refs[0]}: name}}`)")
    if isinstance(value, list):
        return f"{layer.tag} takes one tensor, got {len(value)} ({show(value)}); join them first (merge)"
    return (f"{layer.tag} takes a tensor, got {_kind(value)} {show(value)}; read one of its fields "
            f"(from: {labels[0] if labels else 'node'}.{next(iter(value), 'key')})")


def check_expect(analysis: Analysis) -> list[str]:
    """Mismatches between `expect:` and the analysis, as 'what: expected X, got Y'."""
    expect = getattr(analysis.spec, "expect", None)
    if expect is None:
        return ["the spec has no `expect:` section to check (add expect: {params: ..., output: [...]})"]
    problems = []
    for key in ("params", "trainable_params", "macs", "output"):
        want = getattr(expect, key)
        got = getattr(analysis, key)
        if key == "output" and want is not None:
            want = show_form(want)
            got = show_form(got)
        if want is not None and want != got:
            fmt = (lambda v: f"{v:,}") if key != "output" else str
            delta = f" (off by {got - want:+,})" if key != "output" else ""
            problems.append(f"{key}: expected {fmt(want)}, got {fmt(got)}{delta}")
    return problems

