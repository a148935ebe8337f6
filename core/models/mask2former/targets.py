"""Mask-classification targets: one binary mask per class present, for a whole batch at once.

:class:`Targets` holds a batch padded to T slots, so the matcher and the losses run as a few
batched tensor operations instead of a loop of small ones per image (on a GPU those loops,
not the arithmetic, set the step time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np
import torch


@dataclass
class Targets:
    """A batch of targets padded to T slots.

    labels [B, T] int64 class index of each slot; masks [B, T, H, W] float 0/1; present [B, T]
    bool (False: a padding slot or a class absent from the image); valid [B, H, W] float 0/1
    (0: unlabelled pixel). ``present_np`` is ``present`` on the host (read once per batch).
    """
    labels: torch.Tensor
    masks: torch.Tensor
    present: torch.Tensor
    valid: torch.Tensor
    present_np: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.present_np = self.present.detach().cpu().numpy().astype(bool)

    @property
    def num_masks(self) -> int:
        """Target masks in the batch (present slots)."""
        return int(self.present_np.sum())

    @classmethod
    def from_list(cls, targets: Sequence[dict]) -> "Targets":
        """Per-image dicts {labels [T_i], masks [T_i, H, W], valid [H, W] optional} -> Targets."""
        if not targets:
            raise ValueError("no targets")
        first = targets[0]["masks"]
        device, (h, w) = first.device, first.shape[-2:]
        b, t = len(targets), max(len(x["labels"]) for x in targets)
        labels = torch.zeros(b, t, dtype=torch.int64, device=device)
        masks = torch.zeros(b, t, h, w, dtype=torch.float32, device=device)
        present = torch.zeros(b, t, dtype=torch.bool, device=device)
        valid = torch.ones(b, h, w, dtype=torch.float32, device=device)
        for i, x in enumerate(targets):
            n = len(x["labels"])
            labels[i, :n] = x["labels"].to(device)
            masks[i, :n] = x["masks"].to(device, torch.float32)
            present[i, :n] = True
            if x.get("valid") is not None:
                valid[i] = x["valid"].to(device, torch.float32)
        return cls(labels, masks, present, valid)

    def to_list(self) -> list[dict]:
        """Per image {labels [T_i], masks [T_i, H, W], valid [H, W]} of the present slots."""
        out = []
        for i in range(len(self.labels)):
            keep = torch.as_tensor(np.flatnonzero(self.present_np[i]), device=self.labels.device)
            out.append({"labels": self.labels[i, keep], "masks": self.masks[i, keep],
                        "valid": self.valid[i]})
        return out


TargetsLike = Union[Targets, Sequence[dict]]


def as_targets(targets: TargetsLike) -> Targets:
    """``targets`` as a padded :class:`Targets` (a list of per-image dicts is converted)."""
    return targets if isinstance(targets, Targets) else Targets.from_list(targets)


def semantic_targets(target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> Targets:
    """target [B, H, W] int (class indexes 0..K-1, ``ignore_index`` = no label) -> Targets with
    one slot per class (slot k holds class k; present where the class occurs in the image).

    Labels outside 0..K-1 other than ``ignore_index`` raise ValueError.
    """
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        raise ValueError(f"label {int(target[bad][0])} outside 0..{num_classes - 1} (and not {ignore_index})")
    classes = torch.arange(num_classes, device=target.device)
    masks = ((target[:, None] == classes[None, :, None, None]) & valid[:, None]).float()
    present = masks.flatten(2).amax(-1) > 0
    labels = classes[None].expand(len(target), -1)
    return Targets(labels, masks, present, valid.float())
