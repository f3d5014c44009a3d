"""What a run leaves behind and shows: the run folder and the progress display.

Owns the run folder's files (resolved spec, metrics.jsonl + metrics.csv, curves.png,
report.md + confusion.png, summary.json and what goes in it; the checkpoints are
checkpoint.py's) and
`Progress`, the rich progress bar with loss, accuracy and images/s (one plain line per
epoch when the output is not a terminal, e.g. a log file).

Imports rich at module level; torch (tensors in, no math) and matplotlib (Agg: plotting
is the slowest import here) lazily. Must not import the loop, data or build.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import os
import re
import shlex
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console

from netspec.document.paths import file_stem
from netspec.errors import NetspecError, one_line
from netspec.locks import FolderLock

CSV_FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
              "images_per_s", "epoch_s", "wall_s"]


def default_run_dir(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = file_stem(name, "run")
    path, n = Path("runs") / f"{safe}-{stamp}", 1
    while path.exists():  # two runs started in one second
        n += 1
        path = Path("runs") / f"{safe}-{stamp}-{n}"
    return path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with _writing(path):
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _writing(path: Path):
    """An OSError while writing `path` (a full disk, a folder made read-only) as one line."""
    try:
        yield
    except OSError as e:
        raise RunFolderError(f"cannot write {path}: {e.strerror or e}") from None


class RunFolderError(NetspecError):
    """The run folder cannot be made or written (a file, under a file, under /proc, a full
    disk), or holds another run. Exit 2."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


# a run a new one would replace (its best.pt with it): one to resume, or a finished one. A
# folder without them (a run stopped before its first checkpoint) has nothing to lose.
RESULTS = ("last.pt", "summary.json")


class RunFolder:
    """The files of one run, locked to this process while it trains (`close` releases it).
    Every write replaces a whole file, so a run stopped at any point leaves each file
    complete; a write that fails is a RunFolderError naming the file."""

    def __init__(self, path: str | os.PathLike, new: bool = True, command: list[str] | None = None):
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.file(".netspec-write-test")  # /proc and read-only mounts refuse only here
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            reason = "it is a file" if self.path.is_file() else e.strerror or str(e)
            raise RunFolderError(f"cannot use {self.path} as the run folder: {reason}") from None
        self.lock = FolderLock(self.path, "run folder").acquire(command or sys.argv)
        if new:
            try:
                refuse_a_run_in(self.path)
            except RunFolderError:
                self.close()
                raise

    def close(self) -> None:
        self.lock.release()

    def file(self, name: str) -> Path:
        return self.path / name

    def write_spec(self, document: dict, command: list[str]) -> None:
        from ruamel.yaml import YAML

        yaml = YAML()  # round-trip dumper: keeps the document's key order
        yaml.default_flow_style = None
        yaml.width = 120
        import io

        buf = io.StringIO()
        buf.write(f"# resolved spec of this run (defaults and --set filled in)\n# command: {' '.join(command)}\n")
        yaml.dump(document, buf)
        _write_text(self.file("spec.yaml"), buf.getvalue())

    def write_metrics(self, history: list[dict]) -> None:
        # rewritten whole from the checkpoint's history, so a resumed run has no
        # duplicate or orphan rows from epochs after the last checkpoint
        _write_text(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in history))
        tmp = self.file(".metrics.csv.tmp")
        fields = list(CSV_FIELDS)
        if any("test_miou" in row for row in history):   # segmentation: its score beside the pixel accuracy
            fields.insert(fields.index("test_acc") + 1, "test_miou")
        with _writing(self.file("metrics.csv")):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                for row in history:
                    w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
            os.replace(tmp, self.file("metrics.csv"))

    def write_summary(self, summary: dict) -> None:
        _write_text(self.file("summary.json"), json.dumps(summary, indent=2) + "\n")

    def write_curves(self, history: list[dict]) -> None:
        plt = _pyplot()
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        ep = [r["epoch"] for r in history]
        tested = [r for r in history if r.get("test_acc") is not None]
        ax_loss.plot(ep, [r["train_loss"] for r in history], label="train")
        ax_loss.plot([r["epoch"] for r in tested], [r["test_loss"] for r in tested], label="test", marker=".")
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_acc.plot(ep, [100 * r["train_acc"] for r in history], label="train")
        ax_acc.plot([r["epoch"] for r in tested], [100 * r["test_acc"] for r in tested], label="test", marker=".")
        segmenting = any(r.get("test_miou") is not None for r in tested)
        if segmenting:
            ax_acc.plot([r["epoch"] for r in tested], [100 * r["test_miou"] for r in tested], label="test mIoU", marker=".")
        ax_acc.set(xlabel="epoch", ylabel="%", title="pixel accuracy and mIoU" if segmenting else "accuracy")
        from matplotlib.ticker import MaxNLocator

        for ax in (ax_loss, ax_acc):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5 ticks on short runs
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        try:
            with _writing(self.file("curves.png")):
                fig.savefig(self.file("curves.png"), dpi=100)
        finally:
            plt.close(fig)

    def write_report(self, name: str, task, confusion, summary: dict) -> None:
        """report.md: the summary, per-class accuracy (and for segmentation IoU) and the confusion
        matrix (rows are true classes, columns predictions; images, or pixels), plus confusion.png."""
        from netspec.train.task import per_class_iou
        classes = task.classes
        cm = confusion.tolist()
        lines = [f"# {name}: training report", "",
                 "| | |", "| --- | --- |"]
        for key in ("test_miou", "best_test_miou", "test_acc", "best_test_acc", "best_epoch", "epochs", "images_per_s",
                    "wall_s", "params", "macs", "device", "dataset", "precision", "world_size"):
            if key in summary:
                value = summary[key]
                if (key.endswith("_acc") or key.endswith("_miou")) and value is not None:
                    value = f"{100 * value:.2f}%"
                elif isinstance(value, float):
                    value = f"{value:,.1f}"
                elif isinstance(value, int):
                    value = f"{value:,}"
                lines.append(f"| {key} | {value} |")
        if task.kind == "segmentation":
            lines.append("")
            lines.append("test_acc is the pixel accuracy; mIoU is the mean IoU over the classes in the target or the "
                         "prediction (pixels of the ignore index count nowhere).")
            iou = per_class_iou(confusion)
            lines += ["", "## Per-class IoU and accuracy (last evaluation)", "",
                      "| class | IoU | accuracy | correct / pixels |", "| --- | ---: | ---: | ---: |"]
            for i, cls in enumerate(classes):
                total = sum(cm[i])
                acc = f"{100 * cm[i][i] / total:.2f}%" if total else "n/a"
                shown = f"{100 * iou[i]:.2f}%" if iou[i] is not None else "n/a"
                lines.append(f"| {one_line(cls)} | {shown} | {acc} | {cm[i][i]:,} / {total:,} |")
        else:
            lines += ["", "## Per-class accuracy (last evaluation)", "", "| class | accuracy | correct / images |",
                      "| --- | ---: | ---: |"]
            for i, cls in enumerate(classes):
                total = sum(cm[i])
                acc = f"{100 * cm[i][i] / total:.2f}%" if total else "n/a"
                lines.append(f"| {cls} | {acc} | {cm[i][i]} / {total} |")
        lines += ["", "## Confusion matrix", "", "Rows: true class; columns: predicted class.", ""]
        if len(classes) <= 20:
            lines.append("| true \\ predicted | " + " | ".join(classes) + " |")
            lines.append("| --- |" + " ---: |" * len(classes))
            for i, cls in enumerate(classes):
                lines.append(f"| {cls} | " + " | ".join(str(v) for v in cm[i]) + " |")
        else:
            lines.append(f"({len(classes)} classes: see the image.)")
        lines += ["", "![confusion matrix](confusion.png)", "", "![curves](curves.png)", ""]
        if task.kind == "segmentation":
            lines += ["![test images: image, ground truth, prediction](predictions.png)", ""]
        _write_text(self.file("report.md"), "\n".join(lines))
        self._confusion_png(classes, cm)

    def _confusion_png(self, classes: list[str], cm: list[list[int]]) -> None:
        with warnings.catch_warnings():  # a class name's glyphs missing from the font: a warning per glyph
            warnings.simplefilter("ignore")
            self._plot_confusion([one_line(c) for c in classes], cm)

    def _plot_confusion(self, classes: list[str], cm: list[list[int]]) -> None:
        plt = _pyplot()
        k = len(classes)
        size = min(12, 3 + 0.5 * k)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(cm, cmap="Blues")
        if k <= 30:
            ax.set_xticks(range(k), classes, rotation=90)
            ax.set_yticks(range(k), classes)
        if k <= 12:
            peak = max(max(r) for r in cm) or 1
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, cm[i][j], ha="center", va="center",
                            color="white" if cm[i][j] > peak / 2 else "black", fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
        fig.tight_layout()
        try:
            with _writing(self.file("confusion.png")):
                fig.savefig(self.file("confusion.png"), dpi=100)
        finally:
            plt.close(fig)


    def write_predictions(self, net, loader, task, mean: list[float], std: list[float], n: int = 6) -> None:
        """predictions.png: the first test images, their ground truth and the prediction side by
        side, in VOC's palette (the ignored pixels white), with a legend of the classes shown."""
        import torch

        from netspec.data.masks import palette
        from netspec.train.task import main_output
        x, y, valid = next(iter(loader.epoch(0)))
        was_training = net.training
        net.eval()
        with torch.no_grad():
            predicted = main_output(net(x)).float().argmax(1)
        net.train(was_training)
        k = min(n, valid)
        colours = torch.tensor(palette(task.n_classes) + [(255, 255, 255)], dtype=torch.uint8)
        m = torch.tensor(mean).view(-1, 1, 1)
        s = torch.tensor(std).view(-1, 1, 1)

        def painted(mask):
            index = mask.cpu().long().clone()
            index[(index >= task.n_classes) | (index < 0)] = task.n_classes   # the ignore index
            return colours[index].numpy()

        plt = _pyplot()
        fig, axes = plt.subplots(k, 3, figsize=(7.5, 2.4 * k), squeeze=False)
        shown = set()
        for i in range(k):
            image = (x[i].float().cpu() * s + m).clamp(0, 1)
            axes[i][0].imshow((image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy(), cmap="gray")  # an array: matplotlib's copy of a tensor warns
            axes[i][1].imshow(painted(y[i]))
            axes[i][2].imshow(painted(predicted[i]))
            shown |= set(y[i].unique().tolist()) | set(predicted[i].unique().tolist())
            for j, title in enumerate(("image", "ground truth", "prediction")):
                axes[i][j].set_axis_off()
                if i == 0:
                    axes[i][j].set_title(title, fontsize=9)
        from matplotlib.patches import Patch
        handles = [Patch(facecolor=[c / 255 for c in colours[c].tolist()], edgecolor="#888888",
                         label=one_line(task.classes[c])) for c in sorted(shown) if c < task.n_classes]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        try:
            with _writing(self.file("predictions.png")), warnings.catch_warnings():
                warnings.simplefilter("ignore")   # a class name's glyph missing from the font
                fig.savefig(self.file("predictions.png"), dpi=100)
        finally:
            plt.close(fig)


def check_run_folder(path: str | os.PathLike, new: bool) -> None:
    """What RunFolder would refuse, found before the data is loaded: the folder in use by
    another process, or (for a new run) holding a run already."""
    path = Path(path)
    if path.is_dir():
        try:
            FolderLock(path, "run folder").acquire(["(checking)"]).release()
        except OSError as e:
            raise RunFolderError(f"cannot use {path} as the run folder: {e.strerror or e}") from None
        if new:
            refuse_a_run_in(path)


def refuse_a_run_in(path: Path) -> None:
    found = [name for name in RESULTS if (path / name).exists()]
    if found:
        raise RunFolderError(f"{path} already holds a run ({', '.join(found)}); continue it with "
                             f"--resume {shlex.quote(str(path))}, or train into another --out")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


class Progress:
    """A live bar on a terminal; elsewhere (a log file, a pipe) a plain line at a steady
    interval (NETSPEC_PROGRESS_INTERVAL seconds, default 30) so a long epoch is never
    silent. One line per epoch either way."""

    def __init__(self, enabled: bool, epochs: int):
        self.console = Console(stderr=False)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.epochs = epochs
        self.interval = 0.5 if self.live else float(os.environ.get("NETSPEC_PROGRESS_INTERVAL", 30))
        self._bar = None
        self._task = None
        self._epoch = (0, 0, 0, 0.0)  # epoch, steps, first step, start time
        self._last = time.monotonic()

    def due(self) -> bool:
        return self.enabled and time.monotonic() - self._last >= self.interval

    def start_epoch(self, epoch: int, steps: int, done: int = 0) -> None:
        self._epoch = (epoch, steps, done, time.monotonic())
        self._last = time.monotonic()
        if not self.live:
            return
        self._bar = self._new_bar(f"epoch {epoch + 1}/{self.epochs}", "{task.fields[stats]}")
        self._task = self._bar.add_task("train", total=steps, completed=done, stats="")

    def update(self, step: int, loss: float, acc: float, images_per_s: float) -> None:
        stats = f"loss {loss:.4f}  acc {100 * acc:.2f}%  {images_per_s:,.0f} img/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, stats=stats)
        elif self.due():
            epoch, steps, first, t0 = self._epoch
            left = (steps - step) * (time.monotonic() - t0) / max(step - first, 1)
            self.print(f"epoch {epoch + 1}/{self.epochs}  step {step:,}/{steps:,}  {stats}  "
                       f"{_duration(left)} left in the epoch")
        self._last = time.monotonic()

    def count(self, message: str, done: int, total: int) -> None:
        """Progress of work before training (decoding a dataset): `message` when it starts
        (done 0), then a bar or a line now and then, until done == total."""
        if not self.enabled:
            return
        if done == 0:
            self.print(message)
            self._last = time.monotonic()
            if self.live:
                self._bar = self._new_bar("", "")
                self._task = self._bar.add_task("count", total=total)
        elif self._bar is not None:
            self._bar.update(self._task, completed=done)
        elif self.due() or done == total:
            self.print(f"  {done:,}/{total:,}")
            self._last = time.monotonic()
        if done >= total:
            self.close()

    def _new_bar(self, label: str, stats: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(stats), TimeRemainingColumn(),
                  console=self.console, transient=True)
        bar.start()
        return bar

    def end_epoch(self, row: dict) -> None:
        self.close()
        if not self.enabled:
            return
        test = ""
        if row.get("test_miou") is not None:   # segmentation: pixel accuracy and mIoU
            test = (f"  test loss {row['test_loss']:.4f}  pixel acc {100 * row['test_acc']:.2f}%  "
                    f"mIoU {100 * row['test_miou']:.2f}%")
        elif row.get("test_acc") is not None:
            test = f"  test loss {row['test_loss']:.4f}  test acc {100 * row['test_acc']:.2f}%"
        self.console.print(f"epoch {row['epoch']}/{self.epochs}  loss {row['train_loss']:.4f}  "
                           f"acc {100 * row['train_acc']:.2f}%{test}  {row['images_per_s']:,.0f} img/s  "
                           f"{row['epoch_s']:.1f}s", highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def print(self, text: str) -> None:
        if self.enabled:  # the text holds the spec's name: not rich markup, and no control characters
            self.console.print(one_line(text), markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def make_summary(job, cfg, d, data, st: dict, params: int, wall: float, task) -> dict:
    """summary.json: the run's results and setting. `st` is the loop's state (history,
    best epoch, wall time before a resume); `d` its distributed setup; `data` the dataset;
    for a segmentation `task` also test_miou and best_test_miou (fractions)."""
    import torch

    hist = st["history"]
    tested = [r for r in hist if r["test_acc"] is not None]
    # steady state: leave the first epoch (compilation, cuDNN autotuning) out when there are more
    timed = hist[1:] if len(hist) > 1 else hist
    img = sum(r["images_per_s"] * r["epoch_s"] for r in timed)
    secs = sum(r["epoch_s"] for r in timed)
    dev = d.device
    out = {
        "name": job.name, "test_acc": tested[-1]["test_acc"] if tested else None,
        "best_test_acc": max((r["test_acc"] for r in tested), default=None), "best_epoch": st["best_epoch"],
        "epochs": len(hist), "final_train_loss": hist[-1]["train_loss"] if hist else None,
        "final_train_acc": hist[-1]["train_acc"] if hist else None,
        "images_per_s": img / secs if secs else None,
        "images_per_s_all_epochs": (sum(r["images_per_s"] * r["epoch_s"] for r in hist)
                                    / max(1e-9, sum(r["epoch_s"] for r in hist))) if hist else None,
        "train_s": sum(r["epoch_s"] for r in hist), "wall_s": st["wall_s"] + wall, "params": params,
        "macs": job.macs, "device": str(dev.type),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "world_size": d.world, "precision": cfg.precision, "batch_size": cfg.batch_size,
        "dataset": data.name, "train_images": len(data.train_x), "test_images": len(data.test_x),
        "torch": torch.__version__, "evaluated_weights": "ema" if cfg.ema.decay else "model",
    }
    if task.kind == "segmentation":   # the score the best checkpoint is chosen by
        out.update(task="segmentation", test_miou=tested[-1]["test_miou"] if tested else None,
                   best_test_miou=max((r["test_miou"] for r in tested), default=None))
    if job.macs and out["images_per_s"]:
        # training ≈ 3 passes (forward, and backward's two) of 2 FLOPs per multiply-add
        out["train_tflops"] = 6 * job.macs * out["images_per_s"] / 1e12
    return out
