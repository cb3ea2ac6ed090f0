"""Shared simulator physics: both simulators put the night-sky lines at their vacuum wavelengths
and count photons and AB magnitudes the same way."""

import numpy as np
import pytest

from lymannet import physics, simulate
from lymannet.fourmost import simulate as fourmost_simulate

OI_5577_AIR = 5577.34  # [OI] in lymannet/data/sky_lines.txt (air, Osterbrock et al. 1996)


def vacuum_of(wave_air: float) -> float:
    """Air -> vacuum by the IAU standard (Morton 2000, ApJS 130, 403, eq. 8: n(vacuum wavelength)),
    inverted by fixed-point iteration; independent of physics.air_to_vacuum (Morton 1991)."""
    wave_vac = wave_air
    for _ in range(6):
        s2 = (1e4 / wave_vac) ** 2
        wave_vac = wave_air * (1 + 8.34254e-5 + 2.406147e-2 / (130 - s2) + 1.5998e-4 / (38.9 - s2))
    return wave_vac


def line_centroid(wave: np.ndarray, sky: np.ndarray, lo: float, hi: float, half_width: float = 3.0) -> float:
    """Continuum-subtracted centroid of the brightest line in [lo, hi]."""
    search = (wave > lo) & (wave < hi)
    peak = wave[search][np.argmax(sky[search])]
    near = np.abs(wave - peak) < half_width
    side = (np.abs(wave - peak) > 6.0) & (np.abs(wave - peak) < 15.0)
    excess = sky[near] - np.median(sky[side])
    return float(np.sum(wave[near] * excess) / np.sum(excess))


def _sky(simulator: str) -> tuple[np.ndarray, np.ndarray]:
    if simulator == "desi":
        wave = simulate.instrument().wave
        return wave, simulate.dark_sky(wave)
    return fourmost_simulate.wavelength_grid(), fourmost_simulate.sky_flux()


@pytest.mark.parametrize("simulator", ["desi", "fourmost"])
def test_5577_sky_line_sits_at_its_vacuum_wavelength(simulator):
    expected = vacuum_of(OI_5577_AIR)
    assert expected == pytest.approx(5578.89, abs=0.02)  # 1.55 A redward of the air wavelength
    wave, sky = _sky(simulator)
    assert line_centroid(wave, sky, 5570.0, 5590.0) == pytest.approx(expected, abs=0.05)


def test_air_to_vacuum_agrees_with_the_iau_standard():
    for wave_air in (4000.0, 5577.34, 6300.3, 9000.0):
        assert physics.air_to_vacuum(np.array([wave_air]))[0] == pytest.approx(vacuum_of(wave_air), abs=0.01)


def test_ab_photometry_round_trip():
    """A flat f_nu spectrum of AB magnitude m reads back m through any band."""
    wave = np.linspace(5000.0, 8000.0, 3001)
    flux = physics.f_nu_to_f_lambda(physics.ab_to_f_nu(20.0), wave)
    band = np.exp(-0.5 * ((wave - 6400.0) / 400.0) ** 2)
    f_nu = flux @ physics.band_f_nu_weights(wave, band)
    assert -2.5 * np.log10(f_nu) - physics.AB_ZERO_POINT == pytest.approx(20.0, abs=1e-6)


def test_photon_counting():
    """1e-17 erg/s/cm2/A on 1 cm2 over 1 A at 5000 A: 1e-17 / (h c / lambda) photons per second."""
    counts = physics.counts_per_flux(np.array([5000.0]), 1.0, 1.0)[0]
    assert counts == pytest.approx(1e-17 * 5000e-8 / (6.62607015e-27 * 2.99792458e10))


def test_both_simulators_draw_the_shared_quasar_lines():
    lines = {line.name: line for line in physics.QSO_BROAD_LINES}
    assert lines["CIV"].ew == pytest.approx(23.8) and lines["MGII"].ew == pytest.approx(32.3)  # Vanden Berk 2001
    params = fourmost_simulate.draw_sightlines({"n_spectra": 3}, 1)
    assert params["ew_scatter"].shape == (3, len(physics.QSO_BROAD_LINES))
