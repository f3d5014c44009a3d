"""Cold start of `netspec check`, as editors and pre-commit hooks run it (issues 11 and 25):

- one spec, `netspec check specs/resnext50.yaml`, against the import line of its two big
  dependencies, `python -c "import pydantic, ruamel.yaml"` (target <= 2.5x);
- the whole zoo, `netspec check specs/*.yaml` (88 specs), against that one spec (target < 2x).

    python bench/startup.py [--runs 5] [--callgrind]

Each round runs the commands as fresh processes, alternating, so a busy machine slows all
alike; medians of wall time and of CPU time (user + system, which another job on the same
cores disturbs less) are printed, with their ratios. Bytecode caches are written and used,
as after a user's first run (PYTHONDONTWRITEBYTECODE is cleared for the children; one
untimed round warms them). --callgrind also counts each command's instructions under
valgrind (deterministic: the figure to compare across machines and busy hours; a few
minutes).
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "specs", "*.yaml")))
COMMANDS = {
    "import pydantic, ruamel.yaml": [sys.executable, "-c", "import pydantic, ruamel.yaml"],
    "netspec check (one spec)": [sys.executable, "-m", "netspec", "check", os.path.join("specs", "resnext50.yaml")],
    f"netspec check ({len(ZOO)} specs)": [sys.executable, "-m", "netspec", "check", *ZOO],
}
# (what, against what, target)
RATIOS = [("netspec check (one spec)", "import pydantic, ruamel.yaml", "<= 2.5x"),
          (f"netspec check ({len(ZOO)} specs)", "netspec check (one spec)", "< 2x")]


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(command: list[str], env: dict) -> int:
    """Instructions the command executes, counted by callgrind."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command], cwd=ROOT,
                         env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for command in COMMANDS.values():  # untimed: write the bytecode caches
        timed(command, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(timed(command, env))
    medians = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()}
    for name, (wall, cpu) in medians.items():
        print(f"{name:30s} wall {wall:.3f} s  cpu {cpu:.3f} s  (median of {args.runs})")
    counts = {}
    if args.callgrind:
        if shutil.which("valgrind") is None:
            sys.exit("--callgrind needs valgrind (apt-get install valgrind)")
        counts = {name: instructions(command, env) for name, command in COMMANDS.items()}
        for name, n in counts.items():
            print(f"{name:30s} {n / 1e6:,.0f} M instructions")
    for what, base, target in RATIOS:
        line = f"{what} / {base}: wall {medians[what][0] / medians[base][0]:.2f}x, cpu {medians[what][1] / medians[base][1]:.2f}x"
        if counts:
            line += f", instructions {counts[what] / counts[base]:.2f}x"
        print(f"{line}  (target {target})")


if __name__ == "__main__":
    main()
