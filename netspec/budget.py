"""What a model may cost, refused from the analysis before anything is allocated.

`refuse_huge` is `--max-params` (compile and train); `refuse_running` is what running the
model needs at the least (its weights and the largest activation of a batch: predict, export);
`refuse_training` is what training
needs at the least — weights, gradients and optimizer state, the largest activation of
a batch, the synthetic images — against the memory of the device it would run on, and
what a training step cannot do at all (nothing trainable; batch norm over a single value
per channel at batch size 1). The estimate is a lower bound (autograd keeps far more),
so what it refuses could never have run; what it passes can still run out, and the loop
turns that into one line. Must not import torch.
"""
from __future__ import annotations

import math
import os

DEFAULT_MAX_PARAMS = 10**12  # refuse before building anything larger (a trillion parameters)
GiB = 2**30


def max_params(text: str) -> int:
    """The argparse type of --max-params: a non-negative integer."""
    import argparse

    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def positive(text: str) -> int:
    """The argparse type of a count that must be at least 1 (--jobs, --batch, --depth)."""
    import argparse

    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**31:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def refuse_huge(analysis, limit: int) -> None:
    """Refuse, from the analysis alone, a model with more than `limit` parameters."""
    if analysis.params <= limit:
        return
    biggest = max(analysis.tree_leaves(), key=lambda m: m.params)
    raise analysis.spec.source.error(
        f"the model has {analysis.params:,} parameters (this layer {biggest.params:,}), over --max-params {limit:,}; refused",
        biggest.node.src)


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _largest_activation(analysis) -> int:
    """Elements of the largest tensor one image makes on its way through the model (its input included)."""
    return max([math.prod(analysis.input)] + [math.prod(row.output) for row in analysis.layers])


def running_bytes(analysis, batch: int, copies: int = 1) -> dict[str, int]:
    """A lower bound of the bytes running the model in fp32 needs (predict, export): `copies` of its
    weights (export holds the eager model's, the written file's and the runtime's that checks it)
    and the largest activation of a batch."""
    return {"the weights" if copies == 1 else f"{copies} copies of the weights": 4 * analysis.params * copies,
            f"the largest activation of a batch of {batch:,}": 4 * _largest_activation(analysis) * batch}


def refuse_running(analysis, batch: int, memory: int | None, where: str, copies: int = 1,
                   batch_argument: str | None = None) -> None:
    """Refuse, before anything is built, running the model at `batch` where its weights and largest
    activation alone are more than `memory` (`where` names it). The error names `batch_argument`
    (e.g. `--batch 2147483647`) when the batch is what does not fit."""
    if memory is None:
        return
    parts = running_bytes(analysis, batch, copies)
    biggest = _over(parts, memory)
    if biggest is None:
        return
    message = (f"running the model needs at least {sum(parts.values()) / GiB:,.1f} GiB, more than the "
               f"{memory / GiB:,.1f} GiB of {where} ({biggest}: {parts[biggest] / GiB:,.1f} GiB); refused before "
               f"allocating")
    if batch_argument is not None and biggest.startswith("the largest activation") and batch > 1:
        from netspec.errors import SpecError
        raise SpecError(message, file=batch_argument)
    source = analysis.spec.source if analysis.spec is not None else None
    heaviest = max(analysis.tree_leaves(), key=lambda m: m.params, default=None)
    raise _error(source, message, heaviest.node.src if heaviest is not None and heaviest.params else ("layers",))


def _over(parts: dict[str, int], memory: int) -> str | None:
    """The biggest part when the parts need more than `memory` bytes, else None."""
    return max(parts, key=parts.get) if sum(parts.values()) > memory else None


def training_bytes(analysis, config, batch: int) -> dict[str, int]:
    """A lower bound of the bytes a training run needs, by part. `batch` is the batch of
    one process; the eval batch counts too (default twice the training batch)."""
    trainable = analysis.trainable_params
    slots = {"sgd": 1 if getattr(config.optimizer, "momentum", 0) > 0 else 0, "adam": 2, "adamw": 2}[config.optimizer.name]
    weights = 4 * (analysis.params * (1 + (config.ema.decay > 0)) + trainable * (1 + slots))
    largest = _largest_activation(analysis)
    element = 2 if config.precision in ("bf16", "fp16") else 4
    eval_batch = config.eval_batch_size or 2 * config.batch_size
    parts = {"weights, gradients and optimizer state": weights,
             f"the largest activation of a batch of {max(batch, eval_batch)}": element * largest * max(batch, eval_batch)}
    data = config.dataset
    if data.name == "synthetic":  # the images are drawn in memory: uint8, and one float template per class
        pixels = math.prod(analysis.input)
        parts["the synthetic images"] = pixels * (data.train_size + data.test_size + 4 * data.classes)
    return parts


def refuse_training(analysis, config, batch: int, memory: int | None, where: str) -> None:
    """Refuse, before any allocation, a run that cannot train: see the module docstring.
    `memory` is the bytes of the training device (`where` names it)."""
    source = analysis.spec.source if analysis.spec is not None else None
    if analysis.trainable_params == 0:
        frozen = analysis.params - analysis.trainable_params
        message = (f"the model has no trainable parameters ({frozen:,} frozen); nothing to train"
                   if frozen else "the model has no parameters; nothing to train")
        raise _error(source, message, ("layers",))
    if batch == 1:
        for m in analysis.tree_leaves():
            if m.type == "bn" and math.prod(m.output[1:]) == 1:
                raise _error(source, f"batch norm over {list(m.output)} sees one value per channel at a batch of 1 "
                                     f"(module {m.path}); training needs train.batch_size of at least 2 per process",
                             m.node.src)
    if memory is None:
        return
    parts = training_bytes(analysis, config, batch)
    biggest = _over(parts, memory)
    if biggest is not None:
        raise _error(source, f"training needs at least {sum(parts.values()) / GiB:,.1f} GiB, more than the "
                             f"{memory / GiB:,.1f} GiB of {where} ({biggest}: {parts[biggest] / GiB:,.1f} GiB); refused "
                             f"before allocating", ("train",))


def _error(source, message: str, path):
    from netspec.errors import SpecError
    return source.error(message, path) if source is not None else SpecError(message)
