"""The `netspec` command: parse arguments, call the library, print, return an exit code.

Exit codes: 0 ok, 1 a check failed (expected vs got), 2 invalid input,
3 internal error (a netspec bug; NETSPEC_DEBUG=1 shows the traceback).
Subcommands that only read specs (check, compile without --check-params, schema,
resolve) never import torch, so they start fast enough for an editor hook.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import warnings

from netspec.budget import DEFAULT_MAX_PARAMS, max_params, positive, refuse_huge
from netspec.errors import (EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, CheckFailed, NetspecError, SpecError,
                            SpecWarning, one_line)


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,224,224), got {text!r}") from None
    if not 1 <= len(dims) <= 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected 1 to 3 positive sizes, got {text!r}")
    return dims


# -- subcommands -----------------------------------------------------------------------
def _analyze(path: str, args):
    """The analysis at --input (if given). A spec that fails only at that input is the
    argument's fault: the error names it (`--input 32,32: ...`), not the spec's line."""
    import netspec
    from netspec.errors import SpecError
    try:
        return netspec.analyze(path, input=args.input, overrides=args.set)
    except SpecError as e:
        if args.input is None:
            raise
        try:
            own = netspec.analyze(path, overrides=args.set).input
        except NetspecError:
            raise e from None
        where = f"{e.file}:{e.line}:{e.col}" if e.line is not None else e.file
        raise SpecError(f"{e.message} (at {where}); the spec's own input {list(own)} works", e.path,
                        file=f"--input {','.join(map(str, args.input))}") from None


def cmd_check(args) -> int:
    import netspec.analysis  # noqa: F401  (and the static path with it, before the freeze)
    import netspec.document  # noqa: F401
    import netspec.resolver  # noqa: F401
    worst = EXIT_OK
    with _imports_frozen(unfreeze=not args.ends_process):
        for path in args.specs:
            worst = max(worst, _check_one(path, args))
    return worst


@contextlib.contextmanager
def _imports_frozen(unfreeze: bool):
    """What the imports made lives until exit: the collector need not rescan it while a
    folder of specs is checked (a tenth of the zoo's CPU time). Unfrozen after where the
    process goes on (a caller of main() collects as before; the `netspec` command would only
    pay for a full collection at exit); a host that froze its own objects is left alone."""
    import gc
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        if unfreeze:
            gc.unfreeze()


def _check_one(path: str, args) -> int:
    import netspec
    from netspec.analysis import check_expect
    try:
        analysis = netspec.analyze(path, overrides=args.set)
        train_problem(analysis)
        # everything `expect:` names is known without torch; it describes the file as
        # written, so a --set edit (an ablation) is not held to it
        expect = getattr(analysis.spec, "expect", None) is not None and not args.set
        problems = check_expect(analysis) if expect else []
        if problems:
            raise CheckFailed("; ".join(problems), path)
        _flush_warnings(True)
        print(one_line(f"{path}: ok"))
        return EXIT_OK
    except NetspecError as e:
        _flush_warnings(False)
        print(e, file=sys.stderr)
        return e.exit_code


def train_problem(analysis) -> None:
    """A `train:` section that cannot train the model's output (another task, a segmenter's output
    size, a record's loss weights): found by `check`, as `train` would find it."""
    spec = analysis.spec
    if getattr(spec, "train", None) is not None:
        from netspec.document.train import output_problem  # only then: the train config's models load on use
        problem = output_problem(spec.train, analysis.output, analysis.input)
        if problem is not None:
            raise spec.source.error(*problem)


def cmd_compile(args) -> int:
    from netspec.summary import COLUMNS, as_json, render_table
    columns = args.columns or ()   # none chosen: render_table's defaults (--memory's with memory)
    memory_wanted = args.memory or any(COLUMNS[c].needs_memory for c in columns)
    worst = EXIT_OK
    for path in args.specs:
        try:
            analysis = _analyze(path, args)
            refuse_huge(analysis, args.max_params)
            memory = _training_step(analysis, args) if memory_wanted else None
            if args.json:
                print(as_json(analysis, file=path, memory=memory, receptive="rf" in columns))
            else:
                render_table(analysis, sys.stdout, columns=args.columns, depth=args.depth, memory=memory)
            if args.check_params:
                _check_params(analysis, path, quiet=args.json)
            _flush_warnings(True)
        except NetspecError as e:
            _flush_warnings(False)
            print(e, file=sys.stderr)
            worst = max(worst, e.exit_code)
    return worst


def _training_step(analysis, args):
    """The static training-step model at --batch/--precision/--optimizer, each defaulting to
    the spec's `train:` section (its defaults without one)."""
    from netspec.autograd import training_step
    from netspec.document.train import TrainConfig
    train = getattr(analysis.spec, "train", None) or TrainConfig()
    optimizer = args.optimizer or (train.optimizer.name if train.optimizer.name != "sgd" else
                                   "sgd_momentum" if train.optimizer.momentum else "sgd")
    try:
        return training_step(analysis, batch=args.batch or train.batch_size,
                             precision=args.precision or train.precision, optimizer=optimizer)
    except NotImplementedError as e:  # a layer whose backward the memory model does not know (it says which)
        raise SpecError(f"--memory: {e}; compile without --memory for the rest of the table",
                        file=analysis.spec.source.file if analysis.spec is not None else None) from None


def _check_params(analysis, path: str, quiet: bool) -> None:
    from netspec.analysis import check_expect
    from netspec.ir import show_form
    from netspec.builder import cross_check
    problems = check_expect(analysis)
    problems += [f"meta-device build: {p}" for p in cross_check(analysis)]
    if problems:
        raise CheckFailed("; ".join(problems), path)
    if not quiet:
        expect = analysis.spec.expect
        checked = ", ".join(f"{k} {getattr(analysis, k):,}" if k != "output" else f"output {show_form(analysis.output)}"
                            for k in ("params", "trainable_params", "macs", "output") if getattr(expect, k) is not None)
        print(f"{path}: check passed: {checked} as expected; meta-device build agrees (numel, buffers, output shape)")


def cmd_schema(args) -> int:
    from netspec.document.schema import json_schema
    text = json.dumps(json_schema(), indent=2)
    if args.out:
        try:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        except OSError as e:
            raise SpecError(f"cannot write {args.out}: {e.strerror or e}", file="--out") from None
    else:
        print(text)
    return EXIT_OK


def cmd_resolve(args) -> int:
    import netspec
    from netspec.summary import resolved
    try:
        analysis = _analyze(args.spec, args)
    except SpecError:   # the graph as resolved, then what the analysis found wrong in it
        print(netspec.resolve(args.spec, input=args.input, overrides=args.set))
        raise
    print(resolved(analysis))
    return EXIT_OK


# -- wiring --------------------------------------------------------------------------
def _add_compile(sub) -> None:
    p = sub.add_parser("compile", help="shapes, params and MACs of every layer, statically",
                       description="Validate and analyse each spec and print one row per leaf module (path, type, "
                                   "output shape, params, MACs) and the totals, computed from shapes alone (no torch "
                                   "unless --check-params). Exit 0 ok, 1 a check failed, 2 invalid input.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML or JSON)")
    p.add_argument("--input", type=_shape, metavar="C,H,W", help="input shape instead of the spec's `input`")
    p.add_argument("--check-params", action="store_true",
                   help="verify `expect:` and cross-check against a meta-device build (exit 1 on mismatch)")
    p.add_argument("--json", action="store_true", help="print one JSON object per spec, one per line (JSON Lines)")
    p.add_argument("--max-params", type=max_params, default=DEFAULT_MAX_PARAMS, metavar="N",
                   help=f"refuse specs with more parameters (default {DEFAULT_MAX_PARAMS:.0e})")
    table = p.add_argument_group("the table")
    table.add_argument("--depth", type=positive, metavar="N",
                       help="rows down to N path levels; deeper modules fold into their container's row (subtotals)")
    table.add_argument("--columns", type=_columns, metavar="A,B,...",
                       help="columns after path and type, from: " + ", ".join(_column_names()) +
                            " (default settings,output,params,macs; with --memory also memory,bwd_macs; rf: receptive field "
                            "and effective stride)")
    memory = p.add_argument_group("the training step (--memory; each default from the spec's train: section)")
    memory.add_argument("--memory", action="store_true",
                        help="what one training step holds (parameters, gradients, optimizer state, the tensors "
                             "autograd keeps, per module), a peak estimate, and backward MACs")
    memory.add_argument("--batch", type=positive, metavar="N", help="batch size (default train.batch_size)")
    memory.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="fp32, or bf16/fp16 autocast")
    memory.add_argument("--optimizer", choices=["sgd", "sgd_momentum", "adam", "adamw"],
                        help="whose state to count (sgd: none; sgd_momentum: 1 tensor per parameter; adam/adamw: 2)")
    p.set_defaults(func=cmd_compile)


def _column_names() -> list[str]:
    from netspec.summary import COLUMNS
    return list(COLUMNS)


def _columns(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in _column_names()]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown column {unknown[0]!r} (columns: {', '.join(_column_names())})"
                                         if unknown else "name at least one column")
    return names


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="validate specs only (fast; no torch)",
                       description="Validate and analyse each spec without importing torch: prints `SPEC: ok` per "
                                   "valid spec and one located error line per invalid one. For editors and "
                                   "pre-commit hooks. Exit 0 all valid, 2 some invalid.")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML or JSON)")
    p.set_defaults(func=cmd_check)


def _add_schema(sub) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of the spec format",
                       description="The JSON Schema of the spec format (for editors: "
                                   "`# yaml-language-server: $schema=netspec.schema.json`).")
    p.add_argument("--out", metavar="FILE", help="write it to FILE")
    p.set_defaults(func=cmd_schema)


def _add_resolve(sub) -> None:
    p = sub.add_parser("resolve", help="print the resolved graph (blocks, repeats, expressions expanded)",
                       description="Print the plain graph a spec resolves to: block calls, repeats, `when:` and "
                                   "$variables expanded, module names assigned; what the analysis and builder see.")
    p.add_argument("spec", metavar="SPEC", help="a spec file (YAML or JSON)")
    p.add_argument("--input", type=_shape, metavar="C,H,W", help="input shape instead of the spec's `input`")
    p.set_defaults(func=cmd_resolve)


def _add_diff(sub) -> None:
    from netspec.diff import add_command
    add_command(sub, _shape)


def _add_deploy(sub) -> None:
    from netspec.deploy.commands import add_commands  # export and predict
    add_commands(sub, _shape, _analyze)


def _add_draw(sub) -> None:
    from netspec.draw import add_command
    add_command(sub, _shape, _analyze)


def _add_sweep(sub) -> None:
    from netspec.sweep.command import add_command
    add_command(sub)


def _add_train(sub) -> None:
    from netspec.train.commands import add_commands  # train and eval
    add_commands(sub)


# subcommand -> what adds it; only the one being run is imported (`netspec check` starts
# in a fraction of a second, without the trainer's or the sweep's modules)
COMMANDS = {"compile": _add_compile, "check": _add_check, "schema": _add_schema, "resolve": _add_resolve,
            "diff": _add_diff, "sweep": _add_sweep, "train": _add_train, "eval": _add_train,
            "export": _add_deploy, "predict": _add_deploy, "draw": _add_draw}
NO_SET = ("schema",)  # commands that read no spec


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as one line naming the argument, exit 2, like every
    other error (argparse's own prints the usage block first). Every subcommand's parser
    is one of these."""

    command = "netspec"  # the subcommand's prog, once known (argparse reports unknown options at the top)

    def error(self, message: str):
        named = re.match(r"argument (\S+): (.*)", message, re.S)
        if named:  # "argument -o/--out: ..." -> "--out: error: ..."
            raise SpecError(named.group(2), file=named.group(1).split("/")[-1])
        unknown = re.match(r"unrecognized arguments: (.*)", message, re.S)
        if unknown:
            raise SpecError(f"no such option ({self.command} --help lists them)", file=unknown.group(1).split()[0])
        raise SpecError(f"{message} ({self.prog} --help)", file=self.prog)


def make_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand, or only the one `argv` names."""
    parser = _Parser(prog="netspec", description="Neural-network architectures as data.")
    from netspec import __version__
    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((a for a in (argv or []) if not a.startswith("-")), None)
    adders = [COMMANDS[named]] if named in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for add in adders:
        add(sub)
    if named in COMMANDS:
        parser.command = f"netspec {named}"
    for name, action in sub.choices.items():
        if name not in NO_SET:
            action.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                                help="override a spec field before validation, e.g. train.epochs=3 or "
                                     "vars.classes=100 (a YAML value; repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    ends_process = argv is None  # the `netspec` command itself, not a call in a process that goes on
    argv = sys.argv[1:] if argv is None else list(argv)
    with _closed_pipes_end_output(), warnings.catch_warnings():
        warnings.simplefilter("default", SpecWarning)
        warnings.showwarning = _show_warning
        return _run(argv, ends_process)


def _run(argv: list[str], ends_process: bool = False) -> int:
    try:
        args = make_parser(argv).parse_args(argv)
        args.ends_process = ends_process
        code = args.func(args)
        _flush_warnings(code == EXIT_OK)
        return code
    except NetspecError as e:
        _flush_warnings(False)
        print(e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("netspec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for users; the traceback on request
        if os.environ.get("NETSPEC_DEBUG"):
            raise
        print(one_line(f"netspec: internal error: {type(e).__name__}: {e} (set NETSPEC_DEBUG=1 for the traceback; "
                       f"please report it)"), file=sys.stderr)
        return EXIT_INTERNAL


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, SpecWarning):  # already a whole located line; shown once the spec is good
        _PENDING.append(str(message))
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_PENDING: list[str] = []


def _flush_warnings(ok: bool) -> None:
    """Print a spec's warnings once it is known to be valid; a spec with an error gets
    just the error's one line."""
    if ok:
        for line in dict.fromkeys(_PENDING):
            print(line, file=sys.stderr)
    _PENDING.clear()


_SHOW_WARNING = warnings.showwarning


class _PipeEnd:
    """stdout/stderr that treat a closed pipe (`netspec ... | head -1`) as the end of
    the output, not an error: what follows is discarded and the command ends as it
    would have (its own exit code)."""

    def __init__(self, stream):
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._discard()

    def _discard(self) -> None:
        self.closed_pipe = True
        try:  # the interpreter flushes the real stream at exit: point it at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _closed_pipes_end_output():
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PipeEnd(sys.stdout), _PipeEnd(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


__all__ = ["main", "make_parser", "EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_INVALID"]
