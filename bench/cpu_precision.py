"""Training throughput on the CPU by train.precision, as ratios to fp32 (issue 23 item 3).

    python bench/cpu_precision.py                 # specs/digits.yaml, 2 epochs, 2 repeats
    python bench/cpu_precision.py --epochs 3 --repeats 3

Each repeat trains specs/digits.yaml with `netspec.train.fit` once per precision (fp32,
bf16, fp16; interleaved, so drift in machine load hits all three) and takes the summary's
steady-state images/s (the first epoch left out). Prints the median images/s of each and its
ratio to fp32, and whether oneDNN reports native bf16/fp16 (the probe the trainer used to
trust). The trainer warns about fp16 on the CPU for models with convolutions because of the
fp16 figure here: torch's CPU convolution backward in fp16 is the slow part.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import netspec  # noqa: E402
from netspec.train.loop import Job, fit  # noqa: E402

PRECISIONS = ("fp32", "bf16", "fp16")


def images_per_s(precision: str, epochs: int) -> float:
    spec = netspec.load(str(ROOT / "specs" / "digits.yaml"),
                        overrides=[f"train.precision={precision}", f"train.epochs={epochs}", "train.device=cpu"])
    with tempfile.TemporaryDirectory() as out:
        summary = fit(Job.from_spec(spec), out=Path(out) / "run", quiet=True)
    return summary["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    native = {p: bool(getattr(torch.ops.mkldnn, f"_is_mkldnn_{p}_supported")()) for p in ("bf16", "fp16")}
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, oneDNN native: {native}")
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(args.repeats):
        for p in PRECISIONS:
            rates[p].append(images_per_s(p, args.epochs))
    fp32 = statistics.median(rates["fp32"])
    for p in PRECISIONS:
        median = statistics.median(rates[p])
        print(f"{p}: {median:,.0f} images/s (runs: {', '.join(f'{r:,.0f}' for r in rates[p])}), "
              f"{median / fp32:.3f}x fp32")


if __name__ == "__main__":
    main()
