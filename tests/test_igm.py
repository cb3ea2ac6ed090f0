"""lymannet.igm: Inoue et al. 2014 mean transmission (vs redrock) and per-sightline scatter."""

from __future__ import annotations

import numpy as np
import pytest

from lymannet.igm import (
    InoueIGM,
    correlated_gaussian_field,
    fluctuate_tau,
    igm_transmission,
    inoue14_coefficients,
)

redrock_igm = pytest.importorskip(
    "redrock.igm", reason="redrock (reference Inoue14 implementation) not installed"
)


def test_matches_redrock_inoue14_to_1e_6():
    wave = np.linspace(1250.0, 10000.0, 1500)
    z = np.arange(1.2, 6.0001, 0.1)
    reference = redrock_igm.transmission_Lyman(z, wave, model="Inoue14")
    assert np.max(np.abs(igm_transmission(wave, z) - reference)) < 1e-6


def test_matches_redrock_on_desi_grid_at_lbg_redshifts():
    from lymannet.desi import native_wavelength

    wave = native_wavelength()
    z = np.array([1.8, 2.0, 2.55, 3.0, 3.45, 4.0])
    reference = redrock_igm.Inoue14().full_IGM(z, np.tile(wave, (z.size, 1)))
    assert np.max(np.abs(igm_transmission(wave, z) - reference)) < 1e-6


def test_scalar_redshift_gives_one_spectrum_and_redward_of_lya_is_transparent():
    wave = np.linspace(3600.0, 9800.0, 500)
    transmission = igm_transmission(wave, 3.0)
    assert transmission.shape == (500,)
    assert np.all(transmission[wave > 1215.67 * 4.0] == 1.0)
    assert np.all(transmission[wave < 1215.67 * 4.0] < 1.0)
    # Lyman-continuum absorption grows blueward of the Lyman limit: below it, darker than the forest.
    below_limit = wave < 911.8 * 4.0
    assert np.all(np.diff(transmission[below_limit]) > 0)
    assert transmission[below_limit].max() < transmission[(wave > 1100 * 4) & (wave < 1200 * 4)].min()


def test_low_redshift_continuum_follows_paper_eq25():
    """For z_S < 1.2 the LAF continuum is I14 eq. 25 (redrock overwrites it; we follow the paper)."""
    wave, z = np.array([1500.0, 1800.0]), 1.0
    tau_lc = InoueIGM(wave).lyman_continuum_tau(z)[0]
    ratio = wave / 911.8
    laf = 0.3248 * (ratio**1.2 - (1 + z) ** -0.9 * ratio**2.1)
    dla = 0.2113 * (1 + z) ** 2 - 0.07661 * (1 + z) ** 2.3 * ratio**-0.3 - 0.1347 * ratio**2
    np.testing.assert_allclose(tau_lc, laf + dla, rtol=1e-12)


def test_coefficient_tables_are_the_papers():
    coeff = inoue14_coefficients()
    assert coeff["wavelength"].size == 39
    assert coeff["wavelength"][0] == pytest.approx(1215.67)
    assert coeff["laf"][0, 0] == pytest.approx(1.68976e-2)


def test_fluctuations_preserve_the_mean_transmission():
    rng = np.random.default_rng(5)
    mean_tau = np.full((400, 500), 0.4)
    field = correlated_gaussian_field(rng, mean_tau.shape, 0.8)
    assert abs(field.std() - 1.0) < 0.03
    transmission = np.exp(-fluctuate_tau(mean_tau, field))
    assert transmission.mean() == pytest.approx(np.exp(-0.4), abs=0.01)
    assert transmission.std() > 0.1  # each sightline is a forest, not the mean
    # correlated over a few Angstrom: neighbouring pixels alike, distant ones not
    neighbour = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    distant = np.corrcoef(field[:, :-20].ravel(), field[:, 20:].ravel())[0, 1]
    assert neighbour > 0.8 and abs(distant) < 0.05
