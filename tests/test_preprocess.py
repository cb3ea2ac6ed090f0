"""lymannet.preprocess: QuasarNET inverse-variance rebinning and standardisation."""

from __future__ import annotations

from pathlib import Path

import fitsio
import numpy as np
import pytest

from lymannet.desi import ARMS
from lymannet.grid import Grid
from lymannet.preprocess import network_input, rebin, standardise

QUASARNP = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "quasarnp"
LINEAR = Grid(kind="linear", start=4000.0, step=8.0, n_pixels=10)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real-data fixture {path} not found (a plain clone has no ../shared/fixtures)")
    return path


def random_spectra(n: int = 4, wavelength: np.ndarray | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    wavelength = np.arange(3990.0, 4090.0, 0.8) if wavelength is None else wavelength
    flux = rng.normal(1.0, 1.0, (n, len(wavelength)))
    ivar = rng.uniform(0.0, 2.0, (n, len(wavelength)))
    return wavelength, flux, ivar


def test_rebin_is_an_inverse_variance_weighted_sum_by_floor_bin():
    wavelength, flux, ivar = random_spectra()
    out_flux, out_ivar = rebin(wavelength, flux, ivar, LINEAR)
    assert out_flux.dtype == np.float32 and out_flux.shape == (4, 10)
    for i in range(LINEAR.n_pixels):
        # pixel at exactly a lower edge belongs to that bin: floor((w - start) / step)
        inside = (wavelength >= 4000.0 + 8 * i) & (wavelength < 4008.0 + 8 * i)
        weight = ivar[:, inside].sum(axis=1)
        np.testing.assert_allclose(out_ivar[:, i], weight, rtol=1e-6)
        np.testing.assert_allclose(out_flux[:, i], (flux * ivar)[:, inside].sum(axis=1) / weight, rtol=1e-5)


def test_rebin_ignores_pixels_outside_the_grid_and_zeroes_empty_bins():
    wavelength, flux, ivar = random_spectra()
    ivar[:, (wavelength >= 4016) & (wavelength < 4024)] = 0
    out_flux, out_ivar = rebin(wavelength, flux, ivar, LINEAR)
    assert (out_ivar[:, 2] == 0).all() and (out_flux[:, 2] == 0).all()
    inside = (wavelength >= 4000) & (wavelength < 4080)
    np.testing.assert_allclose(out_ivar.sum(axis=1), ivar[:, inside].sum(axis=1), rtol=1e-5)


def test_shared_and_per_row_wavelengths_agree():
    wavelength, flux, ivar = random_spectra()
    shared = rebin(wavelength, flux, ivar, LINEAR)
    per_row = rebin(np.tile(wavelength, (4, 1)), flux, ivar, LINEAR)
    for a, b in zip(shared, per_row):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_rebin_rejects_bad_shapes_and_unsorted_wavelengths():
    wavelength, flux, ivar = random_spectra()
    with pytest.raises(ValueError, match="same"):
        rebin(wavelength, flux, ivar[:, :-1], LINEAR)
    with pytest.raises(ValueError, match="increase"):
        rebin(wavelength[::-1], flux, ivar, LINEAR)


def test_standardise_gives_zero_weighted_mean_and_unit_weighted_rms():
    _, flux, ivar = random_spectra(n=3)
    flux[1], ivar[1] = 5.0, 1.0  # constant: zero rms (exactly, with equal weights), left as it is
    ivar[2] = 0.0  # no weight: left as it is
    out = standardise(flux, ivar).astype(np.float64)
    weight = ivar[0].sum()
    mean = (out[0] * ivar[0]).sum() / weight
    assert abs(mean) < 1e-6
    assert abs(np.sqrt((ivar[0] * (out[0] - mean) ** 2).sum() / weight) - 1) < 1e-5
    np.testing.assert_allclose(out[1], 5.0)
    np.testing.assert_allclose(out[2], flux[2].astype(np.float32))


def test_network_input_channels():
    _, flux, ivar = random_spectra(n=2)
    x = network_input(flux, ivar)
    assert x.shape == (2, 1, flux.shape[1]) and x.dtype == np.float32
    x2 = network_input(flux, ivar, snr_channel=True)
    assert x2.shape == (2, 2, flux.shape[1])
    np.testing.assert_array_equal(x2[:, 0], x[:, 0])
    np.testing.assert_allclose(x2[:, 1], flux * np.sqrt(ivar), rtol=1e-6)


def test_camera_by_camera_rebinning_reproduces_quasarnp():
    """QuasarNP's own order: all cameras' pixels summed into the log grid together."""
    expected = np.load(need(QUASARNP / "coadd_x.npy"))
    with fitsio.FITS(str(QUASARNP / "test_coadd.fits")) as fits:
        wavelength = np.concatenate([fits[f"{arm}_WAVELENGTH"].read() for arm in ARMS])
        flux = np.hstack([fits[f"{arm}_FLUX"].read() for arm in ARMS])
        ivar = np.hstack([fits[f"{arm}_IVAR"].read() for arm in ARMS])
    # arms overlap, so the concatenated wavelengths are not sorted: the per-row path handles that
    out_flux, out_ivar = rebin(np.tile(wavelength, (len(flux), 1)), flux, ivar, Grid.quasarnet())
    kept = out_ivar.sum(axis=1) > 0
    assert np.flatnonzero(~kept).tolist() == [11]
    assert np.abs(network_input(out_flux[kept], out_ivar[kept])[:, 0] - expected).max() < 1e-4
    with fitsio.FITS(str(QUASARNP / "coadd_rebinned.fits")) as fits:
        total_ivar = sum(fits[f"{arm}_IVAR"].read() for arm in ARMS)
    np.testing.assert_allclose(out_ivar, total_ivar, rtol=1e-5, atol=1e-6 * total_ivar.max())
