"""Cold start of `netspec check specs/resnext50.yaml` against the import line of its two
big dependencies, `python -c "import pydantic, ruamel.yaml"`, side by side (issue 11:
target <= 2.5x).

    python bench/startup.py [--runs 9]

Each round runs both as fresh processes, alternating, so a busy machine slows both alike;
medians of wall time and of CPU time (user + system, which another job on the same cores
disturbs less) are printed, with their ratios. Bytecode caches are written and used, as
after a user's first run (PYTHONDONTWRITEBYTECODE is cleared for the children; one untimed
round warms them).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {
    "netspec check": [sys.executable, "-m", "netspec", "check", os.path.join("specs", "resnext50.yaml")],
    "import pydantic, ruamel.yaml": [sys.executable, "-c", "import pydantic, ruamel.yaml"],
}


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds (default 9)")
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
    (check_wall, check_cpu), (ref_wall, ref_cpu) = medians.values()
    for name, (wall, cpu) in medians.items():
        print(f"{name:30s} wall {wall:.3f} s  cpu {cpu:.3f} s  (median of {args.runs})")
    print(f"ratio: wall {check_wall / ref_wall:.2f}x, cpu {check_cpu / ref_cpu:.2f}x  (target <= 2.5x)")


if __name__ == "__main__":
    main()
