"""Inputs written to break netspec (issue 10), by class: parser limits, special files,
numbers and tags, control characters and forged lines, bounds that could be walked
around, and what used to end in exit 3. Whatever the input, netspec compiles it or
prints one `FILE:LINE:COL: error:` line (exit 2), never a traceback, a segfault or a
wait. Cases that could kill or block the test process run in a subprocess with a
timeout; the open-ended classes are hypothesis strategies.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT, spec_text
from netspec.errors import SpecError, one_line
from netspec.document.load import MAX_DEPTH, MAX_INT, parse

HEAD = "netspec: 1\nname: t\ninput: [3, 8, 8]\n"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command in its own process: a segfault or a wait cannot take pytest with it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "netspec", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_error(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# -- nesting: ruamel's C composer recursed (~30,000 levels segfaulted, exit 139) ------------------
@pytest.mark.parametrize("name, text", [
    ("deep.json", '{"netspec": 1, "name": "t", "input": [3], "layers": ' + "[" * 30000 + "]" * 30000 + "}"),
    ("deep_map.yaml", HEAD + "vars: " + "{a: " * 30000 + "1" + "}" * 30000 + "\n"),
    ("deep_block.yaml", HEAD + "vars:\n  a:\n    " + "- " * 30000 + "1\n"),
    ("deep_keys.yaml", HEAD + "vars: " + "[" * 15000 + "{a: " * 15000 + "1" + "}" * 15000 + "]" * 15000 + "\n"),
], ids=lambda value: value if value.endswith((".json", ".yaml")) else "text")  # a 120 KB id in the
# environment (PYTEST_CURRENT_TEST) made the subprocess fail with E2BIG under pytest 9.0
def test_deep_nesting_is_refused_before_composition(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    run = run_cli("check", path)
    assert run.returncode == 2, (run.returncode, run.stderr[-300:])
    line = one_error(run.stderr)
    assert line.startswith(f"{path}:") and f"nested deeper than {MAX_DEPTH} levels" in line


@FAST
@given(depth=st.integers(0, 1500), kind=st.sampled_from(["[", "{a: ", "- "]))
def test_any_nesting_depth_is_ok_or_one_located_error(depth, kind):
    closing = {"[": "]", "{a: ": "}", "- ": ""}[kind]
    text = HEAD + "layers: [relu]\nvars:\n  v:\n    " + kind * depth + "1" + closing * depth + "\n"
    if depth + 2 <= MAX_DEPTH:   # vars.v sits two levels down
        assert parse(text, "n.yaml").data["vars"]["v"] is not None
        return
    with pytest.raises(SpecError) as err:
        parse(text, "n.yaml")
    assert "nested deeper than" in err.value.message and err.value.line is not None and err.value.line >= 4


def test_more_than_max_nodes_is_refused_unbuilt(tmp_path, cli):
    path = tmp_path / "wide.yaml"
    path.write_text(HEAD + "layers: [relu]\nvars: {a: [" + "0," * 600_000 + "0]}\n")
    run = cli("check", path)
    assert run.code == 2 and "more than 500,000 nodes" in one_error(run.err)


# -- the file itself: a bounded, non-blocking read; only regular files ------------------------------
@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "/dev/null", "/proc/self/status", "/proc/self/pagemap",
                                     "/proc", "FIFO"])
def test_special_files_never_block_nor_read_unbounded(tmp_path, special):
    if special == "FIFO":
        special = tmp_path / "fifo.yaml"
        os.mkfifo(special)   # nobody writes: an open() without O_NONBLOCK waits forever
    if not os.path.exists(special):
        pytest.skip(f"{special} does not exist here")
    run = run_cli("check", special, timeout=60)
    assert run.returncode == 2
    line = one_error(run.stderr)
    assert line.startswith(f"{special}") and "error:" in line
    if special in ("/dev/zero", "/dev/urandom", "/proc") or not isinstance(special, str):
        assert "not a regular file" in line


def test_a_file_that_grows_past_its_size_is_bounded(tmp_path, monkeypatch):
    """A regular file whose stat size is 0 but which reads on (procfs) is cut at the cap."""
    from netspec.document import load

    path = tmp_path / "grows.yaml"
    path.write_text("a: 1\n" * 10)
    real = os.fstat
    monkeypatch.setattr(load, "MAX_BYTES", 20)
    monkeypatch.setattr(load.os, "fstat", lambda fd: os.stat_result((*real(fd)[:6], 0, *real(fd)[7:])))
    with pytest.raises(SpecError, match="larger than its size says"):
        load.read(path)


# -- numbers and tags --------------------------------------------------------------------------------
@FAST
@given(tag=st.sampled_from(["!!int", "!!float", "!!bool", "!!null", "!!str", "!!map", "!!seq"]),
       text=st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12))
def test_explicit_tags_on_any_text_are_a_value_or_one_located_error(tag, text):
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    doc = HEAD + f"layers: [relu]\nvars: {{v: {tag} {quoted}}}\n"
    try:
        value = parse(doc, "t.yaml").data["vars"]["v"]
    except SpecError as e:
        assert e.line == 5 and (e.path == ("vars", "v") or "control character" in e.message), (e.line, e.path)
        return
    assert tag not in ("!!map", "!!seq") and (tag != "!!int" or text.strip().isascii())
    assert value is None or isinstance(value, (bool, int, float, str))


@FAST
@given(st.integers())
def test_integers_are_int64_or_a_located_error(n):
    for doc in (HEAD + f"vars: {{v: {n}}}\nlayers: [relu]\n", HEAD + f"vars: {{v: {hex(n)}}}\n"):
        try:
            assert parse(doc, "t.yaml").data["vars"]["v"] == n
            assert abs(n) <= MAX_INT
        except SpecError as e:
            assert abs(n) > MAX_INT and e.line == 4 and "out of range" in e.message


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN", "1e999", "-1e999"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(SpecError, match="numbers in a spec are finite"):
        parse(HEAD + f"layers:\n  - bn: {{eps: {value}}}\n", "t.yaml")


def test_non_finite_numbers_from_python_are_refused():
    import netspec
    with pytest.raises(SpecError, match="finite"):
        netspec.load({"netspec": 1, "name": "t", "input": [3], "layers": [{"dropout": float("nan")}]})


# -- characters: where they are, and never raw on the terminal ----------------------------------------
BAD_CHARS = [chr(c) for c in (*range(0, 9), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0x85), *range(0x86, 0xA0),
                              0xFFFE, 0xFFFF)]


@FAST
@given(char=st.sampled_from(BAD_CHARS), data=st.data())
def test_control_characters_are_reported_where_they_are(char, data):
    lines = (HEAD + "layers:\n" + "  - relu\n" * 8 + "  - conv: {out: 8, k: 3}\n").splitlines(keepends=True)
    row = data.draw(st.integers(0, len(lines) - 1))
    col = data.draw(st.integers(0, len(lines[row]) - 1))
    lines[row] = lines[row][:col] + char + lines[row][col:]
    with pytest.raises(SpecError) as err:
        parse("".join(lines), "c.yaml")
    assert (err.value.line, err.value.col) == (row + 1, col + 1)
    assert str(err.value).isprintable()


@FAST
@given(key=st.text(min_size=1, max_size=20), name=st.text(min_size=1, max_size=12))
def test_no_input_can_break_the_one_error_line(tmp_path_factory, key, name):
    """A key, or the file's own name, with newlines, ESC/OSC/BEL sequences, NUL, U+2028 or
    bidi overrides is escaped in the line: one line, every character printable."""
    from netspec.cli import main

    folder = tmp_path_factory.mktemp("forge")
    quoted = key.encode("unicode_escape").decode().replace('"', '\\"')   # a YAML double-quoted string
    path = folder / (name.replace("/", "_").replace("\0", "_").replace(".", "_") + ".yaml")
    try:
        path.write_text(HEAD + f'layers:\n  - conv: {{out: 8, k: 3, "{quoted}": 1}}\n')
    except (OSError, UnicodeEncodeError):  # a name this file system refuses
        return
    err = _stderr_of(main, ["check", str(path)])
    assert err.count("\n") == 1 and err.rstrip("\n").isprintable(), repr(err)


def _stderr_of(main, argv) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 2
    return buf.getvalue()


def test_every_netspec_error_is_escaped_even_with_its_own_str():
    from netspec.errors import NetspecError

    class Custom(NetspecError):
        def __str__(self):
            return "error: " + self.args[0]

    for error in (Custom("a\nb\x1b[2J\x07\x00"), NetspecError("c\r\u2028d\u202e"),
                  SpecError("m\n", ("k\n",), file="f\n.yaml", line=1, col=1)):
        assert "\n" not in str(error) and str(error).isprintable()
    assert one_line("tab\there") == "tab\\there" and one_line("plain é") == "plain é"


def test_the_table_escapes_names_and_markup(write, cli):
    path = write(HEAD.replace("name: t", 'name: "[/bold]\\e]0;title\\a"') + "layers:\n  - conv: {out: 4, k: 3, name: c}\n")
    run = cli("compile", path)
    assert run.code == 0, run.err
    assert "\x1b" not in run.out and "\x07" not in run.out and run.out.startswith("[/bold]\\x1b]0;title\\x07  input")
    assert "│ c     │ conv │ out=4, k=3 │ [4, 6, 6] │    112 │    3.89K │" in run.out


# -- bounds that could be walked around ---------------------------------------------------------------
def test_sweep_plan_size_is_refused_before_the_product_is_built():
    from netspec.sweep.plan import MAX_RUNS, plan_sweep

    grid = {f"train.x{i}": [(str(v), v) for v in range(10)] for i in range(10)}   # 10**10 runs
    with pytest.raises(SpecError, match=f"10,000,000,000 runs .* over the {MAX_RUNS:,}"):
        plan_sweep(name="big", variants=[("a", "a.yaml", [])], grid=grid, seeds=[0], common=[], out="o")


def test_patch_lookups_read_each_name_a_bounded_number_of_times(write, monkeypatch):
    """2,000 `set`s by name on 2,000 named layers: each item's name is read O(1) times,
    not once per lookup (the linear scan per segment made it quadratic)."""
    import netspec
    from netspec.document import address

    n = 2000
    write(HEAD + "layers:\n" + "".join(f"  - conv: {{out: 4, k: 1, name: c{i}}}\n" for i in range(n)), "base.yaml")
    sets = "".join(f"      layers.c{i}.out: 8\n" for i in range(n))
    renames = "".join(f"      layers.c{i}.name: d{i}\n" for i in range(0, n, 2))
    path = write(f"extends: base.yaml\npatch:\n  - set:\n{sets}  - set:\n{renames}  - delete: [layers.d0, layers.c1]\n"
                 f"  - set: {{layers.d2.k: 3}}\n", "patched.yaml")
    calls = []
    real = address._item_name
    monkeypatch.setattr(address, "_item_name", lambda item: calls.append(1) or real(item))
    spec = netspec.load(path)
    assert len(calls) < 10 * n, len(calls)
    layers = spec.source.data["layers"]
    assert len(layers) == n - 2 and layers[0]["conv"] == {"out": 8, "k": 3, "name": "d2"}
    assert layers[1]["conv"]["name"] == "c3" and all(item["conv"]["out"] == 8 for item in layers)


def test_table_rows_and_totals(cli):
    run = cli("compile", ROOT / "specs" / "lenet.yaml")
    lines = run.out.splitlines()
    assert run.code == 0 and lines[0] == "lenet  input [1, 28, 28]"
    assert len({len(line) for line in lines[1:-1]}) == 1          # every row of the box is one width
    assert "│ total  │          │               │ [10]        │ 44,426 │  281.64K │" in lines
    assert lines[-1] == "params 44,426 (44.43K) · forward 281,640 MACs (281.64K; 1 MAC = 2 FLOPs) per sample · output [10]"


# -- exit 3 that was bad input -------------------------------------------------------------------------
def test_max_params_must_be_a_count(write, cli):
    path = write(HEAD + "layers: [relu]\n")
    run = cli("compile", path, "--max-params", "-1")
    assert run.code == 2 and run.err == "--max-params: error: expected a non-negative integer, got '-1'\n"
    assert cli("compile", path, "--max-params", "0").code == 0   # no parameters, no leaves


@pytest.mark.parametrize("where", ["missing/schema.json", "."])
def test_schema_out_that_cannot_be_written(tmp_path, cli, where):
    run = cli("schema", "--out", tmp_path / where)
    assert run.code == 2 and one_error(run.err).startswith("--out: error: cannot write")


def test_sweep_out_onto_a_file(tmp_path, cli, write):
    spec = write(HEAD + "layers: [flatten, linear: 4]\ntrain: {dataset: {name: synthetic, train_size: 16, test_size: 8, "
                        "classes: 4}, epochs: 1, batch_size: 8, device: cpu}\n")
    (tmp_path / "taken").write_text("")
    run = cli("sweep", spec, "--out", tmp_path / "taken", "--quiet")
    assert run.code == 2 and "it is a file" in one_error(run.err)


# -- item 7: the decisions ---------------------------------------------------------------------------
def test_expressions_take_ascii_digits_only():
    from netspec.document.expr import ExprError, parse as parse_expr
    assert parse_expr("${3 * 2}").evaluate({}) == 6
    for digits in ("\u0663", "\u06f3", "\u0969", "\uff13"):   # Arabic-Indic, Persian, Devanagari, fullwidth 3
        with pytest.raises(ExprError, match="unexpected"):
            parse_expr(f"${{{digits} * 2}}")


@pytest.mark.parametrize("text", ["!!map [1, 8, 8]", "!!seq {a: 1}", "!!str [1]", "!!null {}"])
def test_a_tag_must_fit_its_node(text):
    with pytest.raises(SpecError, match="does not fit a"):
        parse(HEAD.replace("input: [3, 8, 8]", f"input: {text}") + "layers: [relu]\n", "t.yaml")


def test_json_files_are_json(write, cli):
    good = write('{"netspec": 1, "name": "t", "input": [3, 8, 8], "layers": ["relu"]}', "ok.json")
    assert cli("check", good).code == 0
    assert cli("check", write("netspec: 1\nname: t\ninput: [3, 8, 8]\nlayers: [relu]\n", "yaml.json")).code == 2


def test_format_version_is_not_a_bool():
    with pytest.raises(SpecError):
        import netspec
        netspec.load({"netspec": True, "name": "t", "input": [3], "layers": ["relu"]})


def test_a_block_cannot_shadow_a_layer_type():
    import netspec
    with pytest.raises(SpecError):
        netspec.analyze({"netspec": 1, "name": "t", "input": [3], "blocks": {"relu": {"body": [{"linear": 5}]}},
                         "layers": ["relu"]})


def test_spec_text_helper_still_builds_valid_specs():
    import netspec
    assert netspec.analyze(parse(spec_text("  - relu\n"), "x.yaml").data).output == [3, 32, 32]


def test_regular_file_check_uses_fstat_not_the_name(tmp_path):
    """A symlink to a device is still a device."""
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    assert stat.S_ISCHR(os.stat(link).st_mode)
    run = run_cli("check", link, timeout=60)
    assert run.returncode == 2 and "not a regular file" in one_error(run.stderr)
