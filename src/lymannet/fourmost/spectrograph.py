"""The simulated 4MOST low-resolution spectrograph: the slides' wavelength grid, the throughput,
the sky in the fibre, photon counting and the line-spread function (R ~ 5000).

The shared pieces (photon counting, the night-sky lines) come from :mod:`lymannet.physics`, as
for the DESI simulator's :mod:`lymannet.simulate.spectrograph`; the two instruments differ in their
grids, throughputs (one smooth curve here, three arms with dichroics there), sky continua and
LSFs (a smoothing of the spectrum at R here, line widths there), so they share no more.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..physics import FWHM_PER_SIGMA, counts_per_flux, sky_surface_brightness

WAVE_MIN, WAVE_STEP, N_PIXELS = 3671.5, 0.25, 23411  # the slides' grid: 3671.5 ... 9524.0 A
COLLECTING_AREA_CM2 = 1.0e5  # VISTA 4.1 m minus obstruction, ~10 m^2
FIBRE_AREA_ARCSEC2 = np.pi * (1.45 / 2) ** 2
READ_NOISE_E = 5.0  # per 0.25 A pixel, summed over the spatial profile
SKY_CONTINUUM_AB = 21.3  # dark sky, AB mag / arcsec^2
SKY_LINE_RESOLUTION = 5000.0  # the LRS resolving power the sky lines are seen at


def wavelength_grid() -> np.ndarray:
    return WAVE_MIN + WAVE_STEP * np.arange(N_PIXELS)


def throughput(wave: np.ndarray) -> np.ndarray:
    """Smooth end-to-end throughput of the 4MOST LRS (atmosphere to detector), ~0.28 peak."""
    return 0.28 * np.exp(-0.5 * ((wave - 6300.0) / 2400.0) ** 2)


@lru_cache(maxsize=1)
def sky_flux() -> np.ndarray:
    """Sky in the fibre, 1e-17 erg/s/cm2/A: flat AB continuum + night-sky lines at R = 5000."""
    wave = wavelength_grid()
    return sky_surface_brightness(wave, SKY_CONTINUUM_AB, resolution=SKY_LINE_RESOLUTION) * FIBRE_AREA_ARCSEC2


def electrons_per_flux(wave: np.ndarray, exptime: float) -> np.ndarray:
    """Electrons per pixel per unit flux (1e-17 erg/s/cm2/A) in `exptime` seconds."""
    return counts_per_flux(wave, COLLECTING_AREA_CM2, WAVE_STEP) * exptime * throughput(wave)


def smooth_to_resolution(flux: np.ndarray, resolution: float) -> np.ndarray:
    """Gaussian LSF of FWHM lambda/R: three wavelength thirds with their own kernel width, since the
    pixel size is constant in Angstrom while the LSF grows with lambda."""
    wave = wavelength_grid()
    out = np.empty_like(flux)
    edges = np.linspace(0, N_PIXELS, 4).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sigma_pix = wave[(lo + hi) // 2] / resolution / FWHM_PER_SIGMA / WAVE_STEP
        pad = int(5 * sigma_pix) + 1
        a, b = max(lo - pad, 0), min(hi + pad, N_PIXELS)
        out[:, lo:hi] = gaussian_filter1d(flux[:, a:b], sigma_pix, axis=1, mode="nearest")[:, lo - a : hi - a]
    return out
