"""The expression evaluator: what it computes, and everything it refuses."""
from __future__ import annotations

import pytest

from netspec.spec.expr import ExprError, interpolate, parse


@pytest.mark.parametrize("text,value", [
    ("$c", 64), ("${c * 4}", 256), ("${c // 3}", 21), ("${c / 4}", 16.0), ("${c % 5}", 4),
    ("${-c + 1}", -63), ("${(c + 2) * 2}", 132), ("${min(c, 8, 100)}", 8), ("${max(1, c)}", 64),
    ("${2 * -3}", -6), ("${1.5 * 2}", 3.0), ("${ c }", 64),
])
def test_values(text, value):
    assert parse(text).evaluate({"c": 64}) == value


@pytest.mark.parametrize("text", [
    "${__import__('os').system('x')}", "${c.__class__}", "${lambda: 1}", "${c ** 99999}", "${c[0]}",
    "${open('x')}", "${'a'}", "${c if c else 1}", "${}", "${1 +}", "${(1}", "$", "$1abc", "${c} x",
    "${" + "(" * 40 + "1" + ")" * 40 + "}", "${" + "1+" * 200 + "1}",
])
def test_refused(text):
    with pytest.raises(ExprError):
        parse(text).evaluate({"c": 2})


def test_evaluation_errors():
    with pytest.raises(ExprError, match="undefined variable 'd'"):
        parse("${d}").evaluate({"c": 1})
    with pytest.raises(ExprError, match="division by zero"):
        parse("${c // 0}").evaluate({"c": 1})
    with pytest.raises(ExprError, match="not a number"):
        parse("${c + 1}").evaluate({"c": [1, 2]})
    with pytest.raises(ExprError, match="out of range"):
        parse("${" + "*".join(["1000000"] * 5) + "}").evaluate({})


def test_interpolate_names():
    assert interpolate("denselayer${i + 1}", {"i": 0}) == "denselayer1"
