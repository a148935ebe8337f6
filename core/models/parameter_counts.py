"""Parameter counts of a model: total, and active per token (a token uses top_k of the experts
of each MoE layer). One home for ``ces info`` (from a file's tensor shapes, without building
the model), ``Model.parameter_counts`` and the benchmarks.

* :func:`count_shapes` ``({name: shape}, top_k) -> (total, active)``: active = everything except,
  in each MoE layer, the (experts - top_k) experts a token does not use (router included);
  an MoE expert is a tensor named ``<layer>.mlp.experts.<i>.<...>``.
* :func:`count_module` ``(module) -> (total, active)``: the same from a module's state dict
  (works on the meta device), top_k from its config.
"""
from __future__ import annotations

import math
import re

#: the tensors of one expert of an MoE layer
EXPERT_TENSOR = re.compile(r"^(?P<layer>.*\.mlp)\.experts\.(?P<expert>\d+)\.")


def count_shapes(shapes: dict[str, tuple[int, ...]], top_k: int) -> tuple[int, int]:
    """(total, active per token) from tensor names and shapes."""
    total = 0
    experts: dict[str, dict[int, int]] = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        total += n
        m = EXPERT_TENSOR.match(name)
        if m:
            layer = experts.setdefault(m["layer"], {})
            layer[int(m["expert"])] = layer.get(int(m["expert"]), 0) + n
    inactive = 0
    for layer in experts.values():
        sizes = sorted(layer.values())
        unused = max(len(sizes) - max(int(top_k), 1), 0)
        inactive += sum(sizes[:unused])
    return total, total - inactive


def count_module(module) -> tuple[int, int]:
    """(total, active per token) of a torch module (works on the meta device)."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    cfg = getattr(module, "config", {}) or {}
    top_k = cfg.get("top_k") or (cfg.get("backbone") or {}).get("top_k") or 1
    return count_shapes(shapes, top_k)
