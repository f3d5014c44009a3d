"""`netspec draw`: the architecture as a picture, from the analysed module tree.

Two steps, one direction: `layout(analysis, depth, expand)` turns `Analysis.tree` into
plain data — boxes, frames and edges in inches, y growing downwards — and `render(layout,
path)` draws that data with matplotlib (Agg; PNG or SVG by the file's extension). The
tests read the layout; only `render` needs an image library, and imports it when called.

What is drawn: a leaf is a box (type, key settings, output shape, params); a named
container is a frame around its children; a residual's shortcut and a gate's input are a
skip edge beside the body into a `+` / `×` join (a projection shortcut is a small box on
that edge); concat and split branches stand side by side and meet in a `concat` bar; a
dense block's layers hang on a bus (each sees every earlier output). A run of consecutive
siblings of identical structure is one box `×N` unless `expand`; a container deeper than
`depth` is one box with its totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from netspec.constructs.graph import accesses
from netspec.ir import Leaf

FORMATS = (".png", ".svg")
GAP = 0.22       # vertical space between stacked blocks (inches)
HGAP = 0.25      # horizontal space between branches
PAD = 0.10       # frame padding
TITLE = 0.20     # frame title height
LINE = 0.125     # one text line at 7 pt
CHAR = 0.056     # average character width at 7 pt
LANE = 0.30      # distance of a skip edge from its body
JOIN = 0.22      # a + / × join


@dataclass
class Box:
    x: float  # top-left corner
    y: float
    w: float
    h: float
    lines: list[str]
    kind: str  # layer | folded (a container as one box) | repeat (×N) | join | io
    path: str = ""
    count: int = 1
    family: str = ""  # what colours a layer box: conv, norm, act, pool, linear, attention, other


@dataclass
class Frame:
    x: float
    y: float
    w: float
    h: float
    title: str
    path: str


@dataclass
class Edge:
    points: list[tuple[float, float]]
    kind: str = "flow"  # flow | skip (a shortcut or gate input) | dense (the bus)


@dataclass
class Layout:
    width: float
    height: float
    boxes: list[Box]
    frames: list[Frame]
    edges: list[Edge]


@dataclass
class _Block:
    """A placed piece in local coordinates: enters at (cx, 0), leaves at (cx, h)."""
    w: float
    h: float
    cx: float
    boxes: list[Box] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def put(self, other: "_Block", dx: float, dy: float) -> None:
        self.boxes += [replace(b, x=b.x + dx, y=b.y + dy) for b in other.boxes]
        self.frames += [replace(f, x=f.x + dx, y=f.y + dy) for f in other.frames]
        self.edges += [replace(e, points=[(x + dx, y + dy) for x, y in e.points]) for e in other.edges]

    def line(self, *points, kind="flow") -> None:
        self.edges.append(Edge(list(points), kind))


# -- labels ----------------------------------------------------------------------------
def _si(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _dims(v) -> str:
    if isinstance(v, (list, tuple)) and len(set(v)) == 1:
        v = v[0]  # [2, 2] reads as 2
    if isinstance(v, float):
        return f"{v:.3g}"
    return "×".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def _shape(shape) -> str:
    """[3, 32, 32] -> 3×32×32; a record (a graph's outputs) -> out 21×8×8, aux 21×8×8."""
    if isinstance(shape, dict):
        return ", ".join(f"{k} {_shape(v)}" for k, v in shape.items())
    if isinstance(shape, list) and shape and not isinstance(shape[0], int):
        return ", ".join(_shape(v) for v in shape)
    return "×".join(map(str, shape))


def _settings(layer) -> str:
    """The short settings worth a glance: kernel, stride, padding, dilation, groups, p."""
    s = layer.settings()
    parts = []
    if "k" in s:
        k = s["k"]
        parts.append(k if isinstance(k, str) else "×".join(map(str, k if isinstance(k, list) else [k, k])))
    for key, fmt in (("op", "{}"), ("like", "like {}"), ("stride", "/{}"), ("padding", "p{}"), ("dilation", "d{}"),
                     ("groups", "g{}"), ("p", "p={}"), ("heads", "h{}")):
        # [1, 1] differs from a default 1 only in spelling
        if key in ("op", "like") and key in s:   # a merge's or reduce's operation, what a resize sizes like
            parts.append(fmt.format(s[key]))
        elif key in s and _dims(s[key]) != _dims(type(layer).model_fields[key].default) and len(_dims(s[key])) <= 8:
            parts.append(fmt.format(_dims(s[key])))
    return " ".join(parts)


_FAMILY = {"conv": "conv", "conv_transpose": "conv", "linear": "linear", "self_attention": "attention",
           "attend": "attention", "bn": "norm", "layernorm": "norm", "groupnorm": "norm", "maxpool": "pool",
           "avgpool": "pool", "adaptive_maxpool": "pool", "adaptive_avgpool": "pool"}
_ACTS = {"relu", "relu6", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "leaky_relu", "gelu"}


def _name(m) -> str:
    return m.path.rsplit(".", 1)[-1] if m.path else ""


def _costs(m) -> str:
    return _shape(m.output) + (f" · {_si(m.params)} params" if m.params else "")


def _leaves(m) -> list:
    return [m] if isinstance(m.node, Leaf) else [leaf for c in m.children for leaf in _leaves(c)]


def _summary(*ms) -> str:
    """Folded modules' content: their layers if few, else their convs, linears, attention and gates."""
    leaves = [leaf for m in ms for leaf in _leaves(m)]
    if len(leaves) <= 6:
        return " → ".join(_short(l) for l in leaves)
    main = [_short(x) for m in ms for x in _main(m)]
    return f"{' → '.join(main[:5])}{' …' if len(main) > 5 else ''} ({len(leaves)} layers)"


def _short(m) -> str:
    if m.type == "partition":   # what it groups: "attention on 7×7 windows, shift 3"
        g = m.node.construct.grouping(m)
        tokens = g.layout == "tokens"
        window, shift = (str(g.window[1]), str(g.shift[1])) if tokens else ("×".join(map(str, g.window)), _dims(list(g.shift)))
        attention = any(leaf.type in ("attend", "self_attention") for leaf in _leaves(m))
        return (f"{'attention on ' if attention else ''}{window} {'grid' if g.grid else 'windows'}"
                + (f", shift {shift}" if any(g.shift) else ""))
    return f"{m.type} {_settings(m.node.layer)}".strip() if isinstance(m.node, Leaf) else m.type


def _main(m) -> list:
    """The layers that carry the weights (convs, linears, attention), in order; a gate
    (squeeze-excitation) and a partition (windowed attention) stand for their own."""
    if isinstance(m.node, Leaf):
        return [m] if _FAMILY.get(m.type) in ("conv", "linear", "attention") else []
    if m.type in ("gate", "partition"):
        return [m]
    return [x for c in m.children for x in _main(c)]


# -- repeated structure ----------------------------------------------------------------------
def _structure(m) -> str:
    """Types and settings of m and everything inside it (no names, no shapes)."""
    if isinstance(m.node, Leaf):
        return f"{m.type}{sorted(m.node.layer.settings().items())!r}"
    inner = ";".join(f"{slot}[{','.join(_structure(c) for c in children)}]" for slot, children in m.slots.items())
    return f"{m.type}{sorted(m.node.settings.items())!r}({inner})"


MAX_PERIOD = 8      # a run may repeat a sequence of up to this many siblings ([conv, bn, relu] x N) ...
MIN_PERIODIC = 4    # ... at least this many times; a single sibling twice is a run already


class Run(list):
    """Consecutive siblings drawn as one box when `copies` > 1: the modules of `copies`
    copies of a sequence of `period` siblings of identical structure and shapes."""

    def __init__(self, modules: list, period: int = 1):
        super().__init__(modules)
        self.period = period

    @property
    def copies(self) -> int:
        return len(self) // self.period


def runs(children: list, grows: bool = False) -> list[Run]:
    """Consecutive siblings of identical structure and shapes, grouped: one sibling repeated,
    or a sequence of a few (2,000 x [conv, relu] in one list is one run, not 4,000 boxes).
    Same structure and input fix every shape inside; in a dense block (`grows`) each layer's
    input is by construction wider than the last, so there the output alone must agree."""
    key_of = (lambda m: (_structure(m), m.output)) if grows else (lambda m: (_structure(m), m.input, m.output))
    keys = [key_of(m) for m in children]
    groups: list[Run] = []
    i = 0
    while i < len(keys):
        best = (1, 1)   # (period, copies)
        for period in range(1, MAX_PERIOD + 1):
            same = 0    # how far the sequence from i equals itself shifted by one period
            while i + period + same < len(keys) and keys[i + same] == keys[i + period + same]:
                same += 1
            copies = 1 + same // period
            if copies >= (2 if period == 1 else MIN_PERIODIC) and period * copies > best[0] * best[1]:
                best = (period, copies)
        period, copies = best
        groups.append(Run(children[i:i + period * copies], period if copies > 1 else 1))
        i += period * copies
    return groups


# -- layout ----------------------------------------------------------------------------------
def _box(lines: list[str], kind: str, path: str = "", count: int = 1, family: str = "") -> _Block:
    w = max(1.3, CHAR * (1.15 if kind == "io" else 1) * max(map(len, lines)) + 0.16)  # io is bold
    h = LINE * len(lines) + 0.1
    return _Block(w, h, w / 2, [Box(0, 0, w, h, lines, kind, path, count, family)])


def _bar(label: str, cx: float, y: float, path: str, min_w: float = 0) -> Box:
    """A join (or split) bar of one text line, centred on cx."""
    w = max(min_w, CHAR * len(label) + 0.16)
    return Box(cx - w / 2, y, w, LINE + 0.08, [label], "join", path)


def _stack(blocks: list[_Block]) -> _Block:
    """Blocks one under another, their entries on one vertical line, joined by flow edges."""
    if not blocks:
        return _Block(0.3, 0, 0.15)
    cx = max(b.cx for b in blocks)
    out = _Block(cx + max(b.w - b.cx for b in blocks), 0, cx)
    for i, b in enumerate(blocks):
        if i:
            out.line((cx, out.h), (cx, out.h + GAP))
            out.h += GAP
        out.put(b, cx - b.cx, out.h)
        out.h += b.h
    return out


class TooManyBoxes(Exception):
    """The picture would hold more than MAX_BOXES boxes (raised as soon as it would)."""


class _Layout:
    def __init__(self, depth: int | None, expand: bool, max_boxes: int | None):
        self.depth, self.expand, self.max_boxes = depth, expand, max_boxes
        self.boxes = 0
        self.ids: dict[int, str] = {}   # id() of a graph node's module -> the node's id (its label)

    def count(self, block: _Block | None = None) -> _Block | None:
        """One more box (a layer, a folded or repeated block, or a container's frame and joins)."""
        self.boxes += 1
        if self.max_boxes is not None and self.boxes > self.max_boxes:
            raise TooManyBoxes(self.max_boxes)
        return block

    def place(self, m, level: int) -> _Block:
        """m drawn at nesting `level` (the root's children are level 1)."""
        self.count()
        if isinstance(m.node, Leaf):
            layer = m.node.layer
            name = self.ids.get(id(m)) or _name(m)
            head = f"{name}: {m.type}" if name and not name.isdigit() and name != m.type else m.type
            family = _FAMILY.get(m.type, "act" if m.type in _ACTS else "other")
            return _box([f"{head} {_settings(layer)}".strip(), _costs(m)], "layer", m.path, family=family)
        if not m.node.flat and m.path and self.depth is not None and level >= self.depth:
            return self.folded(m)
        inner_level = level if m.node.flat else level + 1
        kind = m.type
        if kind in ("residual", "gate"):
            inner = self.skip(m, inner_level)
        elif kind in ("concat", "split"):
            inner = self.side_by_side(m, inner_level)
        elif kind == "dense":
            inner = self.dense(m, inner_level)
        elif kind == "graph":
            inner = self.graph(m, inner_level)
        else:  # a sequence, or any construct whose children simply run in order
            inner = self.column(m.children, inner_level)
        if m.node.flat or not m.path:
            return inner
        what = _short(m) if kind == "partition" else kind
        title = f"{_name(m)} · {what}" + (f" · {_si(m.params)} params" if m.params else "")
        return self.framed(inner, title, m.path)

    def folded(self, m) -> _Block:
        inside = _summary(m)
        lines = [f"{_name(m)}: {_short(m) if m.type == 'partition' else m.type}", f"x × ({inside})" if m.type == "gate" else inside,
                 f"{_costs(m)} · {_si(m.macs)} MACs"]
        return _box(lines, "folded", m.path)

    def repeat(self, group: Run) -> _Block:
        first, last = group[0], group[-1]
        n, one = group.copies, group[:group.period]
        lines = [f"{_name(first)}–{_name(last)}: {' → '.join(m.type for m in one)} ×{n}", _summary(*one)]
        total = f"{_si(sum(g.params for g in group))} params in all"
        if first.input != last.input:  # a dense block's layers: wider inputs, the same output
            lines += [f"input {_shape(first.input)} … {_shape(last.input)}", f"{_shape(last.output)} · {total}"]
        else:
            lines.append(f"{_costs(last)} each · {total}")
        return self.count(_box(lines, "repeat", first.path, count=n))

    def blocks(self, children: list, level: int, grows: bool = False) -> list[_Block]:
        groups = [Run([c]) for c in children] if self.expand else runs(children, grows)
        return [self.place(g[0], level) if len(g) == 1 else self.repeat(g) for g in groups]

    def column(self, children: list, level: int) -> _Block:
        return _stack(self.blocks(children, level))

    def framed(self, inner: _Block, title: str, path: str) -> _Block:
        w = max(inner.w + 2 * PAD, CHAR * len(title) + 2 * PAD)
        dx = (w - inner.w) / 2
        out = _Block(w, TITLE + inner.h + PAD, inner.cx + dx)
        out.frames.append(Frame(0, 0, w, out.h, title, path))
        out.line((out.cx, 0), (out.cx, TITLE))
        out.put(inner, dx, TITLE)
        out.line((out.cx, TITLE + inner.h), (out.cx, out.h))
        return out

    def skip(self, m, level: int) -> _Block:
        """Residual (+, with an optional projection box on the skip edge) or gate (×)."""
        body = self.column(m.slots.get("body", []), level)
        shortcut = [self.folded_small(s) for s in m.slots.get("shortcut", [])]
        lane = body.w + LANE + (shortcut[0].w / 2 if shortcut else 0)
        width = lane + (shortcut[0].w / 2 if shortcut else 0.05)
        out = _Block(width, 0, body.cx)
        out.line((body.cx, 0), (body.cx, GAP))
        out.put(body, 0, GAP)
        join_y = GAP + body.h + GAP
        out.line((body.cx, GAP + body.h), (body.cx, join_y))
        symbol = "+" if m.type == "residual" else "×"
        out.boxes.append(Box(body.cx - JOIN / 2, join_y, JOIN, JOIN, [symbol], "join", m.path))
        mid = join_y + JOIN / 2
        out.line((body.cx, GAP / 2), (lane, GAP / 2), (lane, mid), (body.cx + JOIN / 2, mid), kind="skip")
        if shortcut:  # the projection sits on the skip edge, halfway down
            s = shortcut[0]
            out.put(s, lane - s.cx, max(GAP, (join_y - s.h) / 2))
        out.h = join_y + JOIN
        post = m.slots.get("post", [])
        return _stack([out, self.column(post, level)]) if post else out

    def folded_small(self, m) -> _Block:
        """A projection shortcut: one small box on the skip edge."""
        return self.count() or _box([f"{_name(m)}: {_summary(m)}", _costs(m)], "folded", m.path)

    def side_by_side(self, m, level: int) -> _Block:
        branches = [self.place(b, level) for b in m.slots.get("branches", [])]
        top = GAP * 2 if m.type == "split" else GAP
        out = _Block(0, 0, 0)
        x = 0.0
        centers = []
        for b in branches:
            out.put(b, x, top)
            centers.append(x + b.cx)
            x += b.w + HGAP
        out.w = x - HGAP
        out.cx = (centers[0] + centers[-1]) / 2
        fork = top / 2
        out.line((out.cx, 0), (out.cx, fork))
        out.line((centers[0], fork), (centers[-1], fork))
        if m.type == "split":
            sizes = "|".join(str(b.input[0]) for b in m.slots["branches"])
            out.boxes.append(_bar(f"split {sizes}", out.cx, fork - LINE / 2 - 0.04, m.path))
        join_y = top + max(b.h for b in branches) + GAP
        for c, b in zip(centers, branches):
            out.line((c, fork), (c, top))
            out.line((c, top + b.h), (c, join_y))
        join = _bar(f"concat → {_shape(m.output)}", out.cx, join_y, m.path, centers[-1] - centers[0] + 0.4)
        out.boxes.append(join)
        out.h = join.y + join.h
        if join.x >= 0:
            out.w = max(out.w, join.x + join.w)
            return out
        wide = _Block(out.w - 2 * join.x, out.h, out.cx - join.x)  # a bar wider than the branches
        wide.put(out, -join.x, 0)
        return wide

    def dense(self, m, level: int) -> _Block:
        """Layers in order on a bus at the left: each layer's input is the concat of the
        block's input and every earlier layer's output."""
        layers = self.blocks(m.slots.get("body", []), level, grows=True)
        body = _stack(layers)
        out = _Block(body.w + LANE, 0, body.cx + LANE)
        out.line((out.cx, 0), (out.cx, GAP))
        out.put(body, LANE, GAP)
        join_y = GAP + body.h + GAP
        out.line((out.cx, GAP + body.h), (out.cx, join_y))
        bus = LANE / 2
        join = _bar(f"concat → {_shape(m.output)}", out.cx, join_y, m.path)
        out.line((out.cx, GAP / 2), (bus, GAP / 2), (bus, join.y + join.h / 2), (join.x, join.y + join.h / 2),
                 kind="dense")
        y = GAP
        for b in layers:  # a tap from the bus into each layer (or run of layers)
            out.line((bus, y + b.h / 2), (LANE + body.cx - b.cx, y + b.h / 2), kind="dense")
            y += b.h + GAP
        out.boxes.append(join)
        out.h = join.y + join.h
        return out


    def graph(self, m, level: int) -> _Block:
        """A graph's nodes one under another, in the order they run; what a node reads other
        than the node above arrives as a skip edge in a lane of its own at the right (from a
        node's bottom, from the child of a chain it reads, or from the graph's input at the
        top); several outputs meet in a bar naming them."""
        wiring, nodes = m.wiring, m.slots["nodes"]
        self.ids.update((id(child), wire.id) for child, wire in zip(nodes, wiring.nodes))
        placed = [self.place(child, level) for child in nodes]
        cx = max(b.cx for b in placed)
        width = cx + max(b.w - b.cx for b in placed)
        out = _Block(width, 0, cx)
        where: dict[str, tuple[float, float]] = {"input": (cx, 0.0)}   # slot -> (x, y) an edge leaves from
        top: list[float] = []
        previous = "input"
        out.h = GAP
        for i, (block, wire) in enumerate(zip(placed, wiring.nodes)):
            y = out.h
            if _reads(wire, previous):
                out.line((cx, y - GAP), (cx, y))
            out.put(block, cx - block.cx, y)
            top.append(y)
            where[wire.id] = (cx, y + block.h)
            for path, slot in wire.taps.items():   # a chain's child read elsewhere: the edge leaves its box
                box = next((b for b in out.boxes if b.path == f"{nodes[i].path}.{'.'.join(path)}"), None)
                where[slot] = (box.x + box.w, box.y + box.h / 2) if box is not None else where[wire.id]
            out.h = y + block.h + GAP
            previous = wire.id
        lane = width + LANE / 2
        for i, (block, wire) in enumerate(zip(placed, wiring.nodes)):
            above = previous_of(wiring, i) if _reads(wire, previous_of(wiring, i)) else None
            for slot in [acc.slot for acc in accesses(wire.source) + wire.refs]:
                if slot == above:   # the flow edge from above
                    above = None
                    continue
                lane += LANE / 2
                x0, y0 = where.get(slot, (cx, 0.0))
                entry = (cx - placed[i].cx + placed[i].w, top[i] + min(placed[i].h / 2, LINE))
                out.line((x0, y0), (lane, y0), (lane, entry[1]), entry, kind="skip")
        outs = accesses(wiring.outputs)
        if isinstance(wiring.outputs, (dict, list)) or outs[0].slot != wiring.nodes[-1].id:
            names = list(wiring.outputs) if isinstance(wiring.outputs, dict) else [a.slot for a in outs]
            bar = _bar(f"outputs: {', '.join(map(str, names))}", cx, out.h, m.path, 1.2)
            for acc in outs:
                lane += LANE / 2
                x0, y0 = where.get(acc.slot, (cx, 0.0))
                out.line((x0, y0), (lane, y0), (lane, bar.y + bar.h / 2), (bar.x + bar.w, bar.y + bar.h / 2), kind="skip")
            out.boxes.append(self.count() or bar)
            out.h = bar.y + bar.h
        else:
            out.h -= GAP
        out.w = max(width, lane + 0.05)
        return out


def _reads(wire, slot: str) -> bool:
    """Does the node read `slot` (the value above it) whole: a flow edge?"""
    return any(acc.slot == slot and not acc.keys for acc in accesses(wire.source))


def previous_of(wiring, i: int) -> str:
    return wiring.nodes[i - 1].id if i else "input"


MAX_BOXES = 2_000  # matplotlib draws about 250 boxes a second: a bigger picture is refused


def layout(analysis, depth: int | None = None, expand: bool = False, max_boxes: int | None = MAX_BOXES) -> Layout:
    """The picture of `analysis` as plain data (inches, y down), input on top; TooManyBoxes
    past `max_boxes` (found before more than that is laid out)."""
    title = f"{analysis.name} · {_si(analysis.params)} params · {_si(analysis.macs)} MACs"
    blocks = [_box([title], "io"), _box([f"input {_shape(analysis.input)}"], "io"),
              _Layout(depth, expand, max_boxes).place(analysis.tree, 0),
              _box([f"output {_shape(analysis.output)}"], "io")]
    body = _stack(blocks)
    body.edges.pop(0)  # the title is not a layer: no edge from it
    margin = 0.2
    out = Layout(body.w + 2 * margin, body.h + 2 * margin, [], [], [])
    shifted = _Block(0, 0, 0)
    shifted.put(body, margin, margin)
    out.boxes, out.frames, out.edges = shifted.boxes, shifted.frames, shifted.edges
    return out


# -- render ----------------------------------------------------------------------------------
_COLOURS = {"conv": "#dbe9f6", "linear": "#e4dcf3", "attention": "#f3dcec", "norm": "#fdf1d0", "act": "#dff2df", "pool": "#fbe0cc",
            "other": "#eeeeee", "folded": "#d6e6d2", "repeat": "#f8d7da", "join": "#ffffff", "io": "#ffffff"}
_EDGES = {"flow": ("#444444", 0.8), "skip": ("#1f6fb4", 1.3), "dense": ("#3a8f3a", 1.0)}
MAX_PIXELS = 60_000  # a side longer than this is beyond Agg's limit and no one's screen


def render(lay: Layout, path: str | Path) -> None:
    """Draw the layout into a PNG or SVG file (by its extension)."""
    # a Figure on the Agg canvas, not pyplot: no display, and no global backend switched under a caller
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Rectangle

    dpi = min(120, MAX_PIXELS / max(lay.width, lay.height))
    fig = Figure(figsize=(lay.width, lay.height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    for f in lay.frames:
        ax.add_patch(Rectangle((f.x, f.y), f.w, f.h, facecolor="#000000", alpha=0.035, edgecolor="#999999",
                               linewidth=0.6, zorder=1))
        ax.text(f.x + 0.06, f.y + TITLE / 2, f.title, fontsize=6.5, color="#555555", va="center", zorder=4,
                bbox=dict(boxstyle="square,pad=0.1", facecolor="#f4f4f4", edgecolor="none"))  # over the edges
    for e in lay.edges:
        colour, width = _EDGES[e.kind]
        xs, ys = zip(*e.points)
        ax.plot(xs, ys, color=colour, linewidth=width, zorder=3, solid_capstyle="butt")
        if e.kind == "skip":
            ax.annotate("", xy=e.points[-1], xytext=e.points[-2], zorder=3,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=width, shrinkA=0, shrinkB=0))
    for b in lay.boxes:
        colour = _COLOURS[b.family or b.kind]
        round_ = "round,pad=0,rounding_size=0.11" if b.lines in (["+"], ["×"]) else \
            "round,pad=0,rounding_size=0.04"
        edge = "#c0392b" if b.kind == "repeat" else "#555555"
        ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle=round_, facecolor=colour, edgecolor=edge,
                                    linewidth=1.2 if b.kind in ("repeat", "folded") else 0.6, zorder=4))
        ax.text(b.x + b.w / 2, b.y + b.h / 2, "\n".join(b.lines), fontsize=7, ha="center", va="center",
                linespacing=1.15, zorder=5, fontweight="bold" if b.kind == "io" else "normal")
    fig.savefig(path, dpi=dpi)


# -- the command -----------------------------------------------------------------------------
def _too_many(analysis, args) -> str:
    """Why the picture is refused, and the deepest --depth whose picture fits, if one does."""
    message = f"the picture would have more than {MAX_BOXES:,} boxes"
    deepest = max((len(m.path.split(".")) for m in _modules(analysis.tree) if m.path), default=1)
    for depth in range(min(deepest, args.depth or deepest) - 1, 0, -1):
        try:
            layout(analysis, depth, args.expand)
        except TooManyBoxes:
            continue
        return f"{message}; --depth {depth} draws it (containers below that level as one box each)"
    if args.expand:
        return f"{message}; leave out --expand (repeated blocks as one box each)"
    return f"{message}, and so would any --depth: {len(analysis.tree.children):,} modules at the top level"


def _modules(m):
    yield m
    for child in m.children:
        yield from _modules(child)



def add_command(sub, shape_type, analyze) -> None:
    """Add `draw` to an argparse subparsers object; `analyze(path, args)` is the CLI's
    (it names --input in an error the spec's own input does not have)."""
    from netspec.budget import positive  # the one positive-integer argument type
    p = sub.add_parser("draw", help="the architecture as a picture (SVG or PNG)",
                       description="Draw the analysed graph top to bottom: layers as boxes (type, key settings, "
                                   "output shape, params), residual shortcuts as skip edges, branches side by side, "
                                   "repeated blocks as one box xN. No torch; matplotlib renders it.")
    p.add_argument("spec", metavar="SPEC", help="a spec file (YAML or JSON)")
    p.add_argument("-o", "--output", metavar="FILE", help="FILE.svg or FILE.png (default: SPEC-NAME.svg here)")
    p.add_argument("--depth", type=positive, metavar="N",
                   help="draw N levels of modules; a container on level N is one box with its totals")
    p.add_argument("--expand", action="store_true", help="draw every repeated block (no xN boxes)")
    p.add_argument("--input", type=shape_type, metavar="C,H,W", help="input shape instead of the spec's `input`")
    p.set_defaults(func=lambda args: cmd_draw(args, analyze))


def cmd_draw(args, analyze) -> int:
    from netspec.document.paths import file_stem
    from netspec.errors import SpecError
    if args.output is not None and Path(args.output).suffix.lower() not in FORMATS:
        raise SpecError(f"cannot draw {args.output!r}: the file name must end in .svg or .png", file="-o")
    analysis = analyze(args.spec, args)
    out = Path(args.output or f"{file_stem(analysis.name, 'spec')}.svg")  # the name is the spec's: no path in it
    try:
        picture = layout(analysis, args.depth, args.expand)
    except TooManyBoxes:
        raise SpecError(_too_many(analysis, args), file=args.spec) from None
    try:
        render(picture, out)
    except OSError as e:
        raise SpecError(f"cannot write {out}: {e.strerror or e}", file="-o") from None
    boxes = sum(b.kind != "join" for b in picture.boxes)
    print(f"wrote {out} ({boxes} boxes, {picture.width:.1f} x {picture.height:.1f} in)")
    return 0
