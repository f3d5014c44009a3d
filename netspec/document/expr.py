"""The tiny, safe expression language of specs: `$name` and `"${c * 4}"`.

A subset of Python's expression syntax, with Python's meaning. Grammar (nothing else is
accepted — no attribute access, subscripts, strings, lambdas or user functions; Python's
eval is never used):

    expr   := or ['if' or 'else' expr]     a if cond else b: only the chosen side is evaluated
    or     := and ('or' and)*
    and    := not ('and' not)*
    not    := 'not' not | cmp
    cmp    := arith [CMP arith]            CMP: < <= > >= == !=; not chained (write a < b and b < c)
    arith  := term (('+' | '-') term)*
    term   := unary (('*' | '/' | '//' | '%') unary)*
    unary  := ('-' | '+') unary | power
    power  := atom ['**' unary]            right-associative; -2 ** 2 == -4, 2 ** -1 == 0.5
    atom   := NUMBER | NAME | '(' expr ')'
            | FUNC '(' expr (',' expr)* ')'
            | ('sum' | 'min' | 'max') '(' expr 'for' NAME 'in' 'range' '(' expr [',' expr] ')' ['if' or] ')'
    FUNC   := min | max | abs | round | floor | ceil | int | log | pow

NUMBER is 3, 0.5 or 1e-3; the words if else and or not for in are reserved.

Values are ints, floats and booleans (true/false from YAML, or a comparison). Arithmetic
refuses booleans (`True + 1` is an error); a condition (if, and, or, not) is true/false or
1/0, as for `when:`, and and/or/not give true/false. `/` gives a float. round is Python's
round: half to even (round(2.5) == 2), as torch.round and numpy.round; round, floor, ceil
and int (truncation toward zero) give ints. log(x) is natural, log(x, base) = log(x) /
log(base); pow(a, b) is a ** b. `sum(EXPR for j in range(a, b) if COND)` adds left to right
(0 for no steps); min and max of no steps are errors.

Bounds: an expression has at most MAX_LENGTH characters and MAX_DEPTH nesting; every number
stays within MAX_MAGNITUDE (a power that would exceed it is refused before it is computed);
no NaN or infinity ever comes out (log(0), 0 ** -1, (-8) ** 0.5 are errors); range loops
do at most MAX_STEPS operations in all per Budget (the resolver shares one per spec): a
loop costs its steps times the size of its body and condition, charged before it starts,
so an oversized loop fails at once. Parsing happens once, when the spec is validated (so a bad
expression is reported at load time); evaluation happens in resolve, against the variables
in scope. Imports nothing from netspec.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from functools import lru_cache

MAX_LENGTH = 256         # characters in one expression
MAX_DEPTH = 32           # nesting of parentheses, unary operators and conditionals
MAX_MAGNITUDE = 2**63    # results beyond int64 are refused (no spec needs them)
MAX_STEPS = 100_000      # operations of range loops per Budget (per spec); RegNet's stages take ~3,000

# ASCII digits only: `\d` would read Arabic-Indic and other Unicode digits (`${٣ * 2}` was 6)
_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_TOKEN = re.compile(rf"\s*(?:({_NUM})|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|//|[<>=!]=|[-+*/%(),<>]))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_KEYWORDS = {"if", "else", "and", "or", "not", "for", "in"}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod}
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
        "==": operator.eq, "!=": operator.ne}
_REDUCE = ("sum", "min", "max")  # the functions that take `EXPR for NAME in range(...)`


class ExprError(ValueError):
    pass


def _log(x, base=None):
    if x <= 0:
        raise ExprError(f"log({x!r}): the argument must be positive")
    if base is None:
        return math.log(x)
    if base <= 0 or base == 1:
        raise ExprError(f"log(x, {base!r}): the base must be positive and not 1")
    return math.log(x, base)


def _pow(a, b):
    if a == 0 and b < 0:
        raise ExprError(f"{a!r} ** {b!r} divides by zero")
    if a < 0 and b != int(b):
        raise ExprError(f"({a!r}) ** {b!r}: a negative number to a fractional power is not a real number")
    # |a| ** b >= 2 ** 64 is out of range: refuse before Python computes a huge int
    if a != 0 and b * math.log2(abs(a)) > 64:
        raise ExprError(f"{a!r} ** {b!r} is out of range (beyond 2**63); refused before computing it")
    return pow(a, b)


# name -> (fewest arguments, most arguments or None, function)
_FUNCS = {"min": (1, None, lambda *a: min(a)), "max": (1, None, lambda *a: max(a)),
          "abs": (1, 1, abs), "round": (1, 1, round), "floor": (1, 1, math.floor),
          "ceil": (1, 1, math.ceil), "int": (1, 1, int), "log": (1, 2, _log), "pow": (2, 2, _pow)}


class Budget:
    """The work `for ... in range(...)` loops may still do, in operations: a loop costs its
    number of steps times the operations in its body and condition. Share one to bound a spec."""

    def __init__(self, steps: int = MAX_STEPS):
        self.left = steps

    def spend(self, n: int) -> None:
        if n > self.left:
            raise ExprError(f"a range loop of {n:,} operations is refused: the loops of a spec may do "
                            f"{MAX_STEPS:,} in all ({self.left:,} left)")
        self.left -= n


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed `$...` value. `text` is what the user wrote."""

    text: str
    tree: tuple

    def names(self) -> set[str]:
        """The variables it reads (not the names a `for` binds)."""
        out: set[str] = set()
        _collect(self.tree, out, frozenset())
        return out

    def evaluate(self, scope: dict, budget: Budget | None = None):
        return _eval(self.tree, scope, budget or Budget())

    def __repr__(self) -> str:
        return self.text


def is_expr_text(value) -> bool:
    return isinstance(value, str) and value.startswith("$")


@lru_cache(maxsize=8192)  # a block's expressions are parsed once, not once per call (Expr is frozen)
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


def interpolate(text: str, scope: dict, budget: Budget | None = None) -> str:
    """Substitute every `${expr}` inside a longer string (used for module names)."""
    budget = budget or Budget()

    def one(match: re.Match) -> str:
        value = parse("${" + match.group(1) + "}").evaluate(scope, budget)
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
                raise ExprError(f"unexpected {text[i:].strip()[0]!r} in expression (allowed: numbers, "
                                f"names, + - * / // % ** < <= > >= == != ( ) , and the functions)")
            number, name, op = m.groups()
            tokens.append(("num", number) if number else ("kw" if name in _KEYWORDS else "name", name)
                          if name else ("op", op))
            i = m.end()
        return tokens

    def nested(self, rule):
        """Parse one nested part (in parentheses, an argument, after a prefix operator...)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression nested deeper than {MAX_DEPTH}")
        try:
            return rule()
        finally:
            self.depth -= 1

    def peek(self) -> str:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else ""

    def take(self, value=None):
        tok = self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")
        if value is not None and tok[1] != value:
            raise ExprError(f"expected {value!r}, found {tok[1] or 'end of expression'!r}")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        if not self.tokens:
            raise ExprError("empty expression")
        tree = self.nested(self.expr)
        if self.pos != len(self.tokens):
            raise ExprError(f"unexpected {self.peek()!r} in expression")
        return tree

    def expr(self):
        tree = self.disjunction()
        if self.peek() != "if":
            return tree
        self.take()
        cond = self.disjunction()
        self.take("else")
        return ("if", cond, tree, self.nested(self.expr))

    def disjunction(self):
        return self.chain("or", self.conjunction)

    def conjunction(self):
        return self.chain("and", self.negation)

    def chain(self, word: str, operand):
        """operand (word operand)*, grouped to the left."""
        tree = operand()
        while self.peek() == word:
            self.take()
            tree = (word, tree, operand())
        return tree

    def negation(self):
        if self.peek() == "not":
            self.take()
            return ("not", self.nested(self.negation))
        tree = self.arith()
        if self.peek() in _CMP:
            tree = ("cmp", self.take()[1], tree, self.arith())
            if self.peek() in _CMP:
                raise ExprError(f"chained comparison {tree[1]!r} ... {self.peek()!r}: write a < b and b < c")
        return tree

    def arith(self):
        tree = self.term()
        while self.peek() in ("+", "-"):
            tree = ("bin", self.take()[1], tree, self.term())
        return tree

    def term(self):
        tree = self.unary()
        while self.peek() in ("*", "/", "//", "%"):
            tree = ("bin", self.take()[1], tree, self.unary())
        return tree

    def unary(self):
        if self.peek() in ("-", "+"):
            op = self.take()[1]
            inner = self.nested(self.unary)
            return ("neg", inner) if op == "-" else inner
        tree = self.atom()
        if self.peek() == "**":
            self.take()
            tree = ("bin", "**", tree, self.nested(self.unary))
        return tree

    def atom(self):
        kind, value = self.take()
        if kind == "num":
            return ("num", _check(float(value) if any(c in value for c in ".eE") else int(value)))
        if kind == "name" and self.peek() == "(":
            return self.call(value)
        if kind == "name":
            return ("name", value)
        if value == "(":
            tree = self.nested(self.expr)
            self.take(")")
            return tree
        raise ExprError(f"unexpected {value or 'end of expression'!r} in expression")

    def call(self, func: str):
        if func not in _FUNCS and func not in _REDUCE:
            raise ExprError(f"unknown function {func!r} (known: {', '.join([*_FUNCS, 'sum'])})")
        self.take("(")
        args = [self.nested(self.expr)]
        if self.peek() == "for":
            return self.reduction(func, args[0])
        if func == "sum":
            raise ExprError("sum takes `EXPR for NAME in range(...)`, e.g. sum(1 for j in range(n) if j % 2 == 0)")
        while self.peek() == ",":
            self.take()
            args.append(self.nested(self.expr))
        self.take(")")
        lo, hi, _ = _FUNCS[func]
        if not lo <= len(args) <= (hi or len(args)):
            want = lo if lo == hi else f"{lo} or {hi}" if hi else f"at least {lo}"
            raise ExprError(f"{func}() takes {want} argument{'s' if want != 1 else ''}, got {len(args)}")
        return ("call", func, tuple(args))

    def reduction(self, func: str, body: tuple):
        if func not in _REDUCE:
            raise ExprError(f"{func}() takes no `for` (only sum, min and max do)")
        self.take("for")
        kind, var = self.take()
        if kind != "name":
            raise ExprError(f"expected a name after 'for', found {var or 'end of expression'!r}")
        self.take("in")
        self.take("range")
        self.take("(")
        bounds = [("num", 0), self.nested(self.expr)]
        if self.peek() == ",":
            self.take()
            bounds = [bounds[1], self.nested(self.expr)]
        self.take(")")
        cond = None
        if self.peek() == "if":
            self.take()
            cond = self.nested(self.disjunction)
        self.take(")")
        cost = _size(body) + (_size(cond) if cond else 0)  # operations per step
        return ("for", func, body, var, bounds[0], bounds[1], cond, cost)


def _children(tree: tuple) -> list[tuple]:
    if tree[0] == "call":
        return list(tree[2])
    if tree[0] == "for":
        return [t for t in tree[2:7] if isinstance(t, tuple)]
    return [t for t in tree[1:] if isinstance(t, tuple)]


def _size(tree: tuple) -> int:
    return 1 + sum(_size(t) for t in _children(tree))


def _collect(tree: tuple, out: set, bound: frozenset) -> None:
    if tree[0] == "name" and tree[1] not in bound:
        out.add(tree[1])
    if tree[0] == "for":
        _, _, body, var, start, stop, cond, _ = tree
        _collect(start, out, bound)
        _collect(stop, out, bound)
        for part in (body, cond) if cond else (body,):
            _collect(part, out, bound | {var})
        return
    for part in _children(tree):
        _collect(part, out, bound)


def _number(value, what: str):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a boolean" if isinstance(value, bool) else type(value).__name__
        raise ExprError(f"{what} is {kind} {value!r}, not a number")
    return value


def _truth(value, what: str) -> bool:
    """A condition: true/false or 1/0, as `when:` takes."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ExprError(f"{what} is {value!r}; a condition is true/false or 1/0 (compare, e.g. x > 0)")


def _eval(tree: tuple, scope: dict, budget: Budget):
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "name":
        if tree[1] not in scope:
            known = ", ".join(sorted(scope)) or "none"
            raise ExprError(f"undefined variable {tree[1]!r} (defined here: {known})")
        return scope[tree[1]]
    if kind == "neg":
        return -_number(_eval(tree[1], scope, budget), "operand of -")
    if kind == "not":
        return not _truth(_eval(tree[1], scope, budget), "operand of not")
    if kind in ("and", "or"):
        left = _truth(_eval(tree[1], scope, budget), f"left operand of {kind}")
        if left == (kind == "or"):  # decided without the right side, as in Python
            return left
        return _truth(_eval(tree[2], scope, budget), f"right operand of {kind}")
    if kind == "if":
        holds = _truth(_eval(tree[1], scope, budget), "condition of if")
        return _eval(tree[2] if holds else tree[3], scope, budget)
    if kind == "call":
        func = _FUNCS[tree[1]][2]
        return _check(func(*(_number(_eval(a, scope, budget), f"argument of {tree[1]}") for a in tree[2])))
    if kind == "for":
        return _reduce(tree, scope, budget)
    op = tree[1]
    a, b = _eval(tree[2], scope, budget), _eval(tree[3], scope, budget)
    if kind == "cmp":
        if not (isinstance(a, bool) and isinstance(b, bool) and op in ("==", "!=")):
            a, b = _number(a, f"left operand of {op}"), _number(b, f"right operand of {op}")
        return _CMP[op](a, b)
    a, b = _number(a, f"left operand of {op}"), _number(b, f"right operand of {op}")
    if op == "**":
        return _check(_pow(a, b))
    if op in ("/", "//", "%") and b == 0:
        raise ExprError("division by zero")
    return _check(_ARITH[op](a, b))


def _reduce(tree: tuple, scope: dict, budget: Budget):
    """sum/min/max(EXPR for NAME in range(start, stop) if COND)."""
    _, func, body, var, start, stop, cond, cost = tree
    lo, hi = (_eval(t, scope, budget) for t in (start, stop))
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)):
        raise ExprError(f"range() needs integers, got range({lo!r}, {hi!r})")
    budget.spend(max(0, hi - lo) * cost)
    inner = dict(scope)
    total = None
    for j in range(lo, hi):
        inner[var] = j
        if cond is not None and not _truth(_eval(cond, inner, budget), "condition of for"):
            continue
        value = _number(_eval(body, inner, budget), f"value in {func}()")
        total = value if total is None else _check(total + value) if func == "sum" else \
            min(total, value) if func == "min" else max(total, value)
    if total is None and func != "sum":
        raise ExprError(f"{func}() of no values (the range or its condition selects nothing)")
    return 0 if total is None else total


def _check(value):
    if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_MAGNITUDE:
        raise ExprError(f"expression value {value:.3g} is out of range (beyond 2**63)")
    return value
