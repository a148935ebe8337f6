"""core/write_failures.py: a failed write named in one line for the user's path, whatever the
library said (an errno, the errno in words, or nothing but a full disk); temporaries renamed
to the output they were for; bad input, Ctrl-C and failures of the work left alone. And
core/atomic.py's use of it: nothing left behind."""
from __future__ import annotations

import errno
import re
import sqlite3
from pathlib import Path

import pytest

from crossearth_sar.core import write_failures
from crossearth_sar.core.atomic import atomic_output, temporary_folder
from crossearth_sar.core.disk_space import MB
from crossearth_sar.core.errors import InputError
from crossearth_sar.core.write_failures import (
    WriteFailure,
    failure_errno,
    is_temporary,
    named_writes,
)


def _full(monkeypatch, free: int = 0) -> None:
    """Every file system reads as having ``free`` bytes free."""
    monkeypatch.setattr(write_failures, "free_bytes", lambda path: free)


# -- the message -----------------------------------------------------------------------------
def test_a_full_disk_names_the_path_the_need_and_the_free_space(tmp_path, monkeypatch):
    _full(monkeypatch, free=12 * MB + 345)
    e = WriteFailure(tmp_path / "flood.gpkg", errno.ENOSPC, needed=240 * MB + 1)
    assert str(e) == (f"no space left on device writing {tmp_path / 'flood.gpkg'} "
                      f"(about 241 MB needed, 12 MB free)")
    assert isinstance(e, InputError) and e.worded() == str(e) and e.parameters == ()


def test_the_need_shown_is_never_below_the_free_space(tmp_path, monkeypatch):
    _full(monkeypatch, free=5 * MB)
    assert "(about 6 MB needed, 5 MB free)" in str(WriteFailure(tmp_path / "a", errno.ENOSPC))
    assert "(about 6 MB needed, 5 MB free)" in str(WriteFailure(tmp_path / "a", errno.ENOSPC, 1))


def test_the_free_space_is_measured_when_the_message_is_made(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    e = WriteFailure(tmp_path / "a.tif", errno.ENOSPC, needed=3 * MB)
    _full(monkeypatch, free=2 * MB)   # the temporaries removed since
    assert str(e).endswith("(about 3 MB needed, 2 MB free)")


@pytest.mark.parametrize("number, words", [
    (errno.EROFS, "read-only file system writing"),
    (errno.EIO, "input/output error writing"),
    (errno.EACCES, "permission denied writing"),
    (errno.EPERM, "permission denied writing"),
    (errno.EFBIG, "file too large for its file system writing"),
])
def test_other_write_failures_are_named_in_one_line(number, words, tmp_path):
    e = WriteFailure(tmp_path / "report.json", number)
    assert str(e) == f"{words} {tmp_path / 'report.json'}"


def test_a_quota_names_the_need(tmp_path):
    e = WriteFailure(tmp_path / "m.safetensors", errno.EDQUOT, needed=7 * MB)
    assert str(e) == f"disk quota exceeded writing {tmp_path / 'm.safetensors'} (about 7 MB needed)"


# -- telling a write failure from the rest ---------------------------------------------------------
def _raised(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise outer
    except BaseException as e:
        return e


@pytest.mark.parametrize("error, number", [
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
    (RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
     errno.ENOSPC),
    (sqlite3.OperationalError("database or disk is full"), errno.ENOSPC),
    (RuntimeError("I/O error: Read-only file system (os error 30)"), errno.EROFS),
    # torch.save through a Python file: the OSError is the cause of torch's own words
    (_raised(OSError(errno.ENOSPC, "No space left on device"),
             RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 576 vs 534")),
     errno.ENOSPC),
])
def test_the_libraries_words_are_understood(error, number, tmp_path, monkeypatch):
    _full(monkeypatch, free=10 * MB)   # not full: the words alone decide
    assert failure_errno(error, tmp_path) == number


def test_a_full_disk_explains_what_the_library_did_not_say(tmp_path, monkeypatch):
    gdal = RuntimeError("TIFFAppendToStrip:Seek error at scanline 0")
    _full(monkeypatch, free=10 * MB)
    assert failure_errno(gdal, tmp_path) is None
    _full(monkeypatch, free=100)
    assert failure_errno(gdal, tmp_path) == errno.ENOSPC


def test_a_libtiff_write_error_on_a_disk_with_room_is_an_io_error(tmp_path, monkeypatch):
    _full(monkeypatch, free=10 * MB)
    assert failure_errno(RuntimeError("Write failed"), tmp_path, tiff_failed=True) == errno.EIO


def test_bad_input_ctrl_c_and_other_files_errors_are_not_write_failures(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    assert failure_errno(InputError("a.tif: not a raster"), tmp_path) is None
    assert failure_errno(KeyboardInterrupt(), tmp_path) is None
    _full(monkeypatch, free=10 * MB)
    elsewhere = OSError(errno.EIO, "Input/output error", "/somewhere/else/scene.tif")
    assert failure_errno(elsewhere, tmp_path) is None   # reading an input, not writing here
    here = OSError(errno.EIO, "Input/output error", str(tmp_path / ".o.tmp-1234.gpkg"))
    assert failure_errno(here, tmp_path) == errno.EIO
    assert failure_errno(ValueError("a bug"), tmp_path) is None


def test_temporaries_are_recognized():
    assert is_temporary("out/.flood.tmp-0123abcd.gpkg")
    assert is_temporary("work/.last.state-00000004.pt.tmp-123")
    assert is_temporary("out/.ces-segment-x1y2/raw.tif")
    assert not is_temporary("out/flood.gpkg") and not is_temporary(".hidden/out.gpkg")


# -- named_writes and the atomic outputs ---------------------------------------------------------
def test_a_failure_inside_is_named_for_the_output(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    with pytest.raises(WriteFailure) as e:
        with named_writes(tmp_path / "o.gpkg", needed=2 * MB):
            raise RuntimeError("no such table: gpkg_contents")   # OGR on a full disk
    assert e.value.path == tmp_path / "o.gpkg" and e.value.needed == 2 * MB


def test_a_temporary_is_renamed_and_the_whole_need_kept(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    with pytest.raises(WriteFailure) as e:
        with named_writes(tmp_path / "model.safetensors", needed=9 * MB):
            with named_writes(tmp_path / ".model.tmp-1a2b3c4d.safetensors", needed=MB):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.path == tmp_path / "model.safetensors" and e.value.needed == 9 * MB


def test_an_output_named_inside_keeps_its_name(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    with pytest.raises(WriteFailure) as e:
        with named_writes(tmp_path / "o.gpkg", needed=5 * MB):
            with named_writes(tmp_path / "o_confidence.tif", needed=MB):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.path == tmp_path / "o_confidence.tif" and e.value.needed == 5 * MB


def test_other_errors_pass_unchanged(tmp_path, monkeypatch):
    _full(monkeypatch, free=10 * MB)
    with pytest.raises(ValueError, match="a bug"):
        with named_writes(tmp_path / "o.gpkg"):
            raise ValueError("a bug")
    with pytest.raises(InputError, match="not a raster"):
        with named_writes(tmp_path / "o.gpkg"):
            raise InputError("a.tif: not a raster")


def test_an_atomic_output_leaves_nothing_and_names_the_final_path(tmp_path):
    final = tmp_path / "report.json"
    with pytest.raises(WriteFailure) as e:
        with atomic_output(final, needed=3 * MB) as tmp:
            Path(tmp).write_text("{}")
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
    assert str(e.value) == f"read-only file system writing {final}"
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_folder_is_removed_and_named_for_the_output(tmp_path, monkeypatch):
    _full(monkeypatch, free=0)
    with pytest.raises(WriteFailure) as e:
        with temporary_folder(tmp_path, "segment", tmp_path / "o.gpkg", needed=4 * MB) as tmp:
            assert tmp.name.startswith(".ces-segment-")
            (tmp / "raw.tif").write_bytes(b"x")
            raise RuntimeError("Write failed. See previous exception for details.")
    assert re.fullmatch(rf"no space left on device writing {re.escape(str(tmp_path / 'o.gpkg'))} "
                        r"\(about 4 MB needed, 0 MB free\)", str(e.value))
    assert list(tmp_path.iterdir()) == []
