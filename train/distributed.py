"""Distributed training set-up (torchrun: WORLD_SIZE, RANK, LOCAL_RANK) and the data order.

* :func:`init_distributed` ``(device) -> (rank, world, device)``: starts the process group
  (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1; the device from core.inference.devices.
* :class:`ResumableDistributedSampler`: each rank's shard of an endless, seeded stream of
  epochs that can start after any number of items, so a resumed run sees the same data order.
"""
from __future__ import annotations

import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from ..core.inference.devices import resolve_device


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts the process group under torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local if world > 1 else None)   # ParameterError when bad
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return rank, world, dev


def is_main() -> bool:
    """Whether this process is rank 0 (or the only one)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if dist.is_initialized():
        dist.barrier()


class ResumableDistributedSampler(Sampler):
    """An endless stream of DistributedSampler epochs (shuffled with ``seed`` + epoch) that
    starts after ``start`` items; yields ``epoch * n + index`` (CropDataset reads the index
    modulo n and seeds its crop and augmentation with the whole number)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, seed: int = 0, start: int = 0):
        self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)
        self.seed, self.start = int(seed), int(start)

    def __iter__(self) -> Iterator[int]:
        skip, epoch = self.start, 0
        while True:
            ds = DistributedSampler(range(self.n), num_replicas=self.num_replicas, rank=self.rank,
                                    shuffle=True, seed=self.seed, drop_last=False)
            ds.set_epoch(epoch)
            idx = list(ds)
            if skip >= len(idx):
                skip -= len(idx)
            else:
                for i in idx[skip:]:
                    yield epoch * self.n + i
                skip = 0
            epoch += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(loader)
        return 2 ** 62
