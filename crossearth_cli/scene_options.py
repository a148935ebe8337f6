"""Scene-reading options every command shares: ``--domain`` and ``--calibrated``.

``--domain``: one of core.scene.sar_io.DOMAIN_CHOICES (quicklook, linear, db, complex, and the
linear kinds power / amplitude), or detected. ``--calibrated auto|yes|no`` (input contract 3,
docs/contracts.md §3): auto detects whether the scene holds calibrated backscatter; yes / no
override it. :func:`calibrated_value` turns the choice into open_scene's None / True / False.
"""
from __future__ import annotations

from typing import Optional

import click

from ..core.scene import contracts

DOMAIN_CHOICE = click.Choice(list(contracts.DOMAIN_CHOICES))
CALIBRATED_CHOICE = click.Choice(list(contracts.CALIBRATED_CHOICES))
DOMAIN_HELP = ("Override the detected value domain (power / amplitude: linear data of that "
               "kind).")
CALIBRATED_HELP = ("Whether the scene holds calibrated backscatter (sigma0 / gamma0 in dB, "
                   "power or amplitude): auto detects it (ces info says why); yes reads its "
                   "values as calibrated; no estimates a calibration from the scene.")


def calibrated_value(choice: Optional[str]) -> Optional[bool]:
    """"auto" / None -> None (detect), "yes" -> True, "no" -> False."""
    return contracts.CALIBRATED_CHOICES[(choice or "auto").lower()]


def domain_option(f):
    """The ``--domain`` option (value: a domain name or None)."""
    return click.option("--domain", type=DOMAIN_CHOICE, default=None, help=DOMAIN_HELP)(f)


def calibrated_option(f):
    """The ``--calibrated auto|yes|no`` option (value: None, True or False)."""
    return click.option("--calibrated", type=CALIBRATED_CHOICE, default="auto",
                        show_default=True, help=CALIBRATED_HELP,
                        callback=lambda ctx, param, v: calibrated_value(v))(f)


def resolution_value(text: Optional[str]):
    """"auto" -> "auto" (20 m, or the pixel spacing where coarser); "native" -> None (the
    product's pixel spacing); a number of metres -> float."""
    if text is None or str(text).strip().lower() == "auto":
        return "auto"
    if str(text).strip().lower() == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is none of a number of metres, 'auto' or 'native'") from None
    if not value > 0:
        raise click.BadParameter(f"{text!r}: a pixel size is positive")
    return value


def resolution_option(f):
    """The ``--resolution METRES|native`` option of Sentinel-1 products (value: float or None)."""
    return click.option("--resolution", default="auto", show_default=True, metavar="METRES|auto|native",
                        help="Pixel size of a Sentinel-1 product once prepared: auto is 20 m (a 2 x 2 "
                             "multilook of IW GRDH in power, about its resolution) or the pixel "
                             "spacing where that is coarser; native keeps the pixel spacing. A "
                             "calibrated GeoTIFF is read at its own pixels unless METRES asks for "
                             "coarser ones (multilooked in power).",
                        callback=lambda ctx, param, v: resolution_value(v))(f)
