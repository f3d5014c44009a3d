"""pydantic ValidationError -> one located SpecError a person can act on.

pydantic reports `loc` tuples through the models (with union tags and the fields of
shorthand forms in them); `Source.locate` maps them back onto the document. Errors on
the same node (one per union member) merge into one message. Must not import torch.
"""
from __future__ import annotations

import difflib
import re
import types
import typing

from pydantic import BaseModel, Discriminator, RootModel, Tag, ValidationError

from netspec.errors import SpecError
from netspec.document.load import Source


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- item keys: layer types, constructs, macros and blocks ------------------------------------
def _folded(name: str) -> str:
    """A name as suggestions compare it: case, `_` and `-` do not count (`BatchNorm2d`, `batch_norm2d`)."""
    return name.lower().replace("_", "").replace("-", "")


def unknown_item(word: str, blocks) -> str:
    """The message for an item key that names no layer type, construct or block: another
    spelling of a type (PyTorch's class name, another case) points at its tag, a typo at
    the nearest name. The aliases live with each type (`Layer.aliases`, `Construct.aliases`)."""
    from netspec.constructs import CONSTRUCTS
    from netspec.document.schema import INLINE_ITEMS
    from netspec.layers import REGISTRY
    spellings: dict[str, tuple[str, str]] = {}   # folded spelling -> (the tag, the spelling)
    for tag, cls in [*REGISTRY.items(), *CONSTRUCTS.items()]:
        for name in (tag, *cls.aliases):
            spellings.setdefault(_folded(name), (tag, name))
    for name in [*INLINE_ITEMS, *blocks]:
        spellings.setdefault(_folded(str(name)), (name, name))
    hit = spellings.get(_folded(str(word)))
    if hit is None:
        close = difflib.get_close_matches(_folded(str(word)), list(spellings), n=1, cutoff=0.6)
        hit = (spellings[close[0]][0],) * 2 if close else None
    message = f"unknown layer type or block '{word}'"
    if hit is None:
        return message
    tag, name = hit
    alias = f" netspec's name for {name}" if _folded(name) != _folded(tag) else ""
    return f"{message} (did you mean '{tag}'?{alias})"


# -- a computed float where an int is needed ----------------------------------------------------
_TRUE_DIVISION = re.compile(r"(?<!/)/(?!/)")


def float_hint(expr, definition) -> str:
    """Why expression `expr` gave a float where an int is needed: a `/` in it or in the
    definitions of the variables it reads (`definition(name)`: the value as written, or
    None), else some other float arithmetic."""
    from netspec.document.expr import Expr, ExprError, is_expr_text, parse
    seen, todo = set(), [expr]
    while todo:
        raw = todo.pop()
        text = raw.text if isinstance(raw, Expr) else raw if is_expr_text(raw) else None
        if text is None:
            continue
        if _TRUE_DIVISION.search(text):
            return " (use // for integer division in expressions)"
        try:
            names = parse(text).names()
        except ExprError:
            continue
        for name in names - seen:
            seen.add(name)
            todo.append(definition(name))
    return " (the expression gives a float; int(), round(), floor() and ceil() give an int)"


# -- the fields a mapping may have ----------------------------------------------------------------
def _fields_for(path: tuple, data) -> list[str]:
    """The field names allowed at the mapping `path` points to in the document `data`, for
    suggestions: the schema's models walked along the path beside the data, so an item's
    type (the union's discriminator) picks its model, at any depth."""
    from netspec.document.schema import Spec
    steps = [(Spec, data)]
    for seg in path:
        steps = [nxt for annotation, value in steps for nxt in _step(annotation, seg, value)]
    return sorted({info.alias or name for annotation, value in steps for m in _alternatives(annotation, value)
                   if _is_model(m) for name, info in m.model_fields.items()})


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _alternatives(annotation, value) -> list:
    """Annotated[X, ...] -> [X] (a model built on use: that model); Union[X, Y] -> [X, Y] (a
    discriminated union: the member `value` selects); RootModel -> its root."""
    from netspec.document.schema import BuiltOnUse
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(annotation)
        built = [m.model() for m in meta if isinstance(m, BuiltOnUse)]
        if built:
            return built
        pick = next((m.discriminator for m in meta if isinstance(m, Discriminator) and callable(m.discriminator)), None)
        if pick is not None:
            tag = pick(value)
            tagged = [a for a in typing.get_args(inner) if any(isinstance(t, Tag) and t.tag == tag
                                                              for t in typing.get_args(a)[1:])]
            return [m for a in tagged for m in _alternatives(a, value)]
        return _alternatives(inner, value)
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _alternatives(arg, value)]
    if _is_model(annotation) and "root" in annotation.model_fields and issubclass(annotation, RootModel):
        return _alternatives(_field_type(annotation.model_fields["root"]), value)
    return [annotation]


def _field_type(info):
    """A model field's annotation with the metadata pydantic keeps apart (a Discriminator)."""
    return typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _step(annotation, seg, value) -> list:
    """(annotation, value) pairs one segment further down."""
    from netspec.document.schema import Block, Item
    out = []
    for alt in _alternatives(annotation, value):
        origin, args = typing.get_origin(alt), typing.get_args(alt)
        child = value.get(seg) if isinstance(value, dict) else None
        if _is_model(alt):
            alt.model_rebuild()   # a model not built yet (defer_build): its fields' forward references resolve now
            fields = {info.alias or name: info for name, info in alt.model_fields.items()}
            if seg in fields:
                out.append((_field_type(fields[seg]), child))
            elif alt is Block and isinstance(value, dict):  # `residual: {...}` written for `body: [residual: {...}]`
                out.extend(_step(Item, seg, {seg: child}))
        elif origin is list and args:
            if isinstance(seg, int) and isinstance(value, list):
                out.append((args[0], value[seg] if -len(value) <= seg < len(value) else None))
            elif not isinstance(value, list):  # one item written for a list of one (`post: relu`)
                out.extend(_step(args[0], seg, value))
        elif origin is dict and len(args) == 2 and isinstance(seg, str):
            out.append((args[1], child))
    if not out and isinstance(value, dict) and seg in value:
        if seg == "body" and isinstance(value[seg], list):   # `body: [...]` is a list of items wherever written
            out.append((list[Item], value[seg]))
        elif len(value) > 1 and _unwrapped(annotation) is Item:   # an item beside other keys (a graph node's from/when/name)
            out.extend(_step(Item, seg, {seg: value[seg]}))
    return out


def _unwrapped(annotation):
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _message(err: dict) -> str:
    kind, value = err["type"], err.get("input")
    msg = err["msg"]
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("value_error", "assertion_error"):  # our validators' own words, value included
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("int_type", "int_parsing", "float_type", "bool_type") and isinstance(value, str):
        hint = ""
        if kind.startswith("int") and value.strip().lstrip("-").isdigit():
            hint = f" (write {value.strip()} without quotes; strings are never converted)"
        if kind == "bool_type" and value.lower() in ("yes", "no", "on", "off", "y", "n"):
            hint = " (YAML 1.2: yes/no/on/off are strings; write true or false)"
        return f"{msg}, got the string {value!r}{hint}"
    if kind in ("int_type", "bool_type", "string_type", "float_type", "list_type", "dict_type", "model_type", "literal_error"):
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        return f"{msg}, got {shown}"
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return f"{msg}, got {value!r}"
    return msg


def validation_error(exc: ValidationError, source: Source, prefix: tuple = ()) -> SpecError:
    """The first error of `exc`, located; `prefix` is the document path of the value
    that was validated (when it was not the whole spec)."""
    errors = [{**e, "loc": prefix + tuple(e["loc"])} for e in exc.errors(include_url=False)]
    located = [source.locate(e["loc"], missing=e["type"] == "missing")[0] for e in errors]
    # a union member that took the value's shape and failed deeper inside it (a list of items
    # for `shortcut: auto | [items]`) says more than the members that refused it outright
    deepest = max((i for i, at in enumerate(located) if at[:len(located[0])] == located[0]),
                  key=lambda i: len(located[i]))
    first, real = errors[deepest], located[deepest]
    same = [e for e, at in zip(errors, located) if at == real]
    # a union member that accepted the value's type but failed a constraint says the most
    specific = [e for e in same if not e["type"].endswith("_type") and e["type"] not in ("literal_error", "missing")]
    if len(same) > 1 and specific:
        same = specific[:1]
    messages = list(dict.fromkeys(_message(e) for e in same))
    message = messages[0] if len(messages) == 1 else \
        "Input should be " + " or ".join(m.removeprefix("Input should be ").split(", got")[0] for m in messages) + \
        (", got " + messages[0].split(", got", 1)[1].strip() if ", got" in messages[0] else "")
    if first["type"] in ("missing", "extra_forbidden"):
        return _fields_error(errors, first, real, source)
    if first["type"] == "block_args":  # `avgpol: global`: a scalar after a key that is no block
        # the word is the one key of the mapping BlockCall refused (read there, not from the
        # error's context, which a graph node's re-raised errors do not keep)
        (word,) = first["input"]
        blocks = source.data.get("blocks") if isinstance(source.data, dict) else None
        if not (isinstance(blocks, dict) and word in blocks):
            return source.error(unknown_item(word, blocks if isinstance(blocks, dict) else {}), real + (word,), on_key=True)
    return source.error(message, real)


def _fields_error(errors: list, first: dict, real: tuple, source: Source) -> SpecError:
    """Unknown and missing fields of one mapping, said together: `kernel` written for `k`
    is one mistake, reported at `kernel` with the suggestion `k`."""
    parent = real[:-1]
    missing, unknown = [], []
    for e in errors:
        if e["type"] in ("missing", "extra_forbidden"):
            at = source.locate(e["loc"], missing=e["type"] == "missing")[0]
            names = missing if e["type"] == "missing" else unknown
            if at[:-1] == parent and at[-1] not in names:
                names.append(at[-1])
    if not unknown:
        return source.error(f"missing required field '{real[-1]}'", real, missing=True)
    word = unknown[0]
    fields = _fields_for(parent, source.data)
    # one unknown and one missing field: surely a misspelling of it, however far apart
    hint = f" (did you mean '{missing[0]}'?)" if len(unknown) == len(missing) == 1 else \
        did_you_mean(word, missing) or did_you_mean(word, fields) or \
        (f" (fields here: {', '.join(fields)})" if fields else "")
    message = f"unknown field '{word}'{hint}"
    if missing:
        message += "; missing required field" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{m}'" for m in missing)
    return source.error(message, parent + (word,), on_key=True)
