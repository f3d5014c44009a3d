"""Issue 5's diff-speed figure: `netspec diff` of two ResNeXt-50 variants on CPU; and
issue 23's: two long specs (about N layers of [conv, relu], written in 9 lines) that differ
at both ends and by one layer inserted in the middle, so the alignment has the whole list.

    python bench/diff_speed.py [--large 20000,100000]

A is specs/resnext50.yaml (32x4d); B extends it (written to a temporary folder): 64x2d
(twice the groups, same widths), no stem max-pool, one more block in layer3. Measured
after imports, nothing cached between calls: load + validate + analyze both specs,
align them and render the text report. Target < 1 s. Also the cold command's wall time
(a fresh process, imports included).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from netspec.diff import diff, render  # noqa: E402

RESNEXT = os.path.join(ROOT, "specs", "resnext50.yaml")
VARIANT = f"""\
extends: {RESNEXT}
name: resnext50_64x2d_variant
vars: {{groups: 64, width_per_group: 2}}
patch:
  - delete: layers.maxpool
  - set: {{layers.layer3.repeat: 7}}
"""


def long_spec(n: int, first: str, middle: str) -> str:
    half = "{repeat: %d, body: [conv: {out: 4, k: 3, padding: 1}, relu]}" % (n // 4)
    return (f"netspec: 1\nname: long{n}\ninput: [4, 8, 8]\nlayers:\n  - {first}\n  - {half}\n{middle}"
            f"  - {half}\n  - {first}\n")


def large(sizes: list[int]) -> None:
    """Two specs of about N layers: analysis of both, then the alignment and report alone
    (the part that was quadratic), and their ratios between sizes."""
    import netspec
    from netspec.diff import diff_analyses
    aligned = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            a, b = os.path.join(tmp, f"a{n}.yaml"), os.path.join(tmp, f"b{n}.yaml")
            with open(a, "w") as f:
                f.write(long_spec(n, "identity", ""))
            with open(b, "w") as f:
                f.write(long_spec(n, "dropout", "  - dropout\n"))
            t = time.perf_counter()
            analyses = netspec.analyze(a), netspec.analyze(b)
            analysed = time.perf_counter() - t
            t = time.perf_counter()
            d = diff_analyses(*analyses)
            render(d)
            aligned[n] = time.perf_counter() - t
            print(f"{len(analyses[0].layers):,} vs {len(analyses[1].layers):,} layers: analysis of both {analysed:.2f} s, "
                  f"align + render {aligned[n]:.2f} s ({len(d.entries):,} entries)")
    for small, big in zip(sizes, sizes[1:]):
        print(f"align + render, {big:,} vs {small:,}: {aligned[big] / aligned[small]:.1f}x the time for "
              f"{big / small:.1f}x the layers")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--large", default="20000,100000", help="sizes N of the long specs (comma-separated)")
    args = parser.parse_args()
    large([int(n) for n in args.large.split(",")])
    with tempfile.TemporaryDirectory() as tmp:
        b = os.path.join(tmp, "resnext50_variant.yaml")
        with open(b, "w") as f:
            f.write(VARIANT)
        d = diff(RESNEXT, b)
        text = render(d)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            render(diff(RESNEXT, b))
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "netspec", "diff", RESNEXT, b], capture_output=True, text=True)
        cold = time.perf_counter() - t
        assert proc.returncode == 0, proc.stderr
    counts = {c: sum(e.change == c for e in d.entries) for c in ("removed", "added", "changed", "affected", "renamed")}
    print(f"ResNeXt-50 32x4d vs 64x2d variant: {len(d.a.layers)} vs {len(d.b.layers)} layers; "
          f"{', '.join(f'{n} {c}' for c, n in counts.items())}; {len(text.splitlines())} report lines")
    print(f"diff after imports (load+validate+analyze both, align, render): best {min(times) * 1e3:.1f} ms, "
          f"median {statistics.median(times) * 1e3:.1f} ms  (target < 1000 ms)")
    print(f"cold `python -m netspec diff A B` (fresh process, imports included): {cold * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
