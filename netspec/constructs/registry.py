"""The construct registry: the one base class every structural construct derives from.

A construct (sequence, residual, concat, split, dense, gate) is one class registered
under a tag, as a leaf layer is. It owns, in one file:
- its fields (the schema; child lists are *slots*, typed by `slot_type`),
- `resolve`: how its slots resolve into IR children (default: each slot's items),
- `infer`: its shape rule over its children's analysed shapes (and what it adds),
- `plan`: which children may overwrite their input (in-place execution, decided statically),
- `autograd`: how it joins its children's tensors, for the static memory model,
- `receptive`: how it joins its children's receptive fields (netspec.receptive),
- `build`: the forward wiring, a *step* `step(owner, x) -> y` (torch only inside build),
- `describe`: its settings as printed by `resolve`/`diff`.
Nothing else in netspec spells out individual constructs: the spec schema, JSON Schema,
resolver, analysis, builder, diff, PATH addressing and error suggestions iterate over
`CONSTRUCTS`.

Every construct takes `name` (its module name) and `flat` (add no module level: its
children register on the enclosing module, so a reference's keys such as Fire's
`features.3.expand1x1.weight` or ViT's `encoder_layer_0.ln_1.weight` come out exactly).

Stages pass themselves in as a context, so this package imports no later stage:
`r` (resolver), `a` (analysis walker), `p` (in-place planner), `b` (builder); see
their methods there.
Must not import torch at module level, nor netspec.document, resolver, analysis or builder.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from netspec.ir import Node

CONSTRUCTS: dict[str, type["Construct"]] = {}


class Construct(BaseModel):
    """Base of every structural construct."""

    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)

    tag: ClassVar[str] = ""
    # fields holding item lists (in registration order), and the ones whose unnamed
    # children are named by position (a residual's `shortcut` is named by shortcut_name)
    slots: ClassVar[tuple[str, ...]] = ("body",)
    numbered: ClassVar[tuple[str, ...]] = ("body",)
    title: ClassVar[str] = ""  # the built module's class name in print(model)
    # fields written as they are, never as `$expressions` (a graph's references and names)
    plain: ClassVar[tuple[str, ...]] = ()
    aliases: ClassVar[tuple[str, ...]] = ()  # other names people write for it (as a layer's aliases)

    name: str | None = Field(None, description="Module name (a state_dict key segment); default: position in its container.")
    flat: bool = Field(False, description="Add no module level: the children register on the enclosing module "
                                          "(torchvision's Fire, Inception and EncoderBlock keys).")

    # -- schema -------------------------------------------------------------------------
    @classmethod
    def slot_type(cls, slot: str, item: Any):
        """The annotation of a slot field, given the spec's Item type (schema.py fills it in)."""
        return list[item]

    # -- resolve ------------------------------------------------------------------------
    @classmethod
    def resolve(cls, f: "Construct", r, path: tuple) -> Node:
        """IR node for validated fields `f` at document path `path` (default: every slot's
        items resolved in order, other fields evaluated)."""
        slots = {slot: r.items(getattr(f, slot), path + (slot,)) for slot in cls.slots}
        return r.node(cls, f, path, slots, cls.evaluate(f, r, path))

    @classmethod
    def evaluate(cls, f: "Construct", r, path: tuple) -> dict:
        """The fields other than slots, name and flat, with expressions evaluated and the
        result validated strictly against the field's own type."""
        out = {}
        for key, info in cls.model_fields.items():
            if key in cls.slots or key in ("name", "flat"):
                continue
            raw = getattr(f, key)
            value = r.value(raw, path + (key,))
            if value is not raw:
                value = r.validated(cls._adapter(key), value, path + (key,))
            out[key] = value
        return out

    @classmethod
    def claimed_names(cls, node: Node) -> list[str]:
        """Module names the construct may register besides its slot children (an `auto`
        shortcut's projection): reserved in the enclosing namespace at resolve time."""
        return []

    # -- analysis and build ---------------------------------------------------------------
    @classmethod
    def infer(cls, node: Node, a, m, shape: tuple) -> tuple:
        raise NotImplementedError(f"construct '{cls.tag}' has no shape rule")

    @classmethod
    def plan(cls, m, p, fresh: bool) -> None:
        """In-place decisions for the children (netspec.analysis._Planner): which get a fresh
        input (`p.chain(children, fresh)`, `p.visit(child, fresh)`). Default: every slot's
        children on the construct's shared input, none in place at its start."""
        for slot in cls.slots:
            for child in m.slots.get(slot, []):
                p.visit(child, False)

    @classmethod
    def fresh_output(cls, m, p) -> bool:
        """Is the output a new tensor that nothing (this construct's backward included) reads
        afterwards? Then the next layer may overwrite it in place. torch.cat, a sum and a
        product all make new tensors."""
        return True

    @classmethod
    def registration(cls, node: Node) -> tuple[str, ...]:
        """Slots in the order their modules register (state_dict key order)."""
        return cls.slots

    @classmethod
    def build(cls, m, b, owner):
        """The step that runs m on `owner` (children built with `b.step(child, owner)`, in
        registration order; `b.runs_inplace(m)` is the analysis' in-place decision)."""
        raise NotImplementedError(f"construct '{cls.tag}' has no builder")

    @classmethod
    def autograd(cls, m, f, x):
        """Replay the construct over size-only tensors (netspec.autograd): run the children
        (`f.module`, `f.chain`) and join them (`f.add`, `f.cat`, `f.mul`); returns the output."""
        raise NotImplementedError(f"construct '{cls.tag}' has no autograd rule")

    @classmethod
    def receptive(cls, m, f, x):
        """The receptive field of the output from the input's (netspec.receptive): run the
        children (`f.module`, `f.chain`) and join fields that meet (`f.join`). Default: the
        slots' children one after another, as a sequence."""
        for slot in cls.slots:
            x = f.chain(m.slots.get(slot, []), x)
        return x

    @classmethod
    def describe(cls, node: Node) -> dict:
        """Settings that differ from their defaults, for `resolve` and `diff`."""
        out = {key: value for key, value in node.settings.items() if value != cls.model_fields[key].default}
        if node.flat:
            out["flat"] = True
        return out

    @classmethod
    def notes(cls, node: Node) -> list[str]:
        """One line per child for `resolve`, beside its name (a graph node's `from`), or []."""
        return []

    @classmethod
    def _adapter(cls, key: str) -> TypeAdapter:
        """A strict validator for one field (cached): an evaluated `$expression` is checked
        against the field's type as a literal would be."""
        base = CONSTRUCTS[cls.tag]  # the registered class, not a spec variant (whose fields take $...)
        if (base, key) not in _ADAPTERS:
            info = base.model_fields[key]
            annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            _ADAPTERS[base, key] = TypeAdapter(annotation, config=ConfigDict(strict=True))
        return _ADAPTERS[base, key]


_ADAPTERS: dict[tuple, TypeAdapter] = {}


def register(tag: str, aliases: tuple[str, ...] = ()):
    """Class decorator: add a construct under `tag` (and its other names). A duplicate tag is a bug."""
    def add(cls: type[Construct]) -> type[Construct]:
        if tag in CONSTRUCTS:
            raise RuntimeError(f"construct tag {tag!r} registered twice ({CONSTRUCTS[tag].__name__}, {cls.__name__})")
        cls.tag = tag
        cls.aliases = aliases
        cls.title = cls.title or cls.__name__
        CONSTRUCTS[tag] = cls
        return cls
    return add


class Chain:
    """Steps applied one after another on one owner: the wiring of every item list."""

    __slots__ = ("steps",)

    def __init__(self, steps):
        self.steps = tuple(steps)

    def __call__(self, owner, x):
        for step in self.steps:
            x = step(owner, x)
        return x
