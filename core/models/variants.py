"""The model sizes, one record each: the backbone's architecture and the head's options in one
place (a registry in the way timm keeps its variants). core/models/vit.py builds backbones from it,
core/models/model.py whole models, core/models/checkpoints.py matches imported DINOv2 checkpoints to it.

Each record: ``embed_dim``, ``depth``, ``num_heads``, ``ffn`` ("mlp" or "swiglu", DINOv2's),
``feature_layers`` (the 4 blocks, 0-based, whose outputs feed the head) and ``head`` (options
over core.models.mask2former.head.HEAD_DEFAULTS).

* ti: DINOv2-sized ViT-Ti with a CPU-sized head (width 128, 2 deformable encoder layers,
  narrow FFNs) that keeps the 9 masked-attention decoder layers, with a learned (deconv)
  feature pyramid that recovers sub-patch detail;
* s / b / l / g: DINOv2's ViT-S/14, B/14, L/14, g/14 with Mask2Former's semantic segmentation
  head (width 256, 6 encoder layers, FFN 1024 / 2048) on the interpolated pyramid of
  Rein / CrossEarth.

Criterion defaults (all sizes): class 2 / mask 5 / dice 5, no-object 0.1, 12544 points,
oversample 3, importance 0.75, deep supervision (core.models.mask2former.head.HEAD_DEFAULTS).
:data:`MOE_DEFAULTS`: the mixture of experts every FFN becomes unless told otherwise.
"""
from __future__ import annotations

VARIANTS: dict[str, dict] = {
    "ti": {"embed_dim": 192, "depth": 12, "num_heads": 3, "ffn": "mlp",
           "feature_layers": [2, 5, 8, 11],
           "head": {"hidden_dim": 128, "mask_dim": 128, "enc_layers": 2, "enc_ffn_dim": 512,
                    "dec_ffn_dim": 512, "pyramid": "deconv"}},
    "s": {"embed_dim": 384, "depth": 12, "num_heads": 6, "ffn": "mlp",
          "feature_layers": [2, 5, 8, 11], "head": {"pyramid": "interpolate"}},
    "b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "ffn": "mlp",
          "feature_layers": [2, 5, 8, 11], "head": {"pyramid": "interpolate"}},
    "l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "ffn": "mlp",
          "feature_layers": [7, 11, 15, 23], "head": {"pyramid": "interpolate"}},
    "g": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "ffn": "swiglu",
          "feature_layers": [9, 19, 29, 39], "head": {"pyramid": "interpolate"}},
}

#: experts per MoE layer and experts a token uses (the paper's top-1 of 6)
MOE_DEFAULTS = {"experts": 6, "top_k": 1}


def variant(name: str) -> dict:
    """The record of size ``name``; ValueError naming the sizes for an unknown one."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]
