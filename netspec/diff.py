"""`netspec diff A B`: what changed between two specs, module by module.

The two analysed trees are aligned container by container: a named module is matched
by its name (its state_dict path segment); unnamed modules (named by position) are
aligned as a sequence (a shortest edit script, by layer type), so inserting or deleting one layer
shows as that one layer, not as every later position shifting. Each matched pair is
compared on its settings (every field, defaults included), output shape, parameters
and MACs; a leaf whose settings changed is a *cause* (`~`), one whose settings did not
but whose shape or cost did is a *consequence* (`.`). Then the totals, the spec's other
fields (name, input, expect) and the `train:` section (defaults filled in).

Reads specs through netspec.analyze; never imports torch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from netspec.analysis import Analysis, Module, graph_sources
from netspec.ir import Leaf, form


@dataclass
class Entry:
    """One module that differs. `change`: removed | added | changed (its own settings)
    | affected (only its shape/cost) | renamed (only its path)."""

    change: str
    a: Module | None
    b: Module | None
    attributes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return (self.b or self.a).path

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"change": self.change,
                               "path_a": self.a.path if self.a else None, "path_b": self.b.path if self.b else None,
                               "type": (self.b or self.a).type}
        if self.a is not None and self.b is not None and self.a.type != self.b.type:
            out["type"] = [self.a.type, self.b.type]
        if self.attributes:
            out["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        for key in ("output", "params", "macs"):
            before = _value(self.a, key)
            after = _value(self.b, key)
            out[key] = [before, after]
        return out


@dataclass
class Diff:
    a: Analysis
    b: Analysis
    file_a: str
    file_b: str
    entries: list[Entry]
    spec: dict[str, tuple[Any, Any]]      # top-level fields other than layers/train
    train: dict[str, tuple[Any, Any]]     # dotted train.* path -> (before, after)

    @property
    def identical(self) -> bool:
        return not self.entries and not self.spec and not self.train and self.totals_equal

    @property
    def totals_equal(self) -> bool:
        return all(getattr(self.a, k) == getattr(self.b, k) for k in ("params", "trainable_params", "macs", "output"))

    def as_dict(self) -> dict:
        totals = {}
        for key in ("params", "trainable_params", "macs"):
            x, y = getattr(self.a, key), getattr(self.b, key)
            totals[key] = {"a": x, "b": y, "delta": y - x}
        totals["output"] = {"a": self.a.output, "b": self.b.output}
        return {"a": {"file": self.file_a, "name": self.a.name}, "b": {"file": self.file_b, "name": self.b.name},
                "identical": self.identical, "modules": [e.as_dict() for e in self.entries], "totals": totals,
                "spec": {k: _json_pair(v) for k, v in self.spec.items()}, "train": {k: _json_pair(v) for k, v in self.train.items()}}


def _json_pair(pair: tuple) -> list:
    return [None if v is NOT_SET else v for v in pair]


def _value(m: Module | None, key: str):
    if m is None:
        return None
    value = getattr(m, key)
    return list(value) if key == "output" else value


# -- alignment ---------------------------------------------------------------------------
def diff_analyses(a: Analysis, b: Analysis, file_a: str = "A", file_b: str = "B") -> Diff:
    entries: list[Entry] = []
    _pair(a.tree, b.tree, entries)
    spec = {}
    for key in ("name", "description", "input", "expect"):
        x, y = _spec_field(a, key), _spec_field(b, key)
        if x != y:
            spec[key] = (NOT_SET if x is None else x, NOT_SET if y is None else y)   # only expect: may be absent
    # the variables a family's members differ in (width, depth, heads), one line each
    spec.update(_dict_diff(getattr(a.spec, "vars", None) or {}, getattr(b.spec, "vars", None) or {}, "vars"))
    train = _dict_diff(_train(a), _train(b), "train")
    return Diff(a, b, file_a, file_b, entries, spec, train)


def _spec_field(analysis: Analysis, key: str):
    if key == "input":
        return list(analysis.input)
    value = getattr(analysis.spec, key, None)
    return value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value


def _train(analysis: Analysis) -> dict:
    cfg = getattr(analysis.spec, "train", None)
    if cfg is None:
        from netspec.document.train import TrainConfig
        cfg = TrainConfig()
    return cfg.model_dump(mode="json")


class _NotSet:
    """A key one side does not have (a variable removed or added): shown `(not set)`, JSON null."""

    def __repr__(self) -> str:
        return "(not set)"


NOT_SET = _NotSet()


def _dict_diff(x, y, prefix: str) -> dict:
    out: dict[str, tuple[Any, Any]] = {}
    if isinstance(x, dict) and isinstance(y, dict) and x.get("name") == y.get("name"):
        for key in [*x, *(k for k in y if k not in x)]:
            out.update(_dict_diff(x.get(key, NOT_SET), y.get(key, NOT_SET), f"{prefix}.{key}"))
    elif x != y:
        out[prefix] = (x, y)
    return out


def _settings(m: Module) -> dict:
    layer = m.node.layer
    return layer.model_dump(mode="json", exclude={"name"})


def _construct_settings(m: Module) -> dict:
    """A construct's settings, and for a residual what its shortcut turned out to be."""
    out = dict(m.node.construct.describe(m.node))
    if m.type == "residual":
        out["shortcut"] = "projection" if m.slots.get("shortcut") else "identity"
    return out


def _positional(m: Module) -> bool:
    return m.node.name is None or m.node.name.isdigit()


def _signature(m: Module) -> tuple:
    return ("t", m.type) if _positional(m) else ("n", m.node.name)


def _sources(m: Module) -> dict[int, str]:
    """What each node of a graph reads, as written, by id() of its module ({} elsewhere)."""
    return {id(child): source for child, _, source in graph_sources(m)}


def _pair(ma: Module, mb: Module, out: list[Entry], wired: tuple = (None, None)) -> None:
    """Compare two matched modules; `wired` is what each reads when they are graph nodes (a
    node that reads something else is changed, not removed and added)."""
    if ma.type != mb.type:
        _whole(ma, "removed", out)
        _whole(mb, "added", out)
        return
    rewired = {"from": wired} if wired[0] != wired[1] else {}
    if isinstance(ma.node, Leaf):
        sa, sb = _settings(ma), _settings(mb)
        attrs = {k: (sa.get(k), sb.get(k)) for k in [*sa, *(k for k in sb if k not in sa)] if sa.get(k) != sb.get(k)}
        attrs.update(rewired)
        if attrs:
            out.append(Entry("changed", ma, mb, attrs))
        elif (ma.output, ma.params, ma.trainable_params, ma.macs) != (mb.output, mb.params, mb.trainable_params, mb.macs):
            out.append(Entry("affected", ma, mb))
        elif ma.path != mb.path:
            out.append(Entry("renamed", ma, mb))
        return
    sa, sb = _construct_settings(ma), _construct_settings(mb)
    attrs = {k: (sa.get(k), sb.get(k)) for k in [*sa, *(k for k in sb if k not in sa)] if sa.get(k) != sb.get(k)}
    attrs.update(rewired)
    if attrs:
        out.append(Entry("changed", ma, mb, attrs))
    sources = (_sources(ma), _sources(mb))
    for slot in [*ma.slots, *(k for k in mb.slots if k not in ma.slots)]:  # a residual's body, shortcut, post
        _align(ma.slots.get(slot, []), mb.slots.get(slot, []), out, sources)


def _whole(m: Module, change: str, out: list[Entry]) -> None:
    out.append(Entry(change, m if change == "removed" else None, m if change == "added" else None))


def _align(xs: list[Module], ys: list[Module], out: list[Entry], sources: tuple = ({}, {})) -> None:
    """Children of two matched containers: named by name, unnamed by sequence (`sources`:
    what each reads, for a graph's nodes)."""
    pairs: list[tuple[Module | None, Module | None]] = []
    for op, i1, i2, j1, j2 in _opcodes([_signature(m) for m in xs], [_signature(m) for m in ys]):
        if op == "equal":
            pairs.extend(zip(xs[i1:i2], ys[j1:j2]))
            continue
        left, right = xs[i1:i2], ys[j1:j2]
        # unnamed modules of the same type at the same place in a replaced run: one changed module
        for m, n in zip(left, right):
            same = _positional(m) and _positional(n) and m.type == n.type
            pairs.extend([(m, n)] if same else [(m, None), (None, n)])
        pairs.extend((m, None) for m in left[len(right):])
        pairs.extend((None, n) for n in right[len(left):])
    # a named module that moved is still the same module
    removed = {m.node.name: i for i, (m, n) in enumerate(pairs) if n is None and not _positional(m)}
    for i, (m, n) in enumerate(pairs):
        if m is None and not _positional(n) and n.node.name in removed:
            j = removed.pop(n.node.name)
            pairs[j] = (pairs[j][0], n)
            pairs[i] = (None, None)
    for m, n in pairs:
        if m is not None and n is not None:
            _pair(m, n, out, (sources[0].get(id(m)), sources[1].get(id(n))))
        elif m is not None:
            _whole(m, "removed", out)
        elif n is not None:
            _whole(n, "added", out)


ALIGN_STEPS = 20   # per element aligned: beyond, a run is paired by position (see _opcodes)


def _opcodes(a: list, b: list) -> list[list]:
    """difflib-style opcodes (["equal" | "replace", i1, i2, j1, j2]) of a shortest edit
    script from a to b. The common head and tail are matched in one pass, the rest by Myers'
    O((N + M) D) algorithm, bounded to ALIGN_STEPS per element: lists that differ more than
    that are one run, paired by position (difflib's SequenceMatcher was quadratic on long
    lists of few types: 19 s for two 20,000-layer specs)."""
    n, m = len(a), len(b)
    head = 0
    while head < min(n, m) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(n, m) - head and a[n - 1 - tail] == b[m - 1 - tail]:
        tail += 1
    middle = _matches(a[head:n - tail], b[head:m - tail], ALIGN_STEPS * (n + m) + 1000) or []
    pairs = [*((i, i) for i in range(head)), *((head + i, head + j) for i, j in middle),
             *((n - tail + t, m - tail + t) for t in range(tail))]
    ops: list[list] = []
    i = j = 0
    for x, y in pairs:
        if (x, y) != (i, j):
            ops.append(["replace", i, x, j, y])
        if ops and ops[-1][0] == "equal":
            ops[-1][2], ops[-1][4] = x + 1, y + 1
        else:
            ops.append(["equal", x, x + 1, y, y + 1])
        i, j = x + 1, y + 1
    if (i, j) != (n, m):
        ops.append(["replace", i, n, j, m])
    return ops


def _matches(a: list, b: list, budget: int) -> list[tuple[int, int]] | None:
    """The matched positions (i, j), in order, of a shortest edit script between a and b
    (Myers 1986, the greedy forward search with a trace for the way back), or None when it
    would take more than `budget` steps."""
    n, m = len(a), len(b)
    if not n or not m:
        return []
    trace, v, steps = [], {1: 0}, 0
    for d in range(n + m + 1):
        nv = {}
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if k == -d or (k != d and v[k - 1] < v[k + 1]) else v[k - 1] + 1
            y, start = x - k, x
            while x < n and y < m and a[x] == b[y]:
                x, y = x + 1, y + 1
            steps += 1 + x - start
            nv[k] = x
            if x >= n and y >= m:
                trace.append(nv)
                return _way_back(trace, n, m)
        trace.append(nv)
        v = nv
        if steps > budget:
            return None
    raise AssertionError("unreachable: d = n + m always reaches the end")


def _way_back(trace: list[dict], x: int, y: int) -> list[tuple[int, int]]:
    pairs = []
    for d in range(len(trace) - 1, 0, -1):
        v, k = trace[d - 1], x - y
        prev_k = k + 1 if k == -d or (k != d and v[k - 1] < v[k + 1]) else k - 1
        prev_x = v[prev_k]
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:   # the diagonal run after the edit
            x, y = x - 1, y - 1
            pairs.append((x, y))
        x, y = prev_x, prev_y
    while x > 0 and y > 0:
        x, y = x - 1, y - 1
        pairs.append((x, y))
    return pairs[::-1]


# -- text ---------------------------------------------------------------------------------
MARK = {"removed": "-", "added": "+", "changed": "~", "affected": ".", "renamed": "="}


def human(n: int) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _delta(x: int, y: int, fmt=lambda v: f"{v:,}") -> str:
    if x == y:
        return fmt(x)
    pct = f", {100 * (y - x) / x:+.1f}%" if x else ""
    sign = "+" if y > x else "-"
    return f"{fmt(x)} -> {fmt(y)} ({sign}{fmt(abs(y - x))}{pct})"


def _show(value) -> str:
    if isinstance(value, dict):   # a record's form: {out: [21, 8, 8], aux: [...]}
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_show, value)) + "]"
    if value is None:
        return "-"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _entry_text(e: Entry) -> str:
    m = e.b or e.a
    path = m.path
    if e.a is not None and e.b is not None and e.a.path != e.b.path:
        path = f"{e.a.path} -> {e.b.path}"
    head = f"{MARK[e.change]} {path or '<root>'}  {m.type}{' (flat)' if getattr(m.node, 'flat', False) else ''}"
    if e.change in ("removed", "added"):
        what = ""
        if isinstance(m.node, Leaf):
            settings = m.node.layer.settings()
            what = " " + (", ".join(f"{k}={_show(v)}" for k, v in settings.items()) or "(defaults)")
        else:
            what = f" ({sum(1 for _ in _leaves(m))} layers)"
        return f"{head}{what}  output {_show(form(m.output))}  params {m.params:,}  MACs {human(m.macs)}"
    parts = []
    if e.attributes:
        parts.append(", ".join(f"{k}: {_show(x)} -> {_show(y)}" for k, (x, y) in e.attributes.items()))
    a, b = e.a, e.b
    if a.output != b.output:
        parts.append(f"output {_show(form(a.output))} -> {_show(form(b.output))}")
    if a.params != b.params:
        parts.append(f"params {_delta(a.params, b.params)}")
    if a.macs != b.macs:
        parts.append(f"MACs {_delta(a.macs, b.macs, human)}")
    if e.change == "renamed":
        parts.append("path only (state_dict keys change)")
    return f"{head}  " + "; ".join(parts)


def _leaves(m: Module):
    if isinstance(m.node, Leaf):
        yield m
        return
    for child in m.children:
        yield from _leaves(child)


def render(d: Diff, brief: bool = False) -> str:
    """The report; `brief` leaves out the modules that changed only as a consequence."""
    lines = [f"diff {d.file_a} ({d.a.name}) -> {d.file_b} ({d.b.name})"]
    if d.identical:
        lines.append("no differences")
        return "\n".join(lines)
    if d.entries:
        counts = {c: sum(1 for e in d.entries if e.change == c) for c in MARK}
        lines.append("modules: " + ", ".join(f"{n} {c}" for c, n in counts.items() if n) +
                     "   (- removed, + added, ~ settings changed, . shape/cost changed as a consequence, = path only)")
        lines.extend("  " + _entry_text(e) for e in d.entries if not brief or e.change in ("removed", "added", "changed"))
    else:
        lines.append("modules: no differences")
    lines.append("totals:")
    for key, label in (("params", "params"), ("trainable_params", "trainable"), ("macs", "MACs")):
        x, y = getattr(d.a, key), getattr(d.b, key)
        if key == "trainable_params" and x == d.a.params and y == d.b.params:
            continue
        lines.append(f"  {label:<9} {_delta(x, y) if key != 'macs' else _delta(x, y, lambda v: f'{v:,}')}")
    same = " (same)" if d.a.output == d.b.output else ""
    lines.append(f"  {'output':<9} {_show(d.a.output)}{same}" if same else
                 f"  {'output':<9} {_show(d.a.output)} -> {_show(d.b.output)}")
    for key, (x, y) in d.spec.items():
        lines.append(f"spec.{key}: {_show_json(x)} -> {_show_json(y)}")
    if d.train:
        lines.append("train:")
        lines.extend(f"  {path.removeprefix('train.')}: {_show_json(x)} -> {_show_json(y)}" for path, (x, y) in d.train.items())
    else:
        lines.append("train: no differences")
    return "\n".join(lines)


def _show_json(value) -> str:
    if value is NOT_SET:
        return repr(value)
    return json.dumps(value) if isinstance(value, (dict, list, str)) or value is None else _show(value)


# -- command -----------------------------------------------------------------------------
def diff(a, b, overrides=(), overrides_b=(), input=None) -> Diff:
    """Diff two specs (paths, dicts or Specs); `overrides` apply to both, `overrides_b` to B."""
    import netspec
    analysis_a = netspec.analyze(a, input=input, overrides=list(overrides))
    analysis_b = netspec.analyze(b, input=input, overrides=[*overrides, *overrides_b])
    return diff_analyses(analysis_a, analysis_b, str(a), str(b))


def add_command(sub, shape_type) -> None:
    p = sub.add_parser("diff", help="what changed between two specs: modules, shapes, params, MACs, train:",
                       description="Align two specs' module trees by path (unnamed layers by sequence) and print what "
                                   "was added, removed or changed, the totals and the train: section differences. "
                                   "Exits 0 whether or not they differ; 2 for invalid input.")
    p.add_argument("a", metavar="A", help="the spec before")
    p.add_argument("b", metavar="B", help="the spec after")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--brief", action="store_true", help="list only added, removed and re-configured modules (not the ones whose shape/cost changed as a consequence)")
    p.add_argument("--input", type=shape_type, metavar="C,H,W", help="analyse both at this input shape")
    p.add_argument("--set-b", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field of B only (what-if: diff a spec against itself with --set-b)")
    p.set_defaults(func=cmd_diff)


def cmd_diff(args) -> int:
    d = diff(args.a, args.b, overrides=args.set, overrides_b=args.set_b, input=args.input)
    print(json.dumps(d.as_dict()) if args.json else render(d, brief=args.brief))
    return 0
