"""The editor's JSON Schema (netspec.schema.json) and `netspec check` agree (issue 23, item 11).

Every bad spec of the corpus (tests/bad/) and the cases below goes through both: the
jsonschema validator on the parsed document, and netspec's loader plus `check`. An editor
must flag what netspec refuses at the schema level, and never flag what netspec accepts.
What a JSON Schema cannot judge is listed in NETSPEC_ONLY, one category per case, and
asserted so: the schema accepts exactly those cases (a case that the schema starts to
refuse must leave the list), and netspec refuses every case.
"""
from __future__ import annotations

import json

import jsonschema
import pytest

import netspec
from conftest import ROOT
from netspec.errors import NetspecError

BAD = ROOT / "tests" / "bad"

# What only netspec can judge, and why a JSON Schema cannot.
CATEGORIES = {
    "document": "not a document the schema could see: YAML/JSON syntax, encoding, tags, duplicate keys, "
                "non-finite or huge numbers, size caps (the editor's parser reports these, not the schema)",
    "expression": "the grammar of a `${...}` expression (the schema only knows it starts with `$`)",
    "number": "a float with an integral value where an int is needed (64.0): JSON has one number type, "
              "and JSON Schema's `integer` is any number with a zero fraction",
    "reference": "a name that refers elsewhere in the document: a block call's block and arguments, "
                 "variables, override indexes, a block that calls itself",
    "evaluation": "a value computed by an expression or passed into a block, checked where it is used",
    "names": "module names unique in their module (the schema sees one name at a time)",
    "shape": "shape rules: the analysis (channels, kernels, groups, heads, tokens, branches that must meet)",
    "size": "what a spec expands to (repeat counts beyond the layer cap)",
    "cross-field": "train: settings checked against the spec's input (normalization channels, crop "
                   "padding, classes, an image input)",
}

NETSPEC_ONLY = {
    **dict.fromkeys([
        "alias_bomb.yaml", "bad_utf8.yaml", "big_hex.yaml", "big_int.json", "big_int.yaml", "custom_tag.yaml",
        "dupkey.yaml", "empty.yaml", "esc.yaml", "inf.yaml", "json_comment.json", "json_dupkey.json", "json_nan.json",
        "json_single_quote.json", "json_trailing_comma.json", "nul.yaml", "omap.yaml", "tag.yaml", "tag_bool.yaml",
        "tag_int.yaml", "tag_kind.yaml", "timestamp.yaml", "top_list.yaml", "unquoted_expr.yaml", "yaml_syntax.yaml",
    ], "document"),
    **dict.fromkeys(["attr_access.yaml", "bad_expr.yaml", "expr_digits.yaml", "injection.yaml"], "expression"),
    **dict.fromkeys(["float_literal.yaml", "extra:float_in_input"], "number"),
    **dict.fromkeys(["block_missing_arg.yaml", "recursive.yaml", "undefined.yaml", "unknown_block.yaml",
                     "unknown_layer.yaml", "override_index.yaml", "extra:block_arg_unknown"], "reference"),
    **dict.fromkeys(["block_arg_type.yaml", "float_int.yaml"], "evaluation"),
    **dict.fromkeys(["duplicate_name.yaml", "extra:underscore_name", "attend_twice.yaml"], "names"),
    **dict.fromkeys(["attention_heads.yaml", "attention_on_map.yaml", "concat.yaml", "dense_spatial.yaml",
                     "groups.yaml", "inblock.yaml", "json_groups.json", "kernel.yaml", "pos_embedding_tokens.yaml",
                     "residual.yaml", "attend_unsplit.yaml", "attend_window.yaml", "partition_body.yaml",
                     "partition_grid.yaml", "partition_shift.yaml", "split_heads.yaml"], "shape"),
    **dict.fromkeys(["repeat_huge.yaml"], "size"),
    **dict.fromkeys(["train_classes.yaml", "train_norm_channels.yaml", "train_reflect.yaml",
                     "train_vector_input.yaml"], "cross-field"),
}

HEAD = "netspec: 1\nname: t\ninput: [3, 8, 8]\n"
# more cases than the corpus holds: a layer list (or a whole document) each
EXTRA = {
    "pytorch_name_mapping": HEAD + "layers: [BatchNorm2d: {}]\n",
    "pytorch_name_scalar": HEAD + "layers: [Conv2d: 3]\n",
    "block_named_like_pytorch": HEAD + "blocks: {Conv2d: {body: [relu]}}\nlayers: [relu]\n",
    "block_named_like_construct": HEAD + "blocks: {residual: {body: [relu]}}\nlayers: [relu]\n",
    "two_keys": HEAD + "layers: [{conv: {out: 4, k: 3}, relu: null}]\n",
    "shorthand_for_no_shorthand": HEAD + "layers: [relu: 3]\n",
    "empty_repeat": HEAD + "layers: [{repeat: 2, body: []}]\n",
    "when_not_bool": HEAD + "layers: [{when: maybe, body: [relu]}]\n",
    "dropout_range": HEAD + "layers: [dropout: 1.5]\n",
    "padding_word": HEAD + "layers: [conv: {out: 4, k: 3, padding: half}]\n",
    "shortcut_word": HEAD + "layers: [residual: {body: [relu], shortcut: proj}]\n",
    "optimizer_name": HEAD + "layers: [relu]\ntrain: {optimizer: {name: adamm}}\n",
    "expect_negative": HEAD + "layers: [relu]\nexpect: {params: -1}\n",
    "empty_name": "netspec: 1\nname: ''\ninput: [3, 8, 8]\nlayers: [relu]\n",
    "float_in_input": "netspec: 1\nname: t\ninput: [3, 8.0, 8]\nlayers: [relu]\n",
    "block_arg_unknown": HEAD + "blocks: {b: {args: {c: 1}, body: [relu]}}\nlayers: [b: {d: 2}]\n",
    "underscore_name": HEAD + "layers: [conv: {out: 4, k: 3, name: _x}]\n",
}
CASES = sorted(p.name for p in BAD.iterdir()) + [f"extra:{name}" for name in EXTRA]


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json.loads((ROOT / "netspec.schema.json").read_text()))


def _source(case: str, tmp_path):
    from netspec.document.load import read
    if case.startswith("extra:"):
        path = tmp_path / "spec.yaml"
        path.write_text(EXTRA[case.removeprefix("extra:")])
    else:
        path = BAD / case
    try:
        return path, read(path).data
    except NetspecError:
        return path, None


def test_every_category_is_used_and_every_listed_case_exists():
    assert set(NETSPEC_ONLY.values()) == set(CATEGORIES)
    assert set(NETSPEC_ONLY) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_the_schema_flags_what_netspec_refuses_at_the_schema_level(case, validator, tmp_path):
    path, data = _source(case, tmp_path)
    with pytest.raises(NetspecError):   # every case is bad input to netspec
        netspec.analyze(path)
    if data is None:
        assert NETSPEC_ONLY.get(case) == "document", f"{case}: unreadable, so only netspec can judge it"
        return
    assert NETSPEC_ONLY.get(case) != "document", f"{case}: readable, so not a 'document' case"
    flagged = next(validator.iter_errors(data), None)
    if case in NETSPEC_ONLY:
        assert flagged is None, f"{case}: the schema now flags it ({flagged.message}); take it off NETSPEC_ONLY"
    else:
        assert flagged is not None, f"{case}: netspec refuses it at the schema level, the editor's schema does not"


def test_the_schema_flags_nothing_netspec_accepts(validator):
    """The other direction on valid documents: every zoo spec (tests/test_specs.py) and
    blocks that are near, but not, another name of a type."""
    ok = {"netspec": 1, "name": "t", "input": [3, 8, 8], "blocks": {"Conv2dBlock": {"body": ["relu"]}},
          "layers": ["Conv2dBlock", {"Conv2dBlock": None}, "relu", {"conv": {"out": 4, "k": 3}}]}
    assert not list(validator.iter_errors(ok))
    netspec.analyze(ok)
