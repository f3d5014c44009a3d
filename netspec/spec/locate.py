"""pydantic ValidationError -> one located SpecError a person can act on.

pydantic reports `loc` tuples through the models (with union tags and the fields of
shorthand forms in them); `Source.locate` maps them back onto the document. Errors on
the same node (one per union member) merge into one message. Must not import torch.
"""
from __future__ import annotations

import difflib

from pydantic import ValidationError

from netspec.errors import SpecError
from netspec.layers import REGISTRY
from netspec.spec.load import Source


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fields_for(path: tuple):
    """The field names allowed at the mapping `path` points to, for suggestions."""
    from netspec.spec import schema
    if not path:
        return schema.Spec.model_fields
    parent = path[-1]
    if parent in REGISTRY:
        return REGISTRY[parent].model_fields
    if parent in schema.CONSTRUCT_FIELDS:
        return schema.CONSTRUCT_FIELDS[parent].model_fields
    if parent == "expect":
        return schema.Expect.model_fields
    if len(path) >= 2 and path[-2] == "blocks":
        return schema.Block.model_fields
    return {}


def _message(err: dict) -> str:
    kind, value = err["type"], err.get("input")
    msg = err["msg"]
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
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
    on_key = first["type"] == "extra_forbidden"
    if on_key:
        message = f"unknown field '{real[-1]}'{did_you_mean(real[-1], _fields_for(real[:-1]))}"
    if first["type"] == "missing":
        message = f"missing required field '{real[-1]}'"
    return source.error(message, real, on_key=on_key, missing=first["type"] == "missing")
