"""lymannet.arms: merging a coadd's arms onto the native grid and the native-to-network rebinning,
against lymannet.preprocess and QuasarNP's files, on synthetic coadds and the real QuasarNP file."""

from __future__ import annotations

import fitsio
import numpy as np
import pytest

from conftest import QUASARNP, make_coadd, need
from lymannet.arms import NativeRebinner, merge_arm_sums, merge_arms, sums_to_flux
from lymannet.coadd import read_coadd
from lymannet.desi import ARMS, arm_wavelength, native_wavelength
from lymannet.grid import Grid
from lymannet.preprocess import network_input, rebin


def test_quasarnp_parity_through_reader_and_network_input():
    expected = np.load(need(QUASARNP / "coadd_x.npy"))
    coadd = read_coadd(QUASARNP / "test_coadd.fits")
    assert len(coadd) == 25 and coadd.is_target.all()
    assert coadd.targetid.tolist() == list(range(25))  # no FIBERMAP: TARGETID = row index
    flux, ivar = merge_arms(coadd)
    assert flux.shape == (25, len(native_wavelength()))
    net_flux, net_ivar = rebin(native_wavelength(), flux, ivar, Grid.quasarnet())
    kept = net_ivar.sum(axis=1) > 0
    assert np.flatnonzero(~kept).tolist() == [11]
    x = network_input(net_flux[kept], net_ivar[kept])
    assert x.shape == (24, 1, 443)
    assert np.abs(x[:, 0] - expected).max() < 1e-4


def test_fast_rebinning_matches_preprocess_on_quasarnp_file():
    coadd = read_coadd(need(QUASARNP / "test_coadd.fits"))
    weighted, weight = merge_arm_sums(coadd)
    fast_flux, fast_ivar = NativeRebinner(Grid.quasarnet()).rebin_sums(weighted, weight)
    native_flux = sums_to_flux(weighted, weight)
    ref_flux, ref_ivar = rebin(native_wavelength(), native_flux, weight, Grid.quasarnet())
    np.testing.assert_allclose(fast_ivar, ref_ivar, rtol=1e-5, atol=0)
    np.testing.assert_allclose(fast_flux, ref_flux, rtol=1e-4, atol=1e-6 * np.abs(ref_flux).max())
    x = network_input(fast_flux[fast_ivar.sum(1) > 0], fast_ivar[fast_ivar.sum(1) > 0])
    assert np.abs(x[:, 0] - np.load(QUASARNP / "coadd_x.npy")).max() < 1e-4


def test_per_camera_sums_match_coadd_rebinned():
    expected = fitsio.FITS(str(need(QUASARNP / "coadd_rebinned.fits")))
    coadd = read_coadd(QUASARNP / "test_coadd.fits")
    total_weighted = total_weight = 0.0
    for arm in ARMS:
        flux, ivar = rebin(coadd.wavelength[arm], coadd.flux[arm], coadd.ivar[arm], Grid.quasarnet())
        weighted, weight = expected[f"{arm}_FLUX"].read(), expected[f"{arm}_IVAR"].read()
        np.testing.assert_allclose(ivar, weight, rtol=1e-5, atol=1e-6 * weight.max())
        np.testing.assert_allclose(flux * ivar, weighted, rtol=1e-4, atol=1e-5 * np.abs(weighted).max())
        total_weighted, total_weight = total_weighted + weighted, total_weight + weight
    # Merging on the native grid first gives the same sums as rebinning each camera and adding.
    weighted, weight = merge_arm_sums(read_coadd(QUASARNP / "test_coadd.fits"))
    flux, ivar = NativeRebinner(Grid.quasarnet()).rebin_sums(weighted, weight)
    np.testing.assert_allclose(ivar, total_weight, rtol=1e-5, atol=1e-6 * total_weight.max())
    np.testing.assert_allclose(
        flux * ivar, total_weighted, rtol=1e-4, atol=1e-5 * np.abs(total_weighted).max()
    )


def test_arm_overlaps_are_inverse_variance_merged(tmp_path):
    coadd = read_coadd(make_coadd(tmp_path, n=2))
    b_flux, b_ivar = coadd.flux["B"].copy(), coadd.ivar["B"].copy()
    r_flux, r_ivar = coadd.flux["R"].copy(), coadd.ivar["R"].copy()
    flux, ivar = merge_arms(coadd)
    native = native_wavelength()
    at = int(np.argmin(np.abs(native - 5780.0)))  # B/R overlap: 5760-5800 A
    b_at = int(np.argmin(np.abs(arm_wavelength("B") - 5780.0)))
    r_at = int(np.argmin(np.abs(arm_wavelength("R") - 5780.0)))
    np.testing.assert_allclose(ivar[:, at], b_ivar[:, b_at] + r_ivar[:, r_at], rtol=1e-6)
    expected = (b_flux[:, b_at] * b_ivar[:, b_at] + r_flux[:, r_at] * r_ivar[:, r_at]) / ivar[:, at]
    np.testing.assert_allclose(flux[:, at], expected, rtol=1e-5)
    only_b = int(np.argmin(np.abs(native - 4000.0)))
    np.testing.assert_allclose(flux[:, only_b], b_flux[:, only_b], rtol=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0},
        {"kind": "log", "wave_min": 3600.0, "wave_max": 10000.0, "step": 0.001},
        {"kind": "linear", "wave_min": 3000.0, "wave_max": 7000.0, "step": 0.5},  # finer than 0.8 A
        {"kind": "log", "wave_min": 5000.0, "wave_max": 9000.0, "step": 0.0003},
    ],
)
def test_native_rebinner_matches_preprocess_rebin(spec):
    grid = Grid.from_config(spec)
    rng = np.random.default_rng(1)
    flux = rng.normal(1, 1, (5, 7781)).astype("f4")
    ivar = rng.uniform(0, 2, (5, 7781)).astype("f4")
    ivar[0] = 0
    fast_flux, fast_ivar = NativeRebinner(grid).rebin(flux, ivar)
    ref_flux, ref_ivar = rebin(native_wavelength(), flux, ivar, grid)
    np.testing.assert_allclose(fast_ivar, ref_ivar, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast_flux, ref_flux, rtol=1e-4, atol=1e-5)
