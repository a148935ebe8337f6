"""Mask2Former masked-attention transformer decoder: learned queries attend to one feature
level per layer, restricted to the foreground of the previous layer's mask prediction.

Inference (``aux=False``) returns only the final prediction and computes each intermediate
mask only where it is used: as the next layer's attention mask, at that layer's resolution.
Bilinear resizing and the per-pixel mask einsum are both linear, so resizing the mask
features first and taking the einsum there gives the same mask logits (to float rounding) as
the full-resolution einsum resized, at a fraction of the cost. For the same reason the pixel
decoder's last 1x1 projection (``mask_projection``, weight W [mask_dim, D], bias c) can be
folded into the mask embeddings e: e . (W y + c) = (e W) . y + e . c, so the projected mask
features are never computed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .position_encoding import sine_position_encoding


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention from queries to image features. ``mask`` [B, Q, S]
    bool, True = may not attend (the same for every head)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt, memory, mask, pos, query_pos, shared_mask: bool = False):
        """``shared_mask`` (inference): one mask for all heads straight into
        scaled_dot_product_attention, instead of nn.MultiheadAttention's copy per head."""
        if shared_mask:
            out = self._attend(tgt + query_pos, memory + pos, memory, mask)
        else:
            heads = self.attn.num_heads
            per_head = mask.unsqueeze(1).expand(-1, heads, -1, -1).flatten(0, 1)
            out = self.attn(tgt + query_pos, memory + pos, memory, attn_mask=per_head,
                            need_weights=False)[0]
        return self.norm(tgt + out)

    def _attend(self, query, key, value, mask):
        """nn.MultiheadAttention's result with its own weights: [B, Q, D]."""
        attn, heads = self.attn, self.attn.num_heads
        b, q, d = query.shape
        w, bias = attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)
        split = [F.linear(t, w[i], bias[i]).view(b, t.shape[1], heads, d // heads).transpose(1, 2)
                 for i, t in enumerate((query, key, value))]
        out = F.scaled_dot_product_attention(*split, attn_mask=~mask.unsqueeze(1))
        return attn.out_proj(out.transpose(1, 2).reshape(b, q, d))


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among queries."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt, query_pos):
        """Post-norm self-attention of the queries ``tgt`` [Q, B, C] (``query_pos`` added to q and
        k); same shape."""
        q = tgt + query_pos
        return self.norm(tgt + self.attn(q, q, tgt, need_weights=False)[0])


class FFNLayer(nn.Module):
    """Post-norm feed-forward block."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tgt):
        """tgt [.., C] + linear2(relu(linear1(tgt))), normed; same shape."""
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """Plain multi-layer perceptron with ReLU between layers."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        """The layers with ReLU between them: [.., in] -> [.., out]."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedTransformerDecoder(nn.Module):
    """(multi-scale features [stride 32, 16, 8], mask_features [B, D, h, w]) ->
    list of (class logits [B, Q, K+1], mask logits [B, Q, h, w]): with ``aux`` one before the
    first layer and one after each layer (``layers + 1`` predictions; the last is the final
    one), without ``aux`` the final one alone."""

    def __init__(self, num_classes: int, dim: int = 256, queries: int = 100, layers: int = 9,
                 heads: int = 8, ffn_dim: int = 2048, mask_dim: int = 256, levels: int = 3):
        super().__init__()
        self.levels, self.dim = levels, dim
        self.query_feat = nn.Embedding(queries, dim)
        self.query_embed = nn.Embedding(queries, dim)
        self.level_embed = nn.Embedding(levels, dim)
        self.cross = nn.ModuleList(CrossAttentionLayer(dim, heads) for _ in range(layers))
        self.self_attn = nn.ModuleList(SelfAttentionLayer(dim, heads) for _ in range(layers))
        self.ffn = nn.ModuleList(FFNLayer(dim, ffn_dim) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)
        for layers_ in (self.cross, self.self_attn, self.ffn):
            for p in layers_.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def _predict(self, output, mask_features, mask_projection=None):
        """(class logits [B, Q, K+1], mask logits [B, Q, h, w]) of the queries ``output``."""
        out = self.decoder_norm(output)
        return self.class_embed(out), self._mask_logits(out, mask_features, mask_projection)

    def _mask_logits(self, out, mask_features, mask_projection=None):
        """Mask logits [B, Q, h, w] of normalized queries ``out`` [B, Q, D] on ``mask_features``
        [B, C, h, w]: projected by ``mask_projection`` (a 1x1 convolution C -> mask_dim) first
        when given, folded into the embeddings."""
        embed = self.mask_embed(out)  # [B, Q, mask_dim]
        if mask_projection is None:
            return torch.einsum("bqc,bchw->bqhw", embed, mask_features)
        weight = mask_projection.weight.flatten(1)  # [mask_dim, C]
        masks = torch.einsum("bqc,bchw->bqhw", embed @ weight, mask_features)
        if mask_projection.bias is not None:
            masks = masks + (embed @ mask_projection.bias)[..., None, None]
        return masks

    def _attention_mask(self, masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Mask logits [B, Q, h, w] -> [B, Q, size] bool, True = may not attend; a query whose
        mask is empty everywhere attends to the whole map."""
        if tuple(masks.shape[-2:]) != tuple(size):
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        attn = masks.detach().sigmoid().flatten(2) < 0.5
        return attn & ~attn.all(dim=-1, keepdim=True)

    def forward(self, features: list[torch.Tensor], mask_features: torch.Tensor,
                aux: bool = True, mask_projection=None):
        """``mask_projection`` (inference only, ``aux`` False): a 1x1 convolution that
        ``mask_features`` still has to go through, folded into the mask embeddings."""
        if aux and mask_projection is not None:
            raise ValueError("mask_projection is for the inference path (aux=False)")
        b = mask_features.shape[0]
        srcs, pos, sizes = [], [], []
        for lvl, f in enumerate(features[: self.levels]):
            h, w = f.shape[-2:]
            sizes.append((h, w))
            p = sine_position_encoding(h, w, self.dim, device=f.device, dtype=f.dtype)
            pos.append(p.flatten(2).transpose(1, 2).expand(b, -1, -1))
            srcs.append(f.flatten(2).transpose(1, 2) + self.level_embed.weight[lvl].view(1, 1, -1))
        query_pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1)
        # inference: the mask features at each attention size (resize, then einsum)
        small = {} if aux else {
            s: F.interpolate(mask_features, size=s, mode="bilinear", align_corners=False)
            for s in set(sizes)}
        predictions = []

        def attention_for(output, size):
            if aux:
                logits, masks = self._predict(output, mask_features)
                predictions.append((logits, masks))
                return self._attention_mask(masks, size)
            masks = self._mask_logits(self.decoder_norm(output), small[size], mask_projection)
            return self._attention_mask(masks, size)

        attn = attention_for(output, sizes[0])
        for i, (cross, self_attn, ffn) in enumerate(zip(self.cross, self.self_attn, self.ffn)):
            lvl = i % self.levels
            output = cross(output, srcs[lvl], attn, pos[lvl], query_pos, shared_mask=not aux)
            output = self_attn(output, query_pos)
            output = ffn(output)
            if i + 1 < len(self.cross):
                attn = attention_for(output, sizes[(i + 1) % self.levels])
        predictions.append(self._predict(output, mask_features, mask_projection))
        return predictions
