"""Full-size torchvision parity for every zoo spec (CI checks keys for all and outputs for a
few at small inputs; this runs the outputs of all at the size each was published for).

    python bench/zoo_parity.py                      # every spec in tests/zoo.py's table
    python bench/zoo_parity.py --only regnet_y_400mf convnext_tiny --size 224

Per spec: torchvision's model with seeded random weights, BatchNorm calibrated on a real
batch, the spec's module loaded with strict=True (keys, order, shapes), outputs compared
relative to their scale in eval and seeded training mode (tests/zoo.py: `parity`). Prints
one row per spec and exits 1 if any is over the tolerance.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402

from zoo import SPECS, TORCHVISION, at_size, crop_size, parity, reference, weights  # noqa: E402

TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="spec names (default: all)")
    parser.add_argument("--size", type=int, help="input size instead of each model's published crop")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = args.only or list(TORCHVISION)
    failed = 0
    print(f"{'spec':<22} {'input':>7} {'params':>13} {'eval rel':>9} {'train rel':>9} {'scale':>8} {'s':>6}")
    for name in names:
        size = args.size or crop_size(weights(name))
        t = time.perf_counter()
        kwargs, overrides = at_size(name, size)
        ref = reference(name, **kwargs)
        result = parity(SPECS / f"{name}.yaml", ref, (3, size, size), batch=args.batch, overrides=overrides)
        ok = result["eval"] < TOLERANCE and result["train"] < TOLERANCE
        failed += not ok
        print(f"{name:<22} {size:>7} {sum(p.numel() for p in ref.parameters()):>13,} {result['eval']:>9.1e} {result['train']:>9.1e} "
              f"{result['scale']:>8.2g} {time.perf_counter() - t:>6.1f}{'' if ok else '  OVER TOLERANCE'}", flush=True)
        del ref
        gc.collect()
    print(f"{len(names) - failed}/{len(names)} specs within {TOLERANCE:g} of torchvision (relative to scale)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
