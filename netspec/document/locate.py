"""pydantic ValidationError -> one located SpecError a person can act on.

pydantic reports `loc` tuples through the models (with union tags and the fields of
shorthand forms in them); `Source.locate` maps them back onto the document. Errors on
the same node (one per union member) merge into one message. Must not import torch.
"""
from __future__ import annotations

import difflib
import types
import typing

from pydantic import BaseModel, RootModel, ValidationError

from netspec.errors import SpecError
from netspec.document.load import Source


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fields_for(path: tuple) -> set[str]:
    """The field names allowed at the mapping `path` points to, for suggestions: the
    schema's models walked along the path (every member of a union)."""
    from netspec.document.schema import Spec
    annotations = [Spec]
    for seg in path:
        annotations = [nxt for a in annotations for nxt in _step(a, seg)]
    return {f for a in annotations for m in _alternatives(a) if _is_model(m) for f in m.model_fields}


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _alternatives(annotation) -> list:
    """Annotated[X, ...] -> [X]; Union[X, Y] / X | None -> [X, Y, None]; RootModel -> its root."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _alternatives(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _alternatives(arg)]
    if _is_model(annotation) and "root" in annotation.model_fields and issubclass(annotation, RootModel):
        return _alternatives(annotation.model_fields["root"].annotation)
    return [annotation]


def _step(annotation, seg) -> list:
    out = []
    for alt in _alternatives(annotation):
        origin, args = typing.get_origin(alt), typing.get_args(alt)
        if _is_model(alt) and seg in alt.model_fields:
            out.append(alt.model_fields[seg].annotation)
        elif origin is list and args and isinstance(seg, int):
            out.append(args[0])
        elif origin is dict and len(args) == 2 and isinstance(seg, str):
            out.append(args[1])
    return out


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
    if kind in ("int_from_float", "int_type") and isinstance(value, float):
        return f"{msg}, got {value!r} (use // for integer division in expressions)"
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
    first = errors[0]
    real, _ = source.locate(first["loc"], missing=first["type"] == "missing")
    same = [e for e in errors if source.locate(e["loc"], missing=e["type"] == "missing")[0] == real]
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
    # one unknown and one missing field: surely a misspelling of it, however far apart
    hint = f" (did you mean '{missing[0]}'?)" if len(unknown) == len(missing) == 1 else \
        did_you_mean(word, missing) or did_you_mean(word, _fields_for(parent))
    message = f"unknown field '{word}'{hint}"
    if missing:
        message += "; missing required field" + ("s " if len(missing) > 1 else " ") + ", ".join(f"'{m}'" for m in missing)
    return source.error(message, parent + (word,), on_key=True)
