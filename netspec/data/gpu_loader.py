"""Batches from uint8 tensors that live on the training device, augmented there.

Owns `DeviceLoader`: it moves a whole decoded dataset (uint8, N×C×H×W) to the device
once, then per batch gathers, crops, flips, converts and normalizes it with a few tensor
ops, so no CPU worker can starve the GPU. Shuffling and augmentation draws come from a
generator seeded by (seed, epoch): a run resumed in the middle of an epoch replays the
same batches, and every rank of a distributed run draws the same permutation and takes
its own slice of each global batch.

Imports torch only. Must not import netspec.train or netspec.build.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F


def channel_stats(x: torch.Tensor | list, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images on the 0..1 scale (float64 sums, chunked
    so a 50,000-image set never becomes one float copy); `x` may be a list of C×H×W images of
    several sizes (a segmentation folder), summed one image at a time."""
    c = x[0].shape[0]
    parts = (img[None] for img in x) if isinstance(x, list) else (x[i:i + chunk] for i in range(0, x.shape[0], chunk))
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    n = 0
    for part in parts:
        part = part.to(torch.float64).transpose(0, 1).reshape(c, -1) / 255.0
        total += part.sum(1).cpu()
        total_sq += (part * part).sum(1).cpu()
        n += part.shape[1]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


class DeviceLoader:
    """Iterates (images, labels, valid) batches; images are float32, normalized, on `device`.

    Training (`train=True`): the global batch is `batch_size * world`; each epoch draws a
    permutation, drops the ragged tail (fixed shapes for torch.compile and equal work per
    rank) and yields rank `rank`'s `batch_size` images of each global batch.
    Evaluation: in order, rank `rank` takes a contiguous shard; the last batch is padded
    to full size (so compiled models see one shape) and `valid` says how many are real.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, device: torch.device,
                 mean: list[float], std: list[float], train: bool, seed: int = 0,
                 crop_padding: int = 0, padding_mode: str = "reflect", flip: bool = False, cutout: int = 0,
                 rank: int = 0, world: int = 1, channels_last: bool = False, on_device: bool = True):
        if x.dtype != torch.uint8:
            raise TypeError("DeviceLoader wants uint8 images")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train, self.seed = train, seed
        self.crop_padding, self.padding_mode, self.flip = crop_padding, padding_mode, flip
        self.cutout = cutout
        self.rank, self.world = rank, world
        self.channels_last = channels_last
        if not train and world > 1:  # evaluation: contiguous shard per rank
            per = -(-x.shape[0] // world)
            x, y = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
        # decoded once, kept as uint8 (4x smaller than float) where the math happens
        store = self.device if on_device else torch.device("cpu")
        self.x = x.to(store)
        self.y = y.to(store)
        if store.type == "cpu" and self.device.type == "cuda":
            self.x, self.y = self.x.pin_memory(), self.y.pin_memory()
        n_ch = x.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, n_ch, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, n_ch, 1, 1)
        # (x/255 - mean)/std as one multiply-add
        self.scale = (1.0 / (255.0 * std_t)).to(self.device)
        self.shift = (-mean_t / std_t).to(self.device)

    def __len__(self) -> int:
        n = self.x.shape[0]
        if self.train:
            return n // (self.batch_size * self.world)
        return -(-n // self.batch_size)

    @property
    def images_per_epoch(self) -> int:
        """Images one epoch feeds the model, all ranks together (the dropped tail excluded)."""
        return len(self) * self.batch_size * self.world if self.train else self.x.shape[0]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """The batches of `epoch`, skipping the first `start_step` (a resumed run)."""
        if not self.train:
            yield from self._eval_batches()
            return
        n = self.x.shape[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        # every draw of the epoch is made up front, so skipping steps replays nothing
        perm = torch.randperm(n, generator=g)
        p = self.crop_padding
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        # cutout centres (drawn after the others, so a run without cutout draws the same crops)
        cy = torch.randint(0, self.x.shape[2], (n,), generator=g) if self.cutout else None
        cx = torch.randint(0, self.x.shape[3], (n,), generator=g) if self.cutout else None
        gb, b = self.batch_size * self.world, self.batch_size
        steps = len(self)
        mine = perm[:steps * gb].view(steps, self.world, b)[:, self.rank]  # (steps, b)
        pos = torch.arange(steps * gb).view(steps, self.world, b)[:, self.rank]
        dev = self.device
        mine, dy, dx, flips = mine.to(dev), dy[pos].to(dev), dx[pos].to(dev), flips[pos].to(dev)
        if self.cutout:
            cy, cx = cy[pos].to(dev), cx[pos].to(dev)
        for step in range(start_step, steps):
            idx = mine[step]
            xb = self.x[idx] if self.x.device == dev else self.x[idx.cpu()].to(dev, non_blocking=True)
            yb = self.y[idx] if self.y.device == dev else self.y[idx.cpu()].to(dev, non_blocking=True)
            xb = self._normalize(self._augment(xb, dy[step], dx[step], flips[step]))
            if self.cutout:
                xb = self._cutout(xb, cy[step], cx[step])
            yield xb, yb, b

    def _eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        n, b, dev = self.x.shape[0], self.batch_size, self.device
        for start in range(0, n, b):
            xb = self.x[start:start + b].to(dev, non_blocking=True)
            yb = self.y[start:start + b].to(dev, non_blocking=True)
            valid = xb.shape[0]
            if valid < b:  # pad to one shape; the caller ignores the padding
                xb = torch.cat([xb, xb.new_zeros((b - valid, *xb.shape[1:]))])
                yb = torch.cat([yb, yb.new_zeros(b - valid)])
            yield self._normalize(xb.float()), yb, valid

    def _augment(self, xb: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        xb = xb.float()
        p = self.crop_padding
        if p == 0 and not self.flip:
            return xb
        nb, _, h, w = xb.shape
        if p:
            xb = F.pad(xb, (p, p, p, p), mode="reflect" if self.padding_mode == "reflect" else "constant")
        else:
            dy = dx = torch.zeros_like(dy)
        # random crop and flip as one gather: row i of image n is padded row dy[n]+i, column
        # j is dx[n]+j, or dx[n]+w-1-j when the image is mirrored
        cols = torch.arange(w, device=xb.device)
        cols = dx[:, None] + (torch.where(flip[:, None], w - 1 - cols, cols) if self.flip else cols)
        rows = dy[:, None] + torch.arange(h, device=xb.device)
        n_idx = torch.arange(nb, device=xb.device)[:, None, None]
        # advanced indexes split by a slice put their dims first: the result is (N, H, W, C)
        out = xb[n_idx, :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2)

    def _cutout(self, xb: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        # DeVries & Taylor 2017: a size x size square centred anywhere (clipped at the
        # border), set to 0 after normalization, i.e. to the dataset mean
        h, w = xb.shape[2], xb.shape[3]
        lo = self.cutout // 2
        r = torch.arange(h, device=xb.device)
        c = torch.arange(w, device=xb.device)
        in_r = (r[None] >= cy[:, None] - lo) & (r[None] < cy[:, None] - lo + self.cutout)
        in_c = (c[None] >= cx[:, None] - lo) & (c[None] < cx[:, None] - lo + self.cutout)
        keep = ~(in_r[:, :, None] & in_c[:, None, :])
        return xb.mul_(keep[:, None])  # in place: keeps the batch's (channels-last) layout

    def _normalize(self, xb: torch.Tensor) -> torch.Tensor:
        xb = torch.addcmul(self.shift, xb, self.scale)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return xb.contiguous(memory_format=fmt)
