"""Receptive fields of random valid specs against measured ones, beyond the test's 40 specs:
every module whose output positions are tracked, with tests/test_receptive.py's measurement
(exact figures equal the nonzero extent of the input gradient, upper bounds contain it).

    python bench/receptive_fuzz.py --n 400
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import netspec  # noqa: E402
from netspec.receptive import fields  # noqa: E402
from specgen import Draw, random_spec  # noqa: E402
from test_receptive import check, tracked  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="random specs (seeds 0..n-1)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    compared = exact = 0
    failed = []
    for seed in range(args.n):
        a = netspec.analyze(random_spec(Draw(seed))[0])
        static, paths = fields(a), tracked(a)
        try:
            check(a, paths, exact=None, weights="random")
        except AssertionError as e:
            failed.append(seed)
            print(f"seed {seed}: {str(e)[:300]}")
        compared += len(paths)
        exact += sum(static[p].exact for p in paths)
    print(f"{args.n} specs, {compared:,} modules compared, {exact:,} exact ({exact / max(compared, 1):.0%}), "
          f"the rest upper bounds; mismatches: {len(failed)} {failed or ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
