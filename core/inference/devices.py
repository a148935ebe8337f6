"""Device names, parsed in one place: ``auto`` (CUDA when present, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``. Used by the scene engine, training (also under torchrun) and
segmenting many scenes over processes.

* :func:`resolve_device` ``(device, local_rank=None) -> torch.device``: a ParameterError
  (``device``) for a name that is none of these, or a CUDA device this machine lacks. With
  several processes on a node (``local_rank`` given), ``auto`` and ``cuda`` become
  ``cuda:local_rank`` (modulo the visible GPUs) where CUDA is present; otherwise a CUDA
  device always carries an index (``cuda`` is the current device, ``cuda:0`` unless set), as
  ``torch.cuda.set_device`` and DistributedDataParallel require.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import ParameterError

CHOICES = "expected auto, cpu, cuda or cuda:N"


def resolve_device(device: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """The torch device of a device name (module doc)."""
    name = (device or "auto").strip().lower()
    cuda = torch.cuda.is_available()
    if local_rank is not None and name in ("auto", "cuda") and cuda:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "auto":
        name = "cuda" if cuda else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ParameterError("device", device, CHOICES) from None
    if dev.type == "cuda":
        if not cuda:
            raise ParameterError("device", device, "CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError("device", device,
                                 f"only {torch.cuda.device_count()} CUDA device(s)")
        if dev.index is None:  # torch.cuda.set_device and DDP need an index
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ParameterError("device", device, CHOICES)
    return dev
