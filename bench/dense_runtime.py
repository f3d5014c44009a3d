"""Runtime parity of dense-prediction graphs: is the module netspec builds from a graph spec
(segmentation models, detection backbones) as fast as torchvision's hand-written class?

Same weights (torchvision's state_dict, loaded strict), same input, same process; training steps
(forward, a loss over every output tensor, backward) timed in interleaved rounds (A B, then B A)
so machine load hits both alike. Reported: median seconds per step of each and the median of the
per-round ratios torchvision / netspec (speed of netspec relative to torchvision; >= 0.98 is parity).

    python bench/dense_runtime.py                                   # the issue's three, CPU, batch 2
    python bench/dense_runtime.py --models fcn_resnet50 --size 256 --rounds 9
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision.models.detection as tvd
import torchvision.models.segmentation as tvs

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import netspec  # noqa: E402
from zoo import relative  # noqa: E402


def _backbone(builder):
    return lambda: getattr(tvd, builder)(weights=None, weights_backbone=None).backbone


# spec -> torchvision's module (random weights)
REFERENCES = {
    "fcn_resnet50": lambda: tvs.fcn_resnet50(weights=None, weights_backbone=None),
    "lraspp_mobilenet_v3_large": lambda: tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None),
    "retinanet_resnet50_fpn_backbone": _backbone("retinanet_resnet50_fpn"),
}


def outputs(y) -> list:
    return list(y.values()) if isinstance(y, dict) else [y]


def step(model, x) -> None:
    loss = sum(t.float().square().mean() for t in outputs(model(x)))
    loss.backward()
    for p in model.parameters():
        p.grad = None


def timed(model, x, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        step(model, x)
    return (time.perf_counter() - start) / iters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCES))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=2, help="training steps per model per round")
    args = parser.parse_args()
    print(f"{'spec':34} {'torchvision s/step':>18} {'netspec s/step':>15} {'ratio':>6}  (tv / netspec, median of {args.rounds} rounds; "
          f"batch {args.batch}, {args.size}x{args.size}, CPU, {torch.get_num_threads()} threads)")
    for name in args.models:
        torch.manual_seed(0)
        ref = REFERENCES[name]().train()
        model = netspec.build(netspec.analyze(ROOT / "specs" / f"{name}.yaml", input=(3, args.size, args.size))).train()
        model.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(args.batch, 3, args.size, args.size)
        ref.eval(), model.eval()
        with torch.no_grad():
            diff = relative(model(x), ref(x))
        ref.train(), model.train()
        step(ref, x), step(model, x)   # warm-up
        ratios, t_ref, t_ours = [], [], []
        for r in range(args.rounds):
            pair = [("ref", ref), ("ours", model)] if r % 2 == 0 else [("ours", model), ("ref", ref)]
            got = {label: timed(m, x, args.iters) for label, m in pair}
            t_ref.append(got["ref"]), t_ours.append(got["ours"])
            ratios.append(got["ref"] / got["ours"])
        print(f"{name:34} {statistics.median(t_ref):18.3f} {statistics.median(t_ours):15.3f} "
              f"{statistics.median(ratios):6.3f}  (outputs equal to {diff:.1e} of scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
