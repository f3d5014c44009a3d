"""Issue 20's linearity figures: graphs cost what chains cost.

    python bench/graph_analysis.py [--nodes 10000] [--runs 5] [--check-runs 5]

1. A 10,000-node graph spec (conv/relu nodes wired by `from:`, every tenth node a `merge: sum`
   of the node above and the one five back) against a 10,000-layer chain of the same layers:
   load, resolve and analysis, best of --runs each, in this process (target < 2x).
2. `netspec check specs/fcn_resnet101.yaml` (a graph around a dilated ResNet-101 with two heads)
   against `netspec check specs/resnet101.yaml`, fresh processes, alternating, median wall time
   (target within 1.5x).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.analysis import analyze_graph  # noqa: E402
from netspec.resolver import resolve  # noqa: E402


def chain_spec(n: int) -> dict:
    return {"netspec": 1, "name": "chain", "input": [4, 8, 8],
            "layers": [{"conv": {"out": 4, "k": 1}} if i % 2 == 0 else "relu" for i in range(n)]}


def graph_spec(n: int) -> dict:
    nodes = {}
    for i in range(n):
        if i % 10 == 9 and i > 10:
            nodes[f"n{i}"] = {"from": [f"n{i - 1}", f"n{i - 5}"], "merge": "sum"}
        else:
            nodes[f"n{i}"] = {"from": f"n{i - 1}" if i else "input",
                              **({"conv": {"out": 4, "k": 1}} if i % 2 == 0 else {"relu": None})}
    return {"netspec": 1, "name": "graph", "input": [4, 8, 8], "graph": {"nodes": nodes}}


def best_parts(spec: dict, runs: int) -> list[float]:
    """Best seconds of load, resolve and analysis over `runs`."""
    best = [float("inf")] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # nodes whose branch no merge reads: the dead-node warning
        for _ in range(runs):
            t0 = time.perf_counter()
            loaded = netspec.load(spec)
            t1 = time.perf_counter()
            resolved = resolve(loaded)
            t2 = time.perf_counter()
            analyze_graph(resolved, loaded.source, loaded)
            t3 = time.perf_counter()
            best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2))]
    return best


def check_times(specs: list[str], runs: int) -> dict[str, float]:
    times = {s: [] for s in specs}
    for _ in range(runs + 1):   # the first round warms the bytecode caches, untimed
        for s in specs:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "netspec", "check", s], cwd=ROOT, check=True, capture_output=True)
            times[s].append(time.perf_counter() - t)
    return {s: statistics.median(t[1:]) for s, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--check-runs", type=int, default=5)
    args = p.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[0]}")
    chain, graph = best_parts(chain_spec(args.nodes), args.runs), best_parts(graph_spec(args.nodes), args.runs)
    for name, t in (("chain", chain), ("graph", graph)):
        print(f"{args.nodes}-{'layer chain' if name == 'chain' else 'node graph '}  load {t[0]:.3f} s  resolve {t[1]:.3f} s  "
              f"analysis {t[2]:.3f} s  total {sum(t):.3f} s")
    print(f"graph / chain: {sum(graph) / sum(chain):.2f}x  (target < 2x)")
    a, b = "specs/fcn_resnet101.yaml", "specs/resnet101.yaml"
    t = check_times([a, b], args.check_runs)
    print(f"netspec check {a}: {t[a]:.3f} s, {b}: {t[b]:.3f} s (median of {args.check_runs}): "
          f"{t[a] / t[b]:.2f}x  (target within 1.5x)")


if __name__ == "__main__":
    main()
