"""Which `vars` a spec uses, read statically from the document after `extends:` and `--set`.

A variable is used when some `$name` or `${...}` names it: in `layers`, in a block (where
the block's own arguments shadow it), or in another variable. Anything else is a mistake:
`--set vars.clases=100` would change nothing (an error, with a did-you-mean), and a
variable in a file that nothing reads is a warning (`SpecWarning`, shown once per line by
the CLI). Must not import torch or any later stage.
"""
from __future__ import annotations

import functools
import re
import warnings

from netspec.errors import SpecError, SpecWarning
from netspec.document.expr import ExprError, parse

_EMBEDDED = re.compile(r"\$\{[^}]*\}")  # `${...}` inside a longer string (module names)


def names_in(value, out: set[str]) -> set[str]:
    """Add to `out` every variable name that an expression in `value` (any plain data) reads."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "${" in key:   # a graph's output key: `{"p${i}": ...}`
                names_in(key, out)
            names_in(item, out)
    elif isinstance(value, list):
        for item in value:
            names_in(item, out)
    elif isinstance(value, str) and "$" in value:
        texts = [value] if value.startswith("$") else _EMBEDDED.findall(value)
        for text in texts:
            out |= _names(text)
    return out


@functools.lru_cache(maxsize=8192)  # the zoo's specs share most of their expressions
def _names(text: str) -> frozenset[str]:
    try:
        return frozenset(parse(text).names())
    except ExprError:
        return frozenset()  # reported where the value is validated or resolved


def used_vars(data: dict) -> set[str]:
    used = names_in(data.get("layers"), set())
    names_in(data.get("graph"), used)
    names_in(data.get("vars"), used)
    blocks = data.get("blocks")
    for block in (blocks.values() if isinstance(blocks, dict) else ()):
        if isinstance(block, dict):
            args = block.get("args")
            own = set(args) if isinstance(args, dict) else set()
            used |= names_in({k: v for k, v in block.items() if k != "args"}, set()) - own
            used |= names_in(args, set())
    return used


def check_vars(source) -> None:
    """Refuse a variable set by --set that nothing uses; warn about one in a file."""
    defined = source.data.get("vars")
    if not isinstance(defined, dict):
        return
    used = used_vars(source.data)
    for name in defined:
        if name in used:
            continue
        if source.set_by(("vars", name)) is not None:
            from netspec.document.locate import did_you_mean
            hint = did_you_mean(name, sorted(used & set(defined))) or did_you_mean(name, sorted(set(defined) - {name}))
            raise source.error(f"the spec uses no variable '{name}'{hint}; setting it would change nothing",
                               ("vars", name))
        warn(source.error(f"variable '{name}' is never used", ("vars", name), on_key=True))


def warn(error: SpecError) -> None:
    """A located problem that does not stop anything, as a SpecWarning (`file:line:col: warning: ...`)."""
    warnings.warn(SpecWarning(str(error).replace(": error: ", ": warning: ", 1)), stacklevel=3)
