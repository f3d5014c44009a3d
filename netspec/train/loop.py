"""The training loop, top to bottom: data → model → optimizer → epochs → report.

Owns `Job` (what to train, taken from a spec) and `fit` (train, checkpoint, resume,
write the run folder). The parts live beside it: optim.py (optimizers, schedules),
checkpoint.py (atomic files, RNG), evaluate.py (test accuracy, `netspec eval`), runs.py
(run folder, progress), distributed.py (torchrun/DDP), ../data (datasets, device batches).

Imports torch, netspec.data and the parts above; reaches the compiler only through
`Job.from_spec` (netspec.analyze / netspec.build). Must not import netspec.cli.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import json
import logging
import re
import shlex
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from netspec.budget import DEFAULT_MAX_PARAMS, physical_memory, refuse_huge, refuse_training
from netspec.data.datasets import DataError, load_dataset
from netspec.errors import EXIT_CHECK_FAILED, NetspecError
from netspec.document.train import TrainConfig, input_problem, output_problem
from netspec.train import checkpoint, distributed, optim
from netspec.train.evaluate import load_weights, make_loaders, normalization
from netspec.train.task import make_task
from netspec.train.runs import Progress, RunFolder, RunFolderError, check_run_folder, default_run_dir, make_summary


class TrainingFailed(NetspecError):
    """Training could not go on (NaN loss, out of memory); what was saved is kept. Exit 1."""

    exit_code = EXIT_CHECK_FAILED

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


class Interrupted(NetspecError):
    """SIGTERM or Ctrl-C: a resumable checkpoint was written. Exit 130."""

    exit_code = 130

    def __str__(self) -> str:
        return f"stopped: {self.args[0]}"


@dataclass
class Job:
    """Everything the loop needs from a spec, so the loop can also train a hand-made model."""

    name: str
    input: list[int]
    config: TrainConfig
    build: Callable[[], torch.nn.Module]
    outputs: list | dict | None = None   # the model's output form (netspec.ir.form): [classes], or a record
    params: int | None = None
    macs: int | None = None
    document: dict = field(default_factory=dict)
    source: str = "SPEC"
    analysis: object = None   # the spec's Analysis: what fit refuses before allocating (netspec.budget)

    @classmethod
    def from_spec(cls, spec, source: str = "SPEC", max_params: int = DEFAULT_MAX_PARAMS) -> "Job":
        import netspec
        from netspec.document import check_dataset_root

        analysis = netspec.analyze(spec)
        check_dataset_root(spec)  # located at the field, before any data is read
        refuse_huge(analysis, max_params)
        if spec.train is None:  # the default section meets the input only here
            problem = input_problem(TrainConfig(), list(spec.input))
            if problem is not None:
                raise spec.source.error(*problem)
        problem = output_problem(spec.train or TrainConfig(), analysis.output, list(spec.input))
        if problem is not None:   # the output against the task, the data and the loss (netspec check finds it too)
            raise spec.source.error(*problem)
        # the document as loaded, --set overrides applied; the train section with defaults filled in
        loaded = getattr(spec, "source", None)
        document = copy.deepcopy(loaded.data) if loaded is not None else {"name": spec.name}
        config = spec.train if spec.train is not None else TrainConfig()
        document["train"] = config.model_dump(mode="json")
        return cls(name=spec.name, input=list(spec.input), config=config, build=lambda: netspec.build(spec),
                   outputs=analysis.output, params=int(analysis.params), macs=int(analysis.macs),
                   document=document, source=source, analysis=analysis)


# ---------------------------------------------------------------- fit

def fit(job: Job, *, out: str | Path | None = None, resume: str | Path | None = None,
        device: str | None = None, quiet: bool = False, command: list[str] | None = None,
        resume_command: list[str] | None = None, on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train `job`; returns the summary (also written to OUT/summary.json). `command`
    is recorded in the run folder (and names this process to another refused there);
    `resume_command` + `--resume DIR` is the command an interrupted run tells to continue
    with (default `netspec train`: the run folder holds the spec). `out` must not hold a
    run already. `resume` of a finished run changes nothing and returns its summary with
    `complete: True`; with more train.epochs than it had, the run goes on. `on_step(epoch,
    step)` is called after every optimizer step (tests use it to interrupt a run at a
    chosen point)."""
    threads = torch.get_num_threads()
    try:
        with contextlib.ExitStack() as held, _quiet_torch():
            return _fit(job, out, resume, device, quiet, command or sys.argv, resume_command or ["netspec", "train"],
                        on_step, held)
    except (MemoryError, RuntimeError) as e:  # CPU allocations fail as RuntimeError, not OutOfMemoryError
        if not isinstance(e, MemoryError) and "can't allocate memory" not in str(e):
            raise
        tried = re.search(r"allocate (\d+) bytes", str(e))
        size = f" ({int(tried.group(1)) / 2**30:,.1f} GiB at once)" if tried else ""
        raise TrainingFailed(f"out of memory{size} at train.batch_size {job.config.batch_size}; lower it, or the "
                             f"input size, or train.data_on_device=false") from None
    except OSError as e:  # the run folder's disk filled up or went read-only between checkpoints
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise TrainingFailed(f"cannot write {e.filename or 'the run folder'}: {e.strerror}") from None
    finally:
        torch.set_num_threads(threads)  # fit may lower it for a small model (_cpu_threads)


def _fit(job: Job, out, resume, device, quiet, command, resume_command, on_step, held) -> dict:
    t_start = time.perf_counter()
    cfg = job.config
    d = distributed.setup(device or cfg.device)
    dev = d.device
    torch.manual_seed(cfg.seed)
    threads = _cpu_threads(cfg, job, dev)
    if threads is not None:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    progress = Progress(enabled=d.main and not quiet, epochs=cfg.epochs)
    folder = Path(resume or out or default_run_dir(job.name))
    if resume is not None:
        finished = _finished(folder, cfg)
        if finished is not None:  # nothing to do: the folder is left as it is
            distributed.teardown(d)
            return {**finished, "run_dir": str(folder), "complete": True} if d.main else {}
    if d.main:  # before the data is loaded: a folder in use, or a run a new one would replace
        check_run_folder(folder, new=resume is None)
    if cfg.batch_size % d.world:
        raise DataError(f"train.batch_size {cfg.batch_size} is not divisible by the {d.world} processes")
    if job.analysis is not None:  # what cannot train, or cannot fit in this device's memory, is refused now
        memory = torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda" else physical_memory()
        refuse_training(job.analysis, cfg, cfg.batch_size // d.world, memory,
                        f"{dev}" if dev.type == "cuda" else "this machine's memory")

    # data: decoded once (rank 0 first, so a download or cache happens once)
    with _rank0_first(d):
        data = load_dataset(cfg.dataset, job.input, progress=progress.count if d.main else None)
    task = make_task(job, data, cfg)   # classification or segmentation: its loss and its measures
    mean, std = normalization(cfg, data)
    if len(mean) != job.input[0] or len(std) != job.input[0]:
        raise DataError(f"train.normalization has {len(mean)} means and {len(std)} standard deviations; "
                        f"the spec input has {job.input[0]} channels")
    aug = cfg.augmentation
    train_loader, test_loader = make_loaders(cfg, data, job.input, task, mean, std, dev, d)
    steps = len(train_loader)
    if steps == 0:
        raise DataError(f"train.batch_size {cfg.batch_size} is larger than the training set "
                        f"({len(data.train_x)} images); lower it")

    # model: the plain module owns the weights; DDP and torch.compile wrap it
    model = job.build().to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = job.params if job.params is not None else sum(p.numel() for p in model.parameters())
    if d.main and dev.type == "cpu" and cfg.precision != "fp32":
        slow = _slow_cpu_precision(cfg.precision, model)
        if slow:
            print(f"warning: train.precision {cfg.precision}: {slow}", file=sys.stderr, flush=True)
    net: torch.nn.Module = model
    if d.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if cfg.compile:
        # the loader keeps every batch one shape (eval batches padded): compile static
        # graphs, never a slower dynamic-shape one when eval's batch size differs
        torch._dynamo.config.automatic_dynamic_shapes = False
        net = torch.compile(net)
    ema = optim.make_ema(cfg.ema, model)  # the same on every rank: it averages the synced weights
    evaluated = ema.module if ema is not None else model  # the weights behind test_acc and best.pt
    # evaluation runs the plain (compiled) module: DDP's forward syncs buffers across
    # processes, and the ranks' test shards may differ by a batch
    if evaluated is model and not d.enabled:
        eval_net = net
    else:
        eval_net = torch.compile(evaluated) if cfg.compile else evaluated
    optimizer = optim.make_optimizer(cfg.optimizer, model, dev)
    scheduler = optim.make_scheduler(cfg.schedule, optimizer, steps, cfg.epochs)
    scaler = torch.amp.GradScaler(dev.type, enabled=cfg.precision == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = (lambda: torch.autocast(dev.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    # run folder (locked to this process while it trains) and where to start from
    run = held.enter_context(contextlib.closing(RunFolder(folder, new=resume is None, command=command))) \
        if d.main else None
    config_json = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    st = {"epoch": 0, "step": 0, "history": [], "best_acc": -1.0, "best_epoch": 0, "wall_s": 0.0,
          "partial": None, "epochs": cfg.epochs}
    if resume is not None:
        st = _restore(Path(resume) / "last.pt", config_json, model, optimizer, scheduler, scaler, ema, dev, job)
    # the checkpoint to continue from if a write fails (the previous one is kept)
    saved = None if resume is None else _position(st["epoch"], st["step"])

    def save_last(epoch: int, step: int, partial: dict | None) -> None:
        nonlocal saved
        if d.main:
            checkpoint.save({
                "epoch": epoch, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": checkpoint.rng_state(),
                "history": st["history"], "best_acc": st["best_acc"], "best_epoch": st["best_epoch"],
                "wall_s": st["wall_s"] + time.perf_counter() - t_start, "partial": partial,
                "train_config": config_json, **_meta(job, data, mean, std, task),
                **({"ema": {"model": ema.module.state_dict(), "n_averaged": int(ema.n_averaged)}} if ema else {}),
            }, run.file("last.pt"))
            saved = _position(epoch, step)

    confusion = None
    try:  # a file that cannot be written (a full disk) names the checkpoint to continue from
        if run is not None:
            run.write_spec(job.document, command)
        if d.main and not quiet:
            where = f"{dev}" + (f" x{d.world}" if d.enabled else "")
            progress.print(f"training {job.name} on {data.name} ({data.train_x.shape[0]:,} train / "
                           f"{data.test_x.shape[0]:,} test images), {params:,} params, {where}, run folder {run.path}"
                           + (f", resumed at epoch {st['epoch'] + 1} step {st['step']}" if resume else "")
                           + _extension(st, cfg, optimizer))
        with _stop_on_signals() as stop:
            for epoch in range(st["epoch"], cfg.epochs):
                net.train()
                start_step, partial = (st["step"], st["partial"]) if epoch == st["epoch"] else (0, None)
                losses = torch.zeros(steps, device=dev)
                correct = torch.zeros((), dtype=torch.long, device=dev)
                counted = torch.zeros((), dtype=torch.long, device=dev)   # images, or pixels not ignored
                train_s = 0.0
                if partial is not None:  # a run stopped mid-epoch: carry its sums on
                    losses[:start_step] = partial["losses"].to(dev)
                    correct += partial["correct"].to(dev)
                    counted += partial["counted"].to(dev) if "counted" in partial else \
                        start_step * train_loader.batch_size
                    train_s = partial["train_s"]
                check_every = max(1, min(25, steps // 4))
                progress.start_epoch(epoch, steps, start_step)
                t0 = time.perf_counter()
                for step, (x, y, _) in enumerate(train_loader.epoch(epoch, start_step), start=start_step):
                    with autocast():
                        logits = net(x)
                        loss = task.loss(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    if ema is not None and (step + 1) % cfg.ema.every == 0:
                        ema.update_parameters(model)
                    losses[step] = loss.detach()
                    right, n = task.hits(logits, y)
                    correct += right
                    counted += n
                    if on_step is not None:
                        on_step(epoch, step)
                    done = step + 1
                    seen = done * train_loader.batch_size
                    if done % check_every and done != steps:
                        if progress.due():  # a log line between check points (slow steps)
                            progress.update(done, losses[:done].mean().item(), correct.item() / max(1, counted.item()),
                                            seen * d.world / max(train_s + time.perf_counter() - t0, 1e-9))
                        continue
                    # a check point: every rank reaches the same ones, so stopping agrees
                    bad = _first_nonfinite(losses[:done])
                    flags = d.max_(torch.tensor([float(stop.requested), float(bad is not None)], device=dev))
                    if flags[1] > 0:
                        raise _nonfinite(losses, bad, epoch, run)
                    elapsed = train_s + time.perf_counter() - t0
                    progress.update(done, losses[:done].mean().item(), correct.item() / max(1, counted.item()),
                                    seen * d.world / max(elapsed, 1e-9))
                    if flags[0] > 0 and done < steps:
                        save_last(epoch, done, {"losses": losses[:done].cpu(), "correct": correct.cpu(), "counted": counted.cpu(),
                                                "train_s": elapsed})
                        raise Interrupted(f"at epoch {epoch + 1} step {done}; resumable checkpoint "
                                          f"{run.file('last.pt') if run else 'on rank 0'}; continue with: "
                                          f"{_continue_with(resume_command, run)}")
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                train_s += time.perf_counter() - t0
                row = _epoch_row(d, epoch, scheduler, losses, correct, counted, steps, train_loader, train_s, task)
                if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                    with autocast():
                        measured, confusion = task.evaluate(eval_net, test_loader, d, test_flip=aug.test_flip)
                    row.update(measured)
                row["wall_s"] = round(st["wall_s"] + time.perf_counter() - t_start, 3)
                st["history"].append(row)
                # the best checkpoint by the task's score: test accuracy, or mIoU for segmentation
                improved = row[task.score] is not None and row[task.score] > st["best_acc"]
                if improved:
                    st["best_acc"], st["best_epoch"] = row[task.score], epoch + 1
                if improved and d.main:  # before last.pt: if it cannot be written, last.pt redoes this epoch
                    checkpoint.save({"epoch": epoch + 1, "model": evaluated.state_dict(), "test_acc": row["test_acc"],
                                     **_meta(job, data, mean, std, task)}, run.file("best.pt"))
                save_last(epoch + 1, 0, None)
                if run is not None:
                    run.write_metrics(st["history"])
                progress.end_epoch(row)
                if stop.requested and epoch + 1 < cfg.epochs:
                    raise Interrupted(f"after epoch {epoch + 1}; resumable checkpoint {run.file('last.pt') if run else ''}; "
                                      f"continue with: {_continue_with(resume_command, run)}")
        if confusion is None:  # resumed after the last epoch: evaluate once for the report
            with autocast():
                _, confusion = task.evaluate(eval_net, test_loader, d, test_flip=aug.test_flip)
        summary = make_summary(job, cfg, d, data, st, params, time.perf_counter() - t_start, task)
        if run is not None:
            run.write_curves(st["history"])
            run.write_report(job.name, task, confusion.cpu(), summary)
            if task.kind == "segmentation":   # a few test images: ground truth and prediction side by side
                with autocast():
                    run.write_predictions(eval_net, test_loader, task, mean, std)
            run.write_summary(summary)
            summary["run_dir"] = str(run.path)
    except torch.OutOfMemoryError:
        raise TrainingFailed(f"out of GPU memory at train.batch_size {cfg.batch_size}; try "
                             f"--set train.batch_size={max(1, cfg.batch_size // 2)}") from None
    except (checkpoint.SaveFailed, RunFolderError) as e:
        raise _resume_hint(e, run, saved, resume_command) from None
    finally:
        progress.close()
    distributed.teardown(d)
    return summary


# ---------------------------------------------------------------- helpers

def _continue_with(resume_command: list[str], run: RunFolder | None) -> str:
    """The command that continues this run, quoted for a shell: pasted as it is, it works."""
    return shlex.join([*resume_command, "--resume", str(run.path) if run is not None else "DIR"])


def _finished(folder: Path, cfg: TrainConfig) -> dict | None:
    """The summary of the run in `folder` if it is complete: every one of train.epochs
    trained and its results written (a run stopped while writing them is resumed)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    epochs = summary.get("epochs") if isinstance(summary, dict) else None
    return summary if isinstance(epochs, int) and epochs >= cfg.epochs else None


def _position(epoch: int, step: int) -> str:
    """Where a checkpoint of (epoch done, step into the next) stands, for a message."""
    return f"end of epoch {epoch}" if step == 0 else f"step {step} of epoch {epoch + 1}"


def _resume_hint(e: NetspecError, run: RunFolder | None, saved: str | None, resume_command: list[str]) -> NetspecError:
    """A write that failed (its message says which file and why), with what to do next."""
    if run is None or saved is None:
        return type(e)(f"{e.args[0]}; no checkpoint had been written: train again once it can be")
    return type(e)(f"{e.args[0]}; once it can be written, continue from {run.file('last.pt')} ({saved}) with: "
                   f"{_continue_with(resume_command, run)}")


def _extension(st: dict, cfg: TrainConfig, optimizer) -> str:
    """What a resume with more train.epochs than the run had means for its schedule."""
    if st["epochs"] == cfg.epochs:
        return ""
    note = f"; train.epochs {st['epochs']} -> {cfg.epochs}"
    if cfg.schedule.name == "constant":
        return note
    lr, was = optimizer.param_groups[0]["lr"], st["history"][-1]["lr"] if st["history"] else None
    return (note + f": the {cfg.schedule.name} schedule is recomputed over {cfg.epochs} epochs (lr {lr:.4g} from here"
            + (f", {was:.4g} at the end of epoch {st['epoch']})" if was is not None else ")"))


def _slow_cpu_precision(precision: str, model: torch.nn.Module) -> str | None:
    """Why bf16/fp16 autocast trains this model slower than fp32 on this CPU, if it does.
    fp16: torch's CPU convolution backward in fp16 is 50-170x slower than in fp32 or bf16
    (digits: bench/cpu_precision.py), even where oneDNN reports native fp16; other layers
    are not. bf16/fp16 without native arithmetic (AVX512-BF16/FP16, AMX) are
    emulated, slower than fp32."""
    if precision == "fp16" and any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules()):
        return ("torch's fp16 convolution backward on the CPU trains 50-170x slower than fp32 (specs/digits.yaml, "
                "measured by bench/cpu_precision.py); --set train.precision=fp32, or bf16 on a CPU with native bf16, "
                "trains at full speed")
    if not _native_low_precision(precision):
        return (f"this CPU has no native {precision} arithmetic, so autocast emulates it and trains slower than "
                f"fp32; --set train.precision=fp32 is faster here")
    return None


def _native_low_precision(precision: str) -> bool:
    """Whether this CPU computes bf16/fp16 natively (AMX, AVX512-BF16/FP16); elsewhere
    torch's CPU autocast emulates them, slower than fp32."""
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def _meta(job: Job, data, mean: list[float], std: list[float], task) -> dict:
    meta = {"name": job.name, "input": list(job.input), "classes": list(data.classes), "mean": mean, "std": std}
    if task.kind == "segmentation":
        meta.update(task="segmentation", ignore_index=task.ignore)
    return meta


def _restore(path: Path, config_json: str, model, optimizer, scheduler, scaler, ema, dev, job: Job) -> dict:
    state = checkpoint.load(path, map_location=dev, needs=checkpoint.RESUME)
    try:
        old = json.loads(state["train_config"])
    except ValueError:
        old = None
    new = json.loads(config_json)
    if not isinstance(old, dict) or {**old, "epochs": 0} != {**new, "epochs": 0}:  # more epochs may be asked for
        diff = _first_difference(old if isinstance(old, dict) else {}, new, "train")
        raise checkpoint.CheckpointError(f"cannot resume {path}: the spec's train section changed ({diff}); "
                                         f"train into a new --out instead")
    load_weights(model, state, path, name=job.name)
    if len(state["history"]) != state["epoch"] or (state["partial"] is None) != (state["step"] == 0):
        raise checkpoint.CheckpointError(f"cannot resume {path}: its epoch, step and history disagree")
    if new["epochs"] < state["epoch"] + (state["step"] > 0):
        raise checkpoint.CheckpointError(f"cannot resume {path}: it is at the {_position(state['epoch'], state['step'])}"
                                         f", past train.epochs {new['epochs']}")
    part = "ema"
    try:  # a crafted state that passed the type checks still ends as one line
        if ema is not None:
            if "ema" not in state:
                raise KeyError("the run averages weights (train.ema) but the checkpoint has no average")
            ema.module.load_state_dict(state["ema"]["model"])
            ema.n_averaged.fill_(state["ema"]["n_averaged"])
        for part, target in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
            target.load_state_dict(state[part])
        part = "rng"
        checkpoint.set_rng_state(state["rng"])
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise checkpoint.CheckpointError(f"cannot resume {path}: its {part} state does not fit this run ({first})") from None
    if old.get("epochs") != new["epochs"]:  # extended: the schedule's lr at this step, over the new length
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)
    return {**{k: state[k] for k in ("epoch", "step", "history", "best_acc", "best_epoch", "wall_s", "partial")},
            "epochs": old.get("epochs")}


def _first_difference(old, new, path: str) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{path}.{k}")
    return f"{path}: {old!r} then, {new!r} now"


def _first_nonfinite(losses: torch.Tensor) -> int | None:
    bad = ~torch.isfinite(losses)
    if not bool(bad.any()):
        return None
    return int(bad.nonzero()[0, 0])


def _nonfinite(losses: torch.Tensor, bad: int | None, epoch: int, run: RunFolder | None) -> TrainingFailed:
    where = f"at epoch {epoch + 1} step {bad + 1}" if bad is not None else f"in epoch {epoch + 1} (another process)"
    value = f"{float(losses[bad])}" if bad is not None else "non-finite"
    last = run.file("last.pt") if run is not None else None
    kept = (f"last good checkpoint {last} (end of epoch {epoch})" if last is not None and last.exists()
            else "no checkpoint was written before it")
    return TrainingFailed(f"loss became {value} {where}; training stopped, {kept}; "
                          f"try a lower train.optimizer.lr or train.precision=fp32")


def _epoch_row(d, epoch: int, scheduler, losses, correct, counted, steps: int, loader, train_s: float, task) -> dict:
    sums = d.sum_(torch.stack([losses.sum().double(), correct.double(), counted.double()]))
    images = loader.images_per_epoch
    row = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "lr": scheduler.get_last_lr()[0],
           "train_loss": float(sums[0]) / (steps * d.world), "train_acc": float(sums[1]) / max(1.0, float(sums[2])),
           "test_loss": None, "test_acc": None, "images_per_s": images / max(train_s, 1e-9),
           "epoch_s": round(train_s, 3), "wall_s": None}
    if task.kind == "segmentation":   # train_acc and test_acc are pixel accuracies here
        row["test_miou"] = None
    return row


def _cpu_threads(cfg: TrainConfig, job: Job, dev) -> int | None:
    """Threads for CPU training. A small model's ops are too short to split: with two or
    more threads they spend their time waiting on each other, and on a shared machine
    (another job on the same cores) a 10 s run became 60 s; one thread is steady."""
    if dev.type != "cpu":
        return None
    if cfg.cpu_threads is not None:
        return cfg.cpu_threads
    if job.macs is not None and job.macs * cfg.batch_size < 1e9:
        return 1
    return None


@contextlib.contextmanager
def _quiet_torch():
    """Keep torch's messages that are not the user's concern off the console, each matched
    narrowly: DDP's "Grad strides do not match bucket view strides" (a 1-channel conv's
    weight gradient is laid out differently only in its size-1 dimension, which costs
    nothing; 4 lines per process), and the "No CUDA runtime is found" that torch.compile's
    import of cpp_extension logs on every machine without a GPU."""
    cpp_extension = logging.getLogger("torch.utils.cpp_extension")

    def no_cuda_runtime(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")

    cpp_extension.addFilter(no_cuda_runtime)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides",
                                    category=UserWarning)
            yield
    finally:
        cpp_extension.removeFilter(no_cuda_runtime)


@contextlib.contextmanager
def _rank0_first(d):
    if d.enabled and not d.main:
        d.barrier()
    try:
        yield
    finally:
        if d.enabled and d.main:
            d.barrier()


class _StopFlag:
    requested = False


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and the first Ctrl-C ask the loop to stop at its next check point and
    save a resumable checkpoint; a second Ctrl-C aborts at once."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True
        print("\nstopping at the next check point and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
