"""DINOv2 ViT (patch 14) whose FFNs are physics-guided sparse MoEs (docs/contracts.md §2).

Parameter names follow the official DINOv2 code (``blocks.N.attn.qkv.weight``, ``ls1.gamma``,
...) except the FFNs: ``blocks.N.mlp.router.*`` and ``blocks.N.mlp.experts.E.fc1.*``
(``experts=0`` gives the dense DINOv2 FFN ``blocks.N.mlp.fc1.*``). Position embeddings are
interpolated as the official code did at the registers release: bicubic with a +0.1 offset on
the target grid for models without registers (``interpolate_offset=0.1``, no antialias), exact
output size with antialias for models with registers (``interpolate_offset=0``).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .adapter import EarthAdapter
from .moe import BALANCE_WEIGHT, MoEFFN, dense_ffn, descriptor_tensor, ffn_hidden
from .variants import MOE_DEFAULTS, VARIANTS, variant as variant_record  # noqa: F401 (VARIANTS: also this module's API)

PATCH_SIZE = 14
EXPERTS, TOP_K = MOE_DEFAULTS["experts"], MOE_DEFAULTS["top_k"]

class PatchEmbed(nn.Module):
    """Conv 14x14 stride 14: [B, 3, H, W] -> [B, (H/14)(W/14), C]."""

    def __init__(self, embed_dim: int, patch_size: int = PATCH_SIZE, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patches: x [B, C, H, W] -> tokens [B, H/p · W/p, D]."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (DINOv2 names)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention: x [B, N, C] -> [B, N, C]."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """DINOv2's LayerScale: x [..., dim] times a learned per-channel gamma [dim]."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x · gamma (per channel); same shape."""
        return x * self.gamma


class Block(nn.Module):
    """x + ls1(attn(norm1 x)); x + ls2(ffn(norm2 x)). The FFN is a MoE unless experts == 0."""

    def __init__(self, dim: int, num_heads: int, hidden: int, ffn: str, experts: int, top_k: int,
                 straight_through: bool, balance_weight: float, layerscale: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layerscale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.is_moe = experts > 0
        if self.is_moe:
            self.mlp = MoEFFN(dim, hidden, experts, top_k, straight_through, ffn, balance_weight)
        else:
            self.mlp = dense_ffn(dim, hidden, ffn)
        self.ls2 = LayerScale(dim, layerscale)
        self.last_balance_loss: Optional[torch.Tensor] = None

    def forward(self, x: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """x [B, N, C] -> [B, N, C]; a MoE FFN keeps its balance loss in ``last_balance_loss``."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        h = self.norm2(x)
        if self.is_moe:
            h, self.last_balance_loss = self.mlp(h, descriptors)
        else:
            h = self.mlp(h)
        return x + self.ls2(h)


class DinoVisionTransformerMoE(nn.Module):
    """DINOv2 backbone with MoE FFNs. ``config`` (JSON-able) rebuilds it exactly.

    Inputs: x [B, 3, H, W] (already normalized; H, W multiples of 14), descriptors [B, 3]
    (scaled, see core.scene.descriptors; None means zeros).
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        c = self.config
        dim, depth = int(c["embed_dim"]), int(c["depth"])
        self.embed_dim = self.num_features = dim
        self.patch_size = int(c.get("patch_size", PATCH_SIZE))
        self.num_heads = int(c["num_heads"])
        self.num_register_tokens = int(c.get("num_register_tokens", 0))
        self.interpolate_offset = float(c.get("interpolate_offset", 0.1))
        self.interpolate_antialias = bool(c.get("interpolate_antialias", False))
        grid = int(c.get("img_size", 518)) // self.patch_size
        hidden = int(c.get("ffn_hidden") or ffn_hidden(dim, c.get("ffn", "mlp")))
        self.patch_embed = PatchEmbed(dim, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        if self.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, self.num_register_tokens, dim))
        self.blocks = nn.ModuleList(
            Block(dim, self.num_heads, hidden, c.get("ffn", "mlp"), int(c.get("experts", EXPERTS)),
                  int(c.get("top_k", TOP_K)), bool(c.get("straight_through", True)),
                  float(c.get("balance_weight", BALANCE_WEIGHT)), float(c.get("layerscale", 1e-5)))
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()
        # optional Earth-Adapter (core/models/adapter.py), after _init_weights: it has its own init
        self.adapter = EarthAdapter(dim, depth, c["adapter"]) if c.get("adapter") else None
        if self.adapter is not None:
            self.config["adapter"] = dict(self.adapter.config)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.num_register_tokens:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.endswith("router"):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    # ---- tokens -------------------------------------------------------------------------
    def interpolate_pos_encoding(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Position embeddings [1, 1+N, C] for an H x W image (official DINOv2 behaviour)."""
        previous_dtype = x.dtype
        npatch = x.shape[1] - 1
        n = self.pos_embed.shape[1] - 1
        if npatch == n and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
        dim = x.shape[-1]
        h0, w0 = h // self.patch_size, w // self.patch_size
        m = int(math.sqrt(n))
        grid = patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            scale = (float(h0 + self.interpolate_offset) / m, float(w0 + self.interpolate_offset) / m)
            grid = F.interpolate(grid, scale_factor=scale, mode="bicubic",
                                 antialias=self.interpolate_antialias)
        else:
            grid = F.interpolate(grid, size=(h0, w0), mode="bicubic",
                                 antialias=self.interpolate_antialias)
        patch_pos_embed = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> tokens [B, 1 + R + N, C] (class, registers, patches)."""
        b, _, h, w = x.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, h, w)
        if self.num_register_tokens:
            x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        return x

    # ---- forward ------------------------------------------------------------------------
    def _run_blocks(self, x: torch.Tensor, descriptors: Optional[torch.Tensor],
                    take: Sequence[int] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s = descriptor_tensor(descriptors, x.shape[0], x)
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.prepare_tokens(x)
        prefix = 1 + self.num_register_tokens
        outputs = []
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens, s)
            if self.adapter is not None:
                tokens = self.adapter.apply_after_block(i, tokens, prefix, grid)
            if i in take:
                outputs.append(tokens)
        return tokens, outputs

    def forward_features(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None) -> dict:
        """dict(x_norm_clstoken [B, C], x_norm_regtokens [B, R, C], x_norm_patchtokens [B, N, C],
        x_prenorm [B, 1+R+N, C])."""
        tokens, _ = self._run_blocks(x, descriptors)
        x_norm = self.norm(tokens)
        r = self.num_register_tokens
        return {"x_norm_clstoken": x_norm[:, 0], "x_norm_regtokens": x_norm[:, 1:r + 1],
                "x_norm_patchtokens": x_norm[:, r + 1:], "x_prenorm": tokens, "masks": None}

    def forward(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None) -> dict:
        """forward_features: x [B, 3, H, W], descriptors [B, 3] -> dict of normed tokens."""
        return self.forward_features(x, descriptors)

    def get_intermediate_layers(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None,
                                n: Union[int, Sequence[int]] = 1, reshape: bool = False,
                                return_class_token: bool = False, norm: bool = True) -> tuple:
        """Outputs of the last ``n`` blocks (int) or of the blocks listed in ``n`` (0-based).

        Each output is [B, N, C] patch tokens, or [B, C, H/14, W/14] with ``reshape``; with
        ``return_class_token`` each item is (patch tokens, class token [B, C]).
        """
        depth = len(self.blocks)
        take = list(range(depth - n, depth)) if isinstance(n, int) else [int(i) for i in n]
        bad = [i for i in take if not 0 <= i < depth]
        if bad:
            raise ValueError(f"block indexes {bad} out of range 0..{depth - 1}")
        _, outputs = self._run_blocks(x, descriptors, take)
        if norm:
            outputs = [self.norm(out) for out in outputs]
        r = self.num_register_tokens
        class_tokens = [out[:, 0] for out in outputs]
        outputs = [out[:, 1 + r:] for out in outputs]
        if reshape:
            b, _, h, w = x.shape
            outputs = [out.reshape(b, h // self.patch_size, w // self.patch_size, -1)
                       .permute(0, 3, 1, 2).contiguous() for out in outputs]
        if return_class_token:
            return tuple(zip(outputs, class_tokens))
        return tuple(outputs)

    # ---- MoE bookkeeping -----------------------------------------------------------------
    def moe_layers(self) -> list[MoEFFN]:
        """The MoE FFNs of the blocks, in order (empty when dense)."""
        return [blk.mlp for blk in self.blocks if blk.is_moe]

    def balance_loss(self) -> torch.Tensor:
        """L_BC of the last forward, averaged over MoE layers (lambda included); 0 if dense."""
        losses = [blk.last_balance_loss for blk in self.blocks
                  if blk.is_moe and blk.last_balance_loss is not None]
        if not losses:
            return self.cls_token.new_zeros(())
        return torch.stack(losses).mean()

    def expert_counts(self) -> torch.Tensor:
        """Tokens routed to each expert since the last reset: [MoE layers, experts] long."""
        layers = self.moe_layers()
        if not layers:
            return torch.zeros(0, 0, dtype=torch.long)
        return torch.stack([m.expert_counts for m in layers])

    def reset_expert_counts(self) -> None:
        """Zero every MoE layer's per-expert token counts."""
        for m in self.moe_layers():
            m.reset_expert_counts()

    def upcycle_from_dense(self, dense: "DinoVisionTransformerMoE") -> None:
        """Copy a dense (experts=0) backbone: shared weights as is, each FFN into every expert."""
        with torch.no_grad():
            own = self.state_dict()
            for name, value in dense.state_dict().items():
                if name in own:
                    own[name].copy_(value)
            for mine, theirs in zip(self.blocks, dense.blocks):
                if mine.is_moe and not theirs.is_moe:
                    mine.mlp.upcycle_from(theirs.mlp)


def backbone_config(variant: str = "ti", experts: int = EXPERTS, top_k: int = TOP_K,
                    straight_through: bool = True, num_register_tokens: int = 0,
                    img_size: int = 518, interpolate_offset: Optional[float] = None,
                    interpolate_antialias: Optional[bool] = None,
                    balance_weight: float = BALANCE_WEIGHT, layerscale: float = 1e-5,
                    feature_layers: Optional[Sequence[int]] = None,
                    ffn_hidden_dim: Optional[int] = None) -> dict:
    """The JSON-able config of a backbone. Interpolation defaults follow DINOv2: offset 0.1 and
    no antialias without registers; offset 0 and antialias with registers. ``ffn_hidden_dim``
    overrides the variant's FFN (and so each expert's) hidden width, e.g. for a small model."""
    arch = variant_record(variant)
    if experts and not 1 <= top_k <= experts:
        raise ValueError(f"top_k must be between 1 and experts ({experts}), got {top_k}")
    if interpolate_offset is None:
        interpolate_offset = 0.0 if num_register_tokens else 0.1
    if interpolate_antialias is None:
        interpolate_antialias = bool(num_register_tokens)
    return {
        "variant": variant, "embed_dim": arch["embed_dim"], "depth": arch["depth"],
        "num_heads": arch["num_heads"], "ffn": arch["ffn"],
        "ffn_hidden": int(ffn_hidden_dim) if ffn_hidden_dim else ffn_hidden(arch["embed_dim"], arch["ffn"]),
        "patch_size": PATCH_SIZE,
        "img_size": int(img_size), "num_register_tokens": int(num_register_tokens),
        "interpolate_offset": float(interpolate_offset),
        "interpolate_antialias": bool(interpolate_antialias),
        "experts": int(experts), "top_k": int(top_k) if experts else 0,
        "straight_through": bool(straight_through), "balance_weight": float(balance_weight),
        "layerscale": float(layerscale),
        "feature_layers": list(feature_layers if feature_layers is not None else arch["feature_layers"]),
    }


def build_backbone(variant: str = "ti", experts: int = EXPERTS, top_k: int = TOP_K,
                   straight_through: bool = True, num_register_tokens: int = 0,
                   **options) -> DinoVisionTransformerMoE:
    """A randomly initialized backbone; ``experts=0`` gives the dense DINOv2 ViT.

    ``options``: img_size (518: the position-embedding grid), interpolate_offset,
    interpolate_antialias, balance_weight (0.005), layerscale (1e-5), feature_layers.
    """
    return DinoVisionTransformerMoE(backbone_config(variant, experts, top_k, straight_through,
                                                    num_register_tokens, **options))


def build_backbone_from_config(cfg: dict) -> DinoVisionTransformerMoE:
    """Rebuild a backbone from its ``config`` (architecture fields completed from VARIANTS)."""
    cfg = dict(cfg)
    variant = cfg.get("variant")
    if variant in VARIANTS:
        full = backbone_config(variant, experts=int(cfg.get("experts", EXPERTS)),
                               top_k=int(cfg.get("top_k", TOP_K) or TOP_K),
                               num_register_tokens=int(cfg.get("num_register_tokens", 0)))
        full.update(cfg)
        cfg = full
    missing = [k for k in ("embed_dim", "depth", "num_heads") if k not in cfg]
    if missing:
        raise ValueError(f"backbone config lacks {', '.join(missing)}")
    return DinoVisionTransformerMoE(cfg)
