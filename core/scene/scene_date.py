"""The acquisition date of a scene, where it can be read: ``scene_date(path, tags)``.

Looked for, in this order:

* GDAL metadata that names an acquisition time (e.g. ``ACQUISITION_START_TIME``,
  ``first_line_time``, ``DATE_ACQUIRED``; any key with ACQUISITION, SENSING or START_TIME);
* the file name: the first 8-digit date that is a real calendar date between 1978 (Seasat)
  and 2100, e.g. ``S1A_IW_GRDH_1SDV_20170314T...`` or ``Bangladesh_2017-03-14.tif``;
* ``TIFFTAG_DATETIME`` ("YYYY:MM:DD HH:MM:SS"): often the processing date, so last.

None when nothing can be read. Used to warn when a reference seems to be dated after the
scene it is a reference for (core.change.detect).
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import Mapping, Optional

_KEYS = re.compile(r"ACQUISITION|SENSING|START_TIME|FIRST_LINE_TIME|DATE_ACQUIRED", re.I)
_DATE = re.compile(r"(?<!\d)(\d{4})[-_:.]?(\d{2})[-_:.]?(\d{2})(?!\d)")
YEARS = (1978, 2100)


def _parse(text: str) -> Optional[dt.date]:
    for m in _DATE.finditer(text):
        try:
            date = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
        if YEARS[0] <= date.year <= YEARS[1]:
            return date
    return None


def scene_date(path: str | os.PathLike, tags: Optional[Mapping[str, str]] = None
               ) -> Optional[dt.date]:
    """The acquisition date of the scene at ``path`` with GDAL metadata ``tags`` (module doc)."""
    tags = dict(tags or {})
    for key, value in tags.items():
        if _KEYS.search(key):
            date = _parse(str(value))
            if date is not None:
                return date
    date = _parse(os.path.basename(os.fspath(path)))
    if date is not None:
        return date
    if "TIFFTAG_DATETIME" in tags:
        return _parse(str(tags["TIFFTAG_DATETIME"]))
    return None
