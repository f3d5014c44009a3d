"""PATHs into a spec document by module name: what `patch:` operations and `--set`
address (`layers.conv1.k`, `blocks.basic.body.conv2.groups`, `train.optimizer.lr`).

Inside a layer list a segment is an item's index (0-based, negative from the end) or
its module `name`; an item's fields follow directly (`layers.conv1.k`; the type key may
also be written, `layers.0.conv.k`); inside a construct, a name also finds children of
its slots (`body`, `post`, `shortcut`; a branch list's items) or (`when:`) `else` list. Shorthand items (`- bn`, `maxpool: 2`) are
expanded in place when a field of theirs is addressed. `doc` is extends.py's position
bookkeeping, so expanded items keep the origin of what they replace.
Must not import torch or any later stage.
"""
from __future__ import annotations

from typing import Any

from netspec.constructs import CONSTRUCTS
from netspec.layers import REGISTRY
from netspec.document.schema import INLINE_ITEMS

# the item lists a name may be found in: every construct's slots, and `when:`'s else
_CHILD_LISTS = tuple(dict.fromkeys([slot for cls in CONSTRUCTS.values() for slot in cls.slots] + ["else"]))
_REPEAT_FIELDS = sorted(info.alias or name for name, info in INLINE_ITEMS["repeat"].model_fields.items())


class PathError(Exception):
    """A PATH that does not lead anywhere; the caller locates it."""


def show(segs) -> str:
    return ".".join(str(s) for s in segs) or "<root>"


def _item_key(item) -> str | None:
    """The type key of a layer-list item (`conv`, `residual`, a block name), or None
    for a `repeat:` item (whose fields sit at the item's top level)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "repeat" not in item and len(item) == 1:
        return next(iter(item))
    return None


def _item_name(item) -> str | None:
    content = item if _item_key(item) is None else (item[_item_key(item)] if isinstance(item, dict) else None)
    name = content.get("name") if isinstance(content, dict) else None
    return name if isinstance(name, str) else None


class Names:
    """The module names of a document's layer lists, so that a PATH segment finds its
    item without reading every item's name (8,000 patch `set`s on 8,000 named layers
    took 46 s). Per list: `names[i]` is item i's name, kept in step by the edits
    (`changed`, `removed`, `inserted`: extends._Doc calls them), and a name -> positions
    map. An edit that shifts positions drops the map; until a few lookups have asked
    for it again, `list.index` over `names` answers (C speed), so a run of deletes by
    name does not rebuild it each time."""

    REBUILD_AFTER = 8

    def __init__(self):
        self.lists: dict[int, list] = {}   # id(items) -> [items, names, where | None, scans]
        self.entered: list[tuple[list, int]] = []   # the items the current PATH stepped into

    def _of(self, items: list) -> list:
        entry = self.lists.get(id(items))
        if entry is None:   # the entry holds the list, so no other list takes its id
            entry = self.lists[id(items)] = [items, [_item_name(x) for x in items], None, 0]
        return entry

    def find(self, items: list, name: str) -> list[int]:
        entry = self._of(items)
        names, where = entry[1], entry[2]
        if where is None and entry[3] >= self.REBUILD_AFTER:
            where = entry[2] = {}
            for i, n in enumerate(names):
                if n is not None:
                    where.setdefault(n, []).append(i)
        if where is not None:
            return where.get(name, [])
        entry[3] += 1
        try:
            first = names.index(name)
        except ValueError:
            return []
        try:
            names.index(name, first + 1)
        except ValueError:
            return [first]
        return [i for i, n in enumerate(names) if n == name]

    def changed(self, container, key) -> None:
        """container[key] was set: an item of a list, or something under the items the PATH
        stepped into (a `name:` among them)."""
        spots = [(container, key)] if isinstance(container, list) else self.entered
        for items, i in spots:
            entry = self.lists.get(id(items))
            if entry is None or not 0 <= i < len(items):
                continue
            old, new = entry[1][i], _item_name(items[i])
            if old != new:
                entry[1][i] = new
                if entry[2] is not None:
                    if old is not None:
                        entry[2][old].remove(i)
                    if new is not None:
                        entry[2].setdefault(new, []).append(i)

    def removed(self, items: list, i: int) -> None:
        entry = self.lists.get(id(items))
        if entry is not None:
            del entry[1][i]
            entry[2:] = [None, 0]

    def inserted(self, items: list, i: int, count: int) -> None:
        entry = self.lists.get(id(items))
        if entry is not None:
            entry[1][i:i] = [_item_name(x) for x in items[i:i + count]]
            entry[2:] = [None, 0]


def _find(items: list, seg, trail: list, doc) -> int:
    index = _index(items, seg, trail, doc)
    if index is not None:
        return index
    names = [n for n in map(_item_name, items) if n]
    from netspec.document.locate import did_you_mean
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20:,} more" if len(names) > 20 else "")
    listed = f" (named items: {shown})" if names else " (no item here has a name; use an index)"
    raise PathError(f"{show(trail + [seg])}: no item named {seg!r} in {show(trail) or 'the document'}"
                    f"{did_you_mean(seg, names)}{listed}")


def _index(items: list, seg, trail: list, doc) -> int | None:
    """The position seg names in items (an index, or a unique name); None if no item has that name."""
    if isinstance(seg, int):
        if -len(items) <= seg < len(items):
            return seg % len(items)
        raise PathError(f"{show(trail + [seg])}: index {seg} is out of range (the list has {len(items)} items)")
    hits = doc.names.find(items, seg)
    if len(hits) > 1:
        raise PathError(f"{show(trail + [seg])}: {len(hits)} items are named {seg!r}; use an index")
    return hits[0] if hits else None


def _content(parent: list, index: int, doc) -> tuple[dict, str | None]:
    """The field mapping of the item parent[index], expanding `- bn`, `bn: null` and
    scalar shorthands (`maxpool: 2`) in place so that fields can be set on it."""
    item = parent[index]
    key = _item_key(item)
    if key is None:
        if not isinstance(item, dict):
            raise PathError(f"element {index} is not a layer item")
        return item, None
    origin = doc.origin_of(parent, index)
    if isinstance(item, str):
        doc.put_raw(parent, index, {item: {}}, origin)
        item = parent[index]
    value = item[key]
    if not isinstance(value, dict):
        if value is None:
            expanded = {}
        elif key in REGISTRY and REGISTRY[key].shorthand:
            expanded = {REGISTRY[key].shorthand: value}
        else:
            raise PathError(f"item {index} ({key}: {value!r}) has no fields to address")
        doc.put_raw(item, key, expanded, doc.origin_of(item, key) or origin)
    return item[key], key


def _enter(items: list, index: int, doc) -> tuple[Any, str | None]:
    """Step into items[index]: a layer item's fields (and its type key), or the item itself."""
    if _item_key(items[index]) is not None:
        return _content(items, index, doc)
    return items[index], None


def locate(root, segs: list, doc, create: bool) -> tuple[Any, Any]:
    """Walk segs[:-1] from root; return (container, key) for the last segment, where
    key is a list index (resolved from a name) or a mapping key."""
    if not segs:
        raise PathError("an empty PATH")
    node, tag, trail = root, None, []
    doc.names.entered = []
    for depth, seg in enumerate(segs):
        last = depth == len(segs) - 1
        if isinstance(node, list):
            index = _find(node, seg, trail, doc)
            if last:
                return node, index
            doc.names.entered.append((node, index))
            node, tag = _enter(node, index, doc)
        elif isinstance(node, dict):
            if tag is None and "repeat" in node and seg not in _REPEAT_FIELDS and _child_in(node, seg, trail, doc) is None:
                # a repeat of one item (a block call) is addressed like that item: `layers.stage2.c`
                body = node.get("body")
                if isinstance(body, list) and len(body) == 1:
                    doc.names.entered.append((body, 0))
                    node, tag = _enter(body, 0, doc)
                elif isinstance(body, list):
                    raise PathError(f"{show(trail + [seg])}: no field or module {seg!r} here ({_here(node, tag, root)}); "
                                    f"the repeat's body has {len(body)} items: a field of one is "
                                    f"{show(trail + ['body', 0, seg])}")
            if tag is not None and seg == tag and seg not in node and not last:
                trail.append(seg)      # `layers.0.conv.k`: the type key is optional
                tag = None
                continue
            if last:
                if seg not in node and not create:
                    raise PathError(f"{show(trail + [seg])} does not exist ({_here(node, tag, root)})")
                return node, seg
            if seg in node:
                node, tag = node[seg], None
            else:
                inline = any(key in node for key in INLINE_ITEMS)
                child = _child_in(node, seg, trail, doc) if tag is not None or inline else None
                if child is not None:
                    doc.names.entered.append(child)
                    node, tag = _enter(*child, doc)
                elif create and tag is None and "repeat" not in node:
                    doc.put_raw(node, seg, {}, doc.origin_of_node(node))
                    node = node[seg]
                else:
                    raise PathError(f"{show(trail + [seg])}: no field or module {seg!r} here ({_here(node, tag, root)})")
        else:
            raise PathError(f"{show(trail)} is a value ({node!r}), not a mapping or list")
        trail.append(seg)
    raise AssertionError("unreachable")


def _here(node: dict, tag, root) -> str:
    """What a PATH may name inside an item's mapping, for errors: its fields (a layer's or
    construct's, a block call's arguments, a macro's; a plain mapping's keys) and the
    names of the items in its lists."""
    model = (REGISTRY.get(tag) or CONSTRUCTS.get(tag)) if tag is not None else \
        next((m for key, m in INLINE_ITEMS.items() if key in node), None)
    if model is not None:
        fields = [info.alias or name for name, info in model.model_fields.items()]
    elif tag is not None:   # a block call: the block's arguments
        block = (root.get("blocks") or {}).get(tag) if isinstance(root, dict) else None
        args = block.get("args") if isinstance(block, dict) else None
        fields = [*(args if isinstance(args, dict) else ()), "name"]
    else:
        fields = list(node)
    names = []
    for key in _CHILD_LISTS:
        value = node.get(key)
        lists = value.values() if isinstance(value, dict) else value if isinstance(value, list) and value and \
            all(isinstance(b, list) for b in value) else [value]
        names += [n for items in lists if isinstance(items, list) for n in map(_item_name, items) if n]
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20:,} more" if len(names) > 20 else "")
    return f"fields: {', '.join(sorted(map(str, fields))) or 'none'}; named items: {shown or 'none'}"


def _child_in(content: dict, seg, trail: list, doc):
    """A named (or indexed) child inside a construct's slot: a body, post or shortcut list,
    or the item lists of its branches (a mapping of lists, or a list of lists)."""
    for key in _CHILD_LISTS:
        value = content.get(key)
        branches = value.values() if isinstance(value, dict) else \
            value if isinstance(value, list) and value and all(isinstance(b, list) for b in value) else [value]
        for items in branches:
            if isinstance(items, list):
                try:
                    index = _index(items, seg, trail + [key], doc)
                except PathError:
                    continue
                if index is not None:
                    return items, index
    return None


def plain_path(data, segs: list) -> bool:
    """Whether load.set_plain can follow segs as plain keys and indexes (and
    each step into a layer item names its type key)."""
    node, from_list = data, False
    for i, seg in enumerate(segs):
        if isinstance(node, dict):
            if from_list and _item_key(node) is not None and seg != _item_key(node):
                return False
            if from_list and "repeat" in node and seg not in _REPEAT_FIELDS:   # a field of the repeat's item
                return False
            if i == len(segs) - 1:
                return True
            node, from_list = node.get(seg, {}), False
        elif isinstance(node, list):
            if not (isinstance(seg, int) and -len(node) <= seg < len(node)):
                return False
            node, from_list = node[seg], True
        else:
            return False
    return True
