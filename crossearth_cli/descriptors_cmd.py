"""``ces descriptors SCENE -o OUT.tif``: per-tile H_DE / ENL / R_LR maps of a SAR scene."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .reporting import Reporter, progress_option
from .scene_options import calibrated_option, domain_option, resolution_option

MIN_DEFAULT_TILE, MAX_DEFAULT_TILE, TILES_ACROSS = 32, 512, 16


def auto_tile(width: int, height: int) -> int:
    """The default tile: the power of two nearest below min(width, height) / TILES_ACROSS,
    clamped to MIN_DEFAULT_TILE..MAX_DEFAULT_TILE (a 512² scene: 32 px, a 16 x 16 map)."""
    side = max(1, min(width, height) // TILES_ACROSS)
    return max(MIN_DEFAULT_TILE, min(MAX_DEFAULT_TILE, 1 << (side.bit_length() - 1)))


def default_tile(scene: Path) -> int:
    """auto_tile of the scene's size; MAX_DEFAULT_TILE when GDAL cannot open it (the
    descriptor map then reports why)."""
    import rasterio

    try:
        with rasterio.open(scene) as src:
            return auto_tile(src.width, src.height)
    except (rasterio.errors.RasterioIOError, OSError):
        return MAX_DEFAULT_TILE


@click.command("descriptors")
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Output GeoTIFF: 3 float32 bands H_DE, ENL, R_LR, one pixel per tile.")
@click.option("--tile", type=click.IntRange(8, 8192), default=None,
              help="Tile size in pixels. Default: about 1/16 of the scene's shorter side, a "
                   "power of two between 32 and 512 (32 for a 512 x 512 scene).")
@click.option("--stride", type=click.IntRange(1, 8192), default=None,
              help="Step between tiles in pixels (default: the tile size).")
@click.option("--bins", type=click.IntRange(2, 3600), default=36, show_default=True,
              help="Orientation bins of H_DE.")
@click.option("--block", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="Block size of R_LR in pixels.")
@domain_option
@calibrated_option
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. VV,VH.")
@click.option("--complex", "complex_part", type=click.Choice(["amplitude", "real", "imag"]),
              default="amplitude", show_default=True, help="Part of complex (SLC) data.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@resolution_option
@progress_option
def descriptors(scene: Path, output: Path, tile: Optional[int], stride, bins: int, block: int, domain,
                calibrated, bands, complex_part: str, overwrite: bool, resolution, progress_mode: str) -> None:
    """Map the SAR physical descriptors of SCENE tile by tile.

    H_DE (directional entropy of the gradients, nats), ENL (equivalent number of looks) and
    R_LR (local roughness) are computed on what the model sees of the first band (input
    contract 3: its dB through the fixed mapping, or through the scene's estimated
    calibration when it is not calibrated), nodata excluded; a tile without valid pixels is NaN (nodata). Pixel (i, j) of the output is the
    tile whose top-left corner is at scene pixel (j*stride, i*stride).

    \b
    Example:
      ces descriptors scene.tif -o descriptors.tif --tile 256
    """
    from ..core.atomic import check_writable
    from ..core.errors import InputError
    from ..core.products.outputs import RASTER_EXTENSIONS
    from ..core.scene import contracts, raster_check, sar_io

    if output.suffix.lower() not in RASTER_EXTENSIONS:
        raise InputError(f"{output}: the descriptor map is a GeoTIFF (.tif or .tiff)")
    from ..core.scene.sentinel1.prepared import check_product, prepared_scene
    from ..core.scene.sentinel1.product import is_product

    reporter = Reporter(progress_mode)
    folder = output.parent if str(output.parent) else Path(".")
    band_specs = contracts.parse_bands(bands)
    try:  # bad input is reported before any work (a second, not several)
        check_writable(output, overwrite)
        if is_product(scene):
            check_product(scene, folder, resolution, output)
    except Exception as e:
        reporter.error(e)
        raise
    with prepared_scene(scene, folder, resolution_m=resolution, progress=reporter,
                        output=output) as raster:
        raster_check.check_file(raster)   # full-resolution pixels, not only the overviews
        if tile is None:
            tile = default_tile(raster)
        try:
            with sar_io.open_scene(raster, domain=domain, bands=band_specs, complex_part=complex_part,
                                   calibrated=calibrated):
                pass
        except Exception as e:
            reporter.error(e)
            raise
        from ..core.scene.descriptors import descriptor_map

        result = descriptor_map(raster, output, tile=tile, stride=stride, bins=bins, block=block,
                                domain=domain, bands=band_specs, calibrated=calibrated,
                                complex_part=complex_part, overwrite=overwrite, progress=reporter)
    for name, (lo, med, hi) in result["summary"].items():
        click.echo(f"{name:<5} min {lo:.4g}  median {med:.4g}  max {hi:.4g}", err=reporter.mode == "json")
    click.echo(f"{result['tiles_valid']}/{result['tiles']} tiles with valid pixels -> {output}",
               err=reporter.mode == "json")
    reporter.done({"descriptors": str(output)}, summary=result["summary"])
