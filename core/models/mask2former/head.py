"""The Mask2Former head: pixel decoder + masked transformer decoder, and semantic inference.

Two forward paths with the same final prediction (to float rounding):

* the plain path (training, or ``fast_inference`` off): every intermediate prediction at full
  resolution, returned as ``aux_outputs`` for deep supervision; deformable attention by
  ``grid_sample``;
* the inference path (eval mode with ``fast_inference``, the default): only the final
  prediction; intermediate masks only at the attention resolution that uses them
  (mask2former.transformer_decoder); the linear 1x1 projections at stride 4 folded into
  their linear neighbours (the feature pyramid's last transposed convolution, the mask
  embeddings); on the CPU, deformable attention by one weighted gather
  (mask2former.ms_deform_attn); masked cross-attention with one mask for all heads.
  :func:`set_fast_inference` switches it off (and the model's CPU streams, core.models.cpu_streams),
  e.g. to compare both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pixel_decoder import PixelDecoder
from .transformer_decoder import MaskedTransformerDecoder

#: head options and their defaults (Mask2Former's semantic-segmentation settings)
HEAD_DEFAULTS: dict = {
    "hidden_dim": 256,          # width of the pixel decoder and transformer decoder
    "mask_dim": 256,            # channels of the per-pixel mask embedding
    "num_queries": 100,
    "dec_layers": 9,            # masked-attention decoder layers
    "dec_heads": 8,
    "dec_ffn_dim": 2048,
    "enc_layers": 6,            # deformable-attention pixel decoder layers
    "enc_heads": 8,
    "enc_points": 4,
    "enc_ffn_dim": 1024,
    # criterion
    "class_weight": 2.0,
    "mask_weight": 5.0,
    "dice_weight": 5.0,
    "no_object_weight": 0.1,
    "num_points": 12544,
    "oversample_ratio": 3.0,
    "importance_sample_ratio": 0.75,
    "deep_supervision": True,
}


def set_fast_inference(module: nn.Module, enabled: bool) -> None:
    """Turn the inference path of every Mask2Former part inside ``module`` on or off."""
    for m in module.modules():
        if hasattr(type(m), "fast_inference"):
            m.fast_inference = bool(enabled)


class Mask2FormerHead(nn.Module):
    """4 feature maps (strides 4, 8, 16, 32; ``in_channels`` each) -> dict(pred_logits
    [B, Q, K+1], pred_masks [B, Q, H/4, W/4] logits, aux_outputs [dict, ...] (one per earlier
    prediction, ``dec_layers`` of them; empty on the inference path))."""

    fast_inference = True  # eval mode takes the inference path (see the module docstring)

    def __init__(self, in_channels: list[int], num_classes: int, **options):
        super().__init__()
        unknown = set(options) - set(HEAD_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown head options: {sorted(unknown)}")
        cfg = {**HEAD_DEFAULTS, **options}
        self.num_classes = num_classes
        self.pixel_decoder = PixelDecoder(
            in_channels, dim=cfg["hidden_dim"], layers=cfg["enc_layers"], heads=cfg["enc_heads"],
            points=cfg["enc_points"], ffn_dim=cfg["enc_ffn_dim"], mask_dim=cfg["mask_dim"])
        self.transformer_decoder = MaskedTransformerDecoder(
            num_classes, dim=cfg["hidden_dim"], queries=cfg["num_queries"], layers=cfg["dec_layers"],
            heads=cfg["dec_heads"], ffn_dim=cfg["dec_ffn_dim"], mask_dim=cfg["mask_dim"])

    @property
    def fine_projection(self) -> nn.Module:
        """The pixel decoder's projection of the finest feature map (its ``lateral[0]``): the
        model folds it into its feature pyramid on the inference path (``fine_projected``)."""
        return self.pixel_decoder.lateral[0]

    @property
    def inference_path(self) -> bool:
        """Whether forward takes the inference path (eval mode with ``fast_inference``)."""
        return not self.training and self.fast_inference

    def forward(self, features: list[torch.Tensor], fine_projected: bool = False) -> dict:
        """``fine_projected`` (inference path only): features[0] already went through the
        pixel decoder's lateral projection (folded into the feature pyramid)."""
        fast = self.inference_path
        if fine_projected and not fast:
            raise ValueError("fine_projected features are for the inference path")
        mask_features, multi_scale = self.pixel_decoder(features, fine_projected=fine_projected,
                                                        project_masks=not fast)
        predictions = self.transformer_decoder(
            multi_scale, mask_features, aux=not fast,
            mask_projection=self.pixel_decoder.mask_features if fast else None)
        logits, masks = predictions[-1]
        return {"pred_logits": logits, "pred_masks": masks,
                "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in predictions[:-1]]}


def semantic_probabilities(pred_logits: torch.Tensor, pred_masks: torch.Tensor,
                           size: tuple[int, int] | None = None, eps: float = 1e-6,
                           query_chunk: int = 4) -> torch.Tensor:
    """Mask2Former semantic inference: sum over queries of softmax(class)[:K] * sigmoid(mask),
    normalized over the K classes. pred_logits [B, Q, K+1], pred_masks [B, Q, h, w]
    (mask logits resized bilinearly to ``size`` first) -> [B, K, H, W], sums to 1 over K.

    Queries are processed ``query_chunk`` at a time, so memory stays ~B x chunk x H x W (a
    few MB per window, which also keeps the resized masks in cache: 4 is about twice as fast
    as 16 on the CPU).
    """
    cls = pred_logits.softmax(-1)[..., :-1]
    b, q, k = cls.shape
    h, w = size if size is not None else pred_masks.shape[-2:]
    scores = pred_masks.new_zeros(b, k, h, w)
    for start in range(0, q, query_chunk):
        masks = pred_masks[:, start:start + query_chunk]
        if tuple(masks.shape[-2:]) != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False).sigmoid_()
        else:
            masks = masks.sigmoid()
        scores += torch.einsum("bqk,bqhw->bkhw", cls[:, start:start + query_chunk], masks)
    scores += eps
    return scores / scores.sum(1, keepdim=True)
