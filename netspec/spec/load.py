"""Text -> plain data with a position for every node (a `Source`), and `--set` overrides.

YAML and JSON both go through ruamel.yaml's round-trip parser (JSON is YAML 1.2), which
records line/column per node and refuses duplicate keys. The parsed tree is then copied
into plain dict/list/str/int/float/bool/None, refusing everything else: tags of any kind
(`!!python/object...` is kept as data by ruamel, never constructed, and refused here),
timestamps, binary, sets. Size, node count (alias bombs) and depth are bounded.
Must not import torch or any later stage.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import SpecError

MAX_BYTES = 8 * 1024 * 1024   # no architecture needs more; a 50 MB file is refused unread
MAX_NODES = 500_000           # after alias expansion: bounds "billion laughs"
MAX_DEPTH = 100               # nesting of mappings and lists
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null")}


@dataclass
class Source:
    """A spec document: its file name, plain data, and 1-based (line, col) positions
    of values and keys, indexed by path tuples such as ('layers', 3, 'conv')."""

    file: str
    data: Any
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: tuple, on_key: bool = False, missing: bool = False) -> tuple[tuple, tuple[int, int] | None]:
        """Walk `path` through the data, skipping segments that are not in it (pydantic's
        union tags, or structure a shorthand expanded). Returns the path as the user
        wrote it and the position of the deepest node reached. A `missing` field's
        name is kept in the path (its position is its parent's)."""
        node, real = self.data, ()
        for i, part in enumerate(path):
            if isinstance(node, dict) and part in node:
                node, real = node[part], real + (part,)
            elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                node, real = node[part], real + (part % len(node),)
            elif missing and i == len(path) - 1:
                display = real + (part,)
                return display, self.positions.get(real, (1, 1) if self.positions else None)
        table = self.key_positions if on_key and real in self.key_positions else self.positions
        return real, table.get(real, (1, 1) if self.positions else None)

    def error(self, message: str, path: tuple = (), **kw) -> SpecError:
        on_key, missing = kw.pop("on_key", False), kw.pop("missing", False)
        real, position = self.locate(path, on_key=on_key, missing=missing)
        err = SpecError(message, real, **kw)
        return err.located(self.file, position)


def read(path: str | os.PathLike) -> Source:
    """Read a spec file (YAML or JSON)."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        if size > MAX_BYTES:
            raise SpecError(f"file is {size / 1e6:.1f} MB; specs are limited to {MAX_BYTES // 2**20} MiB", file=name, line=1, col=1)
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror}", file=name) from None
    return parse(raw, name)


def parse(raw: bytes | str, file: str = "<string>") -> Source:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            raise SpecError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x})", file=file, line=line, col=col) from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise SpecError("the file is empty; a spec is a mapping with netspec, name, input and layers", file=file, line=1, col=1)

    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        if "duplicate key" in problem and e.context_mark is not None:
            problem = problem.replace("found duplicate", "duplicate") + f"; first at line {e.context_mark.line + 1}"
        kind = "JSON" if file.endswith(".json") else "YAML"
        raise SpecError(f"invalid {kind}: {problem}", file=file,
                        line=mark.line + 1 if mark else None, col=mark.column + 1 if mark else None) from None
    except (YAMLError, RecursionError) as e:
        raise SpecError(f"invalid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=file, line=1, col=1) from None

    source = Source(file, None)
    source.data = _Plain(source).convert(doc, (), 0)
    if not isinstance(source.data, dict):
        kind = "empty" if source.data is None else f"a {type(source.data).__name__}"
        raise SpecError(f"a spec is a mapping at the top level (netspec, name, input, layers), but this document is {kind}",
                        file=file, line=1, col=1)
    return source


def from_data(data: dict, file: str = "<dict>") -> Source:
    """A Source for a dict built in Python (no positions); still refuses non-plain values."""
    source = Source(file, None)
    source.data = _Plain(source).convert(data, (), 0)
    if not isinstance(source.data, dict):
        raise SpecError("a spec is a mapping at the top level", file=file)
    return source


class _Plain:
    """Copy ruamel's tree into plain Python values, recording positions."""

    def __init__(self, source: Source):
        self.source = source
        self.nodes = 0

    def fail(self, message: str, path: tuple, position=None) -> SpecError:
        return SpecError(message, path).located(self.source.file, position or self._nearest(path))

    def _nearest(self, path):
        while path and path not in self.source.positions:
            path = path[:-1]
        return self.source.positions.get(path, (1, 1))

    def convert(self, node: Any, path: tuple, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"document expands to more than {MAX_NODES:,} nodes (alias/anchor expansion?); refused", path)
        if depth > MAX_DEPTH:
            raise self.fail(f"document nested deeper than {MAX_DEPTH} levels; refused", path)
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag is not None and tag not in _STANDARD_TAGS:
            raise self.fail(f"YAML tag {tag.replace('tag:yaml.org,2002:', '!!')} is not allowed (specs are plain data; nothing is constructed)", path)
        if isinstance(node, dict):
            lc = getattr(node, "lc", None)
            out = {}
            for key, value in node.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise self.fail(f"mapping keys are strings or integers, not {type(key).__name__} {key!r}", path)
                key = str(key) if isinstance(key, str) else int(key)
                child = path + (key,)
                if lc is not None and key in lc.data:
                    kl, kc, vl, vc = lc.data[key]
                    self.source.key_positions[child] = (kl + 1, kc + 1)
                    self.source.positions[child] = (vl + 1, vc + 1)
                out[key] = self.convert(value, child, depth + 1)
            return out
        if isinstance(node, list):
            lc = getattr(node, "lc", None)
            out = []
            for i, value in enumerate(node):
                child = path + (i,)
                if lc is not None and i in lc.data:
                    line, col = lc.data[i][:2]
                    self.source.positions[child] = (line + 1, col + 1)
                out.append(self.convert(value, child, depth + 1))
            return out
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        raise self.fail(f"YAML value of type {type(node).__name__} is not allowed; "
                        f"use a number, string, true/false, null, list or mapping", path)


# -- --set PATH=VALUE ---------------------------------------------------------------
def apply_overrides(source: Source, overrides: list[str] | tuple[str, ...]) -> None:
    """Apply `--set a.b.0.c=value` edits to the document before validation. VALUE is a
    YAML value (`3`, `0.1`, `true`, `[1, 2]`, `{k: 3}`, `relu`)."""
    for text in overrides:
        if "=" not in text:
            raise SpecError(f"--set takes PATH=VALUE, got {text!r}", file="--set")
        dotted, value_text = text.split("=", 1)
        value = _value(value_text, text)
        keys = [int(k) if k.lstrip("-").isdigit() else k for k in dotted.replace("[", ".").replace("]", "").split(".") if k != ""]
        if not keys:
            raise SpecError(f"--set needs a path before '=', got {text!r}", file="--set")
        node, path = source.data, ()
        for key in keys[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(key, {})
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                raise SpecError(f"--set {text}: {'.'.join(map(str, path + (key,)))} does not exist", file="--set")
            path += (key,)
        last = keys[-1]
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
            node[last] = value
        else:
            raise SpecError(f"--set {text}: cannot set {last!r} inside {type(node).__name__}", file="--set")


def _value(text: str, whole: str) -> Any:
    try:
        data = parse(f"v: {text}\n", "--set").data
    except SpecError as e:
        raise SpecError(f"--set {whole}: {e.message}", file="--set") from None
    return data["v"]
