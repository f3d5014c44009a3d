"""Every class of bad input ends as one located line on stderr and exit 2, through the
real CLI. The corpus lives in tests/bad/; expectations are (line:col, field path, words
the message must contain)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

BAD = ROOT / "tests" / "bad"
EXPECTED = {
    "unknown_layer.yaml": ("5:5", "layers[0].convv", "unknown layer type or block 'convv' (did you mean 'conv'?)"),
    "missing_arg.yaml": ("5:11", "layers[0].conv.out", "missing required field 'out'"),
    "wrong_type.yaml": ("5:17", "layers[0].conv.out", "valid integer, got the string '64'"),
    "negative.yaml": ("5:17", "layers[0].conv.out", "greater than 0, got -4"),
    "zero.yaml": ("5:19", "layers[0].linear.out", "greater than 0, got 0"),
    "groups.yaml": ("5:35", "layers[0].conv.groups", "5 does not divide in_channels 3"),
    "inblock.yaml": ("5:65", "blocks.b.body[0].conv.groups", "3 does not divide out channels 8"),
    "kernel.yaml": ("5:23", "layers[0].conv.k", "kernel 40 is larger than the padded input 32"),
    "residual.yaml": ("7:17", "layers[0].residual.shortcut", "cannot be added to the identity shortcut"),
    "concat.yaml": ("6:7", "layers[0].concat", "concat needs equal sizes apart from channels"),
    "concat_empty.yaml": ("5:24", "layers[0].concat.branches", "Dictionary should have at least 1 item"),
    "dense_spatial.yaml": ("6:7", "layers[0].dense", "must keep the spatial size"),
    "undefined.yaml": ("5:17", "layers[0].conv.out", "undefined variable 'width'"),
    "unknown_block.yaml": ("7:5", "layers[0].stemm", "did you mean 'stem'?"),
    "recursive.yaml": ("6:14", "blocks.b.body[0]", "block 'a' uses itself (a -> b -> a)"),
    "bad_expr.yaml": ("5:17", "layers[0].conv.out", "bad expression: unexpected '*'"),
    "injection.yaml": ("5:17", "layers[0].conv.out", "bad expression"),
    "attr_access.yaml": ("5:17", "layers[0].conv.out", "bad expression: unexpected '.'"),
    "yaml_syntax.yaml": ("6:1", "", "invalid YAML"),
    "tag.yaml": ("4:9", "layers", "YAML tag !!python/object/apply:os.system is not allowed"),
    "custom_tag.yaml": ("5:17", "layers[0].conv.out", "YAML tag !int is not allowed"),
    "dupkey.yaml": ("5:26", "", 'duplicate key "out"'),
    "json_dupkey.json": ("2:22", "", 'invalid JSON: duplicate key "name"'),
    "json_groups.json": ("2:51", "layers[0].conv.groups", "3 does not divide out channels 8"),
    "no_bool.yaml": ("5:32", "layers[0].conv.bias", "got the string 'no'"),
    "unknown_field.yaml": ("5:26", "layers[0].conv.strid", "unknown field 'strid' (did you mean 'stride'?)"),
    "top_unknown_field.yaml": ("4:1", "layerz", "unknown field 'layerz' (did you mean 'layers'?)"),
    "block_missing_arg.yaml": ("7:8", "layers[0].b", "block 'b' needs argument 'c'"),
    "float_int.yaml": ("6:17", "layers[0].conv.out", "use // for integer division"),
    "override_index.yaml": ("9:17", "layers[0].overrides[5]", "override index 5 is not a copy"),
    "duplicate_name.yaml": ("6:32", "layers[1].conv.name", "two modules named 'a' in one module (the other: layers[0].conv.name)"),
    "repeat_huge.yaml": ("5:13", "layers[0].repeat", "expands to more than 1,000,000 layers"),
    "alias_bomb.yaml": ("5:13", None, "more than 500,000 nodes"),
    "top_list.yaml": ("1:1", "", "a spec is a mapping at the top level"),
    "empty.yaml": ("1:1", "", "the file is empty"),
    "bad_utf8.yaml": ("4:10", "", "not valid UTF-8"),
    "timestamp.yaml": ("6:18", "expect.params", "YAML value of type timestamp is not allowed"),
    "expect_output_empty.yaml": ("5:18", "expect.output", "at least 1 item"),
    # a block call given a list inside a graph node (a nested model built on first use dropped
    # the error's context: an internal error, found by `bench/fuzz.py --mutate`)
    "graph_block_args.yaml": ("10:9", "graph.nodes.d1", "'down' is not a layer type; as a block call it takes a mapping of arguments, not list"),   # was exit 1: "expected [], got [4]"
    "omap.yaml": ("4:7", "vars", "YAML tag !!omap is not allowed"),   # crashed the round-trip loader
    "empty_value.yaml": ("3:7", "input", "Input should be a valid list, got None"),
    # errors inside a `repeat:` item used to point at its count
    "repeat_body.yaml": ("6:24", "layers[0].body[0].conv.out", "valid integer, got the string '64'"),
    "repeat_unknown_field.yaml": ("5:31", "layers[0].bogus", "unknown field 'bogus'"),
    # a wrong value passed into a block is the call's mistake: located there, naming the use
    "block_arg_type.yaml": ("10:16", "layers[0].stage.c", "got the string '32' (write 32 without quotes; strings are never "
                            "converted) (passed to block 'stage' as 'c', used at blocks.stage.body[0].conv.out)"),
    # issue 11: the unknown field and the missing one are one mistake, said together
    "kernel_for_k.yaml": ("5:21", "layers[0].conv.kernel", "unknown field 'kernel' (did you mean 'k'?); missing required field 'k'"),
    "layer_for_layers.yaml": ("4:1", "layer", "unknown field 'layer' (did you mean 'layers'?)"),
    "conv_scalar.yaml": ("5:11", "layers[0].conv", "'conv' takes a mapping of fields, not int 16"),
    "unquoted_expr.yaml": ("6:18", "", 'quote the expression: "${w // 8}"'),
    "train_typo.yaml": ("8:9", "train.epoch", "unknown field 'epoch' (did you mean 'epochs'?)"),
    # issue 10: numbers, tags and characters the parser used to crash on or misplace
    "version_bool.yaml": ("1:10", "netspec", "the format version is the number 1, not a boolean"),
    "block_named_like_layer.yaml": ("5:3", "blocks", "block 'relu' has the name of a layer type"),
    "big_int.yaml": ("4:11", "vars.a", "integer of 5,000 digits is out of range"),
    "big_int.json": ("1:63", "vars.a", "integer of 5,000 digits is out of range"),
    "big_hex.yaml": ("4:11", "vars.a", "integer of 20,000 bits is out of range"),
    "tag_int.yaml": ("5:17", "layers[0].conv.out", "'abc' is not a valid !!int value"),
    "tag_bool.yaml": ("5:32", "layers[0].conv.bias", "'maybe' is not a valid !!bool value"),
    "tag_kind.yaml": ("3:8", "input", "YAML tag !!map does not fit a sequence"),
    "nul.yaml": ("14:25", "", "control character U+0000 is not allowed"),
    "esc.yaml": ("14:29", "", "control character U+001B is not allowed"),
    "forged_key.yaml": ("5:26", "layers[0].conv.x\\nforged.yaml:1:1: error: \\x1b[2J", "unknown field"),
    "inf.yaml": ("5:15", "layers[0].bn.eps", "inf is not allowed: numbers in a spec are finite"),
    "json_trailing_comma.json": ("1:67", "", "invalid JSON: Expecting value; a trailing comma"),
    "json_comment.json": ("2:2", "", "JSON has no comments"),
    "json_single_quote.json": ("1:24", "", "strings are double-quoted"),
    "json_nan.json": ("1:72", "layers[0].dropout", "'NaN' is not a JSON value"),
    "expr_digits.yaml": ("5:17", "layers[0].conv.out", "bad expression: unexpected '\u0663'"),
    # training settings that validated and then crashed the first batch
    "train_norm_channels.yaml": ("6:24", "train.normalization.std", "2 values for the 3 channels"),
    "train_reflect.yaml": ("6:32", "train.augmentation.crop_padding", "reflect padding of 8 needs images larger than 8"),
    "train_vector_input.yaml": ("3:8", "input", "is not [C, H, W]"),
    "train_seed.yaml": ("5:15", "train.seed", "greater than or equal to 0"),
    "train_milestones.yaml": ("6:44", "train.schedule.milestones[1]", "less than or equal to 1"),
    "train_classes.yaml": ("6:12", "train.dataset", "classes is at most train_size"),
    # issue 13: tokens
    "pos_embedding_tokens.yaml": ("10:29", "layers[4].pos_embedding.tokens", "declared for 65 tokens, but the input gives 17 tokens"),
    "attention_heads.yaml": ("5:21", "layers[0].self_attention", "5 heads do not divide the token width 16"),
    "attention_on_map.yaml": ("6:21", "layers[1].self_attention", "self_attention needs tokens [tokens, width], got [16, 4, 4] (a patch embedding"),
    # issue 23: suggestions at every depth, PyTorch's names, and no integer-division hint for a literal
    "pytorch_name.yaml": ("6:5", "layers[1]", "unknown layer type or block 'BatchNorm2d' (did you mean 'bn'? netspec's name for BatchNorm2d)"),
    "unknown_scalar.yaml": ("5:5", "layers[0].avgpol", "unknown layer type or block 'avgpol' (did you mean 'avgpool'?)"),
    "block_residual_typo.yaml": ("9:33", "blocks.basic.residual.body[0].conv.paddng", "unknown field 'paddng' (did you mean 'padding'?)"),
    "float_literal.yaml": ("5:17", "layers[0].conv.out", "Input should be a valid integer, got 64.0"),
    # issue 22: attention in parts, partitions
    "partition_grid.yaml": ("5:23", "layers[0].partition.size", "a grid of [3, 3] tokens needs sizes that are multiples of it, not [10, 8]"),
    "partition_shift.yaml": ("5:33", "layers[0].partition.shift", "shift [3, 3] must be smaller than the window [3, 3]"),
    "partition_body.yaml": ("7:13", "layers[0].partition.body", "the body must keep the groups and tokens: it turns [4, 16, 4]"),
    "attend_unsplit.yaml": ("6:5", "layers[1]", "attend takes fused q, k, v [..., 3, heads, tokens, head width], got [10, 36]"),
    "attend_window.yaml": ("7:13", "layers[2].attend", "a position bias or mask is over a token grid: give window [h, w]"),
    "attend_twice.yaml": ("14:19", "layers[0].partition.body[6].attend",
                          "two modules at '0.relative_position_bias_table': attend registers 'relative_position_bias_table'"),
    "split_heads.yaml": ("5:26", "layers[0].split_heads.heads", "3 parts of 5 heads do not divide the token width 12"),
}


def test_corpus_is_complete():
    assert sorted(EXPECTED) == sorted(p.name for p in BAD.iterdir())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_is_one_located_line(cli, name):
    where, field, words = EXPECTED[name]
    path = BAD / name
    for command in ("check", "compile"):
        run = cli(command, path)
        assert run.code == 2, run.err
        lines = run.err.strip().splitlines()
        assert len(lines) == 1, run.err
        prefix = f"{path}:{where}: error: "
        assert lines[0].startswith(prefix), lines[0]
        rest = lines[0][len(prefix):]
        if field:
            assert rest.startswith(field + ": "), rest
        elif field == "":
            assert not rest.startswith("layers"), rest
        assert words in rest
        assert "Traceback" not in run.err and "Value error" not in rest and rest.count(", got") <= 1


def test_tag_is_never_constructed(tmp_path, cli):
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"netspec: 1\nname: t\ninput: [3]\nlayers: !!python/object/apply:os.system ['touch {marker}']\n")
    assert cli("check", spec).code == 2
    assert not marker.exists()


def test_console_script_and_module_agree():
    """`netspec` and `python -m netspec` are the same program, with no traceback."""
    path = BAD / "groups.yaml"
    a = subprocess.run(["netspec", "check", str(path)], capture_output=True, text=True)
    b = subprocess.run([sys.executable, "-m", "netspec", "check", str(path)], capture_output=True, text=True)
    assert a.returncode == b.returncode == 2
    assert a.stderr == b.stderr and a.stderr.count("\n") == 1


def test_large_file_refused_unread(tmp_path, cli):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:
        f.truncate(50 * 1024 * 1024)
    run = cli("check", path)
    assert run.code == 2 and f"{path}:1:1: error: file is 52.4 MB" in run.err


def test_check_failure_exit_1_says_expected_and_got(write, cli):
    from conftest import spec_text
    path = write(spec_text("  - conv: {out: 8, k: 3}\n", input_shape="[3, 8, 8]") + "expect: {params: 100, output: [8, 6, 6]}\n")
    run = cli("compile", path, "--check-params")
    assert run.code == 1
    assert "params: expected 100, got 224 (off by +124)" in run.err

