"""CrossEarthSAR: the MoE DINOv2 backbone + Mask2Former head, and the variant registry.

``model.config`` (JSON-able) is everything needed to rebuild the architecture and use the
model: ``build_from_config(model.config)`` gives an identical module (the weights come from
the checkpoint, core/models/checkpoints.py).
"""
from __future__ import annotations

import copy
import inspect
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..class_colors import HEX_COLOR, class_color
from ..scene import descriptors as descriptors_mod
from ..scene.contracts import INPUT_CONTRACT
from . import cpu_streams
from .mask2former.criterion import SetCriterion
from .mask2former.feature_pyramid import FeaturePyramid
from .mask2former.head import HEAD_DEFAULTS, Mask2FormerHead, semantic_probabilities
from .mask2former.targets import semantic_targets
from .mask_refiner import REFINE_DEFAULTS, MaskRefiner, coarse_log_probabilities, refine_loss
from .model_header import input_contract, trained_bands  # noqa: F401 (also this module's API)
from .parameter_counts import count_module
from .variants import MOE_DEFAULTS, VARIANTS, variant as variant_record  # noqa: F401 (VARIANTS: also this module's API)
from .vit import PATCH_SIZE, backbone_config, build_backbone_from_config

IGNORE_INDEX = 255

#: DINOv2's input normalization (ImageNet statistics) applied to the 0..1 input from sar_io.
#: ``contract``: the input contract of core/scene/sar_io.py the model was trained under.
DEFAULT_INPUT: dict = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "bands": None,
                       "contract": INPUT_CONTRACT}

_BACKBONE_OPTIONS = set(inspect.signature(backbone_config).parameters) - {"variant", "experts", "top_k"}


def default_classes(num_classes: int) -> list[dict]:
    """``num_classes`` classes named "class 0", ... with label values 0.. and palette colours."""
    return [{"name": f"class {i}", "value": i, "color": class_color(None, i)}
            for i in range(num_classes)]


def check_classes(classes: list[dict]) -> list[dict]:
    """Validated copies of ``classes`` [{name, value, color "#rrggbb"}] (ValueError otherwise)."""
    out = []
    for i, c in enumerate(classes):
        if not isinstance(c, dict) or not {"name", "value", "color"} <= set(c):
            raise ValueError(f"class {i} needs name, value and color, got {c!r}")
        if not HEX_COLOR.match(str(c["color"])):
            raise ValueError(f"class {c['name']!r}: color must be '#rrggbb', got {c['color']!r}")
        item = {"name": str(c["name"]), "value": int(c["value"]), "color": str(c["color"]).lower()}
        if c.get("values"):
            item["values"] = [int(v) for v in c["values"]]
        if c.get("background") is not None:
            item["background"] = bool(c["background"])
        out.append(item)
    if len({c["value"] for c in out}) != len(out):
        raise ValueError("class values must be distinct")
    if not out:
        raise ValueError("a model needs at least one class")
    return out


def model_input_size(height: int, width: int, multiple: int = PATCH_SIZE) -> tuple[int, int]:
    """The nearest multiple of the patch size (at least one patch) of each side."""
    return (max(multiple, int(round(height / multiple)) * multiple),
            max(multiple, int(round(width / multiple)) * multiple))


class CrossEarthSAR(nn.Module):
    """Backbone + head. Build with :func:`build` or :func:`build_from_config`.

    ``forward(x [B, 3, H, W] in 0..1, descriptors [B, 3] scaled)`` -> dict(pred_logits
    [B, Q, K+1], pred_masks [B, Q, h, w] logits (h, w ~ H/4, W/4 of the resized input),
    aux_outputs [{pred_logits, pred_masks}] x dec_layers in training (empty in eval mode), l_bc scalar,
    and with a refiner (``config["refine"]``, core/models/mask_refiner.py) refined_logits
    [B, K, H, W] at the input's own size).
    """

    fast_inference = True  # eval mode on the CPU: predict_proba in parallel streams

    def __init__(self, config: dict):
        super().__init__()
        self.config = copy.deepcopy(config)
        c = self.config
        self.backbone = build_backbone_from_config(c["backbone"])
        self.feature_layers = [int(i) for i in c["feature_layers"]]
        self.num_classes = len(c["classes"])
        dim = self.backbone.embed_dim
        h = c["head"]
        self.pyramid = FeaturePyramid(dim, h["pyramid"])
        self.head = Mask2FormerHead([dim] * 4, self.num_classes,
                                    **{k: v for k, v in h.items() if k != "pyramid"})
        self.criterion = SetCriterion(
            self.num_classes, class_weight=h["class_weight"], mask_weight=h["mask_weight"],
            dice_weight=h["dice_weight"], no_object_weight=h["no_object_weight"],
            num_points=h["num_points"], oversample_ratio=h["oversample_ratio"],
            importance_sample_ratio=h["importance_sample_ratio"],
            deep_supervision=h["deep_supervision"])
        refine = c.get("refine")
        self.refiner = (MaskRefiner(self.num_classes, 3, int(refine["width"]), refine["dilations"])
                        if refine else None)
        mean = torch.tensor(c["input"]["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(c["input"]["std"], dtype=torch.float32).view(1, 3, 1, 1)
        # derived from the config, so not part of the checkpoint's tensors
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)

    @property
    def classes(self) -> list[dict]:
        """[{"name", "value", "color"}] in class-index order."""
        return self.config["classes"]

    # ---- input ----------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, H, W] in 0..1 -> resized to multiples of 14 and normalized (mean/std)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"model input must be [B, 3, H, W], got {tuple(x.shape)}")
        dtype = self.input_mean.dtype
        x = x.to(self.input_mean.device, dtype)
        size = model_input_size(*x.shape[-2:], self.backbone.patch_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return (x - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor, descriptors: Optional[torch.Tensor]) -> dict:
        """Training forward: x [B, 3, H, W], descriptors [B, 3] (or None) -> the head's outputs
        (class logits and masks per query, auxiliary outputs) plus ``l_bc``, the MoE balance
        loss."""
        image = x
        x = self.prepare_input(x)
        features = self.backbone.get_intermediate_layers(x, descriptors, n=self.feature_layers,
                                                         reshape=True, norm=True)
        fold = self.head.inference_path  # the lateral projection folded into the pyramid
        pyramid = self.pyramid(list(features),
                               fine_projection=self.head.fine_projection if fold else None)
        out = self.head(pyramid, fine_projected=fold)
        out["l_bc"] = self.backbone.balance_loss()
        if self.refiner is not None:
            dtype = self.refiner.out.weight.dtype
            coarse = semantic_probabilities(out["pred_logits"].float(), out["pred_masks"].float())
            coarse = coarse_log_probabilities(coarse, tuple(image.shape[-2:])).to(dtype)
            out["refined_logits"] = self.refiner(coarse, image.to(coarse.device, dtype))
        return out

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, descriptors: Optional[torch.Tensor]) -> torch.Tensor:
        """Class probabilities [B, K, H, W] at the input size (sum to 1 over K). Call in eval mode.

        On the CPU the inference path runs the batch as parallel streams (core.models.cpu_streams)."""
        if not self.streams_on(x):
            return self._probabilities(x, descriptors)
        return cpu_streams.split_call(self._probabilities,
                                      [x] if descriptors is None else [x, descriptors])

    def streams_on(self, x: torch.Tensor) -> bool:
        """Whether :meth:`predict_proba` runs a batch ``x`` as parallel CPU streams."""
        return self.fast_inference and self.head.inference_path and x.device.type == "cpu"

    def _probabilities(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None) -> torch.Tensor:
        """predict_proba of one stream."""
        out = self(x, descriptors)
        if "refined_logits" in out:
            return out["refined_logits"].float().softmax(1)
        return semantic_probabilities(out["pred_logits"].float(), out["pred_masks"].float(),
                                      size=tuple(x.shape[-2:]))

    def compute_descriptors(self, phys: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scaled (H_DE, ENL, R_LR) [B, 3] of log(1+|X|) ``phys`` [B, H, W] with this model's
        bins, block and scaling; ``valid`` [B, H, W] bool excludes nodata."""
        return descriptors_mod.compute_descriptors(phys, valid, self.config["descriptors"])

    def loss(self, outputs: dict, target: torch.Tensor,
             generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, dict]:
        """(total = L_seg + L_BC, {loss_ce, loss_mask, loss_dice, loss_aux, loss_seg, l_bc, total}
        as floats). target [B, H, W] long class indexes, 255 = ignore (any H, W)."""
        targets = semantic_targets(target.to(outputs["pred_masks"].device), self.num_classes,
                                      IGNORE_INDEX)
        seg, terms = self.criterion(outputs, targets, generator)
        if "refined_logits" in outputs:
            cfg = self.config["refine"]
            terms["loss_refine"] = cfg["loss_weight"] * refine_loss(
                outputs["refined_logits"], target.to(outputs["refined_logits"].device), IGNORE_INDEX,
                cfg["edge_weight"])
            seg = seg + terms["loss_refine"]
        l_bc = outputs.get("l_bc")
        if l_bc is None:
            l_bc = seg.new_zeros(())
        total = seg + l_bc
        info = {k: float(v.detach()) for k, v in terms.items()}
        info.update(loss_seg=float(seg.detach()), l_bc=float(l_bc.detach()), total=float(total.detach()))
        return total, info

    def parameter_counts(self) -> dict:
        """{"total", "active", "backbone", "head"} (head: pyramid + Mask2Former): active counts
        top_k of the experts per MoE layer."""
        total, active = count_module(self)
        backbone = count_module(self.backbone)[0]
        return {"total": total, "active": active, "backbone": backbone, "head": total - backbone}


def model_config(variant: str = "ti", num_classes: int = 2, experts: int = MOE_DEFAULTS["experts"],
                 top_k: int = MOE_DEFAULTS["top_k"],
                 classes: Optional[list[dict]] = None, **options) -> dict:
    """The JSON-able config of a model; see :func:`build` for the options."""
    record = variant_record(variant)
    options = dict(options)
    backbone_opts = {k: options.pop(k) for k in list(options) if k in _BACKBONE_OPTIONS}
    head_opts = {k: options.pop(k) for k in list(options) if k in HEAD_DEFAULTS or k == "pyramid"}
    input_cfg = copy.deepcopy(DEFAULT_INPUT)
    input_cfg.update({k: options.pop(k) for k in ("mean", "std", "bands") if k in options})
    input_cfg["mean"] = [float(v) for v in input_cfg["mean"]]
    input_cfg["std"] = [float(v) for v in input_cfg["std"]]
    if len(input_cfg["mean"]) != 3 or len(input_cfg["std"]) != 3:
        raise ValueError("input mean and std need 3 values (one per channel)")
    desc = copy.deepcopy(descriptors_mod.DEFAULT_CONFIG)
    desc.update(copy.deepcopy(options.pop("descriptors", None) or {}))
    desc.setdefault("train_stats", None)
    refine = options.pop("refine", None)
    if options:
        raise ValueError(f"unknown model options: {', '.join(sorted(options))}")
    if classes is None:
        classes = default_classes(num_classes)
    classes = check_classes(classes)
    backbone = backbone_config(variant, experts=experts, top_k=top_k, **backbone_opts)
    head = {**HEAD_DEFAULTS, "pyramid": "interpolate", **record["head"], **head_opts}
    return {
        "kind": "model",
        "variant": variant,
        "experts": int(experts),
        "top_k": int(backbone["top_k"]),
        "feature_layers": list(backbone["feature_layers"]),
        "backbone": backbone,
        "head": head,
        "classes": classes,
        "input": input_cfg,
        "descriptors": desc,
        "refine": {**REFINE_DEFAULTS, **refine} if refine is not None else None,
    }


def build(variant: str = "ti", num_classes: int = 2, experts: int = MOE_DEFAULTS["experts"],
          top_k: int = MOE_DEFAULTS["top_k"],
          classes: Optional[list[dict]] = None, **options) -> CrossEarthSAR:
    """A randomly initialized CrossEarthSAR.

    ``classes``: [{"name", "value", "color": "#rrggbb"}] (when given, it sets the number of
    classes and ``num_classes`` is ignored; default ``num_classes`` generic ones). ``options``: backbone options of
    core.models.vit.backbone_config
    (straight_through, num_register_tokens, img_size, feature_layers, balance_weight, ...),
    head options of HEAD_DEFAULTS (num_queries, hidden_dim, dec_layers, num_points, loss
    weights, ...), input ``mean``/``std``/``bands``, ``descriptors`` {bins, block, scaling,
    train_stats}, and ``refine``: a full-resolution mask refiner ({} or {width, dilations,
    loss_weight, edge_weight}, core/models/mask_refiner.py; default none).
    """
    return CrossEarthSAR(model_config(variant, num_classes, experts, top_k, classes, **options))


def build_from_config(config: dict) -> CrossEarthSAR:
    """Rebuild the architecture described by ``model.config`` (extra keys such as
    ``format`` or ``provenance`` are kept in the new model's config)."""
    config = copy.deepcopy(config)
    missing = [k for k in ("backbone", "head", "classes", "input", "descriptors", "feature_layers")
               if k not in config]
    if missing:
        raise ValueError(f"model config lacks {', '.join(missing)}")
    config["classes"] = check_classes(config["classes"])
    config["head"] = {**HEAD_DEFAULTS, "pyramid": "interpolate", **config["head"]}
    config["backbone"] = {**config["backbone"], "feature_layers": list(config["feature_layers"])}
    return CrossEarthSAR(config)
