"""Spec -> Graph: expand blocks, repeats, `when`, variables and expressions into concrete
layers inside constructs.

Scoping is lexical: a block's body sees the spec's `vars` and the block's own
arguments, never its caller's variables; a repeat or dense body also sees its index
`$i`. Each leaf's fields are evaluated, then validated strictly against the layer
model, so an expression that yields 256.0 where an int is needed is an error.
Constructs resolve their own slots (netspec.constructs) through a `_Scope`, the
resolver's face towards them.

Naming, so state_dict keys can match a reference implementation — every module name,
from every source, passes the one rule here:
- a name (an item's `name:`, a branch key, `shortcut_name`, a block call's or named
  repeat's `name`) is letters, digits, `_` and `-`, starts with a letter or digit (`_x`
  is torch's, `-1` an index in PATHs) and is not an attribute of torch.nn.Module
  (`forward`, `training`, ...): `name_problem` says why not. A dotted name
  (`inner_blocks.0.0`, each part by that rule) registers the module in containers made on
  the way, as a reference's ModuleLists hold theirs;
- unnamed modules are named by their position among the modules registered on the same
  module; names are unique there, including the children of `flat` constructs (which
  register on the enclosing module) and names a construct claims (an `auto` shortcut's):
  `_register` checks it, once per module, when the module's node is made;
- a block call, concat branch or repeat copy whose body is one item *is* that item;
- an unnamed `repeat` is inlined into its parent; a named one nests; a `when` is always
  inlined (its chosen items take positions in the parent).
Every item expanded counts against MAX_ITEMS, so no spec (nested repeats of empty
sequences, blocks calling blocks) can make resolve run without end.
Must not import torch or analysis/build.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError

from netspec.constructs import CONSTRUCTS
from netspec.constructs.sequence import Sequence
from netspec.errors import SpecError, format_path
from netspec.ir import Graph, Item, Leaf, Node
from netspec.layers import REGISTRY
from netspec.document import schema
from netspec.document.expr import Budget, Expr, ExprError, interpolate, is_expr_text, parse
from netspec.document.locate import did_you_mean, float_hint, unknown_item, validation_error

MAX_ITEMS = 1_000_000  # items expanded (layers, constructs, calls, copies); a bigger spec is refused
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_INDEX = re.compile(r"^-?[0-9]+$")
# Public attributes of the modules netspec builds (nn.Module, nn.Sequential): a child of that
# name would shadow one, and torch refuses it. tests/test_names.py keeps this equal to torch's.
RESERVED = frozenset({
    "T_destination", "add_module", "append", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extend", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "insert", "ipu", "load_state_dict",
    "modules", "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "pop",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory",
    "state_dict", "to", "to_empty", "train", "training", "type", "xpu", "zero_grad",
})


def resolve(spec: schema.Spec, input_shape: tuple[int, ...] | None = None, max_items: int = MAX_ITEMS) -> Graph:
    return _Resolver(spec, max_items).graph(input_shape)


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a module name, or None: the one name rule."""
    if not _NAME_OK.match(value):
        if value.startswith("_"):
            return "starts with '_' (reserved for torch.nn.Module's internals)"
        return "is empty" if not value else "may use only letters, digits, '_' and '-', and starts with a letter or digit"
    if value in RESERVED:
        return "is a torch.nn.Module attribute"
    return None


class _Resolver:
    def __init__(self, spec: schema.Spec, max_items: int):
        self.spec = spec
        self.source = spec.source
        self.max_items = max_items
        self.expanded = 0
        self.budget = Budget()  # one bound on the range loops of all the spec's expressions
        self.globals: dict = {}
        self.bodies = _Bodies()
        self.layers: dict[tuple, object] = {}  # (type, frozen values) -> validated layer (see leaf)
        top = _Scope(self, self.globals, ())
        for key, raw in spec.vars.items():
            self.globals[key] = top.value(raw, ("vars", key))

    def graph(self, input_shape) -> Graph:
        top = _Scope(self, self.globals, ())
        if self.spec.graph is not None:   # the model is one graph (its nodes register on the root)
            root = CONSTRUCTS["graph"].resolve(self.spec.graph, top, ("graph",))
            root.name = ""
        else:
            root = top.sequence("", top.items(self.spec.layers, ("layers",)), ("layers",))
        shape = tuple(input_shape or self.spec.input)
        return Graph(self.spec.name, shape, root)

    def count(self, scope: "_Scope", path: tuple) -> None:
        self.expanded += 1
        if self.expanded > self.max_items:
            raise scope.error(f"the spec expands to more than {self.max_items:,} items (layers, constructs, block calls, "
                              f"repeat copies); refused", path)


class _Scope:
    """Variables in scope and the block-call stack: what a construct's `resolve` sees as `r`."""

    def __init__(self, resolver: _Resolver, scope: dict, stack: tuple, args_at: dict | None = None):
        self.res = resolver
        self.vars = scope
        self.stack = stack          # ((block name, call path), ...), innermost last
        self.args_at = args_at or {}  # block argument -> path of the call's value, for blame

    @property
    def max_layers(self) -> int:
        return self.res.max_items

    def indexed(self, i: int) -> "_Scope":
        return _Scope(self.res, {**self.vars, "i": i}, self.stack, self.args_at)

    # -- errors and values -----------------------------------------------------------
    def error(self, message: str, path: tuple, **kw) -> SpecError:
        return self.res.source.error(message + self.context(), path, **kw)

    def context(self) -> str:
        if not self.stack:
            return ""
        block, call_path = self.stack[-1]
        return f" (in block '{block}' used at {format_path(self.res.source.locate(call_path)[0])})"

    def line_of(self, path: tuple) -> str:
        """'line N' of a document path (for messages that point at a second place)."""
        _, position = self.res.source.locate(path)
        return f"line {position[0]}" if position else format_path(path)

    def warn(self, message: str, path: tuple) -> None:
        from netspec.document.usage import warn
        self.res.bodies.warned(self.stack, message, path)
        warn(self.error(message, path))

    @staticmethod
    def name_problem(value: str) -> str | None:
        return name_problem(value)

    def value(self, raw, path: tuple):
        """Evaluate `$...` (parsed or not) anywhere inside `raw`."""
        try:
            if isinstance(raw, Expr):
                return raw.evaluate(self.vars, self.res.budget)
            if is_expr_text(raw):
                return parse(raw).evaluate(self.vars, self.res.budget)
        except ExprError as e:
            raise self.error(str(e), path) from None
        if isinstance(raw, list):
            return [self.value(v, path + (i,)) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            return {k: self.value(v, path + (k,)) for k, v in raw.items()}
        return raw

    def definition(self, name: str):
        """What variable `name` is bound to, as written: a block argument as passed or its
        default, or a spec variable (None for a repeat's index)."""
        if name in self.args_at:
            return self.res.source.value_at(self.args_at[name])
        block = self.res.spec.blocks[self.stack[-1][0]] if self.stack else None
        if block is not None and name in block.args:
            return block.args[name]
        return self.res.spec.vars.get(name)

    def validated(self, adapter, value, path: tuple):
        try:
            return adapter.validate_python(value)
        except ValidationError as e:
            raise validation_error(e, self.res.source, prefix=path) from None

    def text(self, raw, path: tuple) -> str:
        """A string field that may embed `${...}` (a module name, a graph reference, an output key),
        or an expression standing for the whole of it."""
        try:
            return str(raw.evaluate(self.vars, self.res.budget) if isinstance(raw, Expr) else
                       interpolate(raw, self.vars, self.res.budget) if "${" in raw else raw)
        except ExprError as e:
            raise self.error(str(e), path) from None

    def name(self, raw, path: tuple, on_key: bool = False) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, (str, Expr)):
            raise self.error(f"a module name is a string, got {type(raw).__name__} {raw!r}", path)
        value = self.text(raw, path)
        for part in value.split("."):   # a dotted name: each part is a module name
            problem = name_problem(part)
            if problem:
                shown = repr(value) if part == value else f"{value!r}: part {part!r}"
                raise self.error(f"module name {shown} {problem}", path, on_key=on_key)
        return value

    def flat(self, f, path: tuple) -> bool:
        return self.validated(f._adapter("flat"), self.value(f.flat, path + ("flat",)), path + ("flat",))

    # -- nodes ------------------------------------------------------------------------
    def node(self, cls, f, path: tuple, slots: dict, settings: dict) -> Node:
        """The IR node of construct `cls` (fields `f`): a module of its own, or `flat`."""
        flat = self.flat(f, path)
        name = self.name(f.name, path + ("name",))
        if flat and name is not None:
            raise self.error("a flat construct adds no module level, so it takes no name (name its children)", path + ("name",))
        node = Node(cls.tag, name, slots, path, cls, settings, flat)
        if not flat:
            self.register(node)
        return node

    def sequence(self, name: str | None, nodes: list, src: tuple, flat: bool = False) -> Node:
        node = Node("sequence", name, {"body": nodes}, src, Sequence, {}, flat)
        if not flat:
            self.register(node)
        return node

    def group(self, nodes: list, name: str | None, path: tuple):
        """Items that form one module: one (non-flat) item is that item, renamed if a
        name is given; several (or a flat construct) form a sequence."""
        if len(nodes) == 1 and not (isinstance(nodes[0], Node) and nodes[0].flat):
            if name is not None:
                nodes[0].name = name
            return nodes[0]
        return self.sequence(name, nodes, path)

    def register(self, owner: Node) -> None:
        """Name the unnamed modules registered on `owner` by position, and refuse two
        modules of one name there (flat constructs' children register on `owner` too)."""
        seen: dict[str, tuple] = {}
        containers: dict[str, tuple] = {}   # the containers dotted names make, and where
        position = 0

        def claim(name: str, src: tuple) -> None:
            parts = name.split(".")
            prefixes = [".".join(parts[:i]) for i in range(1, len(parts))]
            clash = name if name in seen or name in containers else next((p for p in prefixes if p in seen), None)
            if clash is not None:
                other = seen.get(clash) or containers.get(clash)
                first = format_path(self.res.source.locate(other)[0]) or "the top level"
                other = f"the container of dotted names at {first}" if clash not in seen else first
                raise self.error(f"two modules named {clash!r} in one module (the other: {other})", src)
            for prefix in prefixes:
                containers.setdefault(prefix, src)
            seen[name] = src

        def visit(node: Node) -> None:
            nonlocal position
            for slot in node.construct.slots:
                numbered = slot in node.construct.numbered
                for child in node.slots[slot]:
                    if isinstance(child, Node) and child.flat:
                        visit(child)
                        continue
                    if numbered:
                        if child.name is None:
                            child.name = str(position)
                        position += 1
                    claim(child.name, child.src + (() if isinstance(child, Node) else ("name",)))
            for name in node.construct.claimed_names(node):
                claim(name, node.src)

        visit(owner)

    # -- items --------------------------------------------------------------------------
    def items(self, items: list, path: tuple, extra: dict | None = None) -> list:
        out: list = []
        for i, item in enumerate(items):
            out.extend(self.item(item.root, path + (i,), extra))
        return out

    def item(self, item, path: tuple, extra: dict | None) -> list:
        self.res.count(self, path)
        if isinstance(item, schema.BlockCall):
            return [self.call(item, path, extra)]
        if isinstance(item, schema.Repeat):
            return self.repeat(item, path)
        if extra:
            key = next(iter(extra))
            raise self.error(f"override {key!r} applies to a layer or block call, not a {type(item).__name__}", path)
        if isinstance(item, schema.When):
            return self.when(item, path)
        tag = schema.construct_of(item)
        if tag is not None:
            return [CONSTRUCTS[tag].resolve(getattr(item, tag), self, path + (tag,))]
        return [self.leaf(item, path, None)]

    def leaf(self, item, path: tuple, extra: dict | None) -> Leaf:
        tag = schema.layer_of(item)
        fields = getattr(item, tag)
        src = path + (tag,)
        raw = {k: getattr(fields, k) for k in fields.model_fields_set}
        if extra:
            for key in extra:
                if key not in REGISTRY[tag].model_fields:
                    raise self.error(f"override {key!r} is not a field of '{tag}'{did_you_mean(key, REGISTRY[tag].model_fields)}", src)
            raw.update(extra)
        name = self.name(raw.pop("name", None), src + ("name",))
        values = {k: self.value(v, src + (k,)) for k, v in raw.items()}
        key = (tag, _frozen(values))  # layers are frozen models: one per distinct type and values
        layer = self.res.layers.get(key)
        if layer is None:
            try:
                layer = self.res.layers[key] = REGISTRY[tag].model_validate(values)
            except ValidationError as e:
                raise self.blame(e, raw, src) from None
        return Leaf(name, layer, src)

    def blame(self, e: ValidationError, raw: dict, src: tuple) -> SpecError:
        """A leaf field that failed validation; when its value is a block argument the
        call passed (`out: $c`), the error points at the call, naming the block."""
        err = validation_error(e, self.res.source, prefix=src)
        first = e.errors()[0]
        loc = first["loc"]
        value = raw.get(loc[0]) if loc else None
        if isinstance(value, Expr) and first["type"] in ("int_type", "int_from_float") and isinstance(first["input"], float):
            err.message += float_hint(value, self.definition)
        passed = [self.args_at[n] for n in sorted(value.names()) if n in self.args_at] if isinstance(value, Expr) else []
        if not passed:
            err.message += self.context()
            return err
        block, _ = self.stack[-1]
        inside = format_path(self.res.source.locate(src + (loc[0],))[0])
        return self.res.source.error(f"{err.message} (passed to block '{block}' as '{passed[0][-1]}', used at {inside})",
                                     passed[0])

    def call(self, call: schema.BlockCall, path: tuple, extra: dict | None):
        src = path + (call.block,)
        spec = self.res.spec
        block = spec.blocks.get(call.block)
        if block is None:
            raise self.error(unknown_item(call.block, spec.blocks), src, on_key=True)
        chain = [b for b, _ in self.stack]
        if call.block in chain:
            cycle = " -> ".join(chain[chain.index(call.block):] + [call.block])
            raise self.error(f"block '{call.block}' uses itself ({cycle})", src, on_key=True)
        args = {**call.args, **(extra or {})}
        name = self.name(args.pop("name", None), src + ("name",))
        for key in args:
            if key not in block.args:
                declared = ", ".join(block.args) or "none"
                raise self.error(f"block '{call.block}' has no argument '{key}'{did_you_mean(key, block.args)} (arguments: {declared})",
                                 src + (key,), on_key=True)
        bound, args_at = {}, {}
        top = _Scope(self.res, self.res.globals, self.stack)
        for key, default in block.args.items():
            if key in args:
                bound[key] = self.value(args[key], src + (key,))
                args_at[key] = src + (key,)
            elif default == schema.REQUIRED:
                raise self.error(f"block '{call.block}' needs argument '{key}'", src)
            else:
                bound[key] = top.value(default, ("blocks", call.block, "args", key))
        # the body's scope; its variables (the spec's vars and the arguments) are filled in
        # by expand for a body it resolves, not for one it has resolved before
        inner = _Scope(self.res, None, self.stack + ((call.block, path),), args_at)
        body_path = ("blocks", call.block, "body")
        nodes = self.res.bodies.expand(inner, call.block, block, bound)
        if len(nodes) == 1 and not (isinstance(nodes[0], Node) and nodes[0].flat):
            return inner.group(nodes, name, body_path)
        return inner.sequence(name, nodes, src)

    def when(self, item: schema.When, path: tuple) -> list:
        holds = self.value(item.when, path + ("when",))
        if not (isinstance(holds, bool) or (isinstance(holds, int) and holds in (0, 1))):
            raise self.error(f"when needs true/false or 1/0, got {holds!r}", path + ("when",))
        if holds:
            return self.items(item.body, path + ("body",))
        return self.items(item.otherwise, path + ("else",))

    def repeat(self, item: schema.Repeat, path: tuple) -> list:
        n = self.value(item.repeat, path + ("repeat",))
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise self.error(f"repeat needs a non-negative integer, got {n!r}", path + ("repeat",))
        if n * len(item.body) > self.res.max_items:
            raise self.error(f"repeat {n:,} expands to more than {self.res.max_items:,} layers; refused", path + ("repeat",))
        overrides = self.overrides(item, n, path)
        copies = [self.indexed(i).items(item.body, path + ("body",), overrides.get(i)) for i in range(n)]
        if item.name is None:
            return [node for copy in copies for node in copy]
        name = self.name(item.name, path + ("name",))
        return [self.sequence(name, [self.group(copy, None, path) for copy in copies], path)]

    def overrides(self, item: schema.Repeat, n: int, path: tuple) -> dict[int, dict]:
        out = {}
        for key, args in item.overrides.items():
            where = path + ("overrides", key)
            index = key if isinstance(key, int) else int(key) if _INDEX.match(key) else None
            if index is None or not -n <= index < n:
                raise self.error(f"override index {key!r} is not a copy of this repeat (0..{n - 1}, or negative from the end)", where, on_key=True)
            if len(item.body) != 1:
                raise self.error("overrides need a body of exactly one item (wrap several in a block)", where, on_key=True)
            out[index % n] = args
        return out


class _Bodies:
    """Block bodies resolved once per distinct argument set. A body sees only the spec's
    vars and its block's arguments (lexical scope), so one argument set always resolves to
    the same nodes: EfficientNet and RegNet call a block ~1,000 times with a few dozen
    argument sets. A use after the first gets copies of the body's top-level nodes (the
    caller names those); what lies below them is shared, since resolve never changes a
    node once the node holding it is made. The body's warnings are given again, each
    placed as at that use. A stored body is used only where resolving it again would
    succeed too: it calls no block on the current call stack (a cycle is an error) and its
    items and range-loop work fit what is left of the spec's bounds; otherwise it is
    resolved again, to raise that error at its place. Errors are never stored: a body that
    fails, fails on its first call with those arguments."""

    def __init__(self):
        self.done: dict[tuple, _Body] = {}
        self.resolving: list[_Body] = []  # the bodies being resolved, innermost last

    def expand(self, inner: _Scope, block_name: str, block, bound: dict) -> list:
        res = inner.res
        key = (block_name, _frozen(bound))
        hit = self.done.get(key)
        if hit is not None and not hit.blocks.intersection(b for b, _ in inner.stack) \
                and res.expanded + hit.items <= res.max_items and hit.steps <= res.budget.left:
            res.expanded += hit.items
            res.budget.left -= hit.steps
            self._called(hit.blocks | {block_name})
            for frames, message, path in hit.warnings:
                _Scope(res, None, inner.stack + frames).warn(message, path)
            return [_unnamed_copy(node) for node in hit.nodes]
        expanded, left = res.expanded, res.budget.left
        body = _Body([], set(), 0, 0, [], len(inner.stack))
        inner.vars = {**res.globals, **bound}
        self.resolving.append(body)
        try:
            nodes = inner.items(block.body, ("blocks", block_name, "body"))
        finally:
            self.resolving.pop()
        self._called(body.blocks | {block_name})
        body.nodes = [_unnamed_copy(node) for node in nodes]
        body.items, body.steps = res.expanded - expanded, left - res.budget.left
        self.done[key] = body
        return nodes

    def _called(self, blocks: set[str]) -> None:
        if self.resolving:
            self.resolving[-1].blocks |= blocks

    def warned(self, stack: tuple, message: str, path: tuple) -> None:
        """A warning given while bodies are resolved: each keeps it, with the call frames
        below its own call (its own call's place is where it is used)."""
        for body in self.resolving:
            body.warnings.append((stack[body.depth:], message, path))


@dataclass
class _Body:
    nodes: list        # as resolved, before the caller names them
    blocks: set[str]   # blocks it calls, directly or not
    items: int         # items it expands (MAX_ITEMS)
    steps: int         # range-loop operations its expressions spend (expr.Budget)
    warnings: list     # (call frames below its call, message, path), in order
    depth: int         # the length of the call stack with its own call


def _frozen(value):
    """A cache key that tells apart every two values a body could tell apart: 1, 1.0 and
    True (equal in Python), 0.0 and -0.0 (`${x}` in a name), and mapping order."""
    if isinstance(value, dict):
        return dict, tuple([(k, _frozen(v)) for k, v in value.items()])
    if isinstance(value, list):
        return list, tuple([_frozen(v) for v in value])
    kind = type(value)
    return kind, repr(value) if kind is float else value


def _unnamed_copy(node: Item) -> Item:
    """A copy of what the caller may still name: the node, and a flat node's children
    (they register on the caller's module); the children of any other node are named
    already and are shared. Layers are frozen models: shared."""
    if isinstance(node, Leaf):
        return Leaf(node.name, node.layer, node.src)
    slots = {slot: [_unnamed_copy(c) for c in children] for slot, children in node.slots.items()} if node.flat \
        else node.slots
    return Node(node.kind, node.name, slots, node.src, node.construct, node.settings, node.flat)
