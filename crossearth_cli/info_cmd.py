"""``ces info SCENE_OR_MODEL``: what was detected in a scene, or what a model is."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.scene import contracts, sar_io
from .reporting import flag
from .scene_description import describe_product, describe_scene
from .scene_options import calibrated_option, domain_option, resolution_option

MODEL_SUFFIXES = (".safetensors",)


@click.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@domain_option
@calibrated_option
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. VV,VH or 1,2.")
@click.option("--complex", "complex_part", type=click.Choice(contracts.COMPLEX_PARTS),
              default="amplitude", show_default=True, help="Part of complex (SLC) data to use.")
@resolution_option
def info(path: Path, as_json: bool, domain, calibrated, bands, complex_part, resolution) -> None:
    """Describe a SAR scene (size, bands, CRS, pixel size, domain, calibration, nodata), a
    Sentinel-1 GRD product (what it is and what ces prepare would write) or a model file.

    \b
    Examples:
      ces info examples/Spain_7370579_S1Hand.tif
      ces info --json scene.tif
      ces info models/ces-s1-water.safetensors
      ces info S1A_IW_GRDH_1SDV_20210119T031653_..._8255.zip
    """
    if path.suffix.lower() in MODEL_SUFFIXES:
        from .model_description import describe

        described = describe(path)
        if as_json:
            click.echo(json.dumps(described, default=str))
        else:
            for key, value in described.items():
                if isinstance(value, (dict, list)):
                    value = json.dumps(value, default=str)
                click.echo(f"{key + ':':<16} {value}")
        return
    from ..core.scene import raster_check
    from ..core.scene.sentinel1.product import is_product

    if is_product(path):
        from ..core.scene.sentinel1.prepared import product_info

        described = product_info(path, resolution)
        if as_json:
            click.echo(json.dumps(described))
        else:
            for line in describe_product(described):
                click.echo(line)
        return
    raster_check.check_file(path)   # full-resolution pixels, not only the overviews
    with sar_io.open_scene(path, domain=domain, bands=contracts.parse_bands(bands),
                           complex_part=complex_part, calibrated=calibrated) as scene:
        described = scene.info(flag)
    if as_json:
        click.echo(json.dumps(described))
    else:
        for line in describe_scene(described):
            click.echo(line)
