"""`netspec ARGS` in a fresh process, with that process's own CPU time and peak RSS.

The child reports both as it exits: its peak is VmHWM, since `wait4`'s and getrusage's
ru_maxrss are no good here: Linux carries the parent's high-water mark into a forked child
through exec (a 1 GiB parent made `python -c pass` report 1 GiB).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = """\
import atexit, os, resource, sys
def report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    with open(os.environ["NETSPEC_PEAK_FILE"], "w") as f:
        f.write(f"{peak} {usage.ru_utime + usage.ru_stime}")
atexit.register(report)
from netspec.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Measured:
    code: int
    cpu_s: float
    peak_mib: float


def run_netspec(*args) -> Measured:
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as report:
        env = {**os.environ, "PYTHONPATH": ROOT, "NETSPEC_PEAK_FILE": report.name}
        done = subprocess.run([sys.executable, "-c", _CHILD, *map(str, args)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kib, cpu = (report.read().split() or ["nan", "nan"])
    return Measured(done.returncode, float(cpu), float(kib) / 1024)
