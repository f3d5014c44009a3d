"""Command-line argument errors (issue 23 item 16): one line naming the argument and exit 2,
like every other error, for every subcommand; never argparse's usage block."""
from __future__ import annotations

import pytest

from netspec.cli import COMMANDS


def _one_line(run) -> str:
    lines = run.err.strip().splitlines()
    assert run.code == 2 and len(lines) == 1 and "usage:" not in run.err, (run.code, run.err)
    return lines[0]


# what each subcommand needs before argparse looks at unknown options
REQUIRED = {"schema": [], "diff": ["a.yaml", "b.yaml"], "eval": ["x.yaml", "--ckpt", "x.pt"],
            "predict": ["x.yaml", "--ckpt", "x.pt", "i.png"], "export": ["x.yaml", "--format", "onnx"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_option_in_every_subcommand(cli, command):
    line = _one_line(cli(command, *REQUIRED.get(command, ["x.yaml"]), "--no-such-option", "1"))
    assert line == f"--no-such-option: error: no such option (netspec {command} --help lists them)"


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"schema"}))
def test_missing_argument_in_every_subcommand(cli, command):
    """`schema` takes no argument; the others need at least a spec."""
    line = _one_line(cli(command))
    assert line.startswith(f"netspec {command}: error: ") and f"netspec {command} --help)" in line, line


@pytest.mark.parametrize("argv, line", [
    (["train", "--resume", "r", "--out", "o"], "--resume r: error: continues a run in its own folder; leave out --out"),
    (["train", "--resume", "nothing/here"], "--resume nothing/here: error: no last.pt there to continue from"),
])
def test_train_arguments_that_contradict(cli, argv, line):
    assert _one_line(cli(*argv)) == line


@pytest.mark.parametrize("argv, line", [
    (["compile", "x.yaml", "--max-params", "-1"], "--max-params: error: expected a non-negative integer, got '-1'"),
    (["compile", "x.yaml", "--depth"], "--depth: error: expected one argument"),
    (["compile", "x.yaml", "--input", "1,a"], "--input: error: expected C,H,W (e.g. 3,224,224), got '1,a'"),
    (["train", "x.yaml", "--device", "tpu"], "--device: error: invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
    (["sweep", "x.yaml", "--jobs", "0"], "--jobs: error: expected a positive integer, got '0'"),
    (["export", "x.yaml", "--format", "onnx", "-o"], "--output: error: expected one argument"),
    (["draw", "x.yaml", "--input", "0"], "--input: error: expected 1 to 3 positive sizes, got '0'"),
    (["frob"], "COMMAND: error: invalid choice: 'frob' (choose from 'compile', 'check', 'schema', 'resolve', "
               "'diff', 'sweep', 'train', 'eval', 'export', 'predict', 'draw')"),
    (["compile", "x.yaml", "--max-params", "\x1b[31m"], "--max-params: error: expected a non-negative integer, "
                                                       "got '\\x1b[31m'"),
])
def test_bad_value_names_the_argument(cli, argv, line):
    assert _one_line(cli(*argv)) == line


def test_help_and_version_still_print_in_full(cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli("compile", "--help")
    assert e.value.code == 0 and "usage: netspec compile" in capsys.readouterr().out
