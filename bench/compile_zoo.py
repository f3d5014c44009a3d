"""Every spec in specs/ compiles under torch.compile(fullgraph=True) without a graph break
(CI traces one spec per family and the specs without a torchvision model:
tests/test_zoo_compile.py; this runs them all, on the meta device, backend "eager").

    python bench/compile_zoo.py [SPEC ...]

Prints one row per spec and exits 1 if any breaks.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_zoo_compile import traces_whole  # noqa: E402


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "specs").rglob("*.yaml"))
    failed = 0
    for path in paths:
        t = time.perf_counter()
        try:
            traces_whole(path)
            verdict = "ok"
        except Exception as e:  # a graph break, or anything else: reported, and the rest still run
            failed += 1
            verdict = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {time.perf_counter() - t:5.1f} s  {verdict}",
              flush=True)
    print(f"{len(paths) - failed}/{len(paths)} specs trace whole")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
