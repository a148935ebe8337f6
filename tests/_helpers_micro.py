"""A micro CrossEarthSAR (4 blocks, narrow: 1.6 M parameters) for tests that need a real
model but not a good one: a training step or a small scene in a fraction of a second."""
from __future__ import annotations

from crossearth_sar.core.models.model import build_from_config, model_config


def micro_config(classes=None) -> dict:
    cfg = model_config("ti", num_classes=2, classes=classes, experts=2, num_queries=4,
                       dec_layers=1, hidden_dim=32, mask_dim=32, enc_layers=1, enc_ffn_dim=32,
                       dec_ffn_dim=32, ffn_hidden_dim=32, feature_layers=[0, 1, 2, 3])
    cfg["backbone"]["depth"] = 4
    return cfg


def micro_model(classes=None, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return build_from_config(micro_config(classes))
