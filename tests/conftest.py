"""Shared helpers: run the real CLI in-process and capture what a user sees."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.yaml"))


def pytest_configure(config) -> None:
    """In each xdist worker, torch's threads are the cores divided among the workers. Its
    default, a thread per core in every worker, puts two or more threads on each core: they
    spin waiting for each other, and on a busy machine (load 12) a parity check that takes
    1 s with one thread took 90 s. Set before torch is imported (it reads these once), and
    inherited by the CLI and training subprocesses; a value the user set is kept."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers is None:  # no xdist worker: torch's default
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(max(1, cores // workers)))
    if "torch" in sys.modules:  # imported by a plugin already
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): a worker per core, but at most one per 8 GiB of
    memory (a worker grew to ~7 GiB of zoo models, measured before the saved_bytes leak fix) and 4 in all (more buys little here)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cores, 4, memory // (8 << 30)))


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    from netspec.cli import main

    def run(*args: str) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)
    return run


@pytest.fixture
def write(tmp_path):
    """write(text, name='spec.yaml') -> path of a spec file with that text."""
    def make(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return make


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory) -> Path:
    """best.pt of specs/digits.yaml trained for one epoch (the deploy tests export and predict with it)."""
    from netspec.cli import main

    out = tmp_path_factory.mktemp("digits_run")
    assert main(["train", str(ROOT / "specs" / "digits.yaml"), "--out", str(out), "--quiet",
                 "--set", "train.epochs=1"]) == 0
    return out / "best.pt"


def save_png(img, path) -> None:
    """A uint8 C×H×W tensor (1 or 3 channels) as a PNG file, written by Pillow."""
    from PIL import Image

    array = img.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)


@contextlib.contextmanager
def unblocked_after(fifo, seconds: float = 5):
    """From `seconds` on, a writer opens and closes `fifo` now and then, so code that waits for
    one fails (an empty read) instead of hanging the test run."""
    done = threading.Event()

    def open_writers():
        while not done.wait(seconds):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO (no reader): nothing waits
            except OSError:
                pass

    threading.Thread(target=open_writers, daemon=True).start()
    try:
        yield
    finally:
        done.set()


def spec_text(layers: str, extra: str = "", input_shape: str = "[3, 32, 32]") -> str:
    return f"netspec: 1\nname: t\ninput: {input_shape}\n{extra}layers:\n{layers}"


sys.path.insert(0, str(ROOT))
os.environ.setdefault("NETSPEC_TEST", "1")
