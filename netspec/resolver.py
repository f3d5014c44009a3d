"""Spec -> Graph: expand blocks, repeats, variables and expressions into concrete layers.

Scoping is lexical: a block's body sees the spec's `vars` and the block's own
arguments, never its caller's variables; a repeat or dense body also sees its index
`$i`. Each leaf's fields are evaluated, then validated strictly against the layer
model, so an expression that yields 256.0 where an int is needed is an error.

Naming (so state_dict keys can match a reference implementation):
- an item's `name:` wins; otherwise its position in its container;
- a block call, concat branch or repeat copy whose body is one item *is* that item;
- an unnamed `repeat` is inlined into its parent; a named one nests; a `when` is always
  inlined (its chosen items take positions in the parent).
Must not import torch or analysis/build.
"""
from __future__ import annotations

import re

from pydantic import ValidationError

from netspec.errors import SpecError, format_path
from netspec.ir import Concat, Dense, Gate, Graph, Leaf, Node, Residual, Seq
from netspec.layers import REGISTRY
from netspec.spec import schema
from netspec.spec.expr import Budget, Expr, ExprError, interpolate, is_expr_text, parse
from netspec.spec.locate import did_you_mean, validation_error

MAX_LAYERS = 1_000_000  # leaves after expansion; a bigger spec is refused before it is built
_NAME_OK = re.compile(r"^[A-Za-z0-9_]+$")
# attributes of torch.nn.Module that a child module name would shadow (add_module refuses them)
_RESERVED = {"training", "forward", "train", "eval", "apply", "cuda", "cpu", "to", "type", "float",
             "double", "half", "bfloat16", "parameters", "buffers", "children", "modules", "state_dict",
             "load_state_dict", "named_parameters", "named_modules", "named_children", "zero_grad",
             "register_buffer", "register_parameter", "add_module", "extra_repr", "requires_grad_",
             "dump_patches", "call_super_init", "get_submodule", "get_parameter", "compile"}


def resolve(spec: schema.Spec, input_shape: tuple[int, ...] | None = None, max_layers: int = MAX_LAYERS) -> Graph:
    return _Resolver(spec, max_layers).graph(input_shape)


class _Resolver:
    def __init__(self, spec: schema.Spec, max_layers: int):
        self.spec = spec
        self.source = spec.source
        self.max_layers = max_layers
        self.leaves = 0
        self.budget = Budget()  # one bound on the range loops of all the spec's expressions
        self.globals: dict = {}
        for key, raw in spec.vars.items():
            self.globals[key] = self.value(raw, self.globals, ("vars", key), ())

    def graph(self, input_shape) -> Graph:
        children = self.named(self.items(self.spec.layers, self.globals, ("layers",), ()), ("layers",), ())
        shape = tuple(input_shape or self.spec.input)
        return Graph(self.spec.name, shape, Seq("", children, ("layers",)))

    # -- errors and values -----------------------------------------------------------
    def error(self, message: str, path: tuple, stack: tuple, **kw) -> SpecError:
        return self.source.error(message + self.context(stack), path, **kw)

    def context(self, stack: tuple) -> str:
        if not stack:
            return ""
        block, call_path = stack[-1]
        return f" (in block '{block}' used at {format_path(self.source.locate(call_path)[0])})"

    def value(self, raw, scope: dict, path: tuple, stack: tuple):
        """Evaluate `$...` (parsed or not) anywhere inside `raw`."""
        try:
            if isinstance(raw, Expr):
                return raw.evaluate(scope, self.budget)
            if is_expr_text(raw):
                return parse(raw).evaluate(scope, self.budget)
        except ExprError as e:
            raise self.error(str(e), path, stack) from None
        if isinstance(raw, list):
            return [self.value(v, scope, path + (i,), stack) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            return {k: self.value(v, scope, path + (k,), stack) for k, v in raw.items()}
        return raw

    def name(self, raw, scope: dict, path: tuple, stack: tuple) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, (str, Expr)):
            raise self.error(f"a module name is a string, got {type(raw).__name__} {raw!r}", path, stack)
        try:
            value = raw.evaluate(scope, self.budget) if isinstance(raw, Expr) else \
                interpolate(raw, scope, self.budget) if "${" in raw else raw
        except ExprError as e:
            raise self.error(str(e), path, stack) from None
        value = str(value)
        if not _NAME_OK.match(value) or value in _RESERVED:
            why = "is a torch.nn.Module attribute" if value in _RESERVED else "may use only letters, digits and _"
            raise self.error(f"module name {value!r} {why}", path, stack)
        return value

    def named(self, nodes: list[Node], path: tuple, stack: tuple, start: int = 0) -> list[Node]:
        """Give unnamed nodes their position as name; refuse duplicate names."""
        seen: dict[str, Node] = {}
        for i, node in enumerate(nodes, start):
            if node.name is None:
                node.name = str(i)
            if node.name in seen:
                raise self.error(f"two modules named {node.name!r} in one container", node.src, stack)
            seen[node.name] = node
        return nodes

    def count(self, n: int, path: tuple, stack: tuple) -> None:
        self.leaves += n
        if self.leaves > self.max_layers:
            raise self.error(f"the spec expands to more than {self.max_layers:,} layers; refused", path, stack)

    # -- items --------------------------------------------------------------------------
    def items(self, items: list, scope: dict, path: tuple, stack: tuple, extra: dict | None = None) -> list[Node]:
        out: list[Node] = []
        for i, item in enumerate(items):
            out.extend(self.item(item.root, scope, path + (i,), stack, extra))
        return out

    def item(self, item, scope: dict, path: tuple, stack: tuple, extra: dict | None) -> list[Node]:
        if isinstance(item, schema.BlockCall):
            return [self.call(item, scope, path, stack, extra)]
        if isinstance(item, schema.Repeat):
            return self.repeat(item, scope, path, stack)
        if extra:
            key = next(iter(extra))
            raise self.error(f"override {key!r} applies to a layer or block call, not a {type(item).__name__}", path, stack)
        if isinstance(item, schema.When):
            return self.when(item, scope, path, stack)
        if isinstance(item, schema.ResidualItem):
            return [self.residual(item.residual, scope, path + ("residual",), stack)]
        if isinstance(item, schema.ConcatItem):
            return [self.concat(item.concat, scope, path + ("concat",), stack)]
        if isinstance(item, schema.DenseItem):
            return [self.dense(item.dense, scope, path + ("dense",), stack)]
        if isinstance(item, (schema.SequenceItem, schema.GateItem)):
            key, cls = ("sequence", Seq) if isinstance(item, schema.SequenceItem) else ("gate", Gate)
            f = getattr(item, key)
            children = self.named(self.items(f.body, scope, path + (key, "body"), stack), path, stack)
            return [cls(self.name(f.name, scope, path + (key, "name"), stack), children, path + (key,))]
        return [self.leaf(item, scope, path, stack, None)]

    def leaf(self, item, scope: dict, path: tuple, stack: tuple, extra: dict | None) -> Leaf:
        (tag, fields), = ((k, getattr(item, k)) for k in type(item).model_fields)
        src = path + (tag,)
        raw = {k: getattr(fields, k) for k in fields.model_fields_set}
        if extra:
            for key in extra:
                if key not in REGISTRY[tag].model_fields:
                    raise self.error(f"override {key!r} is not a field of '{tag}'{did_you_mean(key, REGISTRY[tag].model_fields)}", src, stack)
            raw.update(extra)
        name = self.name(raw.pop("name", None), scope, src + ("name",), stack)
        values = {k: self.value(v, scope, src + (k,), stack) for k, v in raw.items()}
        try:
            layer = REGISTRY[tag].model_validate(values)
        except ValidationError as e:
            err = validation_error(e, self.source, prefix=src)
            err.message += self.context(stack)
            raise err from None
        self.count(1, src, stack)
        return Leaf(name, layer, src)

    def call(self, call: schema.BlockCall, scope: dict, path: tuple, stack: tuple, extra: dict | None) -> Node:
        src = path + (call.block,)
        block = self.spec.blocks.get(call.block)
        if block is None:
            known = [*REGISTRY, *self.spec.blocks, *schema.STRUCTURAL, *schema.INLINE_ITEMS]
            raise self.error(f"unknown layer type or block '{call.block}'{did_you_mean(call.block, known)}", src, stack, on_key=True)
        chain = [b for b, _ in stack]
        if call.block in chain:
            cycle = " -> ".join(chain[chain.index(call.block):] + [call.block])
            raise self.error(f"block '{call.block}' uses itself ({cycle})", src, stack, on_key=True)
        args = {**call.args, **(extra or {})}
        name = self.name(args.pop("name", None), scope, src + ("name",), stack)
        bound = {}
        for key in args:
            if key not in block.args:
                declared = ", ".join(block.args) or "none"
                raise self.error(f"block '{call.block}' has no argument '{key}'{did_you_mean(key, block.args)} (arguments: {declared})",
                                 src + (key,), stack, on_key=True)
        for key, default in block.args.items():
            if key in args:
                bound[key] = self.value(args[key], scope, src + (key,), stack)
            elif default == schema.REQUIRED:
                raise self.error(f"block '{call.block}' needs argument '{key}'", src, stack)
            else:
                bound[key] = self.value(default, self.globals, ("blocks", call.block, "args", key), stack)
        inner_stack = stack + ((call.block, path),)
        body_path = ("blocks", call.block, "body")
        inner = self.items(block.body, {**self.globals, **bound}, body_path, inner_stack)
        if len(inner) == 1:
            node = inner[0]
            node.name = name or node.name
            return node
        return Seq(name, self.named(inner, body_path, inner_stack), src)

    def when(self, item: schema.When, scope: dict, path: tuple, stack: tuple) -> list[Node]:
        holds = self.value(item.when, scope, path + ("when",), stack)
        if not (isinstance(holds, bool) or (isinstance(holds, int) and holds in (0, 1))):
            raise self.error(f"when needs true/false or 1/0, got {holds!r}", path + ("when",), stack)
        if holds:
            return self.items(item.body, scope, path + ("body",), stack)
        return self.items(item.otherwise, scope, path + ("else",), stack)

    def repeat(self, item: schema.Repeat, scope: dict, path: tuple, stack: tuple) -> list[Node]:
        n = self.value(item.repeat, scope, path + ("repeat",), stack)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise self.error(f"repeat needs a non-negative integer, got {n!r}", path + ("repeat",), stack)
        if n * len(item.body) > self.max_layers:
            raise self.error(f"repeat {n:,} expands to more than {self.max_layers:,} layers; refused", path + ("repeat",), stack)
        overrides = self.overrides(item, n, path, stack)
        copies: list[list[Node]] = []
        for i in range(n):
            inner_scope = {**scope, "i": i}
            copies.append(self.items(item.body, inner_scope, path + ("body",), stack, overrides.get(i)))
        if item.name is None:
            return [node for copy in copies for node in copy]
        children = [copy[0] if len(copy) == 1 else Seq(None, self.named(copy, path, stack), path) for copy in copies]
        name = self.name(item.name, scope, path + ("name",), stack)
        return [Seq(name, self.named(children, path + ("body",), stack), path)]

    def overrides(self, item: schema.Repeat, n: int, path: tuple, stack: tuple) -> dict[int, dict]:
        out = {}
        for key, args in item.overrides.items():
            where = path + ("overrides", key)
            index = int(key) if isinstance(key, int) or key.lstrip("-").isdigit() else None
            if index is None or not -n <= index < n:
                raise self.error(f"override index {key!r} is not a copy of this repeat (0..{n - 1}, or negative from the end)", where, stack, on_key=True)
            if len(item.body) != 1:
                raise self.error("overrides need a body of exactly one item (wrap several in a block)", where, stack, on_key=True)
            out[index % n] = args
        return out

    def residual(self, f: schema.ResidualFields, scope: dict, path: tuple, stack: tuple) -> Residual:
        body = self.named(self.items(f.body, scope, path + ("body",), stack), path + ("body",), stack)
        if isinstance(f.shortcut, str):
            shortcut = f.shortcut
        else:
            shortcut = self.group(self.items(f.shortcut, scope, path + ("shortcut",), stack), f.shortcut_name, path + ("shortcut",), stack)
        post = self.items(f.post, scope, path + ("post",), stack)
        self.named(body + post, path, stack)
        return Residual(self.name(f.name, scope, path + ("name",), stack), body, shortcut,
                        self.name(f.shortcut_name, scope, path + ("shortcut_name",), stack), post, path)

    def concat(self, f: schema.ConcatFields, scope: dict, path: tuple, stack: tuple) -> Concat:
        pairs = f.branches.items() if isinstance(f.branches, dict) else ((str(i), b) for i, b in enumerate(f.branches))
        branches = [self.group(self.items(items, scope, path + ("branches", key), stack), key, path + ("branches", key), stack)
                    for key, items in pairs]
        self.named(branches, path, stack)
        return Concat(self.name(f.name, scope, path + ("name",), stack), branches, path)

    def dense(self, f: schema.DenseFields, scope: dict, path: tuple, stack: tuple) -> Dense:
        n = self.value(f.repeat, scope, path + ("repeat",), stack)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_layers:
            raise self.error(f"dense repeat needs an integer from 1 to {self.max_layers:,}, got {n!r}", path + ("repeat",), stack)
        layers = []
        for i in range(n):
            copy = self.items(f.body, {**scope, "i": i}, path + ("body",), stack)
            layers.append(copy[0] if len(copy) == 1 else Seq(None, self.named(copy, path, stack), path))
        return Dense(self.name(f.name, scope, path + ("name",), stack), self.named(layers, path, stack), path)

    def group(self, nodes: list[Node], name: str, path: tuple, stack: tuple) -> Node:
        """A list of one node is that node, renamed; several form a sequence."""
        if len(nodes) == 1:
            nodes[0].name = name
            return nodes[0]
        return Seq(name, self.named(nodes, path, stack), path)
