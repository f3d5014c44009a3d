"""Errors a user can act on, and the one place that formats them.

Every stage raises `SpecError` (bad input, exit 2) or `CheckFailed` (a check such as
`expect` did not hold, exit 1). The CLI prints `str(error)`: one line,
`FILE:LINE:COL: error: FIELD.PATH: message`. Whatever a message quotes from the input
(keys, values, file names) is escaped by `one_line` in every NetspecError's `str()`,
subclasses' own `__str__` included: a newline, ESC/OSC/BEL sequence or NUL in a spec
can neither forge a second error line nor reach the terminal. Imports nothing from netspec.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERNAL = 3  # a bug in netspec itself; NETSPEC_DEBUG=1 shows the traceback

PathT = tuple  # keys (str) and list indexes (int) into the spec document


def format_path(path: PathT) -> str:
    """('layers', 3, 'conv', 'groups') -> 'layers[3].conv.groups'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def first_line(e: BaseException) -> str:
    """The first line of a library's exception, for a one-line error (its type when it says nothing)."""
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with every character that is not printable (line breaks, C0/C1 controls
    such as ESC, BEL and NUL, U+2028, bidi overrides) written as its escape, as repr does."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or repr(c)[1:-1] for c in text)


class NetspecError(Exception):
    exit_code = EXIT_INVALID

    def __init_subclass__(cls, **kwargs):
        # a subclass's own __str__ is escaped too: no message can leave this one line
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__str__")
        if own is not None:
            cls.__str__ = lambda self, _own=own: one_line(_own(self))

    def __str__(self) -> str:
        return one_line(super().__str__())


class SpecError(NetspecError):
    """Invalid input. `path` points into the spec document; `file/line/col` are
    filled in by `locate()` once the document's positions are known."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, path: PathT = (), *, file: str | None = None,
                 line: int | None = None, col: int | None = None, on_key: bool = False):
        super().__init__(message)
        self.message = message
        self.path = tuple(path)
        self.file = file
        self.line = line
        self.col = col
        self.on_key = on_key  # point at the key (e.g. an unknown field), not its value
        self.sizes = False    # tensors of unequal sizes meet: the analysis names input sizes that work

    def located(self, file: str | None, position: tuple[int, int] | None) -> "SpecError":
        if self.file is None:
            self.file = file
        if self.line is None and position is not None:
            self.line, self.col = position
        return self

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}:{self.col}"
        field = format_path(self.path)
        return f"{where}: error: {field + ': ' if field else ''}{self.message}"


class CheckFailed(NetspecError):
    """A requested check did not hold (expected vs got). Exit 1."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file

    def __str__(self) -> str:
        return f"{self.file or '<spec>'}: check failed: {self.message}"


class SpecWarning(UserWarning):
    """A located problem that changes nothing (an unused variable). Its text is the whole
    line, `FILE:LINE:COL: warning: FIELD.PATH: message`; the CLI prints it once on stderr."""


class LayerError(ValueError):
    """Raised by a layer's shape rule; `field` names the offending field so the
    analysis can point at it in the document."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message
