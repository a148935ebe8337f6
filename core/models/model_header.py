"""A model file's header, read without torch: what ``ces`` checks before it imports torch
(a corrupt model is refused in well under a second), and what the QGIS plugin reads.

A .safetensors file is 8 bytes of header length (little-endian uint64), a JSON header of that
many bytes (tensor names with ``dtype``, ``shape``, ``data_offsets`` [begin, end] into the data
that follows; ``__metadata__`` string pairs), then the tensor data. CrossEarth-SAR keeps its
JSON config in ``__metadata__[METADATA_KEY]`` (core/models/checkpoints.py writes it).

* :func:`read_header` ``(path) -> dict``: the parsed header; InputError (one line naming the
  file) when the file is missing, too short, its header length or JSON is bad, or a tensor's
  data lies past the end of the file (a truncated download);
* :func:`read_config` ``(path) -> dict``: the CrossEarth-SAR config, with kind "backbone" or
  "model"; InputError otherwise.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError

METADATA_KEY = "crossearth_sar"
MAX_HEADER_BYTES = 100 * 1024 * 1024
PathLike = Union[str, os.PathLike]


def read_header(path: PathLike) -> dict:
    """The JSON header of a .safetensors file, checked against the file's size."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    size = path.stat().st_size
    bad = f"{path}: not a readable .safetensors model (truncated or another format)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{bad}: {size} bytes")
            (length,) = struct.unpack("<Q", head)
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise InputError(f"{bad}: header length {length} for a file of {size} bytes")
            header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{bad}: its header is not JSON") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not isinstance(header, dict):
        raise InputError(f"{bad}: its header is not a JSON object")
    data = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(v, int) for v in offsets)):
            raise InputError(f"{bad}: tensor {name!r} has no data offsets")
        if offsets[1] > data or offsets[0] > offsets[1]:
            raise InputError(f"{bad}: tensor {name!r} ends at byte {offsets[1]} of "
                             f"{data} data bytes")
    return header


def read_config(path: PathLike) -> dict:
    """The CrossEarth-SAR JSON config of a model or backbone file (no tensor is read)."""
    raw = (read_header(path).get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise InputError(f"{path}: not a CrossEarth-SAR checkpoint (no '{METADATA_KEY}' config "
                         f"in its metadata; import DINOv2 weights with 'ces models import-dinov2')")
    try:
        config = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: the checkpoint config is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("kind") not in ("backbone", "model"):
        raise InputError(f"{path}: the checkpoint config has no kind 'backbone' or 'model'")
    return config


__all__ = ["read_header", "read_config", "METADATA_KEY"]


def input_contract(config: dict) -> int:
    """The input contract of core/scene/sar_io.py a model was trained under (1 when not recorded)."""
    return int((config.get("input") or {}).get("contract", 1))


def trained_bands(config: dict) -> Optional[list]:
    """The band descriptions a model was trained on (its ``input.bands``, e.g. ["VV"]), or None."""
    return (config.get("input") or {}).get("bands")
