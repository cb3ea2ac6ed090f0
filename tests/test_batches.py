"""Training batches (lymannet.batches): the torch network input that online augmentation trains
on is the numpy one prediction uses (lymannet.preprocess.network_input), row for row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import GRID, LOG_GRID, PARITY_Z, network_batch
from lymannet.batches import network_input_torch
from lymannet.preprocess import network_input


def spectra(seed: int = 4, n: int = 40, pixels: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Flux with a continuum, lines and noise; rows with masked pixels, one fully masked, one flat."""
    rng = np.random.default_rng(seed)
    wave = np.linspace(0.0, 1.0, pixels)
    flux = rng.normal(1.0, 0.3, (n, 1)) + 0.5 * np.sin(8 * wave) + rng.normal(0, 0.2, (n, pixels))
    ivar = rng.uniform(5.0, 50.0, (n, pixels))
    ivar[rng.random((n, pixels)) < 0.1] = 0.0
    ivar[3] = 0.0  # no valid pixel
    flux[5] = 2.0  # no spread: rms 0
    return flux.astype(np.float32), ivar.astype(np.float32)


@pytest.mark.parametrize("snr_channel", [False, True])
def test_torch_network_input_matches_numpy(snr_channel):
    flux, ivar = spectra()
    expected = network_input(flux, ivar, snr_channel)
    got = network_input_torch(torch.from_numpy(flux), torch.from_numpy(ivar), snr_channel).numpy()
    assert got.shape == expected.shape == (len(flux), 2 if snr_channel else 1, flux.shape[1])
    assert got.dtype == expected.dtype == np.float32
    # both standardise in float64 and round once to float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[3, 0], flux[3])  # nothing to standardise by: flux passes through


@pytest.mark.parametrize("grid", [GRID, LOG_GRID], ids=["linear", "log"])
@pytest.mark.parametrize("snr_channel", [False, True])
def test_torch_network_input_matches_numpy_on_rebinned_spectra(grid, snr_channel):
    """Spectra as ingestion rebins them (ivar-0 bins at the grid ends and the arm overlap; lines at
    the blue edge, mid-grid and the red end of the data; one row without data): float32 round-off
    (rtol 1e-5), the empty row passed through unchanged."""
    flux, ivar = network_batch(grid, PARITY_Z)
    flux[2], ivar[2] = 0.0, 0.0
    expected = network_input(flux, ivar, snr_channel)
    got = network_input_torch(torch.from_numpy(flux), torch.from_numpy(ivar), snr_channel).numpy()
    assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(got[2], 0.0)


def test_torch_network_input_leaves_constant_spectra_like_numpy():
    rng = np.random.default_rng(0)
    flux = np.full((20, 300), 0.7, np.float32)  # constant flux, uneven ivar: rms is round-off
    ivar = rng.uniform(0.1, 10.0, flux.shape).astype(np.float32)
    expected = network_input(flux, ivar)
    got = network_input_torch(torch.from_numpy(flux), torch.from_numpy(ivar), False).numpy()
    np.testing.assert_array_equal(expected[:, 0], flux)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
