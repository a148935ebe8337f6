"""Test helpers for the backbone: random DINOv2 checkpoints in the official and HuggingFace key
layouts, and an independent dense reference forward written from the official DINOv2 math."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ARCH = {"ti": (192, 12, 3), "s": (384, 12, 6)}


def random_official_state_dict(variant: str = "ti", registers: int = 0, img_size: int = 518,
                               seed: int = 0) -> dict[str, torch.Tensor]:
    """Random DINOv2 weights with official names; LayerScale and norms far from identity so that
    every block changes the tokens noticeably."""
    dim, depth, _ = ARCH[variant]
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    grid = img_size // 14
    sd = {
        "cls_token": rnd(1, 1, dim, std=0.5),
        "pos_embed": rnd(1, grid * grid + 1, dim, std=0.5),
        "mask_token": torch.zeros(1, dim),
        "patch_embed.proj.weight": rnd(dim, 3, 14, 14, std=0.05),
        "patch_embed.proj.bias": rnd(dim, std=0.1),
        "norm.weight": rnd(dim, std=0.2, mean=1.0),
        "norm.bias": rnd(dim, std=0.1),
    }
    if registers:
        sd["register_tokens"] = rnd(1, registers, dim, std=0.5)
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({
            p + "norm1.weight": rnd(dim, std=0.2, mean=1.0), p + "norm1.bias": rnd(dim, std=0.1),
            p + "attn.qkv.weight": rnd(3 * dim, dim, std=0.08), p + "attn.qkv.bias": rnd(3 * dim, std=0.05),
            p + "attn.proj.weight": rnd(dim, dim, std=0.05), p + "attn.proj.bias": rnd(dim, std=0.05),
            p + "ls1.gamma": rnd(dim, std=0.1, mean=0.3),
            p + "norm2.weight": rnd(dim, std=0.2, mean=1.0), p + "norm2.bias": rnd(dim, std=0.1),
            p + "mlp.fc1.weight": rnd(4 * dim, dim, std=0.05), p + "mlp.fc1.bias": rnd(4 * dim, std=0.05),
            p + "mlp.fc2.weight": rnd(dim, 4 * dim, std=0.03), p + "mlp.fc2.bias": rnd(dim, std=0.05),
            p + "ls2.gamma": rnd(dim, std=0.1, mean=0.3),
        })
    return sd


def to_huggingface_layout(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Official names -> HuggingFace Dinov2Model / Dinov2WithRegistersModel names (split q/k/v)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if k == "cls_token":
            name = "embeddings.cls_token"
        elif k == "mask_token":
            name = "embeddings.mask_token"
        elif k == "pos_embed":
            name = "embeddings.position_embeddings"
        elif k == "register_tokens":
            name = "embeddings.register_tokens"
        elif k.startswith("patch_embed.proj."):
            name = "embeddings.patch_embeddings.projection." + parts[-1]
        elif k.startswith("norm."):
            name = "layernorm." + parts[-1]
        else:
            i, rest = parts[1], ".".join(parts[2:])
            base = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                q, kk, vv = v.chunk(3, dim=0)
                for part, t in (("query", q), ("key", kk), ("value", vv)):
                    out[prefix + base + f"attention.attention.{part}.{parts[-1]}"] = t.clone()
                continue
            name = base + {
                "attn.proj.weight": "attention.output.dense.weight",
                "attn.proj.bias": "attention.output.dense.bias",
                "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
            }.get(rest, rest)
        out[prefix + name] = v.clone()
    return out


def _layer_norm(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)


def _pos_embed(sd, h, w, offset, antialias):
    """DINOv2's interpolate_pos_encoding as released with the registers (scale-factor form)."""
    pos = sd["pos_embed"].float()
    n = pos.shape[1] - 1
    npatch = (h // 14) * (w // 14)
    if npatch == n and w == h:
        return pos
    dim = pos.shape[-1]
    h0, w0 = h // 14 + offset, w // 14 + offset
    sqrt_n = math.sqrt(n)
    grid = F.interpolate(pos[:, 1:].reshape(1, int(sqrt_n), int(sqrt_n), dim).permute(0, 3, 1, 2),
                         scale_factor=(float(h0) / sqrt_n, float(w0) / sqrt_n), mode="bicubic",
                         antialias=antialias)
    assert grid.shape[-2:] == (int(h0), int(w0))
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, num_heads: int,
                      layers=(2, 5, 8, 11)) -> dict:
    """Dense DINOv2 forward from an official-layout state dict, plain tensor math.

    Returns dict(cls [B, C], patch [B, N, C], layers: list of normed patch tokens [B, N, C]).
    """
    registers = sd["register_tokens"].shape[1] if "register_tokens" in sd else 0
    offset, antialias = (0.0, True) if registers else (0.1, False)
    b, _, h, w = x.shape
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t], dim=1)
    t = t + _pos_embed(sd, h, w, offset, antialias)
    if registers:
        t = torch.cat([t[:, :1], sd["register_tokens"].expand(b, -1, -1), t[:, 1:]], dim=1)
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    c = t.shape[-1]
    hd = c // num_heads
    taken = []
    for i in range(depth):
        p = f"blocks.{i}."
        y = _layer_norm(t, sd, p + "norm1")
        qkv = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
        qkv = qkv.reshape(b, -1, 3, num_heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, c)
        y = F.linear(y, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        t = t + y * sd[p + "ls1.gamma"]
        y = _layer_norm(t, sd, p + "norm2")
        y = F.linear(F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                     sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        t = t + y * sd[p + "ls2.gamma"]
        if i in layers:
            taken.append(_layer_norm(t, sd, "norm")[:, 1 + registers:])
    out = _layer_norm(t, sd, "norm")
    return {"cls": out[:, 0], "patch": out[:, 1 + registers:], "layers": taken}

