"""Full-size parity of the dense-prediction zoo: torchvision's six segmentation builders, with
aux_loss false and true, and specs/unet.yaml against milesial's U-Net (tests/zoo_segmentation.py),
each at its spec's input and at an odd size (+13, +7 pixels). CI (tests/test_zoo_segmentation.py)
compares one member per family at 65x71; this compares every member where the dilations
(ASPP's 12, 24, 36; the backbones' 2 and 4) read real neighbours.

    python bench/segmentation_parity.py                       # everything (90 minutes on a shared 2-core CPU)
    python bench/segmentation_parity.py --only lraspp_mobilenet_v3_large unet --odd 0

Per row: the reference with seeded random weights, BatchNorm calibrated on a real batch, the
spec's module loaded with strict=True (keys, order, shapes), the output dict compared key by key
relative to each tensor's scale, in eval and seeded training mode (tests/zoo.py: `parity`).
Prints one row per (spec, aux, size) and exits 1 if any is over the tolerance.
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
from zoo_segmentation import (TORCHVISION_SEGMENTATION, aux_settings, overrides, reference,  # noqa: E402
                              unet_overrides, unet_reference)

TOLERANCE = 1e-5
ODD = (13, 7)   # pixels added to height and width for the odd size


def cases(names: list[str], odd: bool):
    """(spec, aux or None, input shape, reference factory, overrides) for every row."""
    for name in names:
        shape = tuple(netspec.analyze(SPECS / f"{name}.yaml").input)
        sizes = [shape] + ([(shape[0], shape[1] + ODD[0], shape[2] + ODD[1])] if odd else [])
        for size in sizes:
            if name == "unet":
                yield name, None, size, (lambda channels=size[0]: unet_reference(channels)), unet_overrides()
                continue
            for aux in aux_settings(name):
                yield name, aux, size, (lambda name=name, aux=aux: reference(name, aux)), overrides(name, aux)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="spec names (default: the six torchvision builders and unet)")
    parser.add_argument("--odd", type=int, choices=(0, 1), default=1, help="also at the odd size (default 1)")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    names = args.only or [*TORCHVISION_SEGMENTATION, "unet"]
    failed = total = 0
    print(f"{'spec':<30} {'aux':>5} {'input':>11} {'params':>12} {'MACs':>17} {'eval rel':>9} {'train rel':>9} "
          f"{'scale':>7} {'s':>6}", flush=True)
    for name, aux, size, make, sets in cases(names, bool(args.odd)):
        t = time.perf_counter()
        analysis = netspec.analyze(SPECS / f"{name}.yaml", input=size, overrides=sets)
        result = parity(SPECS / f"{name}.yaml", make(), size, batch=args.batch, overrides=sets)
        ok = result["eval"] < TOLERANCE and result["train"] < TOLERANCE
        failed += not ok
        total += 1
        print(f"{name:<30} {'-' if aux is None else str(aux).lower():>5} {'x'.join(map(str, size)):>11} "
              f"{analysis.params:>12,} {analysis.macs:>17,} {result['eval']:>9.1e} {result['train']:>9.1e} "
              f"{result['scale']:>7.2g} {time.perf_counter() - t:>6.0f}{'' if ok else '  OVER TOLERANCE'}", flush=True)
        gc.collect()
    print(f"{total - failed}/{total} within {TOLERANCE:g} of the reference (relative to each output's scale)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
