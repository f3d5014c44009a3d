"""The tiny, safe expression language of specs: `$name` and `"${c * 4}"`.

Grammar (nothing else is accepted — no attribute access, calls other than min/max,
subscripts, strings, lambdas or powers; Python's eval is never used):

    expr  := term (('+' | '-') term)*
    term  := unary (('*' | '/' | '//' | '%') unary)*
    unary := ('-' | '+') unary | atom
    atom  := NUMBER | NAME | ('min' | 'max') '(' expr (',' expr)* ')' | '(' expr ')'

Parsing happens once, when the spec is validated (so a bad expression is reported at
load time); evaluation happens in resolve, against the variables in scope.
Imports nothing from netspec.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LENGTH = 256        # characters in one expression
MAX_DEPTH = 32          # nesting of parentheses / unary operators
MAX_MAGNITUDE = 2**63   # results beyond int64 are refused (no spec needs them)

# ASCII digits only: `\d` would read Arabic-Indic and other Unicode digits (`${٣ * 2}` was 6)
_TOKEN = re.compile(r"\s*(?:([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*/%(),]))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FUNCS = {"min": min, "max": max}


class ExprError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed `$...` value. `text` is what the user wrote."""

    text: str
    tree: tuple

    def names(self) -> set[str]:
        out: set[str] = set()
        _collect(self.tree, out)
        return out

    def evaluate(self, scope: dict):
        return _eval(self.tree, scope)

    def __repr__(self) -> str:
        return self.text


def is_expr_text(value) -> bool:
    return isinstance(value, str) and value.startswith("$")


def parse(text: str) -> Expr:
    """Parse `$name` or `${expr}`; raise ExprError with a short reason."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    if text.startswith("${"):
        if not text.endswith("}"):
            raise ExprError(f"expression {text!r} has no closing '}}'")
        body = text[2:-1]
    elif _NAME.match(text[1:]):
        return Expr(text, ("name", text[1:]))
    else:
        raise ExprError(f"{text!r} is neither $name nor ${{expression}}")
    return Expr(text, _Parser(body).parse())


def interpolate(text: str, scope: dict) -> str:
    """Substitute every `${expr}` inside a longer string (used for module names)."""
    def one(match: re.Match) -> str:
        value = parse("${" + match.group(1) + "}").evaluate(scope)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
    return re.sub(r"\$\{([^}]*)\}", one, text)


class _Parser:
    def __init__(self, text: str):
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.depth = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, i = [], 0
        while i < len(text):
            if text[i:].strip() == "":
                break
            m = _TOKEN.match(text, i)
            if not m:
                raise ExprError(f"unexpected {text[i:].strip()[0]!r} in expression "
                                f"(allowed: numbers, names, + - * / // % ( ), min, max)")
            number, name, op = m.groups()
            tokens.append(("num", number) if number else ("name", name) if name else ("op", op))
            i = m.end()
        return tokens

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, value=None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ExprError(f"expected {value!r}, found {tok[1] or 'end of expression'!r}")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        if not self.tokens:
            raise ExprError("empty expression")
        tree = self.expr()
        if self.pos != len(self.tokens):
            raise ExprError(f"unexpected {self.peek()[1]!r} in expression")
        return tree

    def expr(self):
        tree = self.term()
        while self.peek()[1] in ("+", "-"):
            tree = ("bin", self.take()[1], tree, self.term())
        return tree

    def term(self):
        tree = self.unary()
        while self.peek()[1] in ("*", "/", "//", "%"):
            tree = ("bin", self.take()[1], tree, self.unary())
        return tree

    def unary(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}")
        try:
            if self.peek()[1] in ("-", "+"):
                op = self.take()[1]
                return ("neg", self.unary()) if op == "-" else self.unary()
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self):
        kind, value = self.take()
        if kind == "num":
            return ("num", float(value) if "." in value else int(value))
        if kind == "name":
            if self.peek()[1] == "(":
                if value not in _FUNCS:
                    raise ExprError(f"unknown function {value!r} (only min and max)")
                self.take("(")
                args = [self.expr()]
                while self.peek()[1] == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                return ("call", value, tuple(args))
            return ("name", value)
        if value == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExprError(f"expression nested deeper than {MAX_DEPTH}")
            tree = self.expr()
            self.take(")")
            self.depth -= 1
            return tree
        raise ExprError(f"unexpected {value or 'end of expression'!r} in expression")


def _collect(tree: tuple, out: set) -> None:
    if tree[0] == "name":
        out.add(tree[1])
    for part in tree[1:]:
        if isinstance(part, tuple):
            if part and isinstance(part[0], str):
                _collect(part, out)
            else:
                for sub in part:
                    _collect(sub, out)


def _number(value, what: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{what} is {type(value).__name__} {value!r}, not a number")
    return value


def _eval(tree: tuple, scope: dict):
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "name":
        if tree[1] not in scope:
            known = ", ".join(sorted(scope)) or "none"
            raise ExprError(f"undefined variable {tree[1]!r} (defined here: {known})")
        return scope[tree[1]]
    if kind == "neg":
        return -_number(_eval(tree[1], scope), "operand of -")
    if kind == "call":
        return _check(_FUNCS[tree[1]](_number(_eval(a, scope), f"argument of {tree[1]}")
                                      for a in tree[2]))
    op = tree[1]
    a = _number(_eval(tree[2], scope), f"left operand of {op}")
    b = _number(_eval(tree[3], scope), f"right operand of {op}")
    if op in ("/", "//", "%") and b == 0:
        raise ExprError("division by zero")
    result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
              "/": lambda: a / b, "//": lambda: a // b, "%": lambda: a % b}[op]()
    return _check(result)


def _check(value):
    if abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"expression value {value:.3g} is out of range")
    return value
