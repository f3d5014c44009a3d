"""The spec language as pydantic models: `Spec`, `Block`, the `Item` union, and its
JSON Schema (`netspec schema`).

Three families of models:
- the small fixed grammar of macros, written here: block calls, `repeat`, `when`
  (they expand into items; they are not modules);
- leaf layers, generated from `netspec.layers.REGISTRY`, and structural constructs,
  generated from `netspec.constructs.CONSTRUCTS`: each model gets a "spec variant"
  whose fields also accept a `$expression` (parsed here, evaluated in resolve, then
  re-validated strictly against the model's own field), and whose child slots hold Items.

Every model is strict (`"64"` is not an int, `no` is not `false`) and closed (unknown
fields are errors). Must not import torch or any later stage.
"""
from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, RootModel, Tag,
                      create_model, field_validator, model_validator)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError, core_schema
from typing_extensions import TypeAliasType

from netspec.constructs import CONSTRUCTS
from netspec.layers import REGISTRY
from netspec.document.expr import ExprError, parse

EXPR_JSON = {"type": "string", "pattern": r"^\$", "description": "A reference `$name` or an expression `${...}`."}
REQUIRED = "required"  # block argument without a default


class ExprOr:
    """`Annotated[T, ExprOr()]`: the field takes a T or a `$...` expression."""

    def __get_pydantic_core_schema__(self, source, handler):
        inner = handler(source)

        def validate(value, validate_inner):
            if isinstance(value, str) and value.startswith("$"):
                try:
                    return parse(value)
                except ExprError as e:
                    raise PydanticCustomError("expression", "bad expression: {reason}", {"reason": str(e)})
            return validate_inner(value)
        return core_schema.no_info_wrap_validator_function(validate, inner)

    def __get_pydantic_json_schema__(self, schema, handler):
        return {"anyOf": [handler(schema), EXPR_JSON]}


class Closed(BaseModel):
    # validators are built when first used (netspec check of a spec builds only what it needs)
    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)


class PerTag(Mapping):
    """tag -> model, each made the first time it is asked for: a document that uses a
    few of the layer types and constructs pays for those only (`netspec check` starts
    fast). Its keys are all the tags; iterating values or items makes every model."""

    def __init__(self, tags, make):
        self._tags, self._make, self._made = tags, make, {}

    def __getitem__(self, tag):
        model = self._made.get(tag)
        if model is None:
            if tag not in self._tags:
                raise KeyError(tag)
            model = self._made[tag] = self._make(tag)
        return model

    def __iter__(self):
        return iter(self._tags)

    def __len__(self):
        return len(self._tags)

    def __contains__(self, tag):
        return tag in self._tags


class BuiltOnUse:
    """`Annotated[Any, BuiltOnUse(get_model)]`: a field validated by the model that
    `get_model()` returns, made and built the first time a document has such a value.
    Errors, JSON Schema and suggestions (locate.py) are the model's own."""

    def __init__(self, get_model):
        self.model = get_model

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(lambda value: self.model().model_validate(value),
                                                            metadata={"built_on_use": True})

    def __get_pydantic_json_schema__(self, schema, handler):
        # the model's schema as if it stood here (a definition of its own, then a $ref to it)
        return handler.generate_json_schema.generate_inner(self.model().__pydantic_core_schema__)


# resolve checks every module name by one rule (netspec.resolver.name_problem), with a
# message that says why; the pattern is only a hint for editors
Name = Annotated[str, Field(json_schema_extra={"pattern": r"^([A-Za-z0-9_.-]|\$\{[^}]*\})+$"},
                            description="Module name (a state_dict key segment; dots make containers: inner_blocks.0.0). May embed ${...}, e.g. denselayer${i + 1}.")]


# -- leaf layers: spec variants generated from the registry ----------------------------
def _elements_take_exprs(annotation):
    """`list[int]` -> `list[int | $expr]`, through unions and Annotated: a `$var` may stand for
    one element (`reshape: [$dim, -1]`), evaluated and validated with the list in resolve."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args:
        return list[Annotated[_elements_take_exprs(args[0]), ExprOr()]]
    if origin is Annotated:
        return Annotated[(_elements_take_exprs(args[0]), *annotation.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_elements_take_exprs(a) for a in args)]
    return annotation


def _spec_variant(cls):
    fields = {}
    for fname, info in cls.model_fields.items():
        annotation = Annotated[(_elements_take_exprs(info.annotation), *info.metadata, ExprOr())] if fname != "name" \
            else (Name | None)
        default = ... if info.is_required() else info.default
        fields[fname] = (annotation, Field(default, description=info.description))
    variant = create_model(f"{cls.__name__}Fields", __base__=cls, __doc__=cls.__doc__, **fields)
    return variant


LAYER_FIELDS = PerTag(REGISTRY, lambda tag: _spec_variant(REGISTRY[tag]))


class _ItemBase(Closed):
    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value):
        return {value: None} if isinstance(value, str) else value


def _layer_item(tag):
    cls = REGISTRY[tag]
    item = create_model(f"{cls.__name__}Item", __base__=_ItemBase, __doc__=cls.__doc__,
                        **{tag: (LAYER_FIELDS[tag], Field(description=(cls.__doc__ or "").strip()))})
    _LAYER_OF[item] = tag
    return item


LAYER_ITEMS = PerTag(REGISTRY, _layer_item)
_LAYER_OF: dict[type, str] = {}


def layer_of(item) -> str | None:
    """The layer type of a validated item, or None if it is no layer."""
    return _LAYER_OF.get(type(item))


# -- structural constructs ----------------------------------------------------------
class Repeat(_ItemBase):
    """`repeat: N` copies of `body`; `overrides` give some copies other arguments."""

    repeat: Annotated[int, Field(ge=0), ExprOr()] = Field(description="How many copies; the body sees the index as $i.")
    body: list["Item"] = Field(min_length=1, description="Items repeated; one item (usually a block call) to use `overrides`.")
    name: Name | None = Field(None, description="Named: the copies form a nested module; unnamed: they are inlined into the parent.")
    overrides: dict[int | str, dict[str, Any]] = Field(default_factory=dict, description="Index (0-based, negative from the end) -> arguments merged into that copy's single body item, e.g. {0: {stride: 2}}.")


class When(_ItemBase):
    """`when: CONDITION`: the `body` items if it holds, else the `else` items (default
    none), inlined into the parent like an unnamed repeat; e.g. `{when: $bn, body: [bn]}`."""

    when: Annotated[Union[bool, Literal[0, 1]], ExprOr()] = Field(description="true/false or 1/0, usually a variable or expression: `when: $bn`.")
    body: list["Item"] = Field(min_length=1, description="Items used when the condition holds.")
    otherwise: list["Item"] = Field(default_factory=list, alias="else", description="Items used when it does not (default: none).")


# Items written with their fields at the item's top level (`{repeat: 2, body: [...]}`), keyed
# by the field that tells them apart; every other item is a one-key mapping.
INLINE_ITEMS = {"when": When, "repeat": Repeat}
# other names of layer types and constructs (PyTorch's): an item so spelled is pointed at the
# tag, so no block may take one (and the JSON Schema refuses them as item keys)
ALIASES = {alias: tag for tag, cls in [*REGISTRY.items(), *CONSTRUCTS.items()] for alias in cls.aliases}


# -- structural constructs: spec variants generated from netspec.constructs ---------------
def _construct_variant(cls):
    """The construct's model as the spec writes it: slots hold Items, other fields also
    take a `$expression` (evaluated in resolve, then validated against the field)."""
    fields = {}
    for fname, info in cls.model_fields.items():
        if fname in cls.slots:
            annotation = cls.slot_type(fname, "Item")
            annotation = Annotated[(annotation, *info.metadata)] if info.metadata else annotation
        elif fname == "name":
            annotation = Name | None
        elif fname in cls.plain:
            annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        else:
            annotation = Annotated[(_elements_take_exprs(info.annotation), *info.metadata, ExprOr())]
        default = ... if info.is_required() else (info.default_factory if info.default_factory else info.default)
        field = Field(default_factory=default, description=info.description) if info.default_factory else \
            Field(default, description=info.description)
        fields[fname] = (annotation, field)
    return create_model(f"{cls.__name__}Fields", __base__=cls, __module__=__name__, __doc__=cls.__doc__, **fields)


def _structural_item(tag):
    cls = CONSTRUCTS[tag]
    item = create_model(f"{cls.__name__}Item", __base__=_ItemBase, __module__=__name__, __doc__=cls.__doc__,
                        **{tag: (CONSTRUCT_FIELDS[tag], Field(description=inspect.cleandoc(cls.__doc__ or "")))})
    _CONSTRUCT_OF[item] = tag
    return item


CONSTRUCT_FIELDS = PerTag(CONSTRUCTS, lambda tag: _construct_variant(CONSTRUCTS[tag]))
STRUCTURAL = PerTag(CONSTRUCTS, _structural_item)
_CONSTRUCT_OF: dict[type, str] = {}


def construct_of(item) -> str | None:
    """The construct tag of a validated item, or None if it is no construct."""
    return _CONSTRUCT_OF.get(type(item))


class BlockCall(Closed):
    """`blockname: {arg: value, name: ...}` — an instance of a block from `blocks:`."""

    block: str
    args: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            return {"block": value, "args": {}}
        if isinstance(value, dict) and len(value) == 1:
            (block, args), = value.items()
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise PydanticCustomError("block_args", "'{block}' is not a layer type; as a block call it takes a mapping of arguments, not {kind}",
                                          {"block": block, "kind": type(args).__name__})
            return {"block": block, "args": args}
        return value


def _item_tag(value) -> str | None:
    if isinstance(value, str):
        return value if value in REGISTRY else "call"
    if isinstance(value, dict):
        for key in INLINE_ITEMS:
            if key in value:
                return key
        if len(value) == 1:
            key = next(iter(value))
            return key if key in REGISTRY or key in STRUCTURAL else "call"
    return None


def _built_on_use(models: PerTag, tag: str):
    return Annotated[Any, BuiltOnUse(lambda: models[tag])]


_ITEM_UNION = Annotated[
    Union[tuple(Annotated[m, Tag(t)] for t, m in
                [*((t, _built_on_use(LAYER_ITEMS, t)) for t in REGISTRY), *((t, _built_on_use(STRUCTURAL, t)) for t in CONSTRUCTS),
                 *INLINE_ITEMS.items(), ("call", BlockCall)])],
    Discriminator(_item_tag, custom_error_type="item",
                  custom_error_message="an item is a layer name, or a mapping with exactly one key (a layer type, block name or construct); `repeat:` items take body/name/overrides, `when:` items body/else"),
]


class Item(RootModel):
    """One entry of a layer list: a layer, a block call, or a construct."""

    model_config = ConfigDict(defer_build=True)
    root: _ITEM_UNION

    @classmethod
    def __get_pydantic_json_schema__(cls, schema, handler):
        out = handler(schema)
        inner = handler.resolve_ref_schema(out)
        alternatives = inner.pop("oneOf", None) or inner.pop("anyOf")
        alternatives.append({"type": "string", "description": "A layer type or block name with default arguments."})
        inner["anyOf"] = alternatives
        inner.pop("discriminator", None)
        return out


# -- blocks and the spec ------------------------------------------------------------
class Block(Closed):
    """A named, parameterised block: `args` with defaults (or `required`), and a body."""

    doc: str = Field("", description="What the block is (shown in summaries).")
    args: dict[str, Any] = Field(default_factory=dict, description="Argument name -> default value, or 'required'.")
    inputs: list[str] | None = Field(None, description="Names of the block's inputs, for a block whose body is a graph that takes several (its nodes read them by name; a caller gives them with from: a list or a mapping). Written here or as the graph's own `inputs:`.")
    outputs: str | list[str] | dict[str | int, str] | None = Field(None, description="What a graph body returns (a reference, a list, or a mapping: a record). Written here or as the graph's own `outputs:`.")
    body: list[Item] = Field(min_length=1, description="Items of the block; a body of one item becomes that item's module.")

    @model_validator(mode="before")
    @classmethod
    def _construct_as_body(cls, value):
        # `basic: {args, residual: {...}}` is shorthand for `body: [residual: {...}]`
        if isinstance(value, dict) and "body" not in value:
            constructs = [k for k in value if k in STRUCTURAL]
            if len(constructs) == 1:
                value = dict(value)
                value["body"] = [{constructs[0]: value.pop(constructs[0])}]
        # a block's `inputs:`/`outputs:` are its graph body's
        if isinstance(value, dict) and ("inputs" in value or "outputs" in value):
            body = value.get("body")
            graph = body[0].get("graph") if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict) else None
            if not isinstance(graph, dict):
                key = "inputs" if "inputs" in value else "outputs"
                raise PydanticCustomError("block_io", "a block with {key}: has a graph body (graph: {{nodes: ...}}), whose "
                                          "nodes read the inputs by name", {"key": key})
            value = dict(value)
            graph = dict(graph)
            for key in ("inputs", "outputs"):
                if key in value:
                    if key in graph:
                        raise PydanticCustomError("block_io", "{key} is given twice, for the block and for its graph",
                                                  {"key": key})
                    graph[key] = value.pop(key)
            value["body"] = [{"graph": graph}]
        return value


OutputForm = TypeAliasType(
    "OutputForm",
    Union[Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)], dict[str, "OutputForm"],
          Annotated[list["OutputForm"], Field(min_length=1)]])


class Expect(Closed):
    """What `netspec compile --check-params` verifies."""

    params: Annotated[int, Field(ge=0)] | None = Field(None, description="Total parameter count.")
    trainable_params: Annotated[int, Field(ge=0)] | None = Field(None, description="Parameters with requires_grad.")
    output: "OutputForm | None" = Field(None, description="Output shape without the batch dimension: [C, H, W]; for a model that returns a record, a mapping of them ({out: [21, 520, 520], aux: [...]}); for a list, a list of them.")
    macs: Annotated[int, Field(ge=0)] | None = Field(None, description="Multiply-accumulates per sample.")


# -- extends: and patch: (resolved on the raw document by document/extends.py, before
# validation; these models give editors their JSON Schema)
PatchPath = Annotated[str, Field(min_length=1, description="Dotted path; in layer lists a segment is an index or a module name, e.g. layers.conv1.k.")]
ItemOrItems = Annotated[Any, Field(description="An item, or a list of items.")]


class SetOp(Closed):
    set: dict[str, Any] = Field(description="PATH -> VALUE: set a field anywhere (e.g. layers.conv1.padding: 3, vars.width: 64); on a list element, replace it.")


class DeleteOp(Closed):
    delete: PatchPath | list[PatchPath] = Field(description="PATH(s) to remove: a layer (by name or index) or a field.")


class ReplaceOp(Closed):
    replace: dict[str, ItemOrItems] = Field(description="PATH of a layer -> the item(s) that take its place.")


class InsertBeforeOp(Closed):
    insert_before: dict[str, ItemOrItems] = Field(description="PATH of a layer -> item(s) inserted before it.")


class InsertAfterOp(Closed):
    insert_after: dict[str, ItemOrItems] = Field(description="PATH of a layer -> item(s) inserted after it.")


PatchOp = Union[SetOp, DeleteOp, ReplaceOp, InsertBeforeOp, InsertAfterOp]


def _train_config():
    from netspec.document.train import TrainConfig  # its models are built for specs that have `train:` only
    return TrainConfig


class Spec(Closed):
    """A netspec architecture."""

    model_config = ConfigDict(strict=True, extra="forbid", title="netspec spec", defer_build=True)

    extends: str | None = Field(None, description="Base spec (path relative to this file) that this one is written over: top-level keys replace the base's (vars, blocks by entry; train, expect recursively), then `patch` applies.")
    patch: list[PatchOp] | None = Field(None, description="Edits applied in order after merging over the base: set, delete, replace, insert_before, insert_after.")
    netspec: Literal[1] = Field(description="Spec format version.")
    name: str = Field(min_length=1, description="Model name.")
    description: str = Field("", description="What this spec reproduces and where it comes from.")
    input: list[Annotated[int, Field(gt=0)]] = Field(min_length=1, max_length=3, description="Input shape without the batch dimension, e.g. [3, 32, 32].")
    vars: dict[str, Any] = Field(default_factory=dict, description="Variables for $name / ${...}; later ones may use earlier ones.")
    blocks: dict[str, Block] = Field(default_factory=dict, description="Named, parameterised blocks usable like layers.")
    layers: list[Item] | None = Field(None, min_length=1, description="The network, in order (or `graph:`).")
    graph: Annotated[Any, BuiltOnUse(lambda: CONSTRUCT_FIELDS["graph"])] | None = Field(None, description="The network as one graph of named nodes (instead of `layers:`): skips, merges, several outputs; its nodes register on the model itself.")
    expect: Expect | None = Field(None, description="Expected totals, checked by --check-params.")
    train: Annotated[Any, BuiltOnUse(_train_config)] | None = Field(None, description="How `netspec train` trains this model.")

    _source: Any = PrivateAttr(None)

    @field_validator("netspec", mode="before")
    @classmethod
    def _version_is_a_number(cls, value):
        if isinstance(value, bool):  # True == 1 would pass the literal
            raise ValueError("the format version is the number 1, not a boolean")
        return value

    @field_validator("blocks")
    @classmethod
    def _blocks_are_not_named_like_items(cls, blocks):
        # `- relu` means the layer, so a block named `relu` could never be used
        for name in blocks:
            if name in REGISTRY or name in CONSTRUCTS or name in INLINE_ITEMS:
                kind = "layer type" if name in REGISTRY else "construct"
                raise ValueError(f"block {name!r} has the name of a {kind}: `{name}` in a layer list means the "
                                 f"{kind}, so the block could never be used; rename it")
            if name in ALIASES:
                raise ValueError(f"block {name!r} has another name of '{ALIASES[name]}' (`{name}` in a layer list is "
                                 f"pointed at '{ALIASES[name]}'); rename it")
        return blocks

    @model_validator(mode="after")
    def _one_layout(self):
        if self.layers is None and self.graph is None:
            raise PydanticCustomError("layout", "missing required field 'layers' (the network, in order; or `graph:`, named nodes)")
        if self.layers is not None and self.graph is not None:
            raise PydanticCustomError("layout", "a spec has `layers:` or `graph:`, not both")
        return self

    @property
    def source(self):
        """The document this spec came from (file, raw data, positions)."""
        return self._source


def _graph_node_schema(defs: dict) -> dict:
    """A graph node: an item's key (or `body:`) beside the node's own `from`, `when`, `name`."""
    ref = {"type": "string", "description": "A reference: a node above, `input`, a declared input; `node.key` reads a "
                                            "record's field or a chain's named child."}
    own = {"from": {"description": "What the node reads (default: the node above).",
                    "anyOf": [ref, {"type": "array", "items": ref, "minItems": 1},
                              {"type": "object", "additionalProperties": ref, "minProperties": 1}]},
           "when": {"description": "false leaves the node out.", "anyOf": [{"type": "boolean"}, {"enum": [0, 1]}, EXPR_JSON]},
           "name": {"type": "string", "description": "Module name (default: the node's id); dots make containers."}}
    item_defs = {tag: model.__name__ for tag, model in [*LAYER_ITEMS.items(), *STRUCTURAL.items()]}
    alternatives = [{"type": "string", "description": "A layer type or block name with default arguments."},
                    {"type": "object", "properties": {**own, "body": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
                     "required": ["body"], "additionalProperties": False}]
    for tag, name in item_defs.items():
        alternatives.append({"type": "object", "properties": {**own, tag: defs[name]["properties"][tag]},
                             "required": [tag], "additionalProperties": False})
    repeat = dict(defs["Repeat"]["properties"])
    alternatives.append({"type": "object", "properties": {**repeat, **own}, "required": ["repeat", "body"],
                         "additionalProperties": False})
    alternatives.append({"type": "object", "description": "A block call beside from/when/name.", "properties": own,
                         "minProperties": 1, "additionalProperties": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                         "propertyNames": {"not": {"enum": [*REGISTRY, *STRUCTURAL, "repeat", "body", "else"]}}})
    return {"title": "GraphNode", "description": "A node of a graph: an item (a layer, block call or construct) with "
                                                 "optional `from`, `when` and `name`, or `body: [...]`.",
            "anyOf": alternatives}


class _WithModelsBuiltOnUse(GenerateJsonSchema):
    """The JSON Schema generator for models built on use (BuiltOnUse): such a model's
    core schema is its own and repeats the definitions it shares with the others (Item);
    a definition already in progress is referred to, not generated again (for ever). Such
    a field is a model's, which has a title of its own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started: set = set()

    def generate_inner(self, schema):
        ref = schema.get("ref") if isinstance(schema, dict) else None
        if ref is not None:
            if (ref, self.mode) in self._started:
                return self.get_cache_defs_ref_schema(ref)[1]
            self._started.add((ref, self.mode))
        return super().generate_inner(schema)

    def field_title_should_be_set(self, schema) -> bool:
        if schema.get("metadata", {}).get("built_on_use"):
            return False
        return super().field_title_should_be_set(schema)


def json_schema() -> dict:
    schema = Spec.model_json_schema(schema_generator=_WithModelsBuiltOnUse)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    for tag, cls in REGISTRY.items():
        # `bn:` (null) and shorthands such as `maxpool: 2` are accepted by the models' before-validators
        item = defs[LAYER_ITEMS[tag].__name__]["properties"]
        fields = item[tag]
        alternatives = [{k: v for k, v in fields.items() if k != "description"}, {"type": "null"}]
        if cls.shorthand:
            alternatives.append(defs[LAYER_FIELDS[tag].__name__]["properties"][cls.shorthand])
        item[tag] = {"description": fields.get("description", ""), "anyOf": alternatives}
    # a block call is written `blockname: {args}`; its model splits that into block/args
    not_a_block = {"not": {"enum": [*REGISTRY, *STRUCTURAL, *INLINE_ITEMS, *ALIASES]}}
    defs["BlockCall"] = {
        "title": "BlockCall", "type": "object", "minProperties": 1, "maxProperties": 1,
        "description": BlockCall.__doc__,
        "propertyNames": not_a_block,
        "additionalProperties": {"anyOf": [{"type": "object"}, {"type": "null"}]},
    }
    schema["properties"]["blocks"]["propertyNames"] = not_a_block
    # a bare name is a layer type or a block: never another name of a type (`- BatchNorm2d`)
    defs["Item"]["anyOf"][-1]["not"] = {"enum": list(ALIASES)}
    # a block's body may be written as one construct key (`residual: {...}`) instead of `body:`
    block = defs["Block"]
    block["required"] = []
    for key, item_model in STRUCTURAL.items():
        block["properties"][key] = {"$ref": f"#/$defs/{item_model.model_fields[key].annotation.__name__}"}
    block["oneOf"] = [{"required": [key]} for key in ("body", *STRUCTURAL)]
    # a spec that extends a base may leave out what the base gives; the network is `layers` or `graph`
    schema["if"] = {"required": ["extends"]}
    schema["else"] = {"required": schema.pop("required"), "oneOf": [{"required": ["layers"]}, {"required": ["graph"]}]}
    defs["GraphFields"]["properties"]["nodes"]["additionalProperties"] = {"$ref": "#/$defs/GraphNode"}
    defs["GraphNode"] = _graph_node_schema(defs)
    post = defs["ResidualFields"]["properties"]["post"]  # `post: relu` is a list of one
    defs["ResidualFields"]["properties"]["post"] = {"description": post.pop("description", ""),
                                                    "anyOf": [{k: v for k, v in post.items() if k != "default"},
                                                              {"$ref": "#/$defs/Item"}]}
    return schema
