"""Does netspec's float64 RegNet family base (tests/families/regnet.yaml) ever disagree with
torchvision's float32 BlockParams.from_init_params?

    python bench/regnet_float32.py --n 20000

Draws random RegNet settings (seeded), keeps those torchvision splits into 4 stages (the
family base's shape), resolves the base's vars with each through netspec and compares
stage depths, widths and group widths. Each disagreement is classed: `tie` when a rounding
in from_init_params is within 1e-5 of x.5 (float32 and float64 may land on opposite sides),
else `other`.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from torchvision.models import regnet  # noqa: E402

from test_expr_families import near_tie, regnet_member, stage_values  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="random settings to draw")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    r = random.Random(args.seed)
    counts, examples = Counter(), []
    start = time.perf_counter()
    for _ in range(args.n):
        kwargs = {"depth": r.randint(8, 32), "w_0": 8 * r.randint(1, 40), "w_a": round(r.uniform(5, 120), 2),
                  "w_m": round(r.uniform(1.5, 3.0), 2), "group_width": r.choice([1, 8, 16, 24, 48, 64, 128]),
                  "bottleneck_multiplier": r.choice([0.5, 1.0, 2.0])}
        params = regnet.BlockParams.from_init_params(**kwargs)
        if len(params.depths) != 4:
            counts["not 4 stages (skipped)"] += 1
            continue
        got = stage_values(regnet_member(kwargs))
        mine = [[got[f"{v}{s}"] for s in range(1, 5)] for v in "dwg"]
        if mine == [params.depths, params.widths, params.group_widths]:
            counts["equal"] += 1
            continue
        kind = "tie" if near_tie(**kwargs) else "other"
        counts[kind] += 1
        if len(examples) < 5:
            examples.append((kind, kwargs, mine, [params.depths, params.widths, params.group_widths]))
    print(f"{args.n} settings in {time.perf_counter() - start:.1f} s: {dict(counts)}")
    for example in examples:
        print(*example)


if __name__ == "__main__":
    main()
