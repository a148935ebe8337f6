"""Checkpoints (DESIGN §4): one ``.safetensors`` file = tensors + a JSON config; DINOv2 importers.

The config lives in the safetensors metadata under the key ``"crossearth_sar"``:
``format``, ``kind`` ("backbone" or "model"), ``variant``, ``backbone{...}``, ``experts``,
``top_k``, ``feature_layers``, ``descriptors{bins, block, scaling}``, ``provenance{...}`` (a
whole model adds ``head``, ``classes``, ``input``... written by core.model). Loading never
unpickles; third-party ``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from . import model_header
from .atomic import atomic_output
from .descriptors import DEFAULT_CONFIG as DESCRIPTOR_CONFIG
from .errors import InputError
from .parameter_counts import EXPERT_TENSOR, count_shapes
from .variants import MOE_DEFAULTS, VARIANTS
from .vit import DinoVisionTransformerMoE, backbone_config, build_backbone_from_config

METADATA_KEY = model_header.METADATA_KEY
FORMAT = "crossearth-sar/1"
DTYPES = {None: None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PathLike = Union[str, os.PathLike]



# ---- saving ------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from ..version import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def config_of(module: nn.Module, **provenance: Any) -> dict:
    """The checkpoint config of a backbone or a whole model (``module.config`` completed)."""
    if isinstance(module, DinoVisionTransformerMoE):
        bb = dict(module.config)
        config = {"kind": "backbone", "variant": bb["variant"], "backbone": bb,
                  "experts": bb.get("experts", 0), "top_k": bb.get("top_k", 0),
                  "feature_layers": bb.get("feature_layers"),
                  "descriptors": json.loads(json.dumps(DESCRIPTOR_CONFIG))}
    else:
        if not isinstance(getattr(module, "config", None), dict):
            raise TypeError(f"{type(module).__name__} has no dict .config to store")
        config = json.loads(json.dumps(module.config))
        config.setdefault("kind", "model")
    config["format"] = FORMAT
    prov = dict(config.get("provenance") or {})
    prov.update(getattr(module, "provenance", None) or {})
    prov.update({k: v for k, v in provenance.items() if v is not None})
    prov.setdefault("software", f"crossearth-sar {_version()}")
    prov["saved"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    config["provenance"] = prov
    return config


def save(model_or_backbone: nn.Module, path: PathLike, dtype: Optional[str] = None,
         **provenance: Any) -> Path:
    """Write the module's tensors and config to ``path`` (.safetensors), atomically.

    ``dtype`` None keeps the tensors' dtypes; "fp16"/"bf16" store floating tensors in half
    precision (load() brings them back to float32). ``provenance`` entries go to
    ``config["provenance"]``. An existing file is replaced.
    """
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of fp32, fp16, bf16 or None, got {dtype!r}")
    config = config_of(model_or_backbone, **provenance)
    if dtype:
        config["stored_dtype"] = dtype
    cast = DTYPES[dtype]
    tensors, seen = {}, set()
    for name, t in model_or_backbone.state_dict().items():
        t = t.detach().to("cpu")
        if cast is not None and t.is_floating_point():
            t = t.to(cast)
        t = t.contiguous()
        if t.untyped_storage().data_ptr() in seen:  # safetensors refuses shared storage
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    with atomic_output(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(config)})
    return Path(path)


# ---- reading -----------------------------------------------------------------------------------
def _open(path: PathLike):
    """safe_open of a checkpoint, InputError for anything that is not a readable safetensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError, OSError, ...
        raise InputError(f"{path}: not a readable .safetensors checkpoint (truncated or another "
                         f"format): {' '.join(str(e).split())[:200]}") from None


def read_config(path: PathLike) -> dict:
    """The JSON config of a checkpoint (metadata only, no tensor is read; core/model_header.py,
    which needs no torch)."""
    return model_header.read_config(path)


def tensor_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a .safetensors file (header only)."""
    with _open(path) as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _build(config: dict, meta: bool) -> nn.Module:
    if config["kind"] == "backbone":
        if meta:
            with torch.device("meta"):
                return build_backbone_from_config(config["backbone"])
        return build_backbone_from_config(config["backbone"])
    from .model import build_from_config  # lazily: model.py imports this module's neighbours

    if meta:
        with torch.device("meta"):
            return build_from_config(config)
    return build_from_config(config)


def _compare(path: PathLike, expected: dict[str, tuple], found: dict[str, tuple]) -> None:
    """InputError naming missing, unexpected or mis-shaped tensors."""
    def few(names):
        names = sorted(names)
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    missing = set(expected) - set(found)
    if missing:
        raise InputError(f"{path}: missing tensors {few(missing)}")
    unexpected = set(found) - set(expected)
    if unexpected:
        raise InputError(f"{path}: unexpected tensors {few(unexpected)}")
    for name in sorted(expected):
        if tuple(expected[name]) != tuple(found[name]):
            raise InputError(f"{path}: tensor {name} has shape {list(found[name])}, "
                             f"the config expects {list(expected[name])}")


def _materialize_buffers(module: nn.Module) -> None:
    """Non-persistent buffers left on the meta device (expert counts) become zeros on CPU."""
    for sub in module.modules():
        for name, buf in list(sub.named_buffers(recurse=False)):
            if buf is not None and buf.is_meta:
                setattr(sub, name, torch.zeros(buf.shape, dtype=buf.dtype))


def _skeleton(path: PathLike, config: dict) -> Optional[nn.Module]:
    """The module of ``config`` on the meta device (no allocation), or None for a model that
    cannot be built there."""
    try:
        return _build(config, meta=True)
    except (InputError, ImportError):
        raise
    except Exception as e:
        if config["kind"] == "backbone":
            raise InputError(f"{path}: invalid backbone config ({' '.join(str(e).split())})") from None
        return None


def verify(path: PathLike) -> dict:
    """The config of ``path`` once its tensor names and shapes are checked against the module
    the config describes (built on the meta device: nothing is allocated or read)."""
    config = read_config(path)
    skeleton = _skeleton(path, config)
    if skeleton is None:
        try:
            skeleton = _build(config, meta=False)
        except Exception as e:
            raise InputError(f"{path}: invalid model config ({' '.join(str(e).split())})") from None
    _compare(path, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()},
             tensor_shapes(path))
    return config


def load(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """The backbone or model stored in ``path``, float32, in eval mode, on ``map_location``.

    InputError (naming the file and the problem) for no config, a truncated or foreign file,
    and missing, unexpected or mis-shaped tensors.
    """
    config = read_config(path)
    found = tensor_shapes(path)
    skeleton = _skeleton(path, config)
    if skeleton is not None:
        _compare(path, {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, found)
    if config["kind"] == "backbone":
        module = skeleton  # its only non-persistent buffers (expert counts) are rebuilt below
    else:  # a whole model may hold non-persistent buffers (input mean/std): build it for real
        try:
            module = _build(config, meta=False)
        except (InputError, ImportError):
            raise
        except Exception as e:
            raise InputError(f"{path}: invalid model config ({' '.join(str(e).split())})") from None
        skeleton = None
        _compare(path, {k: tuple(v.shape) for k, v in module.state_dict().items()}, found)
    state = {}
    with _open(path) as f:
        for name in found:
            try:
                t = f.get_tensor(name)
            except Exception as e:
                raise InputError(f"{path}: cannot read tensor {name} (truncated file?): {e}") from None
            state[name] = t.float() if t.is_floating_point() else t
    if skeleton is not None:
        module.load_state_dict(state, strict=True, assign=True)
        _materialize_buffers(module)
    else:
        module.load_state_dict(state, strict=True)
    module.provenance = dict(config.get("provenance") or {})
    return module.to(map_location).eval()


# ---- parameter counts and description ----------------------------------------------------------
def _human(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def describe(path: PathLike) -> dict:
    """What a checkpoint is, for ``ces info``: variant, experts, top_k, classes, parameters.

    The file is verified first (:func:`verify`): InputError for what load() would refuse.
    """
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
        "provenance": config.get("provenance", {}),
    }
    if config["kind"] != "model":
        del out["input_bands"], out["input_contract"]
    if not out["adapter"]:
        del out["adapter"], out["adapter_params"]
    if not classes:
        del out["classes"]
    return out


# ---- DINOv2 import -----------------------------------------------------------------------------
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
        with _open(path) as f:
            try:
                return {k: f.get_tensor(k) for k in f.keys()}
            except Exception as e:
                raise InputError(f"{path}: cannot read its tensors (truncated?): {e}") from None
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol note: the outcome is reported
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = " ".join(str(e).split())[:160]
        raise InputError(f"{path}: refused: the pickle holds more than tensors (weights_only "
                         f"loading rejected it: {first})") from None
    except Exception as e:
        raise InputError(f"{path}: not a readable PyTorch checkpoint (truncated or another "
                         f"format): {' '.join(str(e).split())[:160]}") from None
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
    _materialize_buffers(backbone)
    backbone.provenance = {"imported_from": path.name, "source_layout": layout,
                           "source_bytes": path.stat().st_size, "router_seed": seed}
    return backbone.eval()
