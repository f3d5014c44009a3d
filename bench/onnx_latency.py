"""onnxruntime (CPU) latency against eager torch for one model, in the same process, interleaved.

    python bench/onnx_latency.py                          # specs/resnet50.yaml, batch 1 and 8
    python bench/onnx_latency.py specs/resnet18.yaml --batches 1 32 --rounds 30

The spec's model (seed-0 weights, eval mode) is exported with `netspec export`'s code (dynamic
batch, verified), then each round times one eager forward (`torch.inference_mode`) and one
`InferenceSession.run` on the same seeded batch, alternating which goes first, so a busy
machine slows both alike. Both get the same number of threads (`--threads`, default: torch's).
Prints the median of each and the ratio onnxruntime / torch (below 1: onnxruntime is faster).
On a machine busier than its cores, torch's OpenMP threads wait for each other (a resnet50
forward went from 0.9 s with 1 thread to 10 s with 2 at load 12 on 2 cores): measure with
`--threads 1` there, or on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.deploy import export as ex  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "resnet50.yaml"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds per batch size (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads of both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ex.require_onnx()
    import onnxruntime

    analysis = netspec.analyze(args.spec)
    torch.manual_seed(0)
    model = netspec.build(analysis).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        result = ex.export(model, list(analysis.input), "onnx", path, dynamic=True)
        assert result.ok, [str(d) for d in result.differences]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    print(f"{analysis.name}: torch {torch.__version__}, onnxruntime {onnxruntime.__version__} CPUExecutionProvider, "
          f"{args.threads} thread(s) each; median of {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
    print("| batch | eager torch ms | onnxruntime ms | onnxruntime / torch |\n|---:|---:|---:|---:|")
    for batch in args.batches:
        x = ex.seeded_input(batch, list(analysis.input))
        feed = {"input": x.numpy()}

        def run_torch() -> float:
            t = time.perf_counter()
            with torch.inference_mode():
                model(x)
            return time.perf_counter() - t

        def run_ort() -> float:
            t = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - t

        for _ in range(args.warmup):
            run_torch(), run_ort()
        times = {"torch": [], "ort": []}
        for i in range(args.rounds):
            order = (("torch", run_torch), ("ort", run_ort)) if i % 2 == 0 else (("ort", run_ort), ("torch", run_torch))
            for name, fn in order:
                times[name].append(fn())
        with torch.inference_mode():
            diff = np.abs(session.run(None, feed)[0] - model(x).numpy()).max() / np.abs(model(x).numpy()).max()
        t_torch, t_ort = statistics.median(times["torch"]), statistics.median(times["ort"])
        print(f"| {batch} | {1e3 * t_torch:.1f} | {1e3 * t_ort:.1f} | {t_ort / t_torch:.2f} |  (max rel diff {diff:.1e})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
