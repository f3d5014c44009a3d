"""Full-size torchvision parity for every detection backbone spec (`specs/*_backbone.yaml`), at
the spec's input and at an odd size (+13, +7 pixels). CI compares keys, params and MACs of all
and outputs of one per family at a small input (tests/test_zoo_detection.py).

    python bench/detection_parity.py                          # every spec, both sizes
    python bench/detection_parity.py --only ssd300_vgg16_backbone --threads 2

Per spec and size: torchvision's backbone (tests/zoo_detection.py) with seeded random weights,
constant-filled parameters and FrozenBatchNorm2d buffers randomised, BatchNorm calibrated on a
real batch, the spec's module loaded with strict=True (keys, order, shapes), and each output map
compared relative to its scale in eval and seeded training mode (tests/zoo.py: `parity`). Prints
one row per spec and size (with params, trainable params and MACs) and exits 1 if any is over the
tolerance.
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

import netspec  # noqa: E402
from zoo import SPECS, parity  # noqa: E402
from zoo_detection import DETECTION, odd, reference  # noqa: E402

TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="spec names (default: all)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.only or list(DETECTION)
    failed = rows = 0
    print(f"{'spec':<47} {'input':>9} {'params':>11} {'trainable':>11} {'MACs':>15} {'eval rel':>9} {'train rel':>9} "
          f"{'s':>6}")
    for name in names:
        analysis = netspec.analyze(SPECS / f"{name}.yaml")
        for shape in (tuple(analysis.input), odd(analysis.input)):
            t = time.perf_counter()
            a = netspec.analyze(SPECS / f"{name}.yaml", input=shape)
            result = parity(SPECS / f"{name}.yaml", reference(name), shape, batch=args.batch,
                            overrides=[f"input={list(shape)}"])
            ok = result["eval"] < TOLERANCE and result["train"] < TOLERANCE
            failed += not ok
            rows += 1
            print(f"{name:<47} {f'{shape[1]}x{shape[2]}':>9} {a.params:>11,} {a.trainable_params:>11,} {a.macs:>15,} "
                  f"{result['eval']:>9.1e} {result['train']:>9.1e} {time.perf_counter() - t:>6.1f}"
                  f"{'' if ok else '  OVER TOLERANCE'}", flush=True)
            gc.collect()
    print(f"{rows - failed}/{rows} (spec, size) within {TOLERANCE:g} of torchvision (relative to scale)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
