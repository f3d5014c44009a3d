"""Every zoo spec exported to ONNX and to .pt2 with a dynamic batch, each file read back
(onnxruntime CPU; torch.export.load) and compared with the eager module at batch 1 and 3.

    python bench/export_zoo.py                  # specs/*.yaml, whatever is there
    python bench/export_zoo.py specs/resnet50.yaml specs/vgg16.yaml

Prints one row per spec as it finishes, then a markdown table: max relative difference (to
the output's scale; the pass mark is netspec.deploy.export.TOLERANCE) and seconds per stage.
Weights are the spec's initialization (seed 0): the check is of the export, not of training.
Exit 1 if any spec fails. Files go to a temporary folder, removed spec by spec (vgg16's ONNX
file is 0.5 GB).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netspec  # noqa: E402
from netspec.deploy import export as ex  # noqa: E402
from netspec.errors import NetspecError  # noqa: E402


def one(path: Path, folder: Path) -> dict:
    row = {"spec": path.stem}
    t = time.perf_counter()
    analysis = netspec.analyze(path)
    torch.manual_seed(0)
    model = netspec.build(analysis).eval()
    row.update(input="x".join(map(str, analysis.input)), params=analysis.params, build_s=time.perf_counter() - t)
    t = time.perf_counter()
    program = ex.trace(model, list(analysis.input), 1, dynamic=True)  # one trace for both formats
    row["trace_s"] = time.perf_counter() - t
    for fmt in ex.FORMATS:
        t = time.perf_counter()
        result = ex.export(model, list(analysis.input), fmt, folder / f"{path.stem}.{fmt}", dynamic=True,
                           program=program)
        row[f"{fmt}_s"] = time.perf_counter() - t
        row[f"{fmt}_rel"] = max(d.max_rel for d in result.differences)
        row[f"{fmt}_ok"] = result.ok
        if fmt == "onnx" and result.ok:  # a file that disagrees is not moved into place
            row["onnx_mib"] = sum(p.stat().st_size for p in (result.path, *result.extra_files)) / 2**20
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path, help="default: specs/*.yaml")
    args = parser.parse_args()
    specs = args.specs or sorted((ROOT / "specs").glob("*.yaml"))
    ex.require_onnx()
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, "
          f"tolerance {ex.TOLERANCE:g}, batch dynamic (verified at {ex.DYNAMIC_CHECKS})", flush=True)
    rows, failed = [], []
    for path in specs:
        folder = Path(tempfile.mkdtemp(prefix="export_zoo-"))
        try:
            row = one(path, folder)
        except NetspecError as e:
            failed.append(f"{path.stem}: {e}")
            print(f"{path.stem}: FAILED {e}", flush=True)
            continue
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
        if not (row["onnx_ok"] and row["pt2_ok"]):
            failed.append(f"{path.stem}: over tolerance")
        print(f"{row['spec']}: onnx rel {row['onnx_rel']:.1e} ({row['onnx_s']:.1f} s), "
              f"pt2 rel {row['pt2_rel']:.1e} ({row['pt2_s']:.1f} s), trace {row['trace_s']:.1f} s", flush=True)

    print("\n| spec | input | params | ONNX max rel | .pt2 max rel | trace s | ONNX s (export+verify) | .pt2 s | ONNX MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mib = f"{r['onnx_mib']:.1f}" if "onnx_mib" in r else "-"
        print(f"| {r['spec']} | {r['input']} | {r['params']:,} | {r['onnx_rel']:.1e}{'' if r['onnx_ok'] else ' FAIL'} "
              f"| {r['pt2_rel']:.1e}{'' if r['pt2_ok'] else ' FAIL'} | {r['trace_s']:.1f} | {r['onnx_s']:.1f} "
              f"| {r['pt2_s']:.1f} | {mib} |")
    total = sum(r["trace_s"] + r["onnx_s"] + r["pt2_s"] for r in rows)
    print(f"\n{len(rows)} of {len(specs)} specs exported and verified in both formats "
          f"({len(rows) - sum(1 for r in rows if not (r['onnx_ok'] and r['pt2_ok']))} within tolerance), {total:.0f} s")
    for f in failed:
        print(f"FAILED {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
