"""Differential and mutation fuzzing of the compiler (issue 6).

    python bench/fuzz.py --n 20000            # differential: analysis vs built module,
                                              # and the in-place build vs the out-of-place one
    python bench/fuzz.py --mutate 20000       # mutation: edits of the zoo specs through the CLI

Differential: random valid specs (tests/specgen.py) — static per-layer shapes, params and
MACs must equal the module built on the meta device (forward hooks, sum of numel,
FlopCounterMode), and the default build (ReLUs and residual adds in place where the
builder finds it safe) must compute bit for bit what the inplace=False build does
(training-mode outputs, input and parameter gradients; the input left untouched); and
the spec with one module name made to clash with a sibling's or to be one torch refuses
must be refused in one line, or built exactly as analysed.
Counts valid specs, mismatches, crashes and hangs, and the variety of layer types and
constructs covered.
Mutation: one random edit of a zoo spec per case, written to YAML and run through
`netspec compile`: each must compile or end with one located error line and exit 2 —
no traceback, no hang (5 s per case).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from specgen import (ONEDNN_6035, ROUNDING, Draw, differential, inplace_differential, mutate, random_spec, refused_or_exact,  # noqa: E402
                     with_clashing_name)

LIMIT_S = 5


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_differential(n: int, seed: int, trace=None) -> dict:
    from netspec.errors import SpecError
    # one case untimed first: torch imports parts of itself (dynamo, sympy) at the first
    # forward, and an import cut short by the per-case alarm leaves torch broken for good
    with contextlib.suppress(Exception):
        warm = random_spec(Draw(seed))[0]
        differential(warm) + inplace_differential(warm)
    counts, variety, examples = Counter(), Counter(), []
    for i in range(n):
        r = Draw(seed + i)
        if trace:  # the seed is on disk before its case runs: a case that kills the process is named
            print(seed + i, file=trace, flush=True)
        spec, used = random_spec(r)
        signal.alarm(LIMIT_S)
        try:
            static, inplace = differential(spec), inplace_differential(spec)
            if inplace and not inplace_differential(spec, onednn=False):
                counts[ONEDNN_6035] += 1   # differs only through oneDNN's kernels (specgen.ONEDNN_6035)
                examples.append((seed + i, [f"{ONEDNN_6035}: {p}" for p in inplace]))
                inplace = []
            elif inplace and all(p.startswith(ROUNDING) for p in inplace):
                counts["rounding-level gradient differences"] += 1
                examples.append((seed + i, inplace))
                inplace = []
            problems = static + inplace
            problems += [f"with a clashing name: {p}" for p in refused_or_exact(with_clashing_name(r, spec))]
            counts["valid"] += 1
            variety.update(used)
            if problems:
                counts["mismatches"] += 1
                examples.append((seed + i, problems[:2]))
        except Hang:
            counts["hangs"] += 1
            examples.append((seed + i, [f"over {LIMIT_S} s"]))
        except SpecError as e:
            counts["generator produced invalid spec"] += 1
            examples.append((seed + i, [str(e)]))
        except Exception:
            counts["crashes"] += 1
            examples.append((seed + i, [traceback.format_exc(limit=3)]))
        finally:
            signal.alarm(0)
    return {"counts": counts, "variety": variety, "examples": examples}


def run_mutation(n: int, seed: int) -> dict:
    import ruamel.yaml

    import netspec
    from netspec.cli import main
    zoo = [netspec.load(p).source.data for p in sorted((ROOT / "specs").rglob("*.yaml"))
           if "extends" not in p.read_text()]
    yaml = ruamel.yaml.YAML()
    counts, examples = Counter(), []
    located = re.compile(r"^\S+:\d+:\d+: error: ")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mutant.yaml")
        for i in range(n):
            r = Draw(seed + i)
            data = mutate(r, r.choice(zoo))
            with open(path, "w") as f:
                yaml.dump(data, f)
            out, err = io.StringIO(), io.StringIO()
            signal.alarm(LIMIT_S)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(["compile", "--json", path])
            except Hang:
                counts["hangs"] += 1
                examples.append((seed + i, f"over {LIMIT_S} s"))
                continue
            except BaseException:
                counts["tracebacks"] += 1
                examples.append((seed + i, traceback.format_exc(limit=3)))
                continue
            finally:
                signal.alarm(0)
            lines = err.getvalue().strip().splitlines()
            if code == 0:
                counts["compiled"] += 1
            elif code == 2 and len(lines) == 1:
                counts["errors"] += 1
                counts["errors with line:col"] += bool(located.match(lines[0]))
                if not located.match(lines[0]):
                    examples.append((seed + i, lines[0]))
            else:
                counts["tracebacks" if "Traceback" in err.getvalue() else f"exit {code}"] += 1
                examples.append((seed + i, err.getvalue()[-500:]))
    return {"counts": counts, "examples": examples[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=0, help="differential cases")
    parser.add_argument("--mutate", type=int, default=0, help="mutation cases")
    parser.add_argument("--seed", type=int, default=0, help="first seed; case i uses seed + i (re-run one with --seed S --n 1)")
    parser.add_argument("--trace", type=argparse.FileType("w"), help="write each differential case's seed here before it runs")
    args = parser.parse_args()
    import netspec.builder  # noqa: F401  (torch: imported before the per-case alarm, which must not cut an import)
    signal.signal(signal.SIGALRM, _alarm)
    if args.n:
        t = time.perf_counter()
        result = run_differential(args.n, args.seed, args.trace)
        c = result["counts"]
        print(f"differential: {args.n} cases in {time.perf_counter() - t:.0f} s: valid {c['valid']}, "
              f"mismatches {c['mismatches']}, crashes {c['crashes']}, hangs {c['hangs']}, "
              f"invalid from generator {c['generator produced invalid spec']}, "
              f"differ with oneDNN only (oneDNN#6035, oneDNN's rounding) {c[ONEDNN_6035]}, "
              f"parameter gradients off by rounding only (<= 1e-6 of scale) {c['rounding-level gradient differences']}")
        print("  variety: " + ", ".join(f"{k} {v}" for k, v in sorted(result["variety"].items())))
        for seed, problems in result["examples"]:  # every case, one line each
            print(f"  seed {seed}: {str(problems)[:300]}")
    if args.mutate:
        t = time.perf_counter()
        result = run_mutation(args.mutate, args.seed)
        c = result["counts"]
        errors = c["errors"]
        share = 100 * c["errors with line:col"] / errors if errors else 100.0
        print(f"mutation: {args.mutate} edits in {time.perf_counter() - t:.0f} s: compiled {c['compiled']}, "
              f"one-line errors {errors} ({share:.2f}% with line:col), tracebacks {c['tracebacks']}, hangs {c['hangs']}, "
              f"other {sum(v for k, v in c.items() if k.startswith('exit'))}")
        for example in result["examples"]:
            print("  example:", example)


if __name__ == "__main__":
    main()
