"""`extends:` and `patch:` — a spec written as a few lines over a base spec — and the
module-name addressing that `patch:` and `--set` share.

A document with `extends: base.yaml` (a path relative to the document's file) is
resolved on the raw data, before validation:

1. the base is read and resolved the same way (recursively; cycles, missing files and
   chains deeper than MAX_CHAIN are located errors at the `extends:` that causes them);
2. the document's own top-level keys are merged over the base's: `vars` and `blocks`
   entry by entry (a redefined name replaces the base's entry, new names are appended),
   `train` and `expect` recursively (mappings key by key; lists and scalars replace; an
   `expect.output` replaces the base's whole: a record of output shapes is one value),
   every other key (`name`, `input`, `layers`, ...) replaces the base's; `layers:` and `graph:`
   are one layout, so either replaces the base's (a graph over a base's chain: reuse its blocks);
3. the document's `patch:` operations are applied, in order, to the merged document.

A patch operation is a one-key mapping:
    - set: {PATH: VALUE, ...}          set a field anywhere (creates mapping keys;
                                       on a list element, replaces it)
    - delete: PATH | [PATH, ...]       remove a list element (a layer) or a mapping key
    - replace: {PATH: ITEM | [ITEMS]}  a list element becomes these items
    - insert_before: {PATH: ITEM | [ITEMS]}
    - insert_after:  {PATH: ITEM | [ITEMS]}
PATH is dotted (`layers.conv1.k`, `train.optimizer.lr`, `blocks.basic.body.conv2.groups`).
Inside a layer list a segment is an item's index (0-based, negative from the end) or
its module `name`; an item's fields follow directly (`layers.conv1.k`; the type key may
also be written, `layers.0.conv.k`); inside a construct, a name also finds children of
its `body`, `post`, `shortcut` or `branches` (`layers.layer2.body.0.stride`,
`layers.features.conv3.out`); netspec.document.address finds what a PATH names.

Positions are kept per node: an error in a value that came from a base file, or from a
patch, points at that file and line (`MergedSource`). The resolved document carries no
`extends:`/`patch:` keys, so it stands alone (run folders save it).
Must not import torch or any later stage.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from netspec.errors import SpecError
from netspec.document.address import Names, PathError, locate, plain_path, show
from netspec.document.load import Source, parse_override, read, set_label, set_plain, split_path

MAX_CHAIN = 32                       # extends depth; deeper is surely a mistake
MERGE_ENTRIES = ("vars", "blocks")   # merged one level: name -> definition
MERGE_DEEP = ("train", "expect")     # merged recursively
WHOLE = {("expect", "output")}       # ... except these values: a record of output shapes is one value
OPS = ("set", "delete", "replace", "insert_before", "insert_after")
LAYOUTS = ("layers", "graph")          # the model's layout: a document's own replaces the base's


@dataclass
class MergedSource(Source):
    """A resolved `extends:` chain. `origins` maps a path of the merged document to
    (file, path in that file), so errors point at the file a value came from."""

    origins: dict[tuple, tuple[str, tuple]] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)   # the files, this document first

    def origin(self, path: tuple) -> tuple[str, tuple]:
        probe = tuple(path)
        while probe and probe not in self.origins:
            probe = probe[:-1]
        file, original = self.origins.get(probe, (self.file, probe))
        return file, original + tuple(path[len(probe):])


# -- public entry points ------------------------------------------------------------
def has_extends(source: Source) -> bool:
    return isinstance(source.data, dict) and ("extends" in source.data or "patch" in source.data)


def resolve_extends(source: Source) -> Source:
    """The document with its `extends:` chain merged and its `patch:` applied; a
    document with neither is returned as it is."""
    if not has_extends(source):
        return source
    doc = _Doc()
    chain: list[str] = []
    root = _expand(source, doc, chain)
    return doc.finish(root, source, chain)


def apply_sets(source: Source, overrides) -> None:
    """`--set PATH=VALUE`: plain document paths are set as they are; paths that name
    modules or skip a type key (`layers.conv1.k=5`, `layers.0.k=5`) go through the patch
    addressing. `source.sets` records each, so errors in it name the --set."""
    for text in overrides:
        segs, value = parse_override(text)
        if segs[0] in ("extends", "patch"):
            raise SpecError("extends and patch are resolved before --set applies; edit the file", file=set_label(text))
        if plain_path(source.data, segs):
            set_plain(source, segs, value, text)
            continue
        doc = _Doc(track=False)
        try:
            parent, key = locate(source.data, segs, doc, create=True)
        except PathError as e:
            raise SpecError(str(e), file=set_label(text)) from None
        doc.set(parent, key, value, None, ())
        source.sets[_path_to(source.data, parent) + (key,)] = text


def _path_to(node, target, path: tuple = ()) -> tuple | None:
    """The document path of the container `target` (found by identity)."""
    if node is target:
        return path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        if isinstance(child, (dict, list)):
            found = _path_to(child, target, path + (key,))
            if found is not None:
                return found
    return None


# -- the chain ----------------------------------------------------------------------
def _expand(source: Source, doc: "_Doc", chain: list[str]) -> dict:
    """Resolve one document of the chain; `chain` holds the files that extend it."""
    data = source.data
    chain.append(source.file)
    base_ref = data.get("extends")
    own = {k: v for k, v in data.items() if k not in ("extends", "patch")}
    root = doc.adopt(own, source, ())
    if base_ref is not None:
        if not isinstance(base_ref, str) or not base_ref.strip():
            raise _at_extends(source, f"extends takes the path of a base spec (relative to this file), got {base_ref!r}")
        folder = os.path.dirname(source.file) if os.path.isfile(source.file) else ""
        base_file = os.path.normpath(os.path.join(folder, base_ref))
        if not os.path.isfile(base_file):
            raise _at_extends(source, f"base spec {base_ref!r} not found (looked for {base_file})")
        seen = [os.path.realpath(f) for f in chain]
        if os.path.realpath(base_file) in seen:
            cycle = " -> ".join([*chain[seen.index(os.path.realpath(base_file)):], base_file])
            raise _at_extends(source, f"extends cycle: {cycle}")
        if len(chain) >= MAX_CHAIN:
            raise _at_extends(source, f"extends chain longer than {MAX_CHAIN} files")
        try:
            base_source = read(base_file)
        except SpecError as e:
            if e.line is None:  # unreadable: point at the extends that named it
                raise _at_extends(source, f"base spec {base_ref!r}: {e.message}") from None
            raise
        base = _expand(base_source, doc, chain)
        root = _merge(base, root, doc)
    patch = data.get("patch")
    if patch is not None:
        _apply_patch(root, patch, source, doc)
    return root


def _at_extends(source: Source, message: str) -> SpecError:
    return source.error(message, ("extends",) if "extends" in source.data else ())


def _merge(base: dict, own: dict, doc: "_Doc") -> dict:
    """`own`'s top-level keys over `base` (in place on base; base's key order kept)."""
    own_origins = doc.origins(own)
    for key, value in own.items():
        old = base.get(key)
        if key in MERGE_ENTRIES and isinstance(old, dict) and isinstance(value, dict):
            for name, entry in value.items():
                doc.put(old, name, entry, doc.origins(value)[name])
        elif key in MERGE_DEEP and isinstance(old, dict) and isinstance(value, dict):
            _deep(old, value, doc, (key,))
        else:
            if key in LAYOUTS:
                for other in LAYOUTS:
                    if other != key and other in base:
                        doc.remove(base, other)
            doc.put(base, key, value, own_origins[key])
    return base


def _deep(old: dict, new: dict, doc: "_Doc", path: tuple) -> None:
    origins = doc.origins(new)
    for key, value in new.items():
        if isinstance(old.get(key), dict) and isinstance(value, dict) and path + (key,) not in WHOLE:
            _deep(old[key], value, doc, path + (key,))
        else:
            doc.put(old, key, value, origins[key])


# -- patch operations ---------------------------------------------------------------
def _apply_patch(root: dict, patch: Any, source: Source, doc: "_Doc") -> None:
    if not isinstance(patch, list):
        raise source.error(f"patch is a list of operations ({', '.join(OPS)}), got {type(patch).__name__}", ("patch",))
    for i, op in enumerate(patch):
        where = ("patch", i)
        if not isinstance(op, dict) or len(op) != 1:
            raise source.error(f"a patch operation is a mapping with one key: {', '.join(OPS)}", where)
        (name, arg), = op.items()
        if name not in OPS:
            from netspec.document.locate import did_you_mean
            raise source.error(f"unknown patch operation '{name}'{did_you_mean(name, OPS)}; operations: {', '.join(OPS)}",
                               where + (name,), on_key=True)
        where += (name,)
        if name == "delete":
            targets = arg if isinstance(arg, list) else [arg]
            for j, target in enumerate(targets):
                at = where + ((j,) if isinstance(arg, list) else ())
                if not isinstance(target, str) or not target:
                    raise source.error(f"delete takes a PATH or a list of PATHs, got {target!r}", at)
                _run(source, at, lambda t=target: _delete(root, split_path(t), doc), on_key=False)
            continue
        if not isinstance(arg, dict) or not arg:
            raise source.error(f"{name} takes a mapping PATH: {'VALUE' if name == 'set' else 'ITEM or [ITEMS]'}", where)
        for target, value in arg.items():
            at = where + (target,)
            segs = split_path(str(target))
            if name == "set":
                def job(segs=segs, value=value, at=at):
                    parent, key = locate(root, segs, doc, create=True)
                    doc.set(parent, key, value, source, at)
            else:
                def job(segs=segs, value=value, at=at, name=name):
                    parent, key = locate(root, segs, doc, create=False)
                    if not isinstance(parent, list):
                        raise PathError(f"{name} needs a list element (a layer), but {show(segs)} is a field")
                    items = value if isinstance(value, list) else [value]
                    paths = [at + (j,) for j in range(len(items))] if isinstance(value, list) else [at]
                    if name == "replace":
                        doc.remove(parent, key)
                        doc.insert(parent, key, items, source, paths)
                    else:
                        doc.insert(parent, key + (name == "insert_after"), items, source, paths)
            _run(source, at, job, on_key=True)


def _run(source: Source, at: tuple, job, on_key: bool) -> None:
    try:
        job()
    except PathError as e:
        raise source.error(str(e), at, on_key=on_key) from None


def _delete(root: dict, segs: list, doc: "_Doc") -> None:
    parent, key = locate(root, segs, doc, create=False)
    doc.remove(parent, key)


# -- position bookkeeping --------------------------------------------------------------
class _Doc:
    """Copies of documents with the origin (source, path) of every node. Containers are
    kept alive in `meta`, so their ids are stable while the merge runs."""

    def __init__(self, track: bool = True):
        self.track = track
        self.meta: dict[int, tuple[Any, Any, tuple]] = {}  # id -> (container, child origins, own origin)
        self.names = Names()  # layer-list names for PATH lookups, kept in step by the edits below

    def adopt(self, value, source, path: tuple):
        if not self.track:
            return copy.deepcopy(value)
        if isinstance(value, dict):
            out, origins = {}, {}
            for k, v in value.items():
                out[k] = self.adopt(v, source, path + (k,))
                origins[k] = (source, path + (k,))
            self.meta[id(out)] = (out, origins, (source, path))
            return out
        if isinstance(value, list):
            out = [self.adopt(v, source, path + (i,)) for i, v in enumerate(value)]
            self.meta[id(out)] = (out, [(source, path + (i,)) for i in range(len(value))], (source, path))
            return out
        return value

    def origins(self, container):
        return self.meta[id(container)][1] if self.track else None

    def origin_of(self, container, key):
        if not self.track:
            return None
        origins = self.meta[id(container)][1]
        return origins[key] if isinstance(origins, list) else origins.get(key)

    def origin_of_node(self, container):
        return self.meta[id(container)][2] if self.track else None

    def put(self, container, key, value, origin) -> None:
        """Store an already-adopted value under key, with its origin."""
        container[key] = value
        if self.track:
            self.meta[id(container)][1][key] = origin
        self.names.changed(container, key)

    def put_raw(self, container, key, value, origin) -> None:
        """Store a fresh value (built here from existing data) with one origin for all of it."""
        source, path = origin if origin else (None, ())
        self.put(container, key, self.adopt(value, source, path) if source else copy.deepcopy(value), origin)

    def set(self, container, key, value, source, path: tuple) -> None:
        new = self.adopt(value, source, path) if source is not None else copy.deepcopy(value)
        self.put(container, key, new, (source, path) if source is not None else None)

    def remove(self, container, key) -> None:
        del container[key]
        if self.track:
            origins = self.meta[id(container)][1]
            del origins[key]
        if isinstance(container, list):
            self.names.removed(container, key)
        else:
            self.names.changed(container, key)

    def insert(self, container: list, index: int, items: list, source, paths: list) -> None:
        new = [self.adopt(v, source, p) for v, p in zip(items, paths)]
        container[index:index] = new
        if self.track:
            self.meta[id(container)][1][index:index] = [(source, p) for p in paths]
        self.names.inserted(container, index, len(new))

    def finish(self, root: dict, top: Source, chain: list[str]) -> MergedSource:
        merged = MergedSource(top.file, root, chain=list(chain))

        def walk(node, mpath: tuple, origin) -> None:
            source, opath = origin
            if source is not None:
                merged.origins[mpath] = (source.file, opath)
                if opath in source.positions:
                    merged.positions[mpath] = source.positions[opath]
                if opath in source.key_positions:
                    merged.key_positions[mpath] = source.key_positions[opath]
            if isinstance(node, (dict, list)):
                origins = self.meta[id(node)][1]
                keys = node.keys() if isinstance(node, dict) else range(len(node))
                for k in keys:
                    walk(node[k], mpath + (k,), origins[k])

        walk(root, (), (top, ()))
        return merged
