"""Semantic label maps -> mask-classification targets (one binary mask per class present)."""
from __future__ import annotations

import torch


def semantic_to_targets(target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> list[dict]:
    """target [B, H, W] int (class indexes 0..K-1, ``ignore_index`` = no label) ->
    per image {labels [T] int64, masks [T, H, W] float 0/1, valid [H, W] float 0/1}.

    Labels outside 0..K-1 other than ``ignore_index`` raise ValueError.
    """
    out = []
    for t in target:
        valid = t != ignore_index
        present = torch.unique(t[valid])
        bad = present[(present < 0) | (present >= num_classes)]
        if len(bad):
            raise ValueError(f"label {int(bad[0])} outside 0..{num_classes - 1} (and not {ignore_index})")
        masks = (t[None] == present[:, None, None]).float()
        out.append({"labels": present.long(), "masks": masks, "valid": valid.float()})
    return out
