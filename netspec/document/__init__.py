"""Text -> validated Spec. Knows nothing of torch or of later stages."""
from __future__ import annotations

import os

from pydantic import ValidationError

from netspec.document.extends import apply_sets, resolve_extends
from netspec.document.load import Source, from_data, read
from netspec.document.paths import absolute_paths, check_dataset_root
from netspec.document.locate import validation_error
from netspec.document.schema import Spec
from netspec.document.usage import check_vars


def load_spec(spec, overrides=()) -> Spec:
    """A path (YAML/JSON), a dict, or a Spec -> a validated Spec. `overrides` are
    `--set PATH=VALUE` strings applied to the document before validation."""
    if isinstance(spec, Spec) and not overrides:
        return spec
    if isinstance(spec, Spec):
        source = from_data(spec.source.data if spec.source else spec.model_dump(), spec.source.file if spec.source else "<spec>")
    elif isinstance(spec, dict):
        source = from_data(spec)
    elif isinstance(spec, (str, os.PathLike)):
        source = read(spec)
    else:
        raise TypeError(f"load() takes a path, a dict or a Spec, not {type(spec).__name__}")
    source = resolve_extends(source)   # `extends:` chain and `patch:`, positions kept per file
    apply_sets(source, overrides)
    absolute_paths(source)             # relative to the file that writes them (--set: the current directory)
    try:
        validated = Spec.model_validate(source.data)
    except ValidationError as e:
        raise validation_error(e, source) from None
    validated._source = source
    check_vars(source)
    if validated.train is not None:  # a train section that cannot work with the input is bad input now
        from netspec.document.train import input_problem
        problem = input_problem(validated.train, validated.input)
        if problem is not None:
            raise source.error(*problem)
    return validated


__all__ = ["Spec", "Source", "load_spec", "check_dataset_root"]
