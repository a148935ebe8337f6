"""What a model file is, as ``ces info`` and ``ces models`` print it: ``describe(path) -> dict``
(kind, variant, experts, top_k, classes, parameters total and active per token, stored dtype,
adapter, input bands and contract, provenance). The file is verified first
(core.models.checkpoints.verify): InputError for what loading would refuse.
"""
from __future__ import annotations

import math
import os
from typing import Union

from ..core.models.checkpoints import tensor_shapes, verify
from ..core.models.parameter_counts import count_shapes

PathLike = Union[str, os.PathLike]


def _human(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def describe(path: PathLike) -> dict:
    """What a checkpoint is, for ``ces info``: variant, experts, top_k, classes, parameters.

    The file is verified first (core.models.checkpoints.verify): InputError for what loading would
    refuse."""
    config = verify(path)
    shapes = tensor_shapes(path)
    bb = config.get("backbone") or {}
    experts = int(config.get("experts", bb.get("experts", 0)) or 0)
    top_k = int(config.get("top_k", bb.get("top_k", 0)) or 0)
    total, active = count_shapes(shapes, top_k or 1)
    classes = config.get("classes") or None
    out = {
        "file": str(path), "kind": config["kind"], "format": config.get("format"),
        "variant": config.get("variant", bb.get("variant")),
        "embed_dim": bb.get("embed_dim"), "blocks": bb.get("depth"),
        "register_tokens": bb.get("num_register_tokens", 0),
        "experts": experts, "top_k": top_k,
        "gate": ("dense (no MoE)" if not experts else
                 "straight-through" if bb.get("straight_through", True) and top_k == 1 else
                 "renormalized (Eq. 9)"),
        "feature_layers": config.get("feature_layers", bb.get("feature_layers")),
        "classes": [c.get("name") if isinstance(c, dict) else c for c in classes] if classes else None,
        "params_total": total, "params_active": active,
        "params_total_human": _human(total), "params_active_human": f"{_human(active)} active per token",
        "stored_dtype": config.get("stored_dtype", "fp32"),
        "adapter": bb.get("adapter"),
        "adapter_params": sum(math.prod(v) for k, v in shapes.items() if ".adapter." in f".{k}"),
        "input_bands": (config.get("input") or {}).get("bands"),
        "input_contract": (config.get("input") or {}).get("contract", 1),
        "trained_pixel_sizes_m": (config.get("input") or {}).get("pixel_sizes_m"),
        "mask_refiner": (f"full resolution, width {config['refine']['width']}"
                         if config.get("refine") else "none (masks at 1/4 resolution, upsampled)"),
        "provenance": config.get("provenance", {}),
    }
    if config["kind"] != "model":
        del out["input_bands"], out["input_contract"], out["mask_refiner"]
    if not out["trained_pixel_sizes_m"]:
        del out["trained_pixel_sizes_m"]
    if not out["adapter"]:
        del out["adapter"], out["adapter_params"]
    if not classes:
        del out["classes"]
    return out
