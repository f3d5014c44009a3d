"""Issue 2's compile-speed figures, as ratios against references run in this process.

    python bench/compile_speed.py

1. load + validate + analyze of specs/resnext50.yaml (after imports, nothing cached
   between calls; the in-process cache of parsed files is cleared): target < 50 ms.
2. analysis alone (already-loaded spec) vs one CPU forward pass of torchvision's
   ResNeXt-50 at 224x224 (what torchinfo-style summaries run): target >= 20x faster.
3. analysis at 224x224 vs 2048x2048 input: target within 20%.
4. a spec of 1,000 repeated blocks: target < 1 s; a 10-billion-parameter spec analyzes
   and passes the meta-device check with peak RSS < 1 GiB.
5. cold-start wall time of `netspec check` and static `netspec compile` over the zoo:
   target < 0.5 s (torch is never imported on that path).
"""
from __future__ import annotations

import glob
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import netspec  # noqa: E402
from netspec.analysis import analyze_graph  # noqa: E402
from netspec.resolver import resolve  # noqa: E402
from netspec.document.load import _PARSED  # noqa: E402

RESNEXT = os.path.join(ROOT, "specs", "resnext50.yaml")


def best_ms(fn, repeats=30) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, statistics.median(times) * 1e3


def huge_spec_rss(flags: list[str]) -> str:
    """`netspec compile` of a 20-billion-parameter spec with `flags`, in a fresh process:
    its exit code and peak RSS (bench/memory.py uses it too)."""
    import json
    huge = {"netspec": 1, "name": "huge", "input": [100_000],
            "layers": [{"linear": 100_000}, {"linear": 100_000}], "expect": {"params": 20_000_200_000}}
    path = os.path.join("/tmp", "netspec_huge.json")
    with open(path, "w") as f:
        json.dump(huge, f)
    from peak import run_netspec
    run = run_netspec("compile", path, *flags)
    return f"exit {run.code}, peak RSS {run.peak_mib:.0f} MiB"


def main() -> None:
    netspec.analyze(RESNEXT)  # warm imports

    def uncached():  # the file is parsed every time, as a new process would
        _PARSED.clear()
        netspec.analyze(RESNEXT)
    full_best, full_med = best_ms(uncached)
    print(f"1. load+validate+analyze resnext50: best {full_best:.1f} ms, median {full_med:.1f} ms  (target < 50 ms)")
    c_best, c_med = best_ms(lambda: netspec.analyze(RESNEXT))
    print(f"   the same file again in one process (parsed document reused): best {c_best:.1f} ms, median {c_med:.1f} ms")

    spec = netspec.load(RESNEXT)
    analysis_only = lambda shape=None: analyze_graph(resolve(spec, shape), spec.source, spec)  # noqa: E731
    a_best, a_med = best_ms(analysis_only)

    import torch
    import torchvision
    torch.set_num_threads(os.cpu_count() or 1)
    model = torchvision.models.resnext50_32x4d().eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)
        f_best, f_med = best_ms(lambda: model(x), repeats=5)
    print(f"2. resolve+analyze (loaded spec): {a_best:.2f} ms; torchvision forward 1x3x224x224: {f_best:.1f} ms "
          f"-> {f_best / a_best:.0f}x faster  (target >= 20x)")

    small, _ = best_ms(lambda: analysis_only((3, 224, 224)))
    big, _ = best_ms(lambda: analysis_only((3, 2048, 2048)))
    print(f"3. analysis at 224x224 {small:.2f} ms vs 2048x2048 {big:.2f} ms: ratio {big / small:.2f}  (target within 1.20)")

    thousand = {"netspec": 1, "name": "deep", "input": [64, 8, 8],
                "blocks": {"unit": {"args": {"c": 64}, "residual": {"body": [
                    {"conv": {"out": "$c", "k": 3, "padding": 1, "bias": False}}, "bn", "relu",
                    {"conv": {"out": "$c", "k": 3, "padding": 1, "bias": False}}, "bn"], "post": "relu"}}},
                "layers": [{"repeat": 1000, "body": ["unit"]}, {"avgpool": "global"}, "flatten", {"linear": 10}]}
    t = time.perf_counter()
    a = netspec.analyze(thousand)
    print(f"4a. 1,000 repeated blocks ({len(a.layers):,} layers, {a.params:,} params): {time.perf_counter() - t:.3f} s  (target < 1 s)")

    rss = huge_spec_rss(["--check-params"])
    print(f"4b. 20-billion-parameter spec --check-params: {rss} (target < 1024)")

    specs = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.yaml"), recursive=True))
    for cmd in (["check"], ["compile", "--json"]):
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "netspec", *cmd, *specs], capture_output=True, cwd=ROOT, check=True)
            walls.append(time.perf_counter() - t)
        print(f"5. cold `netspec {' '.join(cmd)}` over {len(specs)} specs: best {min(walls):.2f} s, median {statistics.median(walls):.2f} s  (target < 0.5 s)")
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")


if __name__ == "__main__":
    main()
