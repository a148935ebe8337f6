"""``ces prepare PRODUCT -o OUT.tif``: a Sentinel-1 GRD product (zip, SAFE folder, manifest or
SAFE subdataset) to a calibrated, noise-removed, geocoded dB GeoTIFF (core/scene/sentinel1)."""
from __future__ import annotations

from pathlib import Path

import click

from .reporting import Reporter, progress_option
from .scene_options import resolution_option


@click.command("prepare")
@click.argument("product", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output GeoTIFF: sigma0 dB, one band per polarization (co-pol first), UTM.")
@resolution_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@progress_option
def prepare(product: Path, output: Path, resolution, overwrite: bool, progress_mode: str) -> None:
    """Prepare a Sentinel-1 GRD product as the scene every ces command reads.

    Calibration to sigma0 with the product's LUTs, thermal noise removal, border noise as
    nodata, a multilook in power to --resolution, and geocoding from the product's GCPs with
    a thin-plate spline onto the UTM zone of the scene (on the ellipsoid: no terrain
    correction, so in relief positions shift by about the height / tan(incidence angle)).
    ces segment and ces change do this themselves for a product; prepare keeps the result.

    \b
    Examples:
      ces prepare S1A_IW_GRDH_1SDV_20210119T031653_..._8255.zip -o scene.tif
      ces prepare S1A_..._8255.SAFE -o scene_10m.tif --resolution native
    """
    from ..core.scene.sentinel1.prepare import prepare_product

    reporter = Reporter(progress_mode)
    try:
        result = prepare_product(product, output, resolution_m=resolution, overwrite=overwrite,
                                 progress=reporter)
    except BaseException as e:
        reporter.error("interrupted" if isinstance(e, KeyboardInterrupt) else e)
        raise
    click.echo(f"{Path(result['output']).name}: {result['width']} x {result['height']} px, "
               f"{result['resolution_m']:g} m, {result['crs']}, {', '.join(result['polarizations'])} (sigma0 dB)",
               err=reporter.mode == "json")
    reporter.done({"scene": result["output"]}, **{k: v for k, v in result.items() if k != "output"})
