"""The `netspec` command: parse arguments, call the library, print, return an exit code.

Exit codes: 0 ok, 1 a check failed (expected vs got), 2 invalid input,
3 internal error (a netspec bug; NETSPEC_DEBUG=1 shows the traceback).
Subcommands that only read specs (check, compile without --check-params, schema,
resolve) never import torch, so they start fast enough for an editor hook.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from netspec.budget import DEFAULT_MAX_PARAMS, max_params, refuse_huge
from netspec.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK, CheckFailed, NetspecError, SpecError, one_line


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,224,224), got {text!r}") from None
    if not 1 <= len(dims) <= 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected 1 to 3 positive sizes, got {text!r}")
    return dims


# -- subcommands -----------------------------------------------------------------------
def cmd_check(args) -> int:
    import netspec
    worst = EXIT_OK
    for path in args.specs:
        try:
            netspec.analyze(path, overrides=args.set)
            print(one_line(f"{path}: ok"))
        except NetspecError as e:
            print(e, file=sys.stderr)
            worst = max(worst, e.exit_code)
    return worst


def cmd_compile(args) -> int:
    import netspec
    from netspec.summary import as_json, render_table
    worst = EXIT_OK
    for path in args.specs:
        try:
            analysis = netspec.analyze(path, input=args.input, overrides=args.set)
            refuse_huge(analysis, args.max_params)
            if args.json:
                print(as_json(analysis))
            else:
                render_table(analysis, sys.stdout)
            if args.check_params:
                _check_params(analysis, path, quiet=args.json)
        except NetspecError as e:
            print(e, file=sys.stderr)
            worst = max(worst, e.exit_code)
    return worst


def _check_params(analysis, path: str, quiet: bool) -> None:
    from netspec.analysis import check_expect
    from netspec.builder import cross_check
    problems = check_expect(analysis)
    problems += [f"meta-device build: {p}" for p in cross_check(analysis)]
    if problems:
        raise CheckFailed("; ".join(problems), path)
    if not quiet:
        expect = analysis.spec.expect
        checked = ", ".join(f"{k} {getattr(analysis, k):,}" if k != "output" else f"output {analysis.output}"
                            for k in ("params", "trainable_params", "macs", "output") if getattr(expect, k) is not None)
        print(f"{path}: check passed: {checked} as expected; meta-device build agrees (numel, output shape)")


def cmd_schema(args) -> int:
    from netspec.spec.schema import json_schema
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
    print(netspec.resolve(args.spec, input=args.input, overrides=args.set))
    return EXIT_OK


# -- wiring --------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netspec", description="Neural-network architectures as data.")
    from netspec import __version__
    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compile", help="shapes, params and MACs of every layer, statically")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--input", type=_shape, metavar="C,H,W", help="input shape instead of the spec's `input`")
    p.add_argument("--check-params", action="store_true",
                   help="verify `expect:` and cross-check against a meta-device build (exit 1 on mismatch)")
    p.add_argument("--json", action="store_true", help="print one JSON object per spec")
    p.add_argument("--max-params", type=max_params, default=DEFAULT_MAX_PARAMS, metavar="N",
                   help=f"refuse specs with more parameters (default {DEFAULT_MAX_PARAMS:.0e})")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("check", help="validate specs only (fast; no torch)")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("schema", help="print the JSON Schema of the spec format")
    p.add_argument("--out", metavar="FILE", help="write it to FILE")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("resolve", help="print the resolved graph (blocks, repeats, expressions expanded)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--input", type=_shape, metavar="C,H,W")
    p.set_defaults(func=cmd_resolve)

    from netspec.diff import add_command as add_diff
    from netspec.sweep import add_command as add_sweep
    add_diff(sub, _shape)
    add_sweep(sub)

    try:
        from netspec.train.commands import add_commands
    except ImportError:  # the trainer is optional for the compiler's commands
        add_commands = None
    if add_commands is not None:
        add_commands(sub)

    for action in sub.choices.values():
        action.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                            help="override a spec field before validation, e.g. train.epochs=3 or vars.classes=100 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetspecError as e:
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


__all__ = ["main", "make_parser", "EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_INVALID"]
