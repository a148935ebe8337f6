"""One home for the training hyper-parameters: :class:`TrainConfig` (the values of a run and
their defaults) and the recipes built on it, which the CLI's option defaults, the benchmark
suites and the training loop all read:

* :data:`FINETUNE`: fine-tuning on local labels (paper §5.2): the backbone frozen, AdamW
  lr 1e-4, batch 2;
* :data:`PRETRAIN`: continued pre-training (paper §5.1): everything trainable,
  L = L_seg + L_BC, AdamW lr 3e-5, batch 4.

Iterations count optimizer steps; ``batch`` is per process and per micro-step.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (iterations count optimizer steps)."""

    iters: int = 40000
    batch: int = 2                 # per rank, per micro-step
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = -1               # iterations of linear warm-up; -1: min(1500, iters // 10)
    schedule: str = "poly"         # "poly" or "cosine"
    poly_power: float = 0.9
    min_lr_ratio: float = 0.0
    accum: int = 1                 # micro-steps per optimizer step
    grad_clip: float = 0.0         # max gradient norm; 0 = off
    seed: int = 0
    save_every: int = 1000
    val_every: int = 0             # 0: validate only at the end (if there is validation data)
    workers: int = 0
    grad_checkpointing: bool = False
    device: str = "auto"
    log_every: int = 20
    scale_jitter: tuple = (1,)     # multilook factors a batch is drawn at (train/scale_jitter.py)
    pixel_size: Optional[float] = None   # metres, the training images' pixel size when not georeferenced

    @property
    def warmup_iters(self) -> int:
        """Warm-up iterations: ``warmup``, or min(1500, iters / 10) when it is -1."""
        return min(1500, self.iters // 10) if self.warmup < 0 else int(self.warmup)


FINETUNE = TrainConfig(lr=1e-4, batch=2)
PRETRAIN = TrainConfig(lr=3e-5, batch=4)


def recipe(mode: str) -> TrainConfig:
    """A copy of the recipe of ``mode`` ("finetune" or "pretrain")."""
    return replace({"finetune": FINETUNE, "pretrain": PRETRAIN}[mode])
