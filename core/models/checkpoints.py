"""Checkpoints (docs/contracts.md §4): one ``.safetensors`` file = tensors + a JSON config. The DINOv2
importers are in core/models/dinov2_import.py, the description ``ces info`` prints in
crossearth_cli/model_description.py.

The config lives in the safetensors metadata under the key ``"crossearth_sar"``:
``format``, ``kind`` ("backbone" or "model"), ``variant``, ``backbone{...}``, ``experts``,
``top_k``, ``feature_layers``, ``descriptors{bins, block, scaling}``, ``provenance{...}`` (a
whole model adds ``head``, ``classes``, ``input``... written by core.models.model). Loading never
unpickles; third-party ``.pth``/``.bin`` files are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn

from ..atomic import atomic_output
from ..errors import InputError, one_line
from ..scene.descriptors import DEFAULT_CONFIG as DESCRIPTOR_CONFIG
from . import model_header
from .vit import DinoVisionTransformerMoE, build_backbone_from_config

METADATA_KEY = model_header.METADATA_KEY
FORMAT = "crossearth-sar/1"
DTYPES = {None: None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PathLike = Union[str, os.PathLike]



# ---- saving ------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from ...version import __version__
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
    metadata = {METADATA_KEY: json.dumps(config)}
    with atomic_output(path, overwrite=True, needed=file_bytes(tensors, metadata)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def file_bytes(tensors: dict[str, torch.Tensor], metadata: Optional[dict] = None) -> int:
    """The size in bytes of the .safetensors file of ``tensors`` (their data, and a header
    of at most 200 bytes per tensor besides the metadata)."""
    data = sum(t.numel() * t.element_size() for t in tensors.values())
    return int(data + 200 * len(tensors) + len(json.dumps(metadata or {})) + 8)


# ---- reading -----------------------------------------------------------------------------------
def open_safetensors(path: PathLike):
    """safe_open of a checkpoint, InputError for anything that is not a readable safetensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError, OSError, ...
        raise InputError(f"{path}: not a readable .safetensors checkpoint (truncated or another "
                         f"format): {one_line(e)[:200]}") from None


def read_config(path: PathLike) -> dict:
    """The JSON config of a checkpoint (metadata only, no tensor is read; core/models/model_header.py,
    which needs no torch)."""
    return model_header.read_config(path)


def tensor_shapes(path: PathLike) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a .safetensors file (header only)."""
    with open_safetensors(path) as f:
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


def materialize_buffers(module: nn.Module) -> None:
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
            raise InputError(f"{path}: invalid backbone config ({one_line(e)})") from None
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
            raise InputError(f"{path}: invalid model config ({one_line(e)})") from None
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
            raise InputError(f"{path}: invalid model config ({one_line(e)})") from None
        skeleton = None
        _compare(path, {k: tuple(v.shape) for k, v in module.state_dict().items()}, found)
    state = {}
    with open_safetensors(path) as f:
        for name in found:
            try:
                t = f.get_tensor(name)
            except Exception as e:
                raise InputError(f"{path}: cannot read tensor {name} (truncated file?): {e}") from None
            state[name] = t.float() if t.is_floating_point() else t
    if skeleton is not None:
        module.load_state_dict(state, strict=True, assign=True)
        materialize_buffers(module)
    else:
        module.load_state_dict(state, strict=True)
    module.provenance = dict(config.get("provenance") or {})
    return module.to(map_location).eval()
