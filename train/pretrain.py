"""Continued pre-training (paper §5.1): all parameters trainable, L = L_seg + L_BC, AdamW
lr 3e-5, batch 4, from an imported DINOv2 backbone (kind "backbone", with a fresh head) or
a whole model. The loop, checkpoints and DDP are those of fine-tuning (train/finetune.py)."""
from __future__ import annotations

from .engine import TrainConfig
from .finetune import run_training

PRETRAIN_LR = 3e-5
PRETRAIN_BATCH = 4


def pretrain(**kwargs) -> dict:
    """Continued pre-training; keyword arguments as train.finetune.run_training (``unfreeze``
    is forced on: the backbone, its routers and experts train with the balancing loss)."""
    kwargs["unfreeze"] = True
    return run_training(mode="pretrain", **kwargs)


def default_config(**overrides) -> TrainConfig:
    """The paper's pre-training hyper-parameters, with ``overrides``."""
    cfg = TrainConfig(lr=PRETRAIN_LR, batch=PRETRAIN_BATCH)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg
