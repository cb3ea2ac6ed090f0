"""The simulated DESI-like spectrograph: wavelength grids, throughput, sky, filters, photometry."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import desi
from ..physics import ab_to_f_nu, band_f_nu_weights, counts_per_flux, sky_surface_brightness

NANOMAGGY_F_NU = ab_to_f_nu(22.5)  # erg/s/cm2/Hz
TELESCOPE_AREA_CM2 = 8.678e4
FIBRE_AREA_ARCSEC2 = math.pi * 0.75**2  # 1.5" diameter fibre
EXPOSURE_SECONDS = 900.0  # a coadd of EXPTIME counts read noise once per nominal exposure
READ_VARIANCE_PER_EXPOSURE = 60.0  # electrons^2 per 0.8 A pixel (3.3 e- rms over ~5.5 CCD pixels)
INSTRUMENT_SIGMA_ANGSTROM = 0.75  # Gaussian LSF sigma (FWHM ~1.8 A)


# --------------------------------------------------------------------------------------------
# The instrument: wavelength grids, throughput, sky, filters (computed once, cached)
# --------------------------------------------------------------------------------------------


def arm_slices() -> dict[str, slice]:
    """Each DESI arm's pixels as a slice of the merged native grid (arms share its 0.8 A lattice)."""
    lo = desi.ARM_RANGES["B"][0]
    slices = {}
    for arm in desi.ARMS:
        wave = desi.arm_wavelength(arm)
        start = int(round((wave[0] - lo) / desi.PIXEL_STEP))
        slices[arm] = slice(start, start + wave.size)
    return slices


def _logistic(wave: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wave - centre) / width))


def throughput(arm: str, wave: np.ndarray) -> np.ndarray:
    """Approximate total throughput (atmosphere to CCD, no fibre loss) of one DESI arm."""
    knots = {
        "B": (
            [3550, 3700, 3900, 4200, 4600, 5000, 5500, 5850],
            [0.05, 0.12, 0.22, 0.30, 0.35, 0.36, 0.34, 0.32],
        ),
        "R": ([5700, 6000, 6500, 7000, 7500, 7700], [0.36, 0.40, 0.42, 0.41, 0.39, 0.38]),
        "Z": ([7450, 7800, 8300, 8800, 9200, 9500, 9900], [0.38, 0.39, 0.37, 0.32, 0.25, 0.19, 0.10]),
    }[arm]
    curve = np.interp(wave, *knots)
    # Dichroics: the bluer arm is cut before the redder one picks up, so at the overlap centres
    # (5780, 7570 A) each arm has < 10% of its peak and the merged noise is ~2.5x higher.
    if arm in ("B", "R"):
        curve = curve * (1.0 - _logistic(wave, 5765.0 if arm == "B" else 7555.0, 6.0))
    if arm in ("R", "Z"):
        curve = curve * _logistic(wave, 5795.0 if arm == "R" else 7585.0, 6.0)
    return curve * _telluric(wave)


def _telluric(wave: np.ndarray) -> np.ndarray:
    """Broad telluric absorption: O2 B (6870) and A (7605) bands, H2O around 7200 and 9300-9650 A."""
    bands = ((6880.0, 12.0, 0.35), (7610.0, 18.0, 0.6), (7200.0, 60.0, 0.12), (9400.0, 120.0, 0.3))
    transmission = np.ones_like(wave)
    for centre, sigma, depth in bands:
        transmission *= 1.0 - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
    return transmission


def dark_sky(wave: np.ndarray) -> np.ndarray:
    """Kitt Peak dark sky, 1e-17 erg/s/cm2/A/arcsec2: continuum (AB mag/arcsec2 knots) + lines."""
    knot_wave = [3600, 4000, 4500, 5000, 5500, 6000, 6500, 7000, 8000, 9000, 9900]
    knot_mag = [22.4, 22.6, 22.6, 22.2, 21.9, 21.6, 21.3, 21.0, 20.6, 20.3, 20.1]
    return sky_surface_brightness(
        wave, np.interp(wave, knot_wave, knot_mag), sigma_angstrom=INSTRUMENT_SIGMA_ANGSTROM
    )


def _band_curve(wave: np.ndarray, band: str) -> np.ndarray:
    lo, hi = {"g": (4000.0, 5500.0), "r": (5650.0, 7100.0), "z": (8300.0, 10000.0)}[band]
    return _logistic(wave, lo, 40.0) * (1.0 - _logistic(wave, hi, 40.0))


@dataclass(frozen=True)
class Instrument:
    """Everything about the spectrograph and sky that does not depend on the objects."""

    wave: np.ndarray  # merged native grid
    slices: dict[str, slice]
    counts_per_flux: dict[str, np.ndarray]  # electrons per s per (1e-17 erg/s/cm2/A), per arm pixel
    sky_counts_per_s: dict[str, np.ndarray]  # sky electrons per s in the fibre, per arm pixel
    band_weights: dict[str, np.ndarray]  # band flux [nanomaggies] = FLUX @ weights (float32)
    log_wave: np.ndarray  # float32 ln(wave)


@lru_cache(maxsize=1)
def instrument() -> Instrument:
    wave = desi.native_wavelength()
    slices = arm_slices()
    per_flux = counts_per_flux(wave, TELESCOPE_AREA_CM2, desi.PIXEL_STEP)
    sky = dark_sky(wave) * FIBRE_AREA_ARCSEC2
    counts, sky_counts = {}, {}
    for arm, cut in slices.items():
        counts[arm] = per_flux[cut] * throughput(arm, wave[cut])
        sky_counts[arm] = sky[cut] * counts[arm]
    weights = {}
    for band in ("g", "r", "z"):
        f_nu = band_f_nu_weights(wave, _band_curve(wave, band))
        weights[band] = (f_nu / NANOMAGGY_F_NU).astype(np.float32)
    return Instrument(wave, slices, counts, sky_counts, weights, np.log(wave).astype(np.float32))


def nanomaggies(flux: np.ndarray, band: str) -> np.ndarray:
    """Band flux in nanomaggies (AB mag 22.5 = 1 nanomaggy), as in the DESI fibermap."""
    return np.asarray(flux, dtype=np.float32) @ instrument().band_weights[band]


def ab_magnitude(flux: np.ndarray, band: str) -> np.ndarray:
    """AB magnitude of native-grid spectra (rows) through the approximate DECam band."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 22.5 - 2.5 * np.log10(nanomaggies(flux, band).astype(np.float64))
