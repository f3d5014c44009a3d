"""Several processes: torchrun + DistributedDataParallel, nothing of our own.

Owns `Dist` (rank, world size, device) set up from the environment torchrun exports
(RANK, WORLD_SIZE, LOCAL_RANK); NCCL on GPUs, gloo on CPU. A plain `netspec train`
(no torchrun) is world size 1 and touches no process group. Batch size semantics:
`train.batch_size` is the global batch; each of N processes takes batch_size / N, so
the schedule and the results do not depend on N (up to batch-norm statistics, which
stay per process).

Imports torch only. Must not import the loop, data or build.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from netspec.errors import NetspecError


class DistributedError(NetspecError):
    def __str__(self) -> str:
        return f"error: {self.args[0]}"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over all processes (a no-op alone)."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DistributedError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def setup(choice: str) -> Dist:
    """World size 1 unless started by torchrun with WORLD_SIZE > 1."""
    device = pick_device(choice)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        return Dist(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"process {rank} wants GPU {local_rank}, but only "
                                   f"{torch.cuda.device_count()} are visible; lower --nproc_per_node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
