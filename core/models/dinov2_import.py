"""Import DINOv2 backbones (docs/contracts.md §4): an official DINOv2 ``.pth`` or a HuggingFace
``Dinov2Model`` / ``Dinov2WithRegistersModel`` checkpoint becomes a CrossEarth-SAR backbone whose
every FFN is upcycled into a mixture of experts (copies of the DINOv2 FFN, routers with a small
random init). Third-party ``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``;
a pickle holding anything but tensors is refused.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import InputError, one_line
from .checkpoints import materialize_buffers, open_safetensors
from .parameter_counts import EXPERT_TENSOR
from .variants import MOE_DEFAULTS, VARIANTS
from .vit import DinoVisionTransformerMoE, backbone_config

PathLike = Union[str, os.PathLike]


_HF_RULES = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)$", r"blocks.\1.norm\2.\3"),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.(weight|bias)$", r"blocks.\1.mlp.w12.\2"),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.(weight|bias)$", r"blocks.\1.mlp.w3.\2"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
]
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")
_IGNORED = {"mask_token"}  # DINOv2 training-only tensors


def _read_any_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors, or of a .pth/.pt/.bin read with torch.load(weights_only=True)."""
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        with open_safetensors(path) as f:
            try:
                return {k: f.get_tensor(k) for k in f.keys()}
            except Exception as e:
                raise InputError(f"{path}: cannot read its tensors (truncated?): {e}") from None
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol note: the outcome is reported
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = one_line(e)[:160]
        raise InputError(f"{path}: refused: the pickle holds more than tensors (weights_only "
                         f"loading rejected it: {first})") from None
    except Exception as e:
        raise InputError(f"{path}: not a readable PyTorch checkpoint (truncated or another "
                         f"format): {one_line(e)[:160]}") from None
    for wrapper in ("model", "state_dict", "teacher", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict) and not torch.is_tensor(obj.get(wrapper)):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return dict(obj)


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "teacher.", "backbone.", "dinov2."):
        inside = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if inside and (len(inside) == len(sd) or prefix == "dinov2."):
            sd = inside  # "dinov2." wraps the backbone of HF task models; the rest is their head
    return sd


def to_official_layout(sd: dict[str, torch.Tensor], path: PathLike = "checkpoint") -> tuple[dict, str]:
    """(state dict in official DINOv2 names, "official" | "huggingface")."""
    sd = _strip_prefixes(sd)
    if any(k.startswith("encoder.layer.") or k.startswith("embeddings.") for k in sd):
        out, qkv, unknown = {}, {}, []
        for k, v in sd.items():
            m = _HF_QKV.match(k)
            if m:
                qkv.setdefault((int(m[1]), m[3]), {})[m[2]] = v
                continue
            for pattern, repl in _HF_RULES:
                if re.match(pattern, k):
                    out[re.sub(pattern, repl, k)] = v
                    break
            else:
                unknown.append(k)
        if unknown:
            raise InputError(f"{path}: unknown keys for a HuggingFace Dinov2Model: "
                             f"{', '.join(sorted(unknown)[:5])}")
        for (layer, kind), parts in qkv.items():
            if set(parts) != {"query", "key", "value"}:
                lacking = sorted({"query", "key", "value"} - set(parts))
                raise InputError(f"{path}: missing keys encoder.layer.{layer}.attention.attention."
                                 f"{lacking[0]}.{kind}")
            out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
                [parts["query"], parts["key"], parts["value"]], dim=0)
        return out, "huggingface"
    # official; training checkpoints with block chunks name blocks.<chunk>.<index>.
    out = {}
    for k, v in sd.items():
        out[re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k)] = v
    return out, "official"


def inspect_dinov2(sd: dict[str, torch.Tensor], path: PathLike = "checkpoint") -> dict:
    """Architecture of an official-layout DINOv2 state dict: embed_dim, depth, registers, ..."""
    for needed in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if needed not in sd:
            raise InputError(f"{path}: not a DINOv2 checkpoint (missing key {needed})")
    embed_dim = int(sd["cls_token"].shape[-1])
    blocks = {int(m[1]) for k in sd for m in [re.match(r"^blocks\.(\d+)\.", k)] if m}
    depth = max(blocks) + 1 if blocks else 0
    n = int(sd["pos_embed"].shape[1]) - 1
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise InputError(f"{path}: pos_embed has {n} patch positions, not a square grid")
    patch = int(sd["patch_embed.proj.weight"].shape[-1])
    ffn = "swiglu" if "blocks.0.mlp.w12.weight" in sd else "mlp"
    registers = int(sd["register_tokens"].shape[1]) if "register_tokens" in sd else 0
    return {"embed_dim": embed_dim, "depth": depth, "img_size": side * patch, "patch_size": patch,
            "num_register_tokens": registers, "ffn": ffn}


def _variant_of(embed_dim: int, depth: int) -> Optional[str]:
    for name, arch in VARIANTS.items():
        if arch["embed_dim"] == embed_dim and arch["depth"] == depth:
            return name
    return None


def import_dinov2(path: PathLike, variant: str, experts: int = MOE_DEFAULTS["experts"],
                  top_k: int = MOE_DEFAULTS["top_k"],
                  straight_through: bool = True, seed: int = 0) -> DinoVisionTransformerMoE:
    """A backbone whose every FFN is upcycled into ``experts`` copies of a DINOv2 FFN.

    ``path``: official DINOv2 ``.pth`` (``blocks.N.mlp.fc1.weight``...) or a HuggingFace
    ``Dinov2Model`` / ``Dinov2WithRegistersModel`` ``.safetensors`` / ``.bin`` (optional
    ``dinov2.`` prefix). Register tokens are detected. Routers get a small random init
    (``seed``). InputError for another variant, unknown or missing keys, wrong shapes,
    unreadable files and pickles that hold anything but tensors.
    """
    path = Path(path)
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    sd, layout = to_official_layout(_read_any_state_dict(path), path)
    arch = inspect_dinov2(sd, path)
    want = VARIANTS[variant]
    if (arch["embed_dim"], arch["depth"]) != (want["embed_dim"], want["depth"]) or arch["ffn"] != want["ffn"]:
        other = _variant_of(arch["embed_dim"], arch["depth"])
        raise InputError(f"{path}: checkpoint is {'variant ' + other if other else 'an unknown size'} "
                         f"({arch['embed_dim']}-d, {arch['depth']} blocks), not variant {variant} "
                         f"({want['embed_dim']}-d, {want['depth']} blocks)")
    if arch["patch_size"] != 14:
        raise InputError(f"{path}: patch size {arch['patch_size']}, DINOv2 uses 14")
    cfg = backbone_config(variant, experts=experts, top_k=top_k, straight_through=straight_through,
                          num_register_tokens=arch["num_register_tokens"], img_size=arch["img_size"])
    with torch.device("meta"):
        backbone = DinoVisionTransformerMoE(cfg)
    generator = torch.Generator().manual_seed(seed)
    state, used = {}, set()
    for name, target in backbone.state_dict().items():
        if ".mlp.router." in name:
            state[name] = (torch.zeros(target.shape) if name.endswith("bias") else
                           torch.nn.init.trunc_normal_(torch.empty(target.shape), std=0.02,
                                                       generator=generator))
            continue
        source = EXPERT_TENSOR.sub(lambda m: m["layer"] + ".", name)
        if source not in sd:
            raise InputError(f"{path}: missing key {source} (layout: {layout})")
        value = sd[source]
        if tuple(value.shape) != tuple(target.shape):
            raise InputError(f"{path}: key {source} has shape {list(value.shape)}, variant "
                             f"{variant} expects {list(target.shape)}")
        state[name] = value.detach().float().clone()
        used.add(source)
    unknown = sorted(set(sd) - used - _IGNORED)
    if unknown:
        raise InputError(f"{path}: unknown keys for DINOv2 ({layout} layout): "
                         f"{', '.join(unknown[:5])}" + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    backbone.load_state_dict(state, strict=True, assign=True)
    materialize_buffers(backbone)
    backbone.provenance = {"imported_from": path.name, "source_layout": layout,
                           "source_bytes": path.stat().st_size, "router_seed": seed}
    return backbone.eval()
