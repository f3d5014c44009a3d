"""Issue 10's figures: what hostile inputs cost, as ratios against references run here.

    python bench/hostile.py            # all; --quick skips the 1,000,000-layer cases

1. compile's table vs --json for N ReLUs (both from one analysis): target linear, ratio ~1
   (rich's Table took 127 s for 200,000 rows where --json took 5 s).
2. `patch:` with N `set`s on N named layers vs loading the N-layer base alone: linear
   (the scan per PATH segment made 8,000 x 8,000 take 46 s).
3. `netspec check` (a fresh process: CPU seconds and peak RSS) on the inputs of at most
   8 MiB that cost the most, each the largest its class allows: the parser's worst cases
   (refused on the event stream, or composed just under the node cap) and the layer cap.
"""
from __future__ import annotations

import io
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]
import netspec  # noqa: E402
from peak import run_netspec  # noqa: E402
from netspec.summary import as_json, render_table  # noqa: E402

HEAD = "netspec: 1\nname: t\ninput: [3, 8, 8]\n"
MiB = 2**20


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def table_vs_json(folder: str, n: int) -> None:
    path = os.path.join(folder, f"relu{n}.yaml")
    with open(path, "w") as f:
        f.write(HEAD + f"layers:\n  - {{repeat: {n}, body: [relu]}}\n")
    analysis = netspec.analyze(path)
    t_table = cpu(lambda: render_table(analysis, io.StringIO()))
    t_json = cpu(lambda: as_json(analysis))
    print(f"1. {n:,} ReLUs: table {t_table:.2f} s, --json {t_json:.2f} s CPU (ratio {t_table / t_json:.2f})")


def patch_vs_base(folder: str, n: int) -> None:
    base = os.path.join(folder, f"base{n}.yaml")
    with open(base, "w") as f:
        f.write(HEAD + "layers:\n" + "".join(f"  - conv: {{out: 4, k: 1, name: c{i}}}\n" for i in range(n)))
    patched = os.path.join(folder, f"patched{n}.yaml")
    with open(patched, "w") as f:
        f.write(f"extends: base{n}.yaml\npatch:\n  - set:\n" + "".join(f"      layers.c{i}.out: 8\n" for i in range(n)))
    t_base = cpu(lambda: netspec.load(base))
    t_patched = cpu(lambda: netspec.load(patched))
    print(f"2. {n:,} sets on {n:,} named layers: {t_patched:.2f} s vs the base alone {t_base:.2f} s CPU "
          f"(ratio {t_patched / t_base:.2f})")


WORST = {
    "8 MiB flat list (refused at node 500,001 on the event stream)":
        lambda: HEAD + "layers: [relu]\nvars: {a: [" + "0," * ((8 * MiB - 200) // 2) + "0]}\n",
    "8 MiB of nested [ (refused at level 101 on the event stream)":
        lambda: HEAD + "layers: [relu]\nvars: {a: " + "[" * (4 * MiB - 100) + "]" * (4 * MiB - 100) + "}\n",
    "8 MiB string": lambda: HEAD + "layers: [relu]\ndescription: \"" + "x" * (8 * MiB - 200) + "\"\n",
    "499,000 nodes in vars (composed: just under the node cap)":
        lambda: HEAD + "layers: [relu]\nvars: {a: [" + "0," * 499_000 + "0]}\n",
    "alias expansion to 490,000 nodes":
        lambda: HEAD + "layers: [relu]\nvars:\n  a: &a [" + ",".join(["0"] * 700) + "]\n  b: [" + ",".join(["*a"] * 700) + "]\n",
}
LAYERS = {
    "499,000 layers written out (2.5 MB)": lambda: HEAD + "layers: [" + "relu," * 499_000 + "relu]\n",
    "1,000,000 layers through repeat (the layer cap)": lambda: HEAD + "layers:\n  - {repeat: 1000000, body: [relu]}\n",
}


def check_cost(folder: str, label: str, text: str) -> None:
    path = os.path.join(folder, "worst.yaml")
    with open(path, "w") as f:
        f.write(text)
    size = os.path.getsize(path)
    run = run_netspec("check", path)
    verdict = "ok" if run.code == 0 else f"exit {run.code}"
    print(f"3. {label} ({size / MiB:.2f} MiB): {run.cpu_s:.1f} s CPU, peak RSS {run.peak_mib:.0f} MiB, {verdict}")


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as folder:
        table_vs_json(folder, 20_000 if quick else 200_000)
        patch_vs_base(folder, 2_000 if quick else 8_000)
        for label, text in {**WORST, **({} if quick else LAYERS)}.items():
            check_cost(folder, label, text())


if __name__ == "__main__":
    main()
