"""Suggestions ("did you mean") at every depth of a spec, and PyTorch's names pointed at
netspec's (issue 23, item 9). In-process: each case is one small spec through load,
resolve and analysis."""
from __future__ import annotations

import pytest

import netspec
from netspec.constructs import CONSTRUCTS
from netspec.errors import NetspecError

# An item at `X`, in every slot of every construct (the slot written as its type takes it).
SLOTS = {
    ("concat", "branches"): "concat: {branches: {a: [X], b: [identity]}}",
    ("concat", "branches", "list"): "concat: {branches: [[X], [identity]]}",
    ("split", "branches"): "split: {branches: {a: [X], b: []}}",
    ("dense", "body"): "dense: {repeat: 2, body: [X]}",
    ("gate", "body"): "gate: {body: [X]}",
    ("sequence", "body"): "sequence: {name: s, body: [X]}",
    ("residual", "body"): "residual: {body: [X]}",
    ("residual", "shortcut"): "residual: {body: [identity], shortcut: [X]}",
    ("residual", "post"): "residual: {body: [identity], post: [X]}",
    ("residual", "post", "one item"): "residual: {body: [identity], post: {X}}",
    ("graph", "nodes"): "graph: {nodes: {a: {X}}}",
    ("graph", "nodes", "with from"): "graph: {nodes: {a: identity, b: {from: input, X}}}",
    ("graph", "nodes", "body"): "graph: {nodes: {a: {body: [X]}}}",
    ("partition", "body"): "partition: {size: 2, body: [X]}",
}
# Where an item list can sit: top-level layers, macros, a block's body and its construct shorthand.
PLACES = {
    "layers": ("", "{item}"),
    "repeat": ("", "{{repeat: 2, body: [{item}]}}"),
    "named repeat": ("", "{{repeat: 2, name: r, body: [{item}]}}"),
    "when": ("", "{{when: true, body: [{item}]}}"),
    "when else": ("", "{{when: false, body: [identity], else: [{item}]}}"),
    "block body": ("blocks:\n  b:\n    args: {{c: 4}}\n    body: [{item}]\n", "b: {{c: 4}}"),
    "block residual": ("blocks:\n  b:\n    args: {{c: 4}}\n    residual:\n      body: [{item}]\n", "b: {{c: 4}}"),
}
TYPOS = {
    "field": ("conv: {out: 3, k: 1, paddng: 0}", "unknown field 'paddng' (did you mean 'padding'?)"),
    "layer type": ("rleu", "unknown layer type or block 'rleu' (did you mean 'relu'?)"),
    "PyTorch's name": ("BatchNorm2d", "unknown layer type or block 'BatchNorm2d' (did you mean 'bn'?"),
}


def _error(text: str) -> str:
    from netspec.document.load import parse
    from netspec.document import load_spec
    source = parse(text, "t.yaml")
    with pytest.raises(NetspecError) as e:
        netspec.analyze(load_spec(source.data))
    return str(e.value)


def _spec(place: str, item: str) -> str:
    blocks, layer = PLACES[place]
    return (f"netspec: 1\nname: t\ninput: [3, 8, 8]\n{blocks.format(item=item)}"
            f"layers:\n  - {layer.format(item=item)}\n")


def test_every_slot_of_every_construct_is_covered():
    assert {(c, s) for c, s, *_ in SLOTS} == {(tag, slot) for tag, cls in CONSTRUCTS.items() for slot in cls.slots}


@pytest.mark.parametrize("typo", TYPOS)
@pytest.mark.parametrize("slot", SLOTS, ids=["-".join(s) for s in SLOTS])
@pytest.mark.parametrize("place", PLACES)
def test_a_typo_is_suggested_at_every_depth(place, slot, typo):
    written, words = TYPOS[typo]
    item = SLOTS[slot].replace("X", written)
    assert words in _error(_spec(place, "{" + item + "}"))


@pytest.mark.parametrize("place", PLACES)
def test_a_construct_field_typo_is_suggested_at_every_depth(place):
    message = _error(_spec(place, "{residual: {body: [identity], shortcutt: auto}}"))
    assert "unknown field 'shortcutt' (did you mean 'shortcut'?)" in message


@pytest.mark.parametrize("written, tag", [
    ("batchnorm2d", "bn"), ("BatchNorm2d", "bn"), ("BATCHNORM1D", "bn"), ("ReLU", "relu"), ("Conv2d", "conv"),
    ("Linear", "linear"), ("MaxPool2d", "maxpool"), ("AdaptiveAvgPool2d", "adaptive_avgpool"), ("Dropout", "dropout"),
    ("GELU", "gelu"), ("LayerNorm", "layernorm"), ("GroupNorm", "groupnorm"), ("Upsample", "upsample"),
    ("LeakyReLU", "leaky_relu"), ("ConvTranspose2d", "conv_transpose"), ("MultiheadAttention", "self_attention"),
    ("Sequential", "sequence"), ("batchnrm", "bn"), ("Relu", "relu"),
])
def test_pytorch_names_and_other_spellings_point_at_the_tag(written, tag):
    for item in (written, f"{written}: {{}}"):
        assert f"unknown layer type or block '{written}' (did you mean '{tag}'?" in _error(_spec("layers", item))


def test_an_alias_hint_names_what_it_stands_for():
    assert "(did you mean 'bn'? netspec's name for BatchNorm2d)" in _error(_spec("layers", "BatchNorm2d"))


def test_a_scalar_after_an_unknown_type_is_suggested_like_a_mapping():
    assert "unknown layer type or block 'avgpol' (did you mean 'avgpool'?)" in _error(_spec("layers", "avgpol: global"))
    assert "unknown layer type or block 'avgpol' (did you mean 'avgpool'?)" in _error(_spec("layers", "avgpol: {k: global}"))
    # a block that exists still says what a call takes
    text = "netspec: 1\nname: t\ninput: [3, 8, 8]\nblocks: {b: {body: [relu]}}\nlayers:\n  - b: 3\n"
    assert "'b' is not a layer type; as a block call it takes a mapping of arguments, not int" in _error(text)


def test_an_unknown_repeat_field_lists_the_repeat_fields():
    message = _error(_spec("layers", "{repeat: 2, body: [relu], bodyy: 3}"))
    assert "unknown field 'bodyy' (did you mean 'body'?)" in message
    message = _error(_spec("layers", "{repeat: 2, body: [relu], out: 3}"))
    assert "unknown field 'out'" in message and "dropout" not in message
    assert "(fields here: body, name, overrides, repeat)" in message


def test_the_integer_division_hint_only_for_a_division():
    literal = _error(_spec("layers", "conv: {out: 64.0, k: 1}"))
    assert "got 64.0" in literal and "//" not in literal
    divided = _error("netspec: 1\nname: t\ninput: [3, 8, 8]\nvars: {c: 64}\nlayers:\n  - conv: {out: '${c / 2}', k: 1}\n")
    assert "got 32.0 (use // for integer division in expressions)" in divided
    through_var = _error("netspec: 1\nname: t\ninput: [3, 8, 8]\nvars: {c: 64, h: '${c / 2}'}\n"
                         "layers:\n  - conv: {out: $h, k: 1}\n")
    assert "(use // for integer division in expressions)" in through_var
    scaled = _error("netspec: 1\nname: t\ninput: [3, 8, 8]\nvars: {c: 64}\nlayers:\n  - conv: {out: '${c * 0.5}', k: 1}\n")
    assert "got 32.0" in scaled and "//" not in scaled and "int(" in scaled
