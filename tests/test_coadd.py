"""lymannet.coadd: DESI coadd reading (fast path against fitsio) and pixel cleaning, on synthetic
coadds and the real QuasarNP and EDR files (arm merging and rebinning: test_arms.py)."""

from __future__ import annotations

import fitsio
import numpy as np
import pytest

from conftest import EDR_HEALPIX, EDR_TILE, QUASARNP, make_coadd, need, spoil_pixels
from lymannet.coadd import CoaddFile, read_coadd
from lymannet.desi import ARMS

# --------------------------------------------------------------------------- DESI EDR files


def test_edr_masked_pixels_have_zero_ivar():
    coadd = read_coadd(need(EDR_HEALPIX))
    mask = fitsio.read(str(EDR_HEALPIX), ext="Z_MASK")
    assert (mask != 0).any()
    assert (coadd.ivar["Z"][mask != 0] == 0).all() and (coadd.flux["Z"][mask != 0] == 0).all()


# --------------------------------------------------------------------------- pixel cleaning


def test_bad_pixels_get_zero_ivar_and_non_targets_are_flagged(tmp_path):
    coadd_path = make_coadd(tmp_path, n=8, edit=spoil_pixels)
    coadd = read_coadd(coadd_path)
    assert coadd.is_target.tolist() == [True] * 4 + [False, False, True, True]
    assert (coadd.ivar["B"][0, 100:110] == 0).all() and coadd.ivar["B"][1, 200] == 0
    assert coadd.ivar["R"][1, 50] == 0 and (coadd.ivar["Z"][2, 300:306] == 0).all()
    assert np.isfinite(coadd.flux["B"]).all() and np.isfinite(coadd.flux["R"]).all()


def float64_spectra(hdus: dict) -> None:
    spoil_pixels(hdus)
    for arm in ARMS:
        hdus[f"{arm}_FLUX"] = hdus[f"{arm}_FLUX"].astype("f8")
        hdus[f"{arm}_MASK"] = hdus[f"{arm}_MASK"].astype("i2")


@pytest.mark.parametrize("source", ["edr-tile", "edr-healpix", "quasarnp", "synthetic", "synthetic-f8-i2"])
def test_fast_read_matches_fitsio(tmp_path, source):
    real = {"edr-tile": EDR_TILE, "edr-healpix": EDR_HEALPIX, "quasarnp": QUASARNP / "test_coadd.fits"}
    path = real.get(source)
    if path is None:
        path = make_coadd(tmp_path, n=8, edit=float64_spectra if source.endswith("i2") else spoil_pixels)
    fast_file, slow_file = CoaddFile(str(need(path))), CoaddFile(str(path), fast_read=False)
    assert all(raw is not None for layout in fast_file.arms.values() for raw in layout.raw.values())
    rows = np.array([0, 2, 3]) if fast_file.n_rows > 3 else None
    fast, slow = fast_file.read(rows), slow_file.read(rows)
    assert fast.n_masked == slow.n_masked
    for arm in ARMS:
        assert fast.flux[arm].dtype == np.float32 and fast.flux[arm].dtype.isnative
        np.testing.assert_array_equal(fast.flux[arm], slow.flux[arm])
        np.testing.assert_array_equal(fast.ivar[arm], slow.ivar[arm])
