"""ces segment --resolution on GeoTIFF inputs: a calibrated scene multilooked in power before
the model (core/scene/multilook.py), outputs on the coarser grid with the CRS kept, nothing
temporary left behind, and one-line refusals for rasters it cannot multilook."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from crossearth_sar.crossearth_cli.main import main

from _helpers_train import write_png

REPO = Path(__file__).resolve().parents[2]
CHIP = REPO / "examples" / "Spain_7370579_S1Hand.tif"


def test_calibrated_geotiff_is_segmented_at_20_m(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    code = main(["segment", str(CHIP), "-o", str(out / "w.gpkg"), "--raster", str(out / "c.tif"),
                 "--resolution", "20", "--keep-prepared", str(tmp_path / "chip20.tif"),
                 "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(CHIP) as src, rasterio.open(out / "c.tif") as cls:
        assert (cls.width, cls.height) == (src.width // 2, src.height // 2)
        assert np.isclose(cls.transform.a, 2 * src.transform.a) and cls.crs == src.crs
        assert set(np.unique(cls.read(1))) <= {0, 1, 255}
    with rasterio.open(tmp_path / "chip20.tif") as kept:
        assert kept.descriptions == ("VV", "VH") and kept.width == 256
    assert sorted(p.name for p in out.iterdir()) == ["c.tif", "w.gpkg"]   # no temporary left


def test_native_and_auto_leave_a_geotiff_at_its_own_pixels(tmp_path, capsys):
    code = main(["segment", str(CHIP), "-o", str(tmp_path / "w.gpkg"), "--raster", str(tmp_path / "c.tif"),
                 "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    with rasterio.open(tmp_path / "c.tif") as cls:
        assert cls.width == 512


def test_rasters_that_cannot_be_multilooked_are_refused_in_one_line(tmp_path, capsys):
    png = tmp_path / "tile.png"
    write_png(png, np.full((64, 64), 120, np.uint8))
    code = main(["segment", str(png), "-o", str(tmp_path / "w.gpkg"), "--resolution", "20"])
    err = capsys.readouterr().err
    assert code == 2 and "tile.png" in err and "georeferencing" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "w.gpkg").exists()
