"""XML of a Sentinel-1 product, parsed as untrusted input: no DTD, no entities.

A product's XML (manifest.safe, annotation, calibration and noise files) never declares a DTD
or an entity; a document that does is refused before it is parsed (no entity expansion, no
external resources). Parsing uses the standard library's ElementTree.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from ...errors import InputError

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def parse(data: bytes, name: str) -> ET.Element:
    """The root element of XML ``data`` (the file ``name``, for messages); InputError for a
    document with a DTD or entity declaration, or one that is not well-formed."""
    if _DECLARATION.search(data[:65536]) or _DECLARATION.search(data):
        raise InputError(f"{name}: declares a DTD or entities, which a Sentinel-1 product never does")
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise InputError(f"{name}: malformed XML ({e})") from None


def local(tag: str) -> str:
    """An element's tag without its namespace: "{ns}mode" -> "mode"."""
    return tag.rsplit("}", 1)[-1]


def find_all(root: ET.Element, name: str) -> list[ET.Element]:
    """Every element named ``name`` (any namespace) below ``root``, in document order."""
    return [e for e in root.iter() if local(e.tag) == name]


def text(root: ET.Element, name: str, file: str) -> str:
    """The text of the first element named ``name`` below ``root``; InputError naming ``file``
    when there is none."""
    for e in root.iter():
        if local(e.tag) == name and e.text is not None:
            return e.text.strip()
    raise InputError(f"{file}: no <{name}> element")


def child_text(element: ET.Element, name: str, file: str) -> str:
    """The text of the direct child ``name`` of ``element``; InputError naming ``file``."""
    for e in element:
        if local(e.tag) == name and e.text is not None:
            return e.text.strip()
    raise InputError(f"{file}: <{local(element.tag)}> without <{name}>")


def numbers(element: ET.Element, name: str, file: str, dtype=np.float64) -> np.ndarray:
    """The space-separated numbers of the child ``name`` of ``element`` as a 1-D array."""
    raw = child_text(element, name, file)
    try:
        return np.array(raw.split(), dtype=dtype)
    except ValueError:
        raise InputError(f"{file}: <{name}> holds something other than numbers") from None
