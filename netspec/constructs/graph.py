"""`graph`: named nodes wired by reference — skips, merges, several inputs and outputs.

A graph is an ordered mapping of nodes. Each node is an item as in a chain (a layer, a
block call, a construct, or `body: [...]`) plus:
- `from:` what it reads: one reference, a list (a merge's inputs; a block's declared inputs
  by position), or a mapping (a block's inputs by name). Default: the node above (the
  graph's input for the first), so a graph without `from:` is a chain;
- `when:` false leaves the node out (a reference to it from another node is an error; an
  output naming it is left out too: torchvision's optional `aux` head);
- `name:` its module name (default: the node's id, or its position with `keys: index`;
  dotted names such as `inner_blocks.0.0` create the containers on the way).
A reference is `input` (the graph's input), a declared input (`inputs: [low, high]`), or a
node above: `id`, `id.key` (a field of a record the node returns), `id.child` (the output
of a named child of a chain: `body.layer3`, as torchvision's IntermediateLayerGetter). Only
nodes above can be named, so no cycle can be written. `outputs:` is what the graph returns:
a reference, a list or a mapping (a record: `{out: ..., aux: ...}`); default the last node.
`order:` registers some nodes' modules first (state_dict key order, when it differs from the
order the nodes run in).

Resolve checks that every reference names something above; the analysis resolves each
into an `Access` (an environment slot and the record fields read from it), in `Wiring`,
which the in-place planner, the memory model, the receptive walk and the builder share.
Values no later node reads are dropped as soon as their last reader has run.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, WrapValidator
from pydantic import BaseModel
from pydantic_core import InitErrorDetails, PydanticCustomError

from netspec.constructs.registry import Construct, register
from netspec.ir import Leaf, Node, Record, show

INPUT = "input"


# -- the node as written --------------------------------------------------------------------
class _Meta(BaseModel):
    """A node's own fields (beside its item)."""
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    source: str | list[str] | dict[str | int, str] | None = Field(None, alias="from")
    when: bool | Literal[0, 1] | str | None = None
    name: str | None = None


_META = TypeAdapter(_Meta)
NODE_FIELDS = ("from", "when", "name")


@dataclass
class NodeSpec:
    """A validated node: its item (a spec Item) or body (a list of Items), and its fields."""
    item: Any
    body: list | None
    source: Any
    when: Any
    name: Any


def _node(value, handler):
    """Validate a node: its `from`/`when`/`name`, then the rest as an item (errors keep their
    place in the document: the item's keys sit beside `from:`)."""
    if isinstance(value, str):
        return NodeSpec(handler(value), None, None, None, None)
    if not isinstance(value, dict):
        raise PydanticCustomError("graph_node", "a node is an item (a layer, block call or construct) with optional "
                                                "from/when/name, or `body: [...]`; got {kind}", {"kind": type(value).__name__})
    meta = {k: value[k] for k in NODE_FIELDS if k in value}
    rest = {k: v for k, v in value.items() if k not in meta}
    errors, parsed, item, body = [], None, None, None
    try:
        parsed = _META.validate_python({("source" if k == "from" else k): v for k, v in meta.items()})
    except ValidationError as e:
        errors += [{**err, "loc": (("from",) if err["loc"][0] == "source" else err["loc"][:1])} for err in e.errors()]
    if "else" in rest:
        errors.append({"type": "graph_node", "loc": ("else",), "msg": "a node's when: leaves the node out when false; "
                       "for a choice of items, put a `when:` item (with else) in its body", "input": rest["else"]})
        rest.pop("else")
    only_body = set(rest) == {"body"}
    try:
        if only_body:   # validated as a sequence's body; errors lose the `sequence` level
            body = handler({"sequence": {"body": rest["body"]}}).root.sequence.body
        elif not rest:
            raise PydanticCustomError("graph_node", "the node has no item: give a layer, block call or construct "
                                                    "beside its from/when/name, or body: [...]")
        else:
            item = handler(rest)
    except ValidationError as e:
        errors += [{**err, "loc": err["loc"][1:] if only_body else err["loc"]} for err in e.errors()]
    if errors:
        raise ValidationError.from_exception_data("graph node", [
            # without a context pydantic keeps the message as written: braces need no escaping
            InitErrorDetails(type=PydanticCustomError(err["type"], err["msg"]), loc=tuple(err["loc"]), input=err.get("input"))
            for err in errors])
    if isinstance(parsed.when, str) and not parsed.when.startswith("$"):
        raise PydanticCustomError("graph_when", "when takes true/false, 1/0 or a $variable/${expression}, got {v!r}",
                                  {"v": parsed.when})
    return NodeSpec(item, body, parsed.source, parsed.when, parsed.name)


# -- references and wiring ---------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """A reference as written: `head` (a node id, `input` or an input name) and the keys after it."""
    head: str
    keys: tuple = ()

    def __str__(self) -> str:
        return ".".join((self.head, *self.keys))


@dataclass(frozen=True)
class Access:
    """Where a reference's value lives: an environment slot (`input`, an input name, a node
    id, or `id:child.path` for a tapped child's output) and the record fields read from it."""
    slot: str
    keys: tuple = ()


@dataclass
class NodeWire:
    id: str
    source: Any             # Access, list[Access] or dict[str, Access]
    refs: list              # Access of each reference field (`like:`), passed after the source
    spread: bool            # the module takes its inputs as separate tensors (a merge)
    live: bool = True       # some output depends on it (else it never runs)
    grad: bool = True       # gradients flow through it (else it runs without autograd: a `like` reference)
    taps: dict = field(default_factory=dict)   # child path (tuple of names) -> slot of its output
    run: Any = None         # with taps: its ChainRun
    free: tuple = ()        # slots no later node reads: dropped once this node has run


@dataclass
class Wiring:
    inputs: tuple           # declared input names (none: one input, `input`)
    nodes: list
    outputs: Any            # Access, or a list / dict of them
    unused: tuple = ()      # slots bound before the nodes that no node reads


def gather(source, env):
    """The value a source form names in `env` (slot -> value): a tensor, list or dict."""
    if isinstance(source, Access):
        value = env[source.slot]
        for key in source.keys:
            value = value[key]
        return value
    if isinstance(source, list):
        return [gather(s, env) for s in source]
    return {k: gather(s, env) for k, s in source.items()}


def accesses(source) -> list:
    """The references of a source form (one, a list, or a mapping's values), as written
    (`Ref`) or resolved (`Access`)."""
    if isinstance(source, dict):
        return list(source.values())
    return list(source) if isinstance(source, list) else [source]


@register("graph")
class Graph(Construct):
    """Named nodes wired by reference (`from:`): skips, merges, several inputs and outputs."""

    slots = ("nodes",)
    numbered = ()     # every node is named (its id, its position with keys: index, or its own name)
    plain = ("outputs", "inputs", "order")   # references and names
    title = "Graph"

    nodes: dict[str, Any] = Field(min_length=1, description="Node id -> an item (layer, block call, construct) with optional `from:` (what it reads: a reference, a list, or a mapping of a block's inputs; default the node above), `when:` (false leaves the node out) and `name:` (its module name; dotted names make containers), or `body: [...]`.")
    outputs: str | list[str] | dict[str | int, str] | None = Field(None, description="What the graph returns: a reference, a list, or a mapping (a record, e.g. {out: head, aux: aux}); default the last node.")
    inputs: list[str] | None = Field(None, description="Names of the graph's inputs when it takes several (a record, or a node's from: list/mapping); default one input, `input`.")
    order: list[str] = Field(default_factory=list, description="Node ids whose modules register first, in this order (state_dict key order); the others follow in node order.")
    keys: Literal["name", "index"] = Field("name", description="Default module name of a node: its id ('name'), or its position ('index', Ultralytics' model.<k>).")

    @classmethod
    def slot_type(cls, slot, item):
        return Annotated[dict[str, Annotated[item, WrapValidator(_node)]], Field(min_length=1)]

    # -- resolve ---------------------------------------------------------------------------
    @classmethod
    def resolve(cls, f, r, path):
        inputs = None if f.inputs is None else [cls._id(r, n, path + ("inputs", i), what="input") for i, n in enumerate(f.inputs)]
        if inputs is not None and (not inputs or len(set(inputs)) != len(inputs)):
            raise r.error("inputs are one or more distinct names", path + ("inputs",))
        known = {INPUT: None, **{n: None for n in inputs or ()}}   # name -> document path of its node
        ids = list(f.nodes)
        where = {node_id: path + ("nodes", node_id) for node_id in ids}
        absent: dict[str, tuple] = {}
        children, settings = [], {"ids": [], "sources": [], "written": [], "refs": [], "paths": [], "inputs": inputs,
                                  "keys": r.validated(cls._adapter("keys"), r.value(f.keys, path + ("keys",)), path + ("keys",))}
        previous = INPUT
        for position, (node_id, spec) in enumerate(f.nodes.items()):
            npath = where[node_id]
            cls._id(r, node_id, npath, what="node", on_key=True)
            if node_id in known:
                raise r.error(f"node id {node_id!r} is taken by {'the graph input' if node_id == INPUT else 'an input'}", npath, on_key=True)
            if spec.when is not None:
                holds = r.value(spec.when, npath + ("when",))
                if not (isinstance(holds, bool) or (isinstance(holds, int) and holds in (0, 1))):
                    raise r.error(f"when needs true/false or 1/0, got {holds!r}", npath + ("when",))
                if not holds:
                    absent[node_id] = npath
                    continue
            ctx = (node_id, known, where, absent)
            source = cls._source(r, spec.source, npath + ("from",), ctx) if spec.source is not None else Ref(previous)
            item = cls._item(r, spec, npath, settings["keys"], position)
            refs = []
            if isinstance(item, Leaf):
                for fname in item.layer.refs:
                    refs.append(cls._ref(r, getattr(item.layer, fname), item.src + (fname,), ctx))
            children.append(item)
            settings["ids"].append(node_id)
            settings["sources"].append(source)
            settings["written"].append(spec.source is not None)
            settings["refs"].append(refs)
            settings["paths"].append(npath)
            known[node_id] = npath
            previous = node_id
        if not children:
            raise r.error("every node of the graph is left out by its when:", path + ("nodes",))
        ctx = (None, known, where, absent)
        settings["outputs"] = cls._outputs(r, f.outputs, path + ("outputs",), ctx, previous)
        settings["order"] = cls._order(r, f.order, path + ("order",), settings["ids"], ids, absent)
        settings["live"] = cls._live(r, settings)
        return r.node(cls, f, path, {"nodes": children}, settings)

    @staticmethod
    def _id(r, value, path, what: str, on_key: bool = False) -> str:
        if not isinstance(value, str) or not value or "." in value or r.name_problem(value):
            raise r.error(f"{what} name {value!r} must be a name (letters, digits, '_', '-'; no dots: a dot reads a "
                          f"field)", path, on_key=on_key)
        return value

    @classmethod
    def _item(cls, r, spec: NodeSpec, npath: tuple, keys: str, position: int):
        """The node's IR item, named: its `name:`, else the item's own name, else the id (or position)."""
        node_id = npath[-1]
        if spec.body is not None:
            nodes = r.items(spec.body, npath + ("body",))
        else:
            nodes = r.item(spec.item.root, npath, None)
        name = r.name(spec.name, npath + ("name",)) if spec.name is not None else None
        single = len(nodes) == 1 and not (isinstance(nodes[0], Node) and nodes[0].flat)
        if len(nodes) == 1 and isinstance(nodes[0], Node) and nodes[0].flat:
            if name is not None:
                raise r.error("a flat construct adds no module level, so it takes no name", npath + ("name",))
            return nodes[0]
        if single and nodes[0].name is not None and spec.body is None:
            if name is not None:
                raise r.error(f"the node's item is named {nodes[0].name!r} already; give one name", npath + ("name",))
            return nodes[0]
        default = str(position) if keys == "index" else node_id
        return r.group(nodes, name or default, npath)

    @classmethod
    def _ref(cls, r, text, path, ctx) -> Ref:
        node_id, known, where, absent = ctx
        if isinstance(text, str) and "${" in text:   # `from: lat${i}` in a block called per level
            text = r.text(text, path)
        if not isinstance(text, str) or not text or any(not part for part in text.split(".")):
            raise r.error(f"a reference is a name such as 'input', 'p3' or 'body.layer3', got {text!r}", path)
        head, *keys = text.split(".")
        if head in known:
            return Ref(head, tuple(keys))
        if head in absent:
            line = r.line_of(absent[head])
            raise r.error(f"{head!r} is left out by its when: ({line}); give this node the same when, or read "
                          f"another node", path)
        if head in where:
            below = f"below {node_id!r}" if node_id is not None else "below"
            raise r.error(f"{head!r} is defined {below} ({r.line_of(where[head])}); a node reads only the inputs "
                          f"and the nodes above it", path)
        from netspec.document.locate import did_you_mean   # noqa: the resolver's suggestion helper
        names = [n for n in known if n != node_id]
        raise r.error(f"unknown reference {head!r}{did_you_mean(head, names)}; names above: {', '.join(names)}", path)

    @classmethod
    def _source(cls, r, raw, path, ctx):
        if isinstance(raw, str):
            return cls._ref(r, raw, path, ctx)
        if isinstance(raw, list):
            if not raw:
                raise r.error("from: [] reads nothing; name one or more values", path)
            return [cls._ref(r, text, path + (i,), ctx) for i, text in enumerate(raw)]
        if not raw:
            raise r.error("from: {} reads nothing; name one or more values", path)
        return {str(k): cls._ref(r, text, path + (k,), ctx) for k, text in raw.items()}

    @classmethod
    def _outputs(cls, r, raw, path, ctx, last):
        absent = ctx[-1]
        if raw is None:
            return Ref(last)
        if isinstance(raw, str):
            return cls._ref(r, raw, path, ctx)
        # an output naming a node that `when:` left out is left out too (torchvision's aux)
        text = lambda raw, at: r.text(raw, at) if isinstance(raw, str) else raw  # noqa: E731
        present = lambda raw: not (isinstance(raw, str) and raw.split(".")[0] in absent)  # noqa: E731
        if isinstance(raw, list):
            refs = [(path + (i,), text(value, path + (i,))) for i, value in enumerate(raw)]
            out = [cls._ref(r, value, at, ctx) for at, value in refs if present(value)]
        else:
            refs = [(path + (k,), text(str(k), path + (k,)), text(value, path + (k,))) for k, value in raw.items()]
            out = {key: cls._ref(r, value, at, ctx) for at, key, value in refs if present(value)}
            if len(out) < len([1 for _, _, value in refs if present(value)]):
                keys = [key for _, key, _ in refs]
                twice = next(key for key in keys if keys.count(key) > 1)
                raise r.error(f"two outputs are named {twice!r}", path)
        if not out:
            raise r.error("every output names a node left out by its when:", path)
        return out

    @classmethod
    def _order(cls, r, raw, path, present: list, ids: list, absent) -> list[int]:
        listed = []
        for i, node_id in enumerate(raw):
            if node_id in absent:
                continue
            if node_id not in ids:
                from netspec.document.locate import did_you_mean
                raise r.error(f"order names no node {node_id!r}{did_you_mean(str(node_id), ids)}", path + (i,))
            if node_id in listed:
                raise r.error(f"order names {node_id!r} twice", path + (i,))
            listed.append(node_id)
        index = {node_id: i for i, node_id in enumerate(present)}
        first = [index[node_id] for node_id in listed]
        return first + [i for i in range(len(present)) if i not in first]

    @classmethod
    def _live(cls, r, s) -> list[bool]:
        """Which nodes some output depends on. The others never run (their modules are built,
        so weights still load): a warning says so."""
        read = {ref.head for ref in accesses(s["outputs"])}
        for i in range(len(s["ids"]) - 1, -1, -1):
            if s["ids"][i] in read:
                read |= {ref.head for ref in accesses(s["sources"][i]) + s["refs"][i]}
        for node_id, npath in zip(s["ids"], s["paths"]):
            if node_id not in read:
                r.warn(f"node {node_id!r} reaches no output of the graph, so it is never run (its modules are "
                       f"kept, with their parameters)", npath)
        return [node_id in read for node_id in s["ids"]]

    @classmethod
    def describe(cls, node):
        s = node.settings
        out = {}
        if s["inputs"]:
            out["inputs"] = s["inputs"]
        out["outputs"] = _text(s["outputs"])
        if s["order"] != sorted(s["order"]):
            out["order"] = [s["ids"][i] for i in s["order"]]
        if s["keys"] != "name":
            out["keys"] = s["keys"]
        if node.flat:
            out["flat"] = True
        return out

    @classmethod
    def notes(cls, node) -> list[str]:
        s = node.settings
        return [f"{node_id} <- {_text(source)}" + (f" (like {', '.join(map(str, refs))})" if refs else "")
                for node_id, source, refs in zip(s["ids"], s["sources"], s["refs"])]

    # -- analysis --------------------------------------------------------------------------
    @classmethod
    def infer(cls, node, a, m, value):
        s = node.settings
        env = {INPUT: value}
        env.update(cls._bind(node, a, m, value))
        analysed: dict[str, Any] = {}
        wires = []
        for i, child in enumerate(node.slots["nodes"]):
            npath = s["paths"][i]
            source = s["sources"][i]
            where = npath + ("from",) if s["written"][i] else npath
            x, access = cls._fetch(a, node, m, source, env, analysed, where)
            refs = [cls._fetch(a, node, m, ref, env, analysed, child.src + (fname,))
                    for ref, fname in zip(s["refs"][i], child.layer.refs if isinstance(child, Leaf) else ())]
            spread = isinstance(child, Leaf) and child.layer.takes_several()
            if spread:
                x = (x if isinstance(access, list) else [x]) + [v for v, _ in refs]
            labels = [str(ref) for ref in accesses(source) + s["refs"][i]]
            cm = a.module(child, m.path, x, labels)
            if not s["live"][i]:   # never run: it costs no MACs
                for module in _subtree(cm):
                    a.idle(module)
            a.adopt(m, "nodes", cm)
            env[s["ids"][i]] = cm.output
            analysed[s["ids"][i]] = cm
            wires.append(NodeWire(s["ids"][i], access, [acc for _, acc in refs], spread, live=s["live"][i]))
        out, outputs = cls._fetch(a, node, m, s["outputs"], env, analysed, node.src + ("outputs",))
        m.wiring = Wiring(tuple(s["inputs"] or ()), wires, outputs)
        read = cls._taps_and_frees(m.wiring)
        for wire in wires:
            if wire.taps:   # a chain read at its children stops after the last one read, unless its output is
                wire.run = chain_run(analysed[wire.id], wire.taps, wire.id in read)
                if not wire.run.whole:
                    _idle_tail(a, wire.run)
                    _resum(analysed[wire.id])
        m.macs = sum(child.macs for child in m.slots["nodes"])
        return _as_record(out)

    @classmethod
    def _bind(cls, node, a, m, value) -> dict:
        names = node.settings["inputs"]
        if not names:
            return {}
        if isinstance(value, list):
            if len(value) != len(names):
                raise a.fail(node, m.path, f"the graph takes {len(names)} inputs ({', '.join(names)}), got {len(value)}", "inputs")
            return dict(zip(names, value))
        if isinstance(value, Record) and not value.is_list:
            missing = [n for n in names if n not in value]
            if missing:
                raise a.fail(node, m.path, f"the graph takes inputs {', '.join(names)}, but the record it gets has no "
                                           f"{', '.join(missing)} (it has {', '.join(value) or 'nothing'})", "inputs")
            return {n: value[n] for n in names}
        raise a.fail(node, m.path, f"the graph takes inputs {', '.join(names)}; it gets {show(value)} (give from: a "
                                   f"list or a mapping of them)", "inputs")

    @classmethod
    def _fetch(cls, a, node, m, source, env, analysed, where):
        """(value, Access form) of a source form: references resolved against what is known."""
        if isinstance(source, list):
            pairs = [cls._fetch(a, node, m, s, env, analysed, where + (i,) if where[-1:] == ("from",) else where)
                     for i, s in enumerate(source)]
            return [v for v, _ in pairs], [acc for _, acc in pairs]
        if isinstance(source, dict):
            pairs = {k: cls._fetch(a, node, m, s, env, analysed, where + (k,) if where[-1:] == ("from",) else where)
                     for k, s in source.items()}
            return Record((k, v) for k, (v, _) in pairs.items()), {k: acc for k, (_, acc) in pairs.items()}
        value, slot, keys = env[source.head], source.head, list(source.keys)
        reached = analysed.get(source.head)   # the module whose children a key may name
        if keys and not isinstance(value, Record) and reached is not None:
            tap, tapped, reached = _tap(reached, keys)
            if tap:
                slot, value, keys = f"{source.head}:{'.'.join(tap)}", tapped, keys[len(tap):]
        for i, key in enumerate(keys):
            shown = ".".join((source.head, *source.keys[:len(source.keys) - len(keys) + i]))
            if not isinstance(value, Record):
                children = _child_names(reached) if i == 0 else []
                hint = f"; its named children: {', '.join(children)}" if children else \
                    " (a chain's children are read by name: body.layer3)" if i == 0 and shown == source.head else ""
                raise _fail(a, m, f"{source}: {shown!r} is a tensor {show(value)}, not a record: it has no "
                                  f"field {key!r}{hint}", where)
            if key not in value:
                from netspec.document.locate import did_you_mean
                raise _fail(a, m, f"{source}: {shown!r} has no field {key!r}{did_you_mean(key, value)} "
                                  f"(fields: {', '.join(value)})", where)
            value = value[key]
        return value, Access(slot, tuple(keys))

    @classmethod
    def _taps_and_frees(cls, w: Wiring) -> set[str]:
        """Which children each node exposes (taps), and after which node each slot is last read;
        returns the slots some node or output reads."""
        last: dict[str, int] = {}
        index = {wire.id: i for i, wire in enumerate(w.nodes)}
        reads = [(i, acc) for i, wire in enumerate(w.nodes) if wire.live for acc in accesses(wire.source) + wire.refs]
        for i, acc in reads + [(len(w.nodes), acc) for acc in accesses(w.outputs)]:
            last[acc.slot] = i
            if ":" in acc.slot:
                owner, path = acc.slot.split(":", 1)
                w.nodes[index[owner]].taps[tuple(path.split("."))] = acc.slot
        # gradients flow through a node that an output reads by data edges; one read only as a `like`
        # reference gives sizes: it runs without autograd (nothing kept for a backward that never comes)
        needed = {acc.slot.split(":")[0] for acc in accesses(w.outputs)}
        for wire in reversed(w.nodes):
            if wire.live and wire.id in needed:
                needed |= {acc.slot.split(":")[0] for acc in accesses(wire.source)}
        for wire in w.nodes:
            wire.grad = wire.id in needed
        frees: dict[int, list[str]] = {}
        for slot, i in last.items():
            if i < len(w.nodes):
                frees.setdefault(i, []).append(slot)
        for i, wire in enumerate(w.nodes):
            wire.free = tuple(frees.get(i, ()))
        produced = {INPUT, *w.inputs, *(n.id for n in w.nodes if n.live), *(s for n in w.nodes for s in n.taps.values())}
        w.unused = tuple(slot for slot in produced if slot not in last)
        return set(last)

    # -- in-place decisions ----------------------------------------------------------------
    @classmethod
    def _uses(cls, w: Wiring) -> dict[str, int]:
        uses: dict[str, int] = {}
        for wire in w.nodes:
            for acc in accesses(wire.source) + wire.refs if wire.live else ():
                uses[acc.slot] = uses.get(acc.slot, 0) + 1
        for acc in accesses(w.outputs):
            uses[acc.slot] = uses.get(acc.slot, 0) + 1
        return uses

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        """A node may overwrite its input only when that is one node's fresh output that
        nothing else reads (not another node, not an output, not a tap)."""
        w, children = m.wiring, m.slots["nodes"]
        uses = cls._uses(w)
        by_id = {wire.id: child for wire, child in zip(w.nodes, children)}
        for wire, child in zip(w.nodes, children):
            src = wire.source
            own = isinstance(src, Access) and not src.keys and src.slot in by_id and not wire.spread and \
                uses.get(src.slot) == 1 and p.fresh(by_id[src.slot])
            if wire.taps:
                _plan_chain(wire.run, p, own)
            else:
                p.visit(child, own)

    @classmethod
    def fresh_output(cls, m, p) -> bool:
        w = m.wiring
        out = w.outputs
        by_id = {wire.id: child for wire, child in zip(w.nodes, m.slots["nodes"])}
        return isinstance(out, Access) and not out.keys and out.slot in by_id and cls._uses(w)[out.slot] == 1 \
            and p.fresh(by_id[out.slot])

    # -- the memory model and the receptive walk ------------------------------------------
    @classmethod
    def walk(cls, m, x, run, seen, context=lambda wire: nullcontext()):
        """The graph run over the stages' own values: `run(child, value)` runs a node's
        module; a node whose children are read runs them one by one (`seen` is told of each
        chain it walked through); each node runs inside `context(its wire)`."""
        w = m.wiring
        env = {INPUT: x, **_bound(w.inputs, x)}
        for child, wire in zip(m.slots["nodes"], w.nodes):
            if not wire.live:
                continue
            xin = _node_input(wire.source, wire.refs, wire.spread, env)
            if isinstance(wire.source, dict) and not wire.spread:
                xin = Record(xin)
            with context(wire):
                if wire.taps:
                    captured = {}
                    y = _execute(wire.run, xin, run, seen, captured)
                    env.update(captured)
                else:
                    y = run(child, xin)
            env[wire.id] = y
        out = gather(w.outputs, env)
        return _as_record(out)

    @classmethod
    def autograd(cls, m, f, x):
        return cls.walk(m, x, f.module, lambda seq, y: None, lambda wire: nullcontext() if wire.grad else f.no_grad())

    @classmethod
    def receptive(cls, m, f, x):
        return cls.walk(m, x, f.module, f.seen)

    # -- build -----------------------------------------------------------------------------
    @classmethod
    def build(cls, m, b, owner):
        w, children = m.wiring, m.slots["nodes"]
        steps = [None] * len(children)
        for i in m.node.settings["order"]:   # the order the modules register in
            wire, child = w.nodes[i], children[i]
            steps[i] = _build_tapped(b, wire.run, owner) if wire.taps else b.step(child, owner)
        import torch
        program = tuple((step if wire.grad else NoGrad(step, torch.no_grad), wire.id, wire.source, tuple(wire.refs),
                         wire.spread, bool(wire.taps), wire.free) for step, wire in zip(steps, w.nodes) if wire.live)
        return GraphStep(program, w.inputs, w.outputs, w.unused)


def _fail(a, m, message: str, where: tuple):
    return a.source.error(f"{message} (module {m.path or '<root>'})", where)


def _text(source) -> str:
    if isinstance(source, Ref):
        return str(source)
    if isinstance(source, list):
        return "[" + ", ".join(map(str, source)) + "]"
    return "{" + ", ".join(f"{k}: {v}" for k, v in source.items()) + "}"


def _bound(names, x) -> dict:
    """The declared inputs' values from what the graph got: a list or tuple (by position) or a
    record."""
    if not names:
        return {}
    return dict(zip(names, x)) if isinstance(x, (list, tuple)) else {n: x[n] for n in names}


def _node_input(source, refs, spread: bool, env):
    """What a node's module gets: its source's value, or for a module taking several tensors
    (`spread`) the list of them, its references' values after its source's."""
    x = gather(source, env)
    if spread:
        x = (x if isinstance(source, list) else [x]) + [gather(acc, env) for acc in refs]
    return x


def _as_record(out):
    if isinstance(out, dict) and not isinstance(out, Record):
        return Record(out)
    if isinstance(out, list):
        return Record.of_list(out)
    return out


def _subtree(module) -> list:
    out, stack = [], [module]
    while stack:
        m = stack.pop()
        out.append(m)
        stack.extend(m.children)
    return out


def _chain(module) -> list | None:
    """The children of a chain (a sequence module; flat sequences inside it are seen through), or None."""
    if getattr(module.node, "kind", None) != "sequence":
        return None
    out = []
    for child in module.slots.get("body", []):
        if getattr(child.node, "kind", None) == "sequence" and child.node.flat:
            out.extend(_chain(child))
        else:
            out.append(child)
    return out


def _child_names(module) -> list[str]:
    children = _chain(module) if module is not None else None
    return [c.node.name for c in children] if children else []


def _tap(module, keys: list) -> tuple[list, Any, Any]:
    """The longest run of `keys` naming nested children of chains from `module`: that path,
    the last child's output and the last child ([], None and `module` when the first key
    names no child)."""
    path, value = [], None
    for key in keys:
        children = _chain(module)
        match = next((c for c in children or () if c.node.name == key), None)
        if match is None:
            break
        path.append(key)
        module, value = match, match.output
    return path, value, module


@dataclass
class ChainRun:
    """How a graph node whose chain's children are read runs: the children that run, in
    order (a prefix: after the last child read, a chain whose own output nobody reads
    stops), each with the run of its own children when they are read too, and the slot
    its output goes to when it is read."""
    module: Any
    steps: list             # (child, ChainRun | None, slot | None)
    whole: bool             # runs to its end: its own output is read


def chain_run(module, taps: dict, whole: bool, prefix: tuple = ()) -> ChainRun:
    children = _chain(module)
    under = lambda path: any(len(t) > len(path) and t[:len(path)] == path for t in taps)  # noqa: E731
    last = len(children) - 1 if whole else \
        max((i for i, c in enumerate(children) if prefix + (c.node.name,) in taps or under(prefix + (c.node.name,))),
            default=-1)
    steps = []
    for i, child in enumerate(children[:last + 1]):
        path = prefix + (child.node.name,)
        inner = chain_run(child, taps, whole or i < last or path in taps, path) if under(path) else None
        steps.append((child, inner, taps.get(path)))
    return ChainRun(module, steps, whole)


def _idle_tail(a, cr: ChainRun) -> None:
    """The analysis of a chain that stops early: what never runs costs no MACs."""
    for child in _chain(cr.module)[len(cr.steps):]:
        for module in _subtree(child):
            a.idle(module)
    for _, inner, _ in cr.steps:
        if inner is not None and not inner.whole:
            _idle_tail(a, inner)


def _resum(module) -> int:
    """A construct's MACs are its children's: again, after some were idled."""
    if module.children:
        module.macs = sum(_resum(child) for child in module.children)
    return module.macs


def _execute(cr: ChainRun, x, run, seen, captured: dict):
    """A chain run over the stages' values (`run(child, x)`; `seen` is told of each chain
    walked through to its end)."""
    for child, inner, slot in cr.steps:
        x = _execute(inner, x, run, seen, captured) if inner is not None else run(child, x)
        if slot is not None:
            captured[slot] = x
    if cr.whole:
        seen(cr.module, x)
    return x if cr.whole else None


def _plan_chain(cr: ChainRun, p, fresh: bool) -> bool:
    """In-place decisions inside a chain run: a child's output that is read elsewhere is
    never overwritten by the child after it. Children that never run are planned too (they
    are built)."""
    p.fresh_input[id(cr.module)] = fresh
    for child, inner, slot in cr.steps:
        fresh = _plan_chain(inner, p, fresh) if inner is not None else (p.visit(child, fresh), p.fresh(child))[1]
        if slot is not None:
            fresh = False
    for child in _chain(cr.module)[len(cr.steps):]:
        p.visit(child, False)
    return fresh


def _build_tapped(b, cr: ChainRun, owner) -> "TapStep":
    """Build a chain whose children's outputs are read (registered as `b.module` would: every
    child, run or not), and the step that runs it: (output, {slot: value})."""
    module = cr.module
    children = _chain(module)
    container = b.container(module, children)
    program, run = [], []
    for i, child in enumerate(children):
        ran = i < len(cr.steps)   # the steps are a prefix of the children
        _, inner_run, slot = cr.steps[i] if ran else (child, None, None)
        if inner_run is not None:
            inner = _build_tapped(b, inner_run, container)
            step, call = None, inner.call
        else:
            inner, step = None, b.step(child, container)
            call = step
        run.append(call)
        if ran:
            program.append((step, inner, slot))
    b.attach(owner, module, container, run)
    return TapStep(module.node.name, tuple(program), b.step_for(module.node.name))


class TapStep:
    """A chain run child by child, keeping the outputs that graph nodes read."""
    __slots__ = ("name", "program", "call")

    def __init__(self, name: str, program: tuple, call):
        self.name, self.program, self.call = name, program, call

    def __call__(self, owner, x):
        captured = {}
        return self.run(owner, x, captured), captured

    def run(self, owner, x, captured):
        module = self.call.module(owner)
        for step, inner, slot in self.program:
            x = inner.run(module, x, captured) if inner is not None else step(module, x)
            if slot is not None:
                captured[slot] = x
        return x   # (after a chain that stops early, a value nothing reads)


class NoGrad:
    """A node read only for its size (`like:`): it runs without autograd."""
    __slots__ = ("step", "no_grad")

    def __init__(self, step, no_grad):
        self.step, self.no_grad = step, no_grad

    def __call__(self, owner, x):
        with self.no_grad():
            return self.step(owner, x)


class GraphStep:
    """The graph's forward: nodes in order over an environment of named values, each value
    dropped once its last reader has run."""
    __slots__ = ("program", "inputs", "outputs", "unused")

    def __init__(self, program, inputs, outputs, unused):
        self.program, self.inputs, self.outputs, self.unused = program, tuple(inputs), outputs, unused

    def __call__(self, owner, x):
        env = {INPUT: x, **_bound(self.inputs, x)}
        for slot in self.unused:   # inputs no node reads
            env.pop(slot, None)
        for step, node_id, source, refs, spread, tapped, free in self.program:
            xin = _node_input(source, refs, spread, env)
            if tapped:
                y, captured = step(owner, xin)
                env.update(captured)
            else:
                y = step(owner, xin)
            env[node_id] = y
            for slot in free:
                del env[slot]
        return gather(self.outputs, env)
