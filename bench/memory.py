"""Issue 15's figures for the static training-step model (netspec/autograd.py).

    python bench/memory.py [--fuzz 2000] [--skip-zoo] [--full-size] [SPEC ...]

1. Saved-activation bytes, static vs measured (`saved_tensors_hooks`, each storage once,
   parameters and buffers excluded), fp32 and bf16 autocast, batch 2: every spec in specs/ at
   a small input (64 px, or the smallest of 96/128 it accepts; `--full-size`: its own), then `--fuzz N` random specs
   of the differential fuzz (tests/specgen.py).
2. Backward MACs, static vs `FlopCounterMode` on a real backward, every spec in specs/ (torch
   2.14's counter counts a grouped conv's weight gradient `groups` times, pytorch#183405: that
   excess is measured per layer against the same conv as a loop over its groups, as
   tests/test_autograd.py does).
3. `compile --memory` cost on resnext50: analysis with and without the training-step model,
   after imports (target: adds < 2 ms).
4. The 20-billion-parameter spec through `compile --memory`: peak RSS (target < 1 GiB).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")]


def zoo(args) -> None:
    import torch

    import netspec
    from netspec.autograd import training_step
    from test_autograd import counted, grouped_convs, grouped_excess, measured_vs_static, small
    from zoo import SPECS

    torch.set_num_threads(os.cpu_count() or 1)
    exact = {"fp32": 0, "bf16": 0}
    macs_exact = total = 0
    for path in args.specs or sorted(SPECS.glob("*.yaml")):
        a = netspec.analyze(path) if args.full_size else small(path)
        total += 1
        line = []
        for precision in ("fp32", "bf16"):
            measured, static = measured_vs_static(a, precision)
            exact[precision] += measured == static
            line.append(f"{precision} {'=' if measured == static else f'{static - measured:+,}'}")
        torch.manual_seed(0)
        model = netspec.build(a).train()
        fwd, bwd = counted(model, torch.randn(2, *a.input))
        excess = sum(grouped_excess(conv, m.input, m.path != a.layers[0].path, 2) for m, conv in grouped_convs(model, a))
        fixed = [m.node.layer.fixed_macs(m.input, weight_grad=m.trainable_params > 0) for m in a.tree_leaves()]
        fixed_fwd, fixed_bwd = sum(f for f, _ in fixed), sum(b for _, b in fixed)   # once per batch (a bias MLP)
        ok = (a.macs - fixed_fwd, training_step(a, 2).backward_macs - fixed_bwd) == \
            ((fwd // 2 - fixed_fwd) // 2, ((bwd - excess) // 2 - fixed_bwd) // 2)
        macs_exact += ok
        line.append(f"MACs {'=' if ok else 'DIFF'}")
        print(f"  {path.stem:24s} {'x'.join(map(str, a.input)):>10s}  " + "  ".join(line), flush=True)
        del model
    print(f"1. zoo saved bytes exact: fp32 {exact['fp32']}/{total}, bf16 {exact['bf16']}/{total}")
    print(f"2. zoo forward and backward MACs equal FlopCounterMode: {macs_exact}/{total}")


def fuzz(n: int) -> None:
    from hypothesis import HealthCheck  # noqa: F401  (tests' imports)

    import netspec
    from netspec.errors import SpecError
    from specgen import Draw, random_spec
    from test_autograd import measured_vs_static

    exact = tried = 0
    for seed in range(n):
        spec, _ = random_spec(Draw(seed))
        try:
            a = netspec.analyze(spec)
        except SpecError:
            continue
        for precision in ("fp32", "bf16"):
            tried += 1
            measured, static = measured_vs_static(a, precision)
            exact += measured == static
            if measured != static:
                print(f"  seed {seed} {precision}: static {static:,} measured {measured:,}", flush=True)
    print(f"1b. random specs: saved bytes exact in {exact}/{tried} (spec, precision) cases over {n} seeds")


def cost() -> None:
    import netspec
    from netspec.analysis import analyze_graph
    from netspec.autograd import training_step
    from netspec.resolver import resolve

    spec = netspec.load(os.path.join(ROOT, "specs", "resnext50.yaml"))

    def best(fn, repeats=50):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times) * 1e3

    plain = best(lambda: analyze_graph(resolve(spec, None), spec.source, spec))
    a = analyze_graph(resolve(spec, None), spec.source, spec)
    step = best(lambda: training_step(a, 64, "fp32", "sgd_momentum"))
    print(f"3. resnext50 analysis {plain:.2f} ms; the training-step model adds {step:.2f} ms (target < 2 ms)")


def huge() -> None:
    from compile_speed import huge_spec_rss
    print(f"4. 20-billion-parameter spec, compile --memory: {huge_spec_rss(['--memory'])} (target < 1024)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fuzz", type=int, default=2000, help="random specs (0: none)")
    p.add_argument("--skip-zoo", action="store_true")
    p.add_argument("--full-size", action="store_true", help="zoo specs at their own input, not a small one")
    p.add_argument("--skip-cost", action="store_true", help="skip parts 3 and 4")
    p.add_argument("specs", nargs="*", type=Path, help="zoo specs (default: specs/*.yaml)")
    args = p.parse_args()
    if not args.skip_cost:
        cost()
        huge()
    if not args.skip_zoo:
        zoo(args)
    if args.fuzz:
        fuzz(args.fuzz)
