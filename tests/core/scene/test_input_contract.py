"""Input contract 2 (models trained under it still read scenes this way, see
tests/core/scene/test_calibration.py for contract 3): the same real chip written as float32 dB, float32 linear
intensity, uint16 amplitude and an 8-bit quicklook of dB reaches the model, and the router's
descriptors, as nearly the same tensors.

Tolerance (stated in docs/contracts.md §3): on valid pixels, |x_domain - x_dB| has a mean
<= 0.005 and a 99th percentile <= 0.02 (the 8-bit quicklook's step, 60 dB / 254 = 0.24 dB, is about
0.007 of the stretch); the raw descriptors of each 256 px tile agree within 5 %.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.scene import descriptors, sar_io

CHIP = "examples/Spain_7370579_S1Hand.tif"


def _write(path, bands, dtype, profile, nodata):
    p = dict(profile, dtype=dtype, count=len(bands), nodata=nodata)
    with rasterio.open(path, "w", **p) as dst:
        dst.write(np.stack(bands).astype(dtype))
        dst.descriptions = ("VV", "VH")[: len(bands)]
    return path


@pytest.fixture(scope="module")
def domains(tmp_path_factory, repo_root):
    """{domain name: path} of the chip's VV + VH written in four value domains."""
    d = tmp_path_factory.mktemp("domains")
    with rasterio.open(repo_root / CHIP) as src:
        db = src.read().astype(np.float64)           # [2, H, W], NaN nodata
        profile = {k: src.profile[k] for k in ("driver", "width", "height", "crs", "transform")}
    nan = ~np.isfinite(db)
    inten = 10 ** (db / 10)
    amp = np.clip(np.round(np.sqrt(inten) * 10000), 1, 65535)
    ql = np.clip(np.round((np.clip(db, -48, 12) + 48) / 60 * 254) + 1, 1, 255)  # 0 = nodata
    amp[nan], ql[nan] = 0, 0
    return {
        "db": _write(d / "db.tif", list(db), "float32", profile, float("nan")),
        "intensity": _write(d / "intensity.tif", list(inten), "float32", profile, float("nan")),
        "amplitude": _write(d / "amplitude.tif", list(amp), "uint16", profile, 0),
        "quicklook": _write(d / "quicklook.tif", list(ql), "uint8", profile, 0),
    }


def _read(path, **kw):
    with sar_io.open_scene(path, contract=2, **kw) as s:
        return s.domain, s.read_window(Window(0, 0, s.width, s.height))


@pytest.mark.parametrize("bands", [None, ["VV"]], ids=["dualpol", "VV-only"])
def test_four_domains_give_the_same_model_input(domains, bands):
    detected = {}
    ref_domain, ref = _read(domains["db"], bands=bands)
    detected["db"] = ref_domain
    for name in ("intensity", "amplitude", "quicklook"):
        dom, w = _read(domains[name], bands=bands)
        detected[name] = dom
        both = ref.valid & w.valid
        assert both.sum() > 0.95 * ref.valid.sum()
        diff = np.abs(w.x[:, both] - ref.x[:, both])
        assert diff.mean() <= 0.005, (name, diff.mean())
        assert np.percentile(diff, 99) <= 0.02, (name, np.percentile(diff, 99))
    # ces info's detection is the one source of truth for the domain
    assert detected == {"db": "db", "intensity": "linear", "amplitude": "linear",
                        "quicklook": "quicklook"}


def test_four_domains_give_the_same_descriptors(domains):
    def tiles(path):
        out = []
        with sar_io.open_scene(path, contract=2) as s:
            for r in (0, 256):
                for c in (0, 256):
                    w = s.read_window(Window(c, r, 256, 256))
                    out.append(descriptors.raw_descriptors(torch.from_numpy(w.phys),
                                                           torch.from_numpy(w.valid))[0].numpy())
        return np.array(out)

    ref = tiles(domains["db"])
    for name in ("intensity", "amplitude", "quicklook"):
        got = tiles(domains[name])
        np.testing.assert_allclose(got, ref, rtol=0.05, err_msg=name)



def test_contract_1_models_read_as_they_were_trained(domains):
    """A model without input.contract (trained before contract 2) gets quicklooks / 255 and
    descriptors on log(1 + |X|); contract 2 stretches quicklooks like every other domain."""
    with sar_io.open_scene(domains["quicklook"], bands=["VV"], contract=1) as old, \
            sar_io.open_scene(domains["quicklook"], bands=["VV"], contract=2) as new:
        assert old.contract == 1 and new.contract == 2
        np.testing.assert_array_equal(old.stats[0], [0, 255])
        a, b = old.read_window(Window(0, 0, 64, 64)), new.read_window(Window(0, 0, 64, 64))
        raw = old.src.read(1, window=Window(0, 0, 64, 64)).astype(np.float32)
        np.testing.assert_allclose(a.x[0][a.valid], (raw / 255)[a.valid], atol=1e-6)
        np.testing.assert_allclose(a.phys[a.valid], np.log1p(raw)[a.valid], rtol=1e-6)
        np.testing.assert_array_equal(b.phys, b.x[0])
    with pytest.raises(InputError, match="input contract"):
        sar_io.open_scene(domains["db"], contract=4)
