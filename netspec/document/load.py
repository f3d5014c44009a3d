"""Text -> plain data with a position for every node (a `Source`), and `--set` overrides.

YAML and JSON both go through ruamel.yaml's parser (JSON is YAML 1.2) as far as the node
tree, whose nodes carry their line/column; nothing is constructed from it but plain
dict/list/str/int/float/bool/None, built here, refusing everything else: tags of any kind
(`!!python/object...` stays a tag on a node and is refused), timestamps, binary, sets,
duplicate keys. Size, node count (alias bombs) and depth are bounded.
Must not import torch or any later stage.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import SpecError

MAX_BYTES = 8 * 1024 * 1024   # no architecture needs more; a 50 MB file is refused unread
MAX_NODES = 500_000           # after alias expansion: bounds "billion laughs"
MAX_DEPTH = 100               # nesting of mappings and lists
MAX_INT = 2**63 - 1           # integers are int64, as expressions' results (no 5,000-digit int is parsed)
# A collection starts only at one of these characters, and a node follows another only
# after one of them: a text with few of them nests shallowly and has few nodes, and
# ruamel's C composer may build it directly. Any other text is first walked as a flat
# event stream (_scan): the composer recurses in C, and ~30,000 levels overflow the stack.
_INDICATORS = "[{-:?,"
_COMPOSE_DIRECTLY = 2_000
# YAML 1.2's printable characters (5.1); anything else is refused at its own line:col
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null")}


@dataclass
class Source:
    """A spec document: its file name, plain data, and 1-based (line, col) positions
    of values and keys, indexed by path tuples such as ('layers', 3, 'conv')."""

    file: str
    data: Any
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    sets: dict[tuple, str] = field(default_factory=dict)  # path -> the `--set PATH=VALUE` that put its value there

    def locate(self, path: tuple, on_key: bool = False, missing: bool = False) -> tuple[tuple, tuple[int, int] | None]:
        """Walk `path` through the data, skipping segments that are not in it (pydantic's
        union tags, or structure a shorthand expanded). Returns the path as the user
        wrote it and the position of the deepest node reached. A `missing` field's
        name is kept in the path (its position is its parent's)."""
        node, real = self.data, ()
        for i, part in enumerate(path):
            if isinstance(node, dict) and part in node:
                # a union tag that is also a field (`repeat:`, `when:`) comes before the
                # item's other fields: step over it when the next segment is a sibling
                later = path[i + 1] if i + 1 < len(path) else None
                if later is not None and not _has(node[part], later) and _has(node, later):
                    continue
                node, real = node[part], real + (part,)
            elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                node, real = node[part], real + (part % len(node),)
            elif missing and i == len(path) - 1:
                display = real + (part,)
                return display, self.positions.get(real, (1, 1) if self.positions else None)
        table = self.key_positions if on_key and real in self.key_positions else self.positions
        return real, table.get(real, (1, 1) if self.positions else None)

    def value_at(self, path: tuple) -> Any:
        """The value at `path` as written (segments not in the data skipped, as `locate` does)."""
        node = self.data
        for part in self.locate(path)[0]:
            node = node[part]
        return node

    def copy(self) -> "Source":
        """An independent copy (later stages edit `data` in place: extends, --set)."""
        return Source(self.file, copy_data(self.data), dict(self.positions), dict(self.key_positions),
                      dict(self.sets))

    def origin(self, path: tuple) -> tuple[str, tuple]:
        """(file, path in that file) of the node at `path` (a merged `extends:` chain
        has several files)."""
        return self.file, tuple(path)

    def set_by(self, path: tuple) -> str | None:
        """The `--set` text that put the value at `path` (or around it) there, if one did."""
        for n in range(len(path), 0, -1):
            if tuple(path[:n]) in self.sets:
                return self.sets[tuple(path[:n])]
        if path and tuple(path) not in self.positions:  # a mapping a --set made on its way (`a.b.c=1` made `b`)
            return next((text for p, text in self.sets.items() if p[:len(path)] == tuple(path)), None)
        return None

    def error(self, message: str, path: tuple = (), **kw) -> SpecError:
        """A SpecError at `path`: at the file line it was written on, or naming the
        `--set` it came from (a value from the command line has no line in any file)."""
        on_key, missing = kw.pop("on_key", False), kw.pop("missing", False)
        real, position = self.locate(path, on_key=on_key, missing=missing)
        text = self.set_by(real)
        if text is not None:
            return SpecError(message, real, file=set_label(text), **kw)
        changed = [t for p, t in self.sets.items() if real and p[:-1] == real]
        if changed:  # the mapping is in the file, but a --set changed one of its fields
            message += f" (after {set_label(changed[0])})"
        file, shown = self.origin(real)
        return SpecError(message, shown, **kw).located(file, position)


def _has(node: Any, key) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)


# Parsed files by (name, digest of the content): a base that several specs extend
# (resnet50.yaml under resnet101, wide_resnet50_2, ...) is parsed once per process. YAML
# parsing is most of the time of `netspec check specs/*.yaml`; content, not mtime, keys
# it, so an edit is never missed.
_PARSED: dict[tuple[str, bytes], Source] = {}
_PARSED_MAX = 64


def read(path: str | os.PathLike) -> Source:
    """Read a spec file (YAML or JSON)."""
    name = os.fspath(path)
    raw = _read_bounded(name)
    key = (name, hashlib.sha256(raw).digest())
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = parse(raw, name)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = parsed
    return parsed.copy()


def _read_bounded(name: str) -> bytes:
    """The file's bytes: never more than MAX_BYTES + 1 read, and never a wait. A stat
    size is no bound (it is 0 for /dev/zero, FIFOs and procfs), so the read itself is
    bounded; folders, devices, FIFOs and sockets are refused (opened non-blocking: a
    FIFO's open would wait for a writer)."""
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SpecError(f"cannot read spec: {e.strerror}", file=name) from None
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise SpecError(f"cannot read spec: this is {kind}, not a regular file", file=name)
        size = info.st_size
        if size > MAX_BYTES:
            raise SpecError(f"file is {size / 1e6:.1f} MB; specs are limited to {MAX_BYTES // 2**20} MiB", file=name, line=1, col=1)
        chunks, total = [], 0
        while total <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - total)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
        raise SpecError(f"file is larger than its size says and than {MAX_BYTES // 2**20} MiB "
                        f"(a procfs file?); specs are limited to {MAX_BYTES // 2**20} MiB", file=name, line=1, col=1)
    except OSError as e:  # EAGAIN included: a file that would block is not waited for
        raise SpecError(f"cannot read spec: {e.strerror}", file=name) from None
    finally:
        os.close(fd)


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
    kind = "JSON" if file.endswith(".json") else "YAML"
    bad = _NOT_PRINTABLE.search(text)
    if bad:  # ruamel reports these at 1:1
        line, col = _line_col(text, bad.start())
        raise SpecError(f"invalid {kind}: control character U+{ord(bad.group()):04X} is not allowed (YAML 1.2 5.1)",
                        file=file, line=line, col=col)
    if not text.strip():
        raise SpecError("the file is empty; a spec is a mapping with netspec, name, input and layers", file=file, line=1, col=1)

    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    # the node tree only (what YAML.compose does, keeping its constructor for the scalars):
    # with ruamel.yaml.clib installed its C parser does this about 10x faster than the
    # Python round-trip loader; the nodes carry their positions, and _Plain builds plain
    # values from them (YAML 1.2 scalars). Nothing built here has cycles: the collector
    # would only rescan the growing tree (a third of the time of a large file).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sum(map(text.count, _INDICATORS)) > _COMPOSE_DIRECTLY:
                _scan(text, file)
            constructor, parser = _yaml().get_constructor_parser(text)
            try:
                node = constructor.composer.get_single_node()
            finally:
                parser.dispose()
        source = Source(file, None)
        source.data = _Plain(source, constructor, kind).convert(node, (), 0) if node is not None else None
        if kind == "JSON":  # after _Plain, which locates what it refuses (depth, NaN) in the node tree
            _strict_json(text, file)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip() + _yaml_hint(text, mark)
        raise SpecError(f"invalid {kind}: {problem}", file=file,
                        line=mark.line + 1 if mark else None, col=mark.column + 1 if mark else None) from None
    except (YAMLError, RecursionError) as e:
        raise SpecError(f"invalid {kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=file, line=1, col=1) from None
    finally:
        if collecting:
            gc.enable()
    if not isinstance(source.data, dict):
        what = "empty" if source.data is None else f"a {type(source.data).__name__}"
        raise SpecError(f"a spec is a mapping at the top level (netspec, name, input, layers), but this document is {what}",
                        file=file, line=1, col=1)
    return source


_UNQUOTED_EXPR = re.compile(r"""(?<!["'])\$\{[^}]*\}""")


def _yaml_hint(text: str, mark) -> str:
    """What usually causes a syntax error on this line: `${...}` unquoted, whose braces
    YAML reads as a mapping."""
    lines = text.splitlines()
    line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
    found = _UNQUOTED_EXPR.search(line)
    if found:
        return f'; quote the expression: "{found.group(0)}" (braces are YAML syntax)'
    return ""
def _line_col(text: str, index: int) -> tuple[int, int]:
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def copy_data(value):
    """A deep copy of plain data (mappings, lists, scalars), as copy.deepcopy gives, in
    a fraction of its time: a spec's data has no other containers and no shared parts."""
    if isinstance(value, dict):
        return {k: copy_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_data(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)  # one per process: making it looks for plug-ins on disk
def _yaml():
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver

    class Resolver(VersionedResolver):
        # YAML 1.2 always (ruamel's property finds the version through two failed attribute
        # lookups, once per scalar), and a plain scalar's tag depends on its text alone:
        # looked up once per distinct text, these were most of the C parser's time
        processing_version = (1, 2)

        def resolve(self, kind, value, implicit):
            if kind is not ScalarNode or not implicit[0]:
                return super().resolve(kind, value, implicit)
            tag = tags.get(value)
            if tag is None:
                tag = tags[value] = super().resolve(kind, value, implicit)
            return tag

    tags: dict = {}

    yaml = YAML(typ="safe")
    yaml.Resolver = Resolver
    return yaml


def _scan(text: str, file: str) -> None:
    """Walk the event stream (flat, no recursion) and refuse nesting deeper than
    MAX_DEPTH or more than MAX_NODES nodes before anything is composed: ruamel's C
    composer recurses once per level, and ~30,000 levels overflow the C stack."""
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent, StreamEndEvent

    _, parser = _yaml().get_constructor_parser(text)
    depth = nodes = 0
    try:
        while True:
            event = parser.get_event()
            kind_of = type(event)
            if issubclass(kind_of, CollectionEndEvent):
                depth -= 1
                continue
            if issubclass(kind_of, (ScalarEvent, AliasEvent, CollectionStartEvent)):
                nodes += 1
                if depth > MAX_DEPTH or nodes > MAX_NODES:
                    line, col = event.start_mark.line + 1, event.start_mark.column + 1
                    what = (f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH
                            else f"has more than {MAX_NODES:,} nodes")
                    raise SpecError(f"document {what}; refused", file=file, line=line, col=col)
                depth += issubclass(kind_of, CollectionStartEvent)
            elif kind_of is StreamEndEvent:
                return
    finally:
        parser.dispose()


def _strict_json(text: str, file: str) -> None:
    """A .json file is JSON (RFC 8259), not the YAML it would also parse as: no comments,
    single quotes, trailing commas or NaN. Python's json checks the syntax (numbers are
    not even converted); ruamel then builds the values with their positions."""
    import json

    try:  # NaN and Infinity pass here; _Plain refuses them as unquoted words, where they stand
        json.loads(text, parse_int=len, parse_float=len, parse_constant=len)
    except json.JSONDecodeError as e:
        at, before = text[e.pos:e.pos + 1], text[:e.pos].rstrip()[-1:]
        hint = ("; a trailing comma" if at in "]}" and at and before == "," else
                "; strings are double-quoted" if at == "'" else "; JSON has no comments" if at in "#/" and at else "")
        raise SpecError(f"invalid JSON: {e.msg}{hint}", file=file, line=e.lineno, col=e.colno) from None
    except RecursionError:
        raise SpecError(f"document nested deeper than {MAX_DEPTH} levels; refused", file=file, line=1, col=1) from None


def from_data(data: dict, file: str = "<dict>") -> Source:
    """A Source for a dict built in Python (no positions); still refuses non-plain values."""
    source = Source(file, None)
    source.data = _Plain(source).convert_value(data, (), 0)
    if not isinstance(source.data, dict):
        raise SpecError("a spec is a mapping at the top level", file=file)
    return source


class _Plain:
    """Build plain Python values from ruamel's node tree (or, for from_data, from Python
    values), recording positions and refusing what a spec cannot hold."""

    def __init__(self, source: Source, constructor=None, kind: str = "YAML"):
        self.source = source
        self.constructor = constructor  # ruamel's SafeConstructor: YAML 1.2 scalars
        if constructor is not None:
            from ruamel.yaml.nodes import ScalarNode
            self.scalar_node = ScalarNode
        self.kind = kind
        self.nodes = 0

    def fail(self, message: str, path: tuple, position=None) -> SpecError:
        return SpecError(message, path).located(self.source.file, position or self._nearest(path))

    def _nearest(self, path):
        while path and path not in self.source.positions:
            path = path[:-1]
        return self.source.positions.get(path, (1, 1))

    def _count(self, path: tuple, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"document has more than {MAX_NODES:,} nodes after alias expansion; refused", path)
        if depth > MAX_DEPTH:
            raise self.fail(f"document nested deeper than {MAX_DEPTH} levels; refused", path)

    # -- YAML nodes ------------------------------------------------------------------
    def convert(self, node: Any, path: tuple, depth: int) -> Any:
        self._count(path, depth)
        tag = self._tag(node, path)
        if node.id == "mapping":
            out: dict = {}
            self._mapping(node, path, depth, out, explicit=True)
            return out
        if node.id == "sequence":
            out_list = []
            for i, item in enumerate(node.value):
                child = path + (i,)
                self.source.positions[child] = _position(item)
                out_list.append(self.convert(item, child, depth + 1))
            return out_list
        return self._plain_scalar(self._scalar(node, tag, path), path)

    def _tag(self, node, path: tuple, position=None) -> str:
        tag = _tag(node)
        if tag == _TIMESTAMP:  # an unquoted date: no tag was written
            raise self.fail("YAML value of type timestamp is not allowed; use a number, string (quote a date), "
                            "true/false, null, list or mapping", path, position)
        if tag not in _STANDARD_TAGS:
            raise self.fail(f"YAML tag {_shown(tag)} is not allowed (specs are plain data; nothing is constructed)", path, position)
        if _KIND_OF_TAG.get(tag, "scalar") != node.id:  # `!!map [1, 8, 8]`, `!!str {a: 1}`
            raise self.fail(f"YAML tag {_shown(tag)} does not fit a {node.id}", path, position)
        return tag

    def _scalar(self, node, tag: str, path: tuple, position=None) -> Any:
        """The YAML 1.2 value of a scalar node. An explicit tag takes only text that YAML
        would read as that type untagged (`!!int "abc"`, `!!bool maybe`, `!!int "٣"` are
        errors), integers of thousands of digits are errors, and in a .json file so are
        unquoted words (NaN, Infinity)."""
        text = node.value
        if tag == _STR:
            if self.kind == "JSON" and node.style != '"':
                raise self.fail(f"invalid JSON: {_clip(text)!r} is not a JSON value (strings are double-quoted)", path, position)
            return text
        implicit = _tag_of(self.constructor.resolver.resolve(self.scalar_node, text, (True, False)))
        if implicit == tag or (tag == _FLOAT and implicit == _INT):
            if tag == _BOOL:
                return _BOOLS[text]
            if tag == _NULL:
                return None
            try:
                return (self.constructor.construct_yaml_int if tag == _INT else self.constructor.construct_yaml_float)(node)
            except ValueError:  # Python reads at most 4,300 digits
                digits = text.lstrip("+-").replace("_", "")
                raise self.fail(f"integer of {len(digits):,} digits is out of range (at most {MAX_INT:,} in magnitude)",
                                path, position) from None
        raise self.fail(f"{_clip(text)!r} is not a valid {_shown(tag)} value", path, position)

    def _mapping(self, node, path: tuple, depth: int, out: dict, explicit: bool) -> None:
        """Add node's pairs to out; `<<` merge keys add what the mapping does not set itself."""
        merges = []
        first_line: dict = {}
        for key_node, value_node in node.value:
            tag = _tag(key_node)
            if tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            at = _position(key_node)
            key = self._scalar(key_node, self._tag(key_node, path, at), path, at) if key_node.id == "scalar" else key_node
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                shown = "null" if key is None else key_node.id if key is key_node else type(key).__name__
                raise self.fail(f"mapping keys are strings or integers, not {shown}", path, at)
            child = path + (key,)
            if key in first_line:
                raise SpecError(f'invalid {self.kind}: duplicate key "{key}"; first at line {first_line[key]}',
                                file=self.source.file, line=at[0], col=at[1])
            first_line[key] = at[0]
            if not explicit and key in out:
                continue
            self.source.key_positions[child] = at
            self.source.positions[child] = _position(value_node)
            out[key] = self.convert(value_node, child, depth + 1)
        for merged in merges:
            self._count(path, depth)
            for base in (merged.value if merged.id == "sequence" else [merged]):
                if base.id != "mapping":
                    raise self.fail("a << merge key takes a mapping or a list of mappings", path, _position(base))
                self._mapping(base, path, depth + 1, out, explicit=False)

    def _plain_scalar(self, value: Any, path: tuple) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.fail(f"integer {_short_int(value)} is out of range (at most {MAX_INT:,} in magnitude)", path)
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):  # no field means infinity or NaN, and `1e999` is not a number one meant
                raise self.fail(f"{value} is not allowed: numbers in a spec are finite", path)
            return float(value)
        if isinstance(value, str):
            return str(value)
        raise self.fail(f"YAML value of type {type(value).__name__} is not allowed; "
                        f"use a number, string, true/false, null, list or mapping", path)

    # -- Python values (from_data) ------------------------------------------------------
    def convert_value(self, value: Any, path: tuple, depth: int) -> Any:
        self._count(path, depth)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise self.fail(f"mapping keys are strings or integers, not {type(key).__name__} {key!r}", path)
                out[key] = self.convert_value(item, path + (key,), depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [self.convert_value(item, path + (i,), depth + 1) for i, item in enumerate(value)]
        return self._plain_scalar(value, path)


_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}  # YAML 1.2
_KIND_OF_TAG = {"tag:yaml.org,2002:map": "mapping", "tag:yaml.org,2002:seq": "sequence"}


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _shown(tag: str) -> str:
    return str(tag).replace("tag:yaml.org,2002:", "!!")


def _short_int(value: int) -> str:
    # str() of an int over 4,300 digits raises: a long one is told by its size
    return f"{value:,}" if abs(value) < 10**30 else f"of {value.bit_length():,} bits"


def _tag(node) -> str:
    return _tag_of(node.ctag)


def _tag_of(tag) -> str:
    # a Tag; C-parser tags come complete and decoded (.trval decodes them again, char by char)
    if tag.handle is None and "%" not in tag.suffix:
        return tag.suffix
    return tag.trval


def _position(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


# -- --set PATH=VALUE ---------------------------------------------------------------
# extends.apply_sets is the entry point; these are its plain-document half.
_INDEX = re.compile(r"-?[0-9]+\Z")  # ASCII digits only: '²'.isdigit() is true, int('²') fails


def split_path(dotted: str) -> list:
    """'layers[3].conv1.k' -> ['layers', 3, 'conv1', 'k'] (the PATHs of --set, --grid and patch:)."""
    parts = dotted.replace("[", ".").replace("]", "").split(".")
    return [int(p) if _INDEX.match(p) else p for p in parts if p != ""]


def printable(text: str) -> str:
    """Command-line text for an error line: control characters escaped, so the line stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def set_label(text: str) -> str:
    """Where an error in a --set value is: the argument itself (`--set train.epochs=3x`)."""
    return f"--set {printable(text)}"


def parse_override(text: str) -> tuple[list, Any]:
    """`PATH=VALUE` -> (path segments, value). VALUE is a YAML value (`3`, `0.1`, `true`,
    `[1, 2]`, `{k: 3}`, `relu`) on one line."""
    if "\n" in text or "\r" in text:
        raise SpecError("--set PATH=VALUE is one line; this one has a line break", file=set_label(text))
    if "=" not in text:
        raise SpecError("--set takes PATH=VALUE, e.g. train.epochs=3", file=set_label(text))
    dotted, value_text = text.split("=", 1)
    segs = split_path(dotted)
    if not segs:
        raise SpecError("--set needs a PATH before '=', e.g. train.epochs=3", file=set_label(text))
    try:
        value = parse(f"v: {value_text}\n", "--set").data["v"]
    except SpecError as e:
        raise SpecError(e.message, file=set_label(text)) from None
    return segs, value


def _refuse_invented(data: dict, path: tuple, key, node: dict, text: str) -> None:
    """A --set that would make up a graph node, or the other layout, on its way to a field is
    a typo: one line naming what exists."""
    if path == () and key in ("layers", "graph") and ({"layers", "graph"} - {key}) & set(data):
        other = "graph" if key == "layers" else "layers"
        hint = "graph.nodes.<id>.<field>" if other == "graph" else "layers.<name or index>.<field>"
        raise SpecError(f"the spec has no {key}: its network is {other}: (a path through it: {hint})", file=set_label(text))
    if path[-1:] == ("nodes",) and node:   # a graph's nodes
        from netspec.document.locate import did_you_mean
        where = ".".join(map(str, path))
        raise SpecError(f"{where} has no node {key!r}{did_you_mean(str(key), node)} (nodes: {', '.join(map(str, node))})",
                        file=set_label(text))


def set_plain(source: Source, segs: list, value: Any, text: str) -> None:
    """Set the value at plain keys and indexes (mappings are created on the way) and
    record that `text` put it there."""
    node, path, created = source.data, (), None
    for key in segs[:-1]:
        if isinstance(node, dict):
            if key not in node:
                _refuse_invented(source.data, path, key, node, text)
                node[key] = {}
                created = created or path + (key,)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            key %= len(node)
            node = node[key]
        else:
            raise SpecError(f"{'.'.join(map(str, path + (key,)))} does not exist", file=set_label(text))
        path += (key,)
    last = segs[-1]
    if isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
        last %= len(node)
    elif not isinstance(node, dict):
        raise SpecError(f"cannot set {last!r} inside {type(node).__name__}", file=set_label(text))
    node[last] = value
    source.sets[created or path + (last,)] = text
