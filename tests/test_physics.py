"""Shared simulator physics: both simulators put the night-sky lines at their vacuum wavelengths,
draw the same BAL troughs and count photons and AB magnitudes the same way."""

import numpy as np
import pandas as pd
import pytest

from lymannet import physics, simulate
from lymannet.fourmost import simulate as fourmost_simulate
from lymannet.fourmost import spectrograph as fourmost_spectrograph
from lymannet.simulate import render

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
    return fourmost_spectrograph.wavelength_grid(), fourmost_spectrograph.sky_flux()


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
    assert lines["CIV"].ew == pytest.approx(23.8) and lines["MGII"].ew == pytest.approx(
        32.3
    )  # Vanden Berk 2001
    params = fourmost_simulate.draw_sightlines({"n_spectra": 3}, 1)
    assert params["ew_scatter"].shape == (3, len(physics.QSO_BROAD_LINES))


def test_both_simulators_draw_the_same_bal_trough():
    """A BAL quasar at z = 2.8 with troughs at 3,000-12,000 km/s of depth 0.7: the DESI simulator
    (depth) and the 4MOST one (the CIV trough's optical depth) absorb the same pixels as much."""
    z, v_min, v_max, depth = 2.8, 3000.0, 12000.0, 0.7
    objects = pd.DataFrame({"Z": [z], "BAL_DEPTH": [depth], "BAL_VMIN_KMS": [v_min], "BAL_VMAX_KMS": [v_max]})
    desi_wave = simulate.instrument().wave
    desi = render._bal_transmission(objects)[0]
    fourmost_wave = fourmost_spectrograph.wavelength_grid()
    fourmost = fourmost_simulate.bal_trough_transmission(fourmost_wave, z, v_min, v_max, -np.log(1 - depth))
    shared = (fourmost_wave > desi_wave[0]) & (fourmost_wave < desi_wave[-1])
    assert np.interp(fourmost_wave[shared], desi_wave, desi) == pytest.approx(fourmost[shared], abs=0.01)
    for _, rest, strength in physics.BAL_LINES:  # every line's trough, mid-way between v_min and v_max
        centre = rest * (1 + z) * (1 - 7500.0 / physics.C_KMS)
        if fourmost_wave[0] < centre < fourmost_wave[-1]:
            assert np.interp(centre, fourmost_wave, fourmost) == pytest.approx(1 - strength * depth, abs=0.02)
    assert desi[desi_wave > 1549.06 * (1 + z) * 1.01].min() == 1.0  # nothing redward of CIV
