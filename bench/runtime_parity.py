"""Runtime parity: is a netspec-built module as fast as torchvision's hand-written class?

For each model, torchvision's class and the module netspec builds from specs/<spec>.yaml get the
same weights (torchvision's state_dict, loaded strict) and the same input, in the same process.
The two are timed in interleaved rounds (A B, then B A, ...) so that drift in machine load hits
both alike; each round times `--iters` training steps (forward + cross-entropy + backward) per
model. Reported: median images/s of each and the median of the per-round ratios
netspec / torchvision (>= 0.98 is parity).

    python bench/runtime_parity.py                      # CPU: batch 8, 224x224, float32
    python bench/runtime_parity.py --device cuda        # GPU: batch 256, bf16 autocast,
                                                        # channels_last, eager and torch.compile
    python bench/runtime_parity.py --grouped-only       # just the grouped-conv comparison

It also times netspec's grouped conv (one nn.Conv2d(groups=32), what `groups: 32` builds) against
a widely read tutorial's loop over the 32 channel slices (one shared small conv), and against a
loop over 32 separate convs (the same parameters as the grouped conv), at ResNeXt-50 (32x4d)
shapes: the paper's stage conv2 (torchvision layer1: 128 channels, 56x56) and conv3 (layer2:
256 channels, 28x28).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import netspec  # noqa: E402
from zoo import TORCHVISION, reference as torchvision_model  # noqa: E402  (one table for tests and benches)

# torchvision builder name -> spec file (specs/<spec>.yaml); any spec of tests/zoo.py's table may be timed
SPEC_OF = {builder: spec for spec, (builder, _, _) in TORCHVISION.items()}
MODELS = ["resnet18", "resnet50", "resnext50_32x4d", "densenet121", "mobilenet_v2"]   # the default set


# -- setup ---------------------------------------------------------------------------------
def make_pair(name: str, device: str, channels_last: bool):
    spec = SPEC_OF[name]
    reference = torchvision_model(spec)
    model = netspec.build(ROOT / "specs" / f"{spec}.yaml")
    model.load_state_dict(reference.state_dict(), strict=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    reference = reference.to(device, memory_format=fmt).train()
    model = model.to(device, memory_format=fmt).train()
    return reference, model


def same_outputs(reference: nn.Module, model: nn.Module, x: torch.Tensor, amp) -> float:
    """Max |difference| of eval-mode outputs (a guard that the two really are the same net)."""
    reference.eval(), model.eval()
    with torch.no_grad(), amp():
        diff = (reference(x[:2]).float() - model(x[:2]).float()).abs().max().item()
    reference.train(), model.train()
    return diff


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp) -> None:
    with amp():
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    for p in model.parameters():
        p.grad = None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(fn, iters: int, device: str) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of this process) for `iters` calls of fn."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(fns: dict, iters: int, rounds: int, batch: int, device: str) -> dict:
    """fns: label -> zero-arg step. Returns {"wall": {label: [images/s per round]}, "cpu": ...};
    the order of the labels alternates between rounds. On a shared CPU, images per CPU-second of
    this process is much less disturbed by other processes than images per wall-clock second."""
    labels = list(fns)
    rates = {"wall": {label: [] for label in labels}, "cpu": {label: [] for label in labels}}
    for r in range(rounds):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            wall, cpu = time_steps(fns[label], iters, device)
            rates["wall"][label].append(batch * iters / wall)
            rates["cpu"][label].append(batch * iters / cpu)
    return rates


def summarize(rates: dict, base: str, other: str) -> dict:
    out = {}
    for clock, prefix in (("wall", ""), ("cpu", "cpu_")):
        r = rates[clock]
        ratios = [o / b for o, b in zip(r[other], r[base])]
        out.update({f"{prefix}ref_img_s": statistics.median(r[base]), f"{prefix}netspec_img_s": statistics.median(r[other]),
                    f"{prefix}ratio": statistics.median(ratios), f"{prefix}ratio_min": min(ratios),
                    f"{prefix}ratio_max": max(ratios)})
    out["rounds"] = len(ratios)
    return out


# -- model parity ----------------------------------------------------------------------------
def parity(name: str, args, compiled: bool) -> dict:
    device = args.device
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.bf16 else nullcontext
    reference, model = make_pair(name, device, args.channels_last)
    gen = torch.Generator().manual_seed(0)
    size = args.size or netspec.analyze(ROOT / "specs" / f"{SPEC_OF[name]}.yaml").input[-1]   # default: the spec's own (swin_v2_t: 256)
    x = torch.randn(args.batch, 3, size, size, generator=gen).to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
    diff = same_outputs(reference, model, x, amp)
    if compiled:
        reference = torch.compile(reference, backend=args.compile_backend)
        model = torch.compile(model, backend=args.compile_backend)
    fns = {"torchvision": lambda: train_step(reference, x, y, amp), "netspec": lambda: train_step(model, x, y, amp)}
    t0 = time.perf_counter()
    for fn in fns.values():                              # warm-up (and compilation) outside the timing
        for _ in range(args.warmup):
            fn()
    sync(device)
    warm_s = time.perf_counter() - t0
    out = summarize(interleaved(fns, args.iters, args.rounds, args.batch, device), "torchvision", "netspec")
    out.update(model=name, mode="compile" if compiled else "eager", max_abs_diff_eval=diff, warmup_s=round(warm_s, 1))
    del reference, model, fns
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


# -- grouped conv vs the tutorial's loop -------------------------------------------------------
class LoopSharedConv(nn.Module):
    """The tutorial's "grouped conv": ONE small conv applied to each channel slice in a loop."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.groups, self.g = groups, channels // groups
        self.conv = nn.Conv2d(self.g, self.g, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([self.conv(x[:, c * self.g:(c + 1) * self.g]) for c in range(self.groups)], 1)


class LoopSeparateConvs(nn.Module):
    """A loop over 32 separate convs: the grouped conv's parameters, computed slice by slice."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.g = channels // groups
        self.convs = nn.ModuleList(nn.Conv2d(self.g, self.g, 3, padding=1, bias=False) for _ in range(groups))

    def forward(self, x):
        return torch.cat([conv(x[:, i * self.g:(i + 1) * self.g]) for i, conv in enumerate(self.convs)], 1)


def grouped_vs_loop(args) -> list[dict]:
    device = args.device
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.bf16 else nullcontext
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    results = []
    for stage, channels, size in (("conv2 (layer1)", 128, 56 * (args.size or 224) // 224), ("conv3 (layer2)", 256, 28 * (args.size or 224) // 224)):
        torch.manual_seed(0)
        impls = {"grouped": nn.Conv2d(channels, channels, 3, padding=1, groups=32, bias=False),
                 "loop_shared": LoopSharedConv(channels), "loop_separate": LoopSeparateConvs(channels)}
        x = torch.randn(args.batch, channels, size, size, device=device).contiguous(memory_format=fmt).requires_grad_()
        fns = {}
        for label, m in impls.items():
            m = m.to(device, memory_format=fmt)

            def step(m=m):
                with amp():
                    out = m(x)
                out.float().sum().backward()
                x.grad = None
                for p in m.parameters():
                    p.grad = None
            fns[label] = step
        for fn in fns.values():
            for _ in range(args.warmup):
                fn()
        rates = interleaved(fns, args.iters, args.rounds, args.batch, device)["cpu" if device == "cpu" else "wall"]
        med = {k: statistics.median(v) for k, v in rates.items()}
        results.append({"stage": stage, "input": [args.batch, channels, size, size],
                        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in impls.items()},
                        "img_s": med,
                        "grouped_over_loop_shared": med["grouped"] / med["loop_shared"],
                        "grouped_over_loop_separate": med["grouped"] / med["loop_separate"]})
    return results


# -- main -------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", default=MODELS, choices=sorted(SPEC_OF), metavar="BUILDER",
                   help=f"torchvision builder names (default: {' '.join(MODELS)})")
    p.add_argument("--batch", type=int, help="default: 8 on CPU, 256 on CUDA")
    p.add_argument("--size", type=int, help="input height and width (default: each spec's own; the grouped-conv comparison: 224)")
    p.add_argument("--iters", type=int, help="training steps per model per round (default: 2 CPU, 10 CUDA)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default: 6 CPU, 6 CUDA)")
    p.add_argument("--warmup", type=int, help="untimed steps per model (default: 1 CPU, 5 CUDA)")
    p.add_argument("--compile", choices=["none", "also", "only"], help="torch.compile too (default: none on CPU, also on CUDA)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: a quick dry run of this script)")
    p.add_argument("--budget-s", type=float, default=1e9, help="skip compiled runs once this many seconds have passed")
    p.add_argument("--grouped-only", action="store_true", help="only the grouped-conv vs loop comparison")
    p.add_argument("--no-grouped", action="store_true", help="skip the grouped-conv vs loop comparison")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU); default: torch's choice")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    gpu = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batch = args.batch or (256 if gpu else 8)
    args.iters = args.iters or (10 if gpu else 2)
    args.rounds = args.rounds or 6
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    args.compile = args.compile or ("also" if gpu else "none")
    args.bf16 = args.channels_last = gpu
    if gpu:
        torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    env = {"device": torch.cuda.get_device_name() if gpu else f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)",
           "torch": torch.__version__, "batch": args.batch, "size": args.size, "precision": "bf16 autocast" if gpu else "fp32",
           "memory_format": "channels_last" if args.channels_last else "contiguous",
           "iters_per_round": args.iters, "rounds": args.rounds,
           "loadavg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    print("runtime parity:", ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    report = {"env": env, "models": [], "grouped_conv": []}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))

    def run_models(compiled: bool) -> None:
        for name in args.models:
            if compiled and time.perf_counter() - t_start > args.budget_s:
                print(f"{name:16s} compile  skipped: past the --budget-s of {args.budget_s:.0f}s", flush=True)
                report["models"].append({"model": name, "mode": "compile", "skipped": "time budget"})
                continue
            r = parity(name, args, compiled)
            report["models"].append(r)
            save()
            print(f"{name:16s} {r['mode']:8s} torchvision {r['ref_img_s']:8.1f} img/s  netspec {r['netspec_img_s']:8.1f} img/s  "
                  f"ratio {r['ratio']:.3f} (rounds {r['ratio_min']:.3f}..{r['ratio_max']:.3f})  "
                  f"eval max|diff| {r['max_abs_diff_eval']:.1e}  warm-up {r['warmup_s']}s", flush=True)
            if not gpu:
                print(f"{'':16s} {'cpu-time':8s} torchvision {r['cpu_ref_img_s']:8.1f} img/s  netspec {r['cpu_netspec_img_s']:8.1f} img/s  "
                      f"ratio {r['cpu_ratio']:.3f} (rounds {r['cpu_ratio_min']:.3f}..{r['cpu_ratio_max']:.3f})", flush=True)

    # eager first, then the grouped-conv comparison, then torch.compile (slow to warm up, and
    # bounded by --budget-s), so a time limit cuts the least informative part
    if not args.grouped_only and args.compile != "only":
        run_models(False)
    if not args.no_grouped:
        report["grouped_conv"] = grouped_vs_loop(args)
        save()
        for g in report["grouped_conv"]:
            print(f"grouped conv {g['stage']:15s} input {g['input']}: grouped {g['img_s']['grouped']:.1f} img/s, "
                  f"loop(shared) {g['img_s']['loop_shared']:.1f}, loop(32 convs) {g['img_s']['loop_separate']:.1f}  ->  "
                  f"grouped is {g['grouped_over_loop_shared']:.1f}x the shared loop, "
                  f"{g['grouped_over_loop_separate']:.1f}x the 32-conv loop", flush=True)
    if not args.grouped_only and args.compile != "none":
        run_models(True)
    report["env"]["loadavg_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"total {time.perf_counter() - t_start:.0f}s; load average {env['loadavg_at_start']} at start, "
          f"{report['env']['loadavg_at_end']} at end", flush=True)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
