"""core/atomic.py: an output is written under a temporary name beside the target and renamed at
the end; nothing partial is left on an error or Ctrl-C; an existing output is refused unless
``overwrite``; check_writable's refusals name the file and what is wrong."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from crossearth_sar.core.atomic import (
    atomic_output,
    check_writable,
    current_umask,
    follow_umask,
    remove_path,
    temporary_sibling,
)
from crossearth_sar.core.errors import InputError, flag


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_tif(path: Path, value: float) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=8, height=6, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(500000.0, 4600000.0, 10.0, 10.0)) as dst:
        dst.write(np.full((1, 6, 8), value, np.float32))


# -- the temporary name --------------------------------------------------------------------------
@pytest.mark.parametrize("name, stem, suffix", [
    ("out.tif", "out", ".tif"),
    ("scene.classes.tif", "scene", ".classes.tif"),
    ("archive.tar.gz", "archive", ".tar.gz"),
    ("noext", "noext", ""),
])
def test_temporary_sibling_is_hidden_beside_the_target_and_keeps_the_extensions(tmp_path, name, stem, suffix):
    tmp = temporary_sibling(tmp_path / name)
    assert tmp.parent == tmp_path
    assert re.fullmatch(rf"\.{re.escape(stem)}\.tmp-[0-9a-f]{{8}}{re.escape(suffix)}", tmp.name), tmp.name
    assert temporary_sibling(tmp_path / name) != tmp  # unique per call


# -- atomic_output: success ----------------------------------------------------------------------
def test_written_under_a_temporary_name_and_renamed_at_the_end(tmp_path):
    final = tmp_path / "classes.tif"
    (tmp_path / "other.txt").write_text("left alone")
    with atomic_output(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".classes.tmp-") and tmp.suffix == ".tif"
        assert not tmp.exists() and not final.exists()
        _write_tif(tmp, 3.5)                       # GDAL picks the GTiff driver from the extension
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([tmp.name, "other.txt"])
        assert not final.exists()                  # nothing at the target until the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif", "other.txt"]
    with rasterio.open(final) as src:
        assert src.read(1).tolist() == np.full((6, 8), 3.5, np.float32).tolist()
        assert src.crs.to_epsg() == 32630


def test_the_output_gets_the_mode_the_umask_gives(tmp_path):
    final = tmp_path / "model.safetensors"
    with atomic_output(final) as tmp:
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)                       # as safetensors creates its files
    mask = current_umask()
    assert final.stat().st_mode & 0o777 == 0o666 & ~mask
    old = os.umask(mask)                           # current_umask agrees with os.umask
    os.umask(old)
    assert mask == old


def test_follow_umask_leaves_a_missing_path_alone(tmp_path):
    follow_umask(tmp_path / "missing.bin")
    assert list(tmp_path.iterdir()) == []


def test_a_shapefile_moves_with_its_side_files(tmp_path):
    final = tmp_path / "polygons.shp"
    with atomic_output(final) as tmp:
        for ext in (".shp", ".shx", ".dbf", ".prj"):
            tmp.with_suffix(ext).write_text(ext)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "polygons.dbf", "polygons.prj", "polygons.shp", "polygons.shx"]
    assert (tmp_path / "polygons.dbf").read_text() == ".dbf"


# -- atomic_output: failure leaves nothing -------------------------------------------------------
@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_nothing_partial_is_left_on_an_error_or_ctrl_c(tmp_path, error):
    (tmp_path / "keep.txt").write_text("keep")
    before = _listing(tmp_path)
    with pytest.raises(type(error)):
        with atomic_output(tmp_path / "classes.tif") as tmp:
            _write_tif(tmp, 1.0)
            Path(str(tmp) + ".aux.xml").write_text("<PAMDataset/>")   # a GDAL side file
            assert len(list(tmp_path.iterdir())) == 3
            raise error
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("error", [RuntimeError("failed"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_a_failed_overwrite_keeps_the_old_output(tmp_path, error):
    final = tmp_path / "out.txt"
    final.write_text("old")
    before = _listing(tmp_path)
    with pytest.raises(type(error)):
        with atomic_output(final, overwrite=True) as tmp:
            tmp.write_text("half of the new")
            raise error
    assert _listing(tmp_path) == before


def test_a_failed_folder_output_is_removed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path / "tiles") as tmp:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "a.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_remove_path_takes_sqlite_and_gdal_side_files(tmp_path):
    gpkg = tmp_path / "out.gpkg"
    names = ["out.gpkg", "out.gpkg-journal", "out.gpkg-wal", "out.gpkg-shm", "out.gpkg.aux.xml"]
    for name in names:
        (tmp_path / name).write_text(name)
    (tmp_path / "out.gpkg.bak").write_text("not a side file")
    remove_path(gpkg)
    assert [p.name for p in tmp_path.iterdir()] == ["out.gpkg.bak"]


# -- existing outputs --------------------------------------------------------------------------
def test_an_existing_output_is_refused_without_overwrite(tmp_path):
    final = tmp_path / "out.tif"
    _write_tif(final, 7.0)
    before = _listing(tmp_path)
    with pytest.raises(InputError) as info:
        with atomic_output(final):
            pytest.fail("the block must not run")
    e = info.value
    assert str(e) == f"{final}: output exists (use overwrite to replace it)"
    assert e.worded(flag) == f"{final}: output exists (use --overwrite to replace it)"
    assert e.parameters == ("overwrite",)
    assert _listing(tmp_path) == before


def test_an_existing_output_is_replaced_with_overwrite(tmp_path):
    final = tmp_path / "out.tif"
    _write_tif(final, 7.0)
    with atomic_output(final, overwrite=True) as tmp:
        _write_tif(tmp, 9.0)
        with rasterio.open(final) as src:          # the old output is whole until the rename
            assert float(src.read(1)[0, 0]) == 7.0
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    with rasterio.open(final) as src:
        assert float(src.read(1).min()) == 9.0 and float(src.read(1).max()) == 9.0


def test_an_existing_folder_output_is_replaced_with_overwrite(tmp_path):
    final = tmp_path / "tiles"
    (final / "old").mkdir(parents=True)
    (final / "old" / "a.txt").write_text("old")
    with atomic_output(final, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["tiles"]
    assert _listing(final) == {"b.txt": b"new"}


# -- check_writable ---------------------------------------------------------------------------
def test_check_writable_returns_the_path(tmp_path):
    assert check_writable(tmp_path / "new.tif") == tmp_path / "new.tif"
    assert check_writable(str(tmp_path / "new.tif")) == tmp_path / "new.tif"
    (tmp_path / "there.tif").write_bytes(b"")
    assert check_writable(tmp_path / "there.tif", overwrite=True) == tmp_path / "there.tif"


def test_check_writable_refuses_a_missing_folder(tmp_path):
    final = tmp_path / "nope" / "out.tif"
    with pytest.raises(InputError) as info:
        check_writable(final)
    assert str(info.value) == f"{final}: output folder {tmp_path / 'nope'} does not exist"
    with pytest.raises(InputError, match="does not exist"):
        with atomic_output(final, overwrite=True):
            pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_refuses_a_file_as_the_folder(tmp_path):
    (tmp_path / "a.txt").write_text("a file")
    final = tmp_path / "a.txt" / "out.tif"
    with pytest.raises(InputError) as info:
        check_writable(final, overwrite=True)
    assert str(info.value) == f"{final}: output folder {tmp_path / 'a.txt'} does not exist"


def test_check_writable_refuses_a_folder_as_the_target_without_overwrite(tmp_path):
    (tmp_path / "out.tif").mkdir()
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / "out.tif")
    assert str(info.value) == f"{tmp_path / 'out.tif'}: output exists (use overwrite to replace it)"


def test_check_writable_refuses_a_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError) as info:
            check_writable(folder / "out.tif")
        assert str(info.value) == f"{folder / 'out.tif'}: output folder {folder} is not writable"
    finally:
        folder.chmod(0o755)


def test_check_writable_with_a_bare_name_uses_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_writable("out.tif") == Path("out.tif")
    Path("out.tif").write_bytes(b"")
    with pytest.raises(InputError) as info:
        check_writable("out.tif")
    assert str(info.value) == "out.tif: output exists (use overwrite to replace it)"
