"""Training batches (lymannet.batches): the torch network input that online augmentation trains
on is the numpy one prediction uses (lymannet.preprocess.network_input), row for row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
