"""Trainer throughput vs a minimal hand-written PyTorch loop, same model, same data, same process.

    python bench/train_speed.py                       # CPU, ResNet-18-CIFAR, batch 32
    python bench/train_speed.py --segmentation        # CPU, specs/unet_digits.yaml on digits_canvas masks
    python bench/train_speed.py --device cuda --batch-size 512 --steps 40 --precision bf16 --channels-last

Both sides train `netspec.build(specs/resnet18_cifar.yaml)` (fresh weights each repeat) on
the same synthetic uint8 CIFAR-shaped images. The hand loop gets its batches already
normalized as float tensors and does only zero_grad / forward / cross-entropy / backward /
SGD step; the trainer is `netspec.train.fit` with augmentation off and a constant
schedule, timed by its own per-epoch clock (epoch 2 of 2: the first absorbs one-off
start-up costs, as the hand loop's untimed warm-up step does). Repeats are interleaved
(hand, trainer, hand, trainer, ...) so drift in machine load hits both. On CPU every step
is timed on its own (the trainer's through fit's on_step hook) and the ratio is that of the
median step times over all repeats, which a burst of load on a shared machine moves
little; on CUDA (asynchronous steps) it is the ratio of median whole-run rates.
Target: trainer / hand >= 0.95.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import netspec  # noqa: E402
from netspec.train.loop import Job, _cpu_threads, fit  # noqa: E402

default_threads = torch.get_num_threads()


def train_section(args) -> dict:
    if args.segmentation:   # per-pixel labels, the trainer's segmentation path (MaskLoader, ignored pixels)
        data = {"name": "digits_canvas", "size": 32, "train_size": args.batch_size * args.steps,
                "test_size": args.batch_size}
        norm = {"mean": [0.5], "std": [0.25]}
    else:
        data = {"name": "synthetic", "train_size": args.batch_size * args.steps, "test_size": args.batch_size,
                "classes": 10, "seed": 0}
        norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    return {
        "dataset": data,
        "normalization": norm,
        "epochs": 2, "batch_size": args.batch_size, "eval_every": 2,
        "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                      "decay_norm_and_bias": True},
        "schedule": {"name": "constant"},
        "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
        "device": args.device, "seed": 0,
    }


def hand_loop(spec, data, args) -> float:
    """images/s of the plainest loop: batches pre-made, no augmentation, no bookkeeping."""
    dev = torch.device(args.device)
    threads = _cpu_threads(spec.train, Job.from_spec(spec), dev)   # the trainer's choice (1 for a small model)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = netspec.build(spec).to(dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          **({"fused": True} if dev.type == "cuda" else {}))
    x = ((data.train_x.float() / 255 - 0.5) / 0.25).to(dev).contiguous(memory_format=fmt)
    y = data.train_y.to(dev).long()
    b = args.batch_size
    batches = [(x[i:i + b], y[i:i + b]) for i in range(0, args.steps * b, b)]
    amp = (torch.autocast(dev.type, dtype=torch.bfloat16) if args.precision == "bf16" else contextlib.nullcontext())

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with amp:   # masks: 255 counts nowhere, as the trainer's ignore_index
            loss = F.cross_entropy(step_model(xb), yb, ignore_index=255) if args.segmentation else \
                F.cross_entropy(step_model(xb), yb)
        loss.backward()
        opt.step()

    for xb, yb in batches[:2 if args.compile else 1]:  # warm-up, untimed (as the trainer's epoch 1)
        step(xb, yb)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    stamps = [t0]
    for xb, yb in batches:
        step(xb, yb)
        stamps.append(time.perf_counter())
    sync()
    rate = len(batches) * b / (time.perf_counter() - t0)
    torch.set_num_threads(default_threads)
    return rate, [t1 - t0 for t0, t1 in zip(stamps, stamps[1:])]


def trainer(spec, args) -> float:
    job = Job.from_spec(spec)
    stamps = []
    # after each optimizer step of epoch 2 (epoch 1 absorbs start-up costs)
    hook = lambda epoch, step: stamps.append(time.perf_counter()) if epoch == 1 else None  # noqa: E731
    with tempfile.TemporaryDirectory() as out:
        summary = fit(job, out=out, quiet=True, on_step=hook)
    # the first step of epoch 2 has no stamp before it: the step times are the gaps after it
    return summary["images_per_s"], [t1 - t0 for t0, t1 in zip(stamps, stamps[1:])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", help="default specs/resnet18_cifar.yaml (with --segmentation specs/unet_digits.yaml)")
    p.add_argument("--segmentation", action="store_true", help="per-pixel labels: the trainer's segmentation path")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = p.parse_args()
    args.spec = args.spec or ("specs/unet_digits.yaml" if args.segmentation else "specs/resnet18_cifar.yaml")

    spec = netspec.load(args.spec, [f"train={json.dumps(train_section(args))}"])
    from netspec.data.datasets import load_dataset
    data = load_dataset(spec.train.dataset, spec.input)
    print(f"{spec.name}: {netspec.analyze(spec).params:,} params, batch {args.batch_size}, {args.steps} steps/repeat, "
          f"{args.device}, {args.precision}, torch threads {torch.get_num_threads()}", flush=True)
    hand, ours, hand_steps, our_steps = [], [], [], []
    for r in range(args.repeats):
        rate, steps = hand_loop(spec, data, args)
        hand.append(rate)
        hand_steps += steps
        rate, steps = trainer(spec, args)
        ours.append(rate)
        our_steps += steps
        print(f"  repeat {r + 1}: hand loop {hand[-1]:8.1f} img/s   netspec trainer {ours[-1]:8.1f} img/s", flush=True)
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"whole runs, median: hand loop {h:.1f} img/s, netspec trainer {o:.1f} img/s, ratio {o / h:.3f}")
    result = {"hand": hand, "trainer": ours, "ratio_runs": o / h}
    if args.device == "cpu":
        hs, os_ = statistics.median(hand_steps), statistics.median(our_steps)
        result.update(hand_step_s=hand_steps, trainer_step_s=our_steps, ratio_steps=hs / os_)
        print(f"per step, median of {len(hand_steps)} / {len(our_steps)}: hand loop {args.batch_size / hs:.1f} img/s, "
              f"netspec trainer {args.batch_size / os_:.1f} img/s, ratio {hs / os_:.3f} (target >= 0.95)")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, **vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
