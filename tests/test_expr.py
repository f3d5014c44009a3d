"""The expression evaluator: what it computes, and everything it refuses."""
from __future__ import annotations

import math

import pytest

from conftest import spec_text
from netspec.document import expr
from netspec.document.expr import MAX_STEPS, Budget, ExprError, interpolate, parse

SCOPE = {"c": 64, "t": True, "f": False, "one": 1, "zero": 0, "x": 2.5, "k": [3, 1]}


def value(text: str, **scope):
    return parse("${" + text + "}").evaluate({**SCOPE, **scope})


@pytest.fixture(autouse=True)
def pow_calls(monkeypatch):
    """Every (a, b) the evaluator hands to Python's pow; a huge one fails the test instead of hanging it."""
    calls = []

    def spy(a, b):
        assert a == 0 or b * math.log2(abs(a)) <= 64, f"pow({a!r}, {b!r}) reached"
        calls.append((a, b))
        return pow(a, b)
    monkeypatch.setattr(expr, "pow", spy, raising=False)
    return calls


@pytest.fixture(autouse=True)
def eval_calls(monkeypatch):
    """Counts every node the evaluator evaluates (it recurses through the module's _eval);
    far beyond the budget fails the test instead of hanging it."""
    count = [0]
    inner = expr._eval

    def counting(tree, scope, budget):
        count[0] += 1
        assert count[0] <= 5 * MAX_STEPS, "the loop budget did not stop the evaluation"
        return inner(tree, scope, budget)
    monkeypatch.setattr(expr, "_eval", counting)
    return count


@pytest.mark.parametrize("text,expected", [
    # numbers, names, arithmetic as before
    ("c", 64), ("c * 4", 256), ("c // 3", 21), ("c / 4", 16.0), ("c % 5", 4), ("-c + 1", -63),
    ("(c + 2) * 2", 132), ("min(c, 8, 100)", 8), ("max(1, c)", 64), ("min(5)", 5), ("2 * -3", -6),
    ("1.5 * 2", 3.0), (" c ", 64), ("1e3", 1000.0), ("2.5e-1", 0.25), (".5", 0.5), ("3.", 3.0),
    # powers: right-associative, tighter than a unary minus on the left, looser on the right
    ("2 ** 10", 1024), ("-2 ** 2", -4), ("(-2) ** 2", 4), ("2 ** -1", 0.5), ("2 ** 3 ** 2", 512),
    ("-2 ** -2", -0.25), ("2 * 3 ** 2", 18), ("pow(2, 10)", 1024), ("pow(9, 0.5)", 3.0), ("0 ** 0", 1),
    ("2 ** 63", 2**63), ("(-8) ** 3", -512), ("(-8) ** 2.0", 64.0), ("2 ** -2000", 0.0),
    # functions
    ("round(2.5)", 2), ("round(3.5)", 4), ("round(-2.5)", -2), ("round(0.5)", 0), ("round(2.6)", 3),
    ("round(7)", 7), ("floor(-1.5)", -2), ("floor(2.0)", 2), ("ceil(1.2)", 2), ("ceil(-1.2)", -1),
    ("int(-1.7)", -1), ("int(1.7)", 1), ("int(x + 4)", 6), ("abs(-3)", 3), ("abs(-2.5)", 2.5),
    ("log(1)", 0.0), ("log(8, 2)", 3.0), ("log(100, 10)", 2.0), ("pow(x, 2)", 6.25),
    # comparisons give booleans; == compares numbers across int/float, and two booleans
    ("c > 3", True), ("c < 3", False), ("c >= 64", True), ("c <= 63", False), ("c == 64.0", True),
    ("c != 64", False), ("t == f", False), ("t != f", True), ("1 + 1 == 2", True), ("-1 < 0", True),
    # and / or / not on true/false or 1/0, giving true/false; not binds looser than comparison
    ("t and f", False), ("t or f", True), ("not t", False), ("not c > 3", False), ("one and t", True),
    ("zero or f", False), ("not zero", True), ("t and f or t", True), ("t or f and f", True),
    ("not not t", True),
    # a if cond else b, right-nested, lowest precedence; only the chosen side is evaluated
    ("c if t else 0", 64), ("c if f else 0", 0), ("1 if f else 2 if t else 3", 2), ("1 + 1 if t else 5", 2),
    ("(1 if f else 2) + 10", 12), ("c // zero if zero else -1", -1), ("k if t else 0", [3, 1]),
    ("64 if c > 32 and not f else 8", 64), ("undefined if f else 1", 1),
    # sum/min/max over a range, with a condition
    ("sum(j for j in range(5))", 10), ("sum(j for j in range(2, 5))", 9), ("sum(1 for j in range(c) if j % 8 == 0)", 8),
    ("sum(j for j in range(0))", 0), ("sum(0.5 for j in range(3))", 1.5), ("max(j * j for j in range(4))", 9),
    ("min(10 - j for j in range(1, 4))", 7), ("sum(c for c in range(3))", 3), ("sum(sum(i for i in range(j)) for j in range(4))", 4),
    ("sum(j if j < 2 else 0 for j in range(5))", 1), ("sum(1 for j in range(5) if j > 1 and j != 3)", 2),
    ("sum(j for j in range(-3, 0))", -6), ("sum(j for j in range(3, 1))", 0),
])
def test_values(text, expected):
    got = value(text)
    assert got == expected and type(got) is type(expected), (got, expected)


def test_round_is_half_to_even_like_torch():
    torch = pytest.importorskip("torch")
    halves = [k + 0.5 for k in range(-6, 6)]
    assert [value(f"round({h})") for h in halves] == torch.round(torch.tensor(halves, dtype=torch.float64)).long().tolist()


@pytest.mark.parametrize("text", [
    # not the language at all
    "${__import__('os').system('x')}", "${c.__class__}", "${lambda: 1}", "${c[0]}", "${open('x')}",
    "${'a'}", "${}", "${1 +}", "${(1}", "$", "$1abc", "${c} x", "${a = 1}", "${c !}", "${c <> 1}",
    "${c if t}", "${if t else 1}", "${not}", "${c ** }", "${1 if 2 if 3 else 4 else 5}", "${x @ 2}",
    # chained comparisons are refused, not given Python's or C's meaning
    "${1 < 2 < 3}", "${1 == 1 == 1}", "${c > 1 != t}",
    # functions: unknown, wrong arity, a `for` where none belongs
    "${range(3)}", "${sqrt(4)}", "${round(1, 2)}", "${abs()}", "${pow(2)}", "${log(1, 2, 3)}",
    "${sum(1, 2)}", "${sum()}", "${abs(j for j in range(3))}", "${sum(1 for j in rnge(3))}",
    "${sum(1 for 2 in range(3))}", "${sum(1 for j of range(3))}", "${sum(1 for j in range(3) if)}",
    # keywords are not names
    "${if}", "${in + 1}", "${for}",
    # bounds on size, nesting and magnitude
    "${" + "(" * 40 + "1" + ")" * 40 + "}", "${" + "1+" * 200 + "1}", "${" + "-" * 40 + "1}",
    "${" + "not " * 40 + "t}", "${1e400}", "${" + "9" * 30 + "}",
])
def test_refused_when_parsed(text):
    with pytest.raises(ExprError):
        parse(text)


@pytest.mark.parametrize("text,words", [
    ("t + 1", "left operand of + is a boolean True, not a number"),
    ("1 - f", "right operand of - is a boolean False"), ("-t", "operand of - is a boolean"),
    ("t < 2", "left operand of < is a boolean"), ("t == 1", "left operand of == is a boolean"),
    ("round(t)", "argument of round is a boolean"), ("sum(t for j in range(2))", "value in sum() is a boolean"),
    ("k + 1", "left operand of + is list [3, 1], not a number"),
    ("c if 2 else 1", "condition of if is 2; a condition is true/false or 1/0"), ("c and t", "left operand of and is 64"),
    ("f or x", "right operand of or is 2.5"), ("not x", "operand of not is 2.5"),
    ("sum(1 for j in range(3) if j)", "condition of for is 2"), ("sum(1 for j in range(x))", "range() needs integers"),
    ("sum(1 for j in range(t))", "range() needs integers"),
    ("min(j for j in range(0))", "min() of no values"), ("max(1 for j in range(3) if j > 5)", "max() of no values"),
    ("d", "undefined variable 'd'"), ("c // 0", "division by zero"), ("c % zero", "division by zero"),
    ("1 / 0.0", "division by zero"), ("log(0)", "log(0): the argument must be positive"),
    ("log(-1)", "must be positive"), ("log(8, 1)", "the base must be positive and not 1"), ("log(8, 0)", "base"),
    ("0 ** -1", "divides by zero"), ("pow(0.0, -2)", "divides by zero"), ("(-8) ** 0.5", "negative number to a fractional power"),
    ("2 ** 64", "out of range"), ("2 ** 10 ** 10", "out of range (beyond 2**63); refused before computing it"),
    ("pow(10, 1e9)", "refused before computing it"), ("0.5 ** -2000", "refused before computing it"),
    ("(-2) ** 9999999999999", "refused before computing it"), ("x ** 1000.5", "refused before computing it"),
    ("1e300 / 1e-300", "out of range"), ("9223372036854775807 * 2", "out of range"),
    ("sum(9e18 for j in range(3))", "out of range"), ("abs(-2 ** 63 - 1)", "out of range"),
])
def test_evaluation_errors(text, words):
    with pytest.raises(ExprError) as e:
        value(text)
    assert words in str(e.value)


def test_results_are_always_finite_numbers():
    for text in ["x ** 0.5", "log(x, 1.0000001)", "1 / 3", "2.0 ** 63", "-(2 ** 63)", "1e-300 * 1e-300"]:
        got = value(text)
        assert math.isfinite(got) and abs(got) <= expr.MAX_MAGNITUDE


@pytest.mark.parametrize("text", ["2 ** 10 ** 10", "pow(10, 1e9)", "10 ** 10 ** 10 ** 10", "3 ** 41", "(2 ** 62) ** 2"])
def test_power_blowups_never_reach_pow(text, pow_calls):
    with pytest.raises(ExprError, match="refused before computing it"):
        value(text)
    assert len(pow_calls) <= 2, pow_calls  # at most the small inner powers ran


def test_powers_do_go_through_pow(pow_calls):
    assert value("2 ** 3 ** 2") == 512 and pow_calls == [(3, 2), (2, 9)]


@pytest.mark.parametrize("text", ["sum(1 for j in range(10 ** 18))", "max(j for j in range(-10 ** 18, 10 ** 18))",
                                  "sum(j * j + 1 for j in range(50000))"])
def test_oversized_loop_refused_before_it_starts(text, eval_calls):
    with pytest.raises(ExprError, match="range loop of .* operations is refused"):
        value(text)
    assert eval_calls[0] < 20


def test_nested_loops_stop_at_the_budget(eval_calls):
    with pytest.raises(ExprError, match=f"may do {MAX_STEPS:,} in all"):
        value("sum(sum(1 for k in range(1000)) for j in range(1000))")
    assert eval_calls[0] <= MAX_STEPS + 100


def test_budget_is_shared_between_evaluations():
    budget = Budget()
    loop = parse("${sum(j for j in range(1000))}")  # 1,000 steps of one operation
    for _ in range(MAX_STEPS // 1000):
        loop.evaluate({}, budget)
    with pytest.raises(ExprError, match="0 left"):
        loop.evaluate({}, budget)
    assert loop.evaluate({}) == 499500  # a fresh evaluation has a fresh budget


def test_names_are_the_free_variables():
    assert parse("${sum(j * k for j in range(n) if j < m) + j}").names() == {"k", "n", "m", "j"}
    assert parse("${a if b > 1 else round(c)}").names() == {"a", "b", "c"}
    assert parse("$w").names() == {"w"}


def test_interpolate_names():
    assert interpolate("denselayer${i + 1}", {"i": 0}) == "denselayer1"
    assert interpolate("block${s}-${i}", {"s": 1, "i": 0}) == "block1-0"            # RegNet's block1-0
    assert interpolate("stage${w / 8}", {"w": 16}) == "stage2"                        # an integral float prints as an int
    assert interpolate("x${2 ** -1}", {}) == "x0.5"
    assert interpolate("b${i if i < 2 else 9}", {"i": 5}) == "b9"
    assert interpolate("s${sum(1 for j in range(n))}", {"n": 3}) == "s3"


# -- through the real CLI: one located line, exit 2 -------------------------------------------
@pytest.mark.parametrize("field,words", [
    ('"${1 < 2 < 3}"', "bad expression: chained comparison"),
    ('"${2 ** 10 ** 10}"', "refused before computing it"),
    ('"${log(0)}"', "log(0): the argument must be positive"),
    ('"${flag + 1}"', "left operand of + is a boolean True"),
    ('"${8 if 2 else 4}"', "condition of if is 2"),
    ('"${sum(1 for j in range(10 ** 9))}"', "range loop of 1,000,000,000 operations is refused"),
])
def test_cli_locates_expression_errors(write, cli, field, words):
    path = write(spec_text(f"  - linear: {{out: {field}}}\n", "vars: {flag: true}\n", "[4]"))
    run = cli("check", path)
    lines = run.err.strip().splitlines()
    assert run.code == 2 and len(lines) == 1, run.err
    assert lines[0].startswith(f"{path}:6:19: error: layers[0].linear.out: ") and words in lines[0], lines[0]


def test_cli_locates_errors_in_vars(write, cli):
    path = write(spec_text("  - linear: $w\n", 'vars:\n  c: 8\n  w: "${log(c - 8)}"\n', "[4]"))
    run = cli("check", path)
    assert run.code == 2 and run.err.count("\n") == 1 and f"{path}:6:6: error: vars.w: log(0)" in run.err, run.err


def test_cli_budget_is_per_spec(write, cli):
    """Each layer's loop is small, but a spec's loops share one budget."""
    layers = '  - {repeat: 400, body: [linear: {out: "${sum(1 for j in range(c))}"}]}\n'
    ok = cli("check", write(spec_text(layers, "vars: {c: 200}\n", "[4]")))
    assert ok.code == 0, ok.err                                                      # 80,000 operations
    run = cli("check", write(spec_text(layers, "vars: {c: 300}\n", "[4]"), "big.yaml"))
    lines = run.err.strip().splitlines()
    assert run.code == 2 and len(lines) == 1 and "layers[0].body[0].linear.out: a range loop of 300" in lines[0], run.err
