"""Wavelength grids and QuasarNET rebinning/standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from lymannet.errors import ConfigError
from lymannet.grid import Grid
from lymannet.preprocess import network_input, rebin, standardise


def test_quasarnet_and_thesis_grids():
    qnet = Grid.quasarnet()
    assert qnet.n_pixels == 443
    assert qnet.wavelength[0] == pytest.approx(3600.0)
    assert qnet.wavelength[1] == pytest.approx(10 ** (np.log10(3600) + 1e-3))
    assert Grid.from_config({"kind": "log", "wave_min": 3600, "wave_max": 10000, "step": 1e-3}) == qnet
    thesis = Grid.from_config({"kind": "linear", "wave_min": 3600, "wave_max": 10000, "step": 8})
    assert thesis.n_pixels == 800 and thesis.wave_max == pytest.approx(10000)


def test_pixel_lookup_and_inverse():
    grid = Grid.from_config({"kind": "linear", "wave_min": 3600, "wave_max": 10000, "step": 8})
    assert grid.pixel_index(np.array([3600.0, 3607.99, 3608.0, 9999.0, 10000.0, 3000.0])).tolist() == [
        0,
        0,
        1,
        799,
        800,
        -1,
    ]
    wave = np.array([4000.0, 5000.5, 9000.25])
    np.testing.assert_allclose(grid.wavelength_at(grid.fractional_index(wave)), wave)
    qnet = Grid.quasarnet()
    np.testing.assert_allclose(qnet.wavelength_at(qnet.fractional_index(wave)), wave)


def test_bad_grid_config():
    with pytest.raises(ConfigError, match="wave_max"):
        Grid.from_config({"kind": "linear", "wave_min": 5000, "wave_max": 4000, "step": 8})
    with pytest.raises(ConfigError, match="kind"):
        Grid(kind="sqrt", start=0, step=1, n_pixels=3)


def test_rebin_is_inverse_variance_weighted():
    grid = Grid(kind="linear", start=0.0, step=2.0, n_pixels=2)
    wave = np.array([0.5, 1.5, 2.5, 3.5, 4.5])  # last pixel falls outside the grid
    flux = np.array([[1.0, 3.0, 2.0, 2.0, 99.0]])
    ivar = np.array([[1.0, 3.0, 0.0, 4.0, 1.0]])
    out_flux, out_ivar = rebin(wave, flux, ivar, grid)
    np.testing.assert_allclose(out_flux, [[(1 + 9) / 4, 2.0]])
    np.testing.assert_allclose(out_ivar, [[4.0, 4.0]])
    # per-row wavelengths (shifted spectra) give the same sums
    out_flux2, out_ivar2 = rebin(np.tile(wave, (1, 1)), flux, ivar, grid)
    np.testing.assert_allclose(out_flux2, out_flux)
    np.testing.assert_allclose(out_ivar2, out_ivar)


def test_zero_ivar_pixel_gets_zero_flux_and_standardise_matches_hand_computation():
    grid = Grid(kind="linear", start=0.0, step=1.0, n_pixels=3)
    out_flux, out_ivar = rebin(
        np.array([0.5, 1.5, 2.5]), np.array([[5.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 1.0]]), grid
    )
    assert out_flux[0, 0] == 0 and out_ivar[0, 0] == 0
    x = standardise(out_flux, out_ivar)
    # weighted mean 2, weighted rms 1 -> (0-2)/1, (1-2)/1, (3-2)/1
    np.testing.assert_allclose(x, [[-2.0, -1.0, 1.0]])
    both = network_input(out_flux, out_ivar, snr_channel=True)
    assert both.shape == (1, 2, 3)
    np.testing.assert_allclose(both[0, 1], [0.0, 1.0, 3.0])
