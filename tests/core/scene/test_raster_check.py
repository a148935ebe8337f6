"""core/scene/raster_check.py on real damaged files: a tiled, compressed GeoTIFF whose
full-resolution block is overwritten with garbage (it still opens), a COG cut short (its header
and overviews survive), a VRT whose source is gone. Each is refused before any work with an
InputError naming the file (and the window, with GDAL's own message); a good file passes."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.shutil import copy as copy_raster
from rasterio.transform import from_origin
from rasterio.windows import Window

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.scene import raster_check

SIZE, BLOCK = 512, 64


def _write(path: Path, count: int = 1, **extra) -> np.ndarray:
    """A tiled deflate GeoTIFF of noise (deflate cannot decode garbage); its pixels."""
    data = (np.random.RandomState(3).rand(count, SIZE, SIZE) * 100).astype(np.float32)
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=count, dtype="float32",
                   crs="EPSG:32630", transform=from_origin(500000.0, 4600000.0, 10.0, 10.0),
                   tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate", **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def _block_range(path: Path, col: int, row: int, band: int = 1) -> tuple[int, int]:
    """(byte offset, byte length) of block (col, row) of ``band`` from the TIFF directory."""
    with rasterio.open(path) as src:
        return (int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)),
                int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)))


def _garble(path: Path, offset: int, length: int) -> None:
    """Overwrite ``length`` bytes at ``offset`` with garbage; the file keeps its size."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.random.RandomState(9).randint(0, 256, length).astype(np.uint8).tobytes())
    assert path.stat().st_size == size


@pytest.fixture
def damaged(tmp_path):
    """(path, the damaged block's window): a block that the sample reads, in the middle of the file."""
    path = tmp_path / "damaged.tif"
    _write(path)
    with rasterio.open(path) as src:
        windows = raster_check.sample_windows(src)
    window = windows[len(windows) // 2]               # a block in the middle of the raster
    col, row = int(window.col_off) // BLOCK, int(window.row_off) // BLOCK
    offset, length = _block_range(path, col, row)
    assert 0.2 < offset / path.stat().st_size < 0.8   # ... and of the file
    _garble(path, offset, length)
    with rasterio.open(path) as src:                  # it still opens, with its size and CRS
        assert (src.width, src.height, src.crs.to_epsg()) == (SIZE, SIZE, 32630)
    return path, window


# -- sample_windows ---------------------------------------------------------------------------
def test_sample_windows_first_last_and_evenly_between(tmp_path):
    path = tmp_path / "good.tif"
    _write(path)
    with rasterio.open(path) as src:
        windows = raster_check.sample_windows(src)
    n, cols = (SIZE // BLOCK) ** 2, SIZE // BLOCK       # 64 blocks, 8 a row
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, raster_check.SAMPLE_BLOCKS)})
    assert picks[0] == 0 and picks[-1] == 63 and len(picks) == 16
    assert windows == [Window((i % cols) * BLOCK, (i // cols) * BLOCK, BLOCK, BLOCK) for i in picks]


def test_sample_windows_clip_the_edge_blocks(tmp_path):
    path = tmp_path / "odd.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=70, count=1, dtype="uint8", crs="EPSG:32630",
                       transform=from_origin(0.0, 0.0, 10.0, 10.0), tiled=True, blockxsize=64, blockysize=64) as dst:
        dst.write(np.ones((1, 70, 100), np.uint8))
    with rasterio.open(path) as src:
        assert raster_check.sample_windows(src) == [
            Window(0, 0, 64, 64), Window(64, 0, 36, 64), Window(0, 64, 64, 6), Window(64, 64, 36, 6)]


# -- a good file passes ---------------------------------------------------------------------
def test_a_good_file_passes_and_reads_its_pixels(tmp_path):
    path = tmp_path / "good.tif"
    data = _write(path, count=2)
    assert raster_check.check_file(path) is None
    with rasterio.open(path) as src:
        raster_check.check_readable(src, path)
        got = raster_check.read(src, path, 2, window=Window(5, 7, 3, 2))
        assert np.array_equal(got, data[1, 7:9, 5:8])
        assert raster_check.read_masks(src, path, 1, window=Window(0, 0, 4, 4)).tolist() == [[255] * 4] * 4


# -- corrupt full-resolution data ---------------------------------------------------------------
def test_check_file_refuses_garbage_in_a_full_resolution_block(damaged):
    path, window = damaged
    col, row = int(window.col_off), int(window.row_off)
    with pytest.raises(InputError) as info:
        raster_check.check_file(path)
    text = str(info.value)
    prefix = f"{path}: cannot read pixels (window col {col}, row {row}, {BLOCK} x {BLOCK} px): "
    assert text.startswith(prefix), text
    gdal = text[len(prefix):]
    assert "\n" not in text and gdal.strip() == gdal and gdal
    assert "see previous exception" not in gdal.lower()     # GDAL's own words, not rasterio's
    # GDAL names the block by its index: the damaged one
    assert f"IReadBlock failed at X offset {col // BLOCK}, Y offset {row // BLOCK}" in gdal, gdal
    assert info.value.path is None and info.value.parameters == ()


def test_read_names_the_file_and_the_window(damaged):
    path, window = damaged
    col, row = int(window.col_off), int(window.row_off)
    inner = Window(col + 10, row + 20, 30, 8)                   # part of the damaged block
    with rasterio.open(path) as src:
        with pytest.raises(InputError) as info:
            raster_check.read(src, path, 1, window=inner)
        assert str(info.value).startswith(
            f"{path}: cannot read pixels (window col {col + 10}, row {row + 20}, 30 x 8 px): ")
        with pytest.raises(InputError) as info:
            raster_check.read(src, None, 1)                     # no path: the dataset's name
        assert str(info.value).startswith(f"{src.name}: cannot read pixels (the whole raster): ")
        with pytest.raises(InputError) as info:
            raster_check.read(src, path, 1, out_shape=(SIZE, SIZE // 2), resampling=Resampling.nearest)
        assert str(info.value).startswith(f"{path}: cannot read pixels (a reduced-resolution read): ")
        # a window of undamaged blocks still reads, exactly
        ok = raster_check.read(src, path, 1, window=Window(0, 0, BLOCK, BLOCK))
    np.testing.assert_array_equal(ok, (np.random.RandomState(3).rand(1, SIZE, SIZE) * 100)
                                  .astype(np.float32)[0, :BLOCK, :BLOCK])


def test_read_masks_names_the_file_and_the_window(tmp_path):
    """With a nodata value the validity mask is computed from the pixels: a garbled block
    cannot give its mask either."""
    path = tmp_path / "nodata.tif"
    _write(path, nodata=-1.0)
    offset, length = _block_range(path, 1, 2)
    _garble(path, offset, length)
    with rasterio.open(path) as src:
        assert raster_check.read_masks(src, path, 1, window=Window(0, 0, 4, 4)).tolist() == [[255] * 4] * 4
        with pytest.raises(InputError) as info:
            raster_check.read_masks(src, path, 1, window=Window(BLOCK, 2 * BLOCK, 16, 16))
    text = str(info.value)
    prefix = f"{path}: cannot read the validity mask (window col {BLOCK}, row {2 * BLOCK}, 16 x 16 px): "
    assert text.startswith(prefix) and "IReadBlock failed at X offset 1, Y offset 2" in text, text


def test_check_readable_checks_only_the_bands_asked_for(tmp_path):
    path = tmp_path / "two.tif"
    _write(path, count=2, interleave="band")
    offset, length = _block_range(path, 0, 0, band=1)          # band 1's first block only
    _garble(path, offset, length)
    with rasterio.open(path) as src:
        raster_check.check_readable(src, path, [2])
        with pytest.raises(InputError, match=re.escape(f"{path}: cannot read pixels (window col 0, row 0, 64 x 64 px): ")):
            raster_check.check_readable(src, path)             # default: all bands
        with pytest.raises(InputError, match="window col 0, row 0"):
            raster_check.check_readable(src, path, [1])


# -- a COG cut short ----------------------------------------------------------------------
def test_a_cog_cut_short_is_refused_by_its_block_layout(tmp_path):
    src_path, cog = tmp_path / "plain.tif", tmp_path / "cut.tif"
    with rasterio.open(src_path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(0.0, 0.0, 10.0, 10.0)) as dst:
        dst.write((np.random.RandomState(1).rand(1, SIZE, SIZE) * 100).astype(np.float32))
    copy_raster(src_path, cog, driver="COG", blocksize=128, compress="deflate")
    n = SIZE // 128
    ranges = {(c, r): _block_range(cog, c, r) for c in range(n) for r in range(n)}
    (c, r), (offset, length) = max(ranges.items(), key=lambda kv: kv[1][0])  # full-res blocks come last
    assert (c, r) == (n - 1, n - 1)
    cut = offset + length // 2
    os.truncate(cog, cut)
    with rasterio.open(cog) as src:                            # it opens, its overview displays
        assert src.overviews(1) == [2, 4]
        assert src.read(1, out_shape=(128, 128)).shape == (128, 128)
    with pytest.raises(InputError) as info:
        raster_check.check_file(cog)
    assert str(info.value) == (
        f"{cog}: the file is cut short (a partial download or copy?): the block at col "
        f"{c * 128}, row {r * 128} of band 1 ends at byte {offset + length}, the file has {cut} "
        f"bytes; its overviews may still display, the full-resolution pixels cannot be read")


# -- a VRT without its source -------------------------------------------------------------
def test_a_vrt_whose_source_is_gone(tmp_path):
    source = tmp_path / "source.tif"
    _write(source)
    vrt = tmp_path / "scene.vrt"
    copy_raster(source, vrt, driver="VRT")
    raster_check.check_file(vrt)
    source.unlink()
    with pytest.raises(InputError) as info:
        raster_check.check_file(vrt)
    text = str(info.value)
    assert text.startswith(f"{vrt}: ") and "\n" not in text
    assert "source.tif" in text, text                          # GDAL's message names the lost source


# -- check_file: not a raster --------------------------------------------------------------
def test_check_file_refuses_what_is_not_a_raster(tmp_path):
    with pytest.raises(InputError) as info:
        raster_check.check_file(tmp_path / "missing.tif")
    assert str(info.value) == f"{tmp_path / 'missing.tif'}: no such file"
    with pytest.raises(InputError) as info:
        raster_check.check_file(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a folder, not a raster"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a raster\n")
    with pytest.raises(InputError) as info:
        raster_check.check_file(notes)
    text = str(info.value)
    assert text.startswith(f"{notes}: not a raster GDAL can read (") and text.endswith(")") and "\n" not in text


# -- gdal_message ---------------------------------------------------------------------------
def test_gdal_message_of_a_real_read_failure_is_gdals_one_line(damaged):
    path, window = damaged
    with rasterio.open(path) as src:
        with pytest.raises(RasterioIOError) as info:
            src.read(1, window=window)
    error = info.value
    assert "see previous exception" in str(error).lower()      # rasterio's own words say nothing
    cause = error.__cause__ or error.__context__
    assert raster_check.gdal_message(error) == " ".join(str(cause).split())


def _chain(*messages: str) -> BaseException:
    """An exception chain, outermost first (each raised from the next)."""
    error = None
    for text in reversed(messages):
        try:
            raise RasterioIOError(text) from error
        except RasterioIOError as e:
            error = e
    return error


@pytest.mark.parametrize("messages, expected", [
    (["Read failed. See previous exception for details.", "tile.tif, band 1:\n  IReadBlock failed\tat X 3"],
     "tile.tif, band 1: IReadBlock failed at X 3"),                 # one line, the chained cause's words
    (["Read or write failed.", "a", "b"], "a"),                     # several: the outermost meaningful one
    (["disk\nerror"], "disk error"),
    (["Read failed. See previous exception for details."], "Read failed. See previous exception for details."),
    (["Read failed.", ""], "Read failed."),                         # nothing better: the error itself
])
def test_gdal_message_rules(messages, expected):
    assert raster_check.gdal_message(_chain(*messages)) == expected


def test_gdal_message_of_an_error_without_text_is_its_type():
    assert raster_check.gdal_message(RasterioIOError()) == "RasterioIOError"
