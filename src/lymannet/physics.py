"""Physics both simulators share: constants, air-to-vacuum, AB photometry, photon counting, the
night sky, and the QSO broad-line table.

The DESI simulator (:mod:`lymannet.simulate`) and the 4MOST simulator
(:mod:`lymannet.fourmost.simulate`) differ in their instruments (grids, throughputs, LSFs, sky
continua), not in these. Units: wavelengths in Angstrom (vacuum), flux densities in
``FLUX_UNIT`` = 1e-17 erg/s/cm2/A unless a name says f_nu (erg/s/cm2/Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

C_KMS = 299792.458
C_CMS = 2.99792458e10
C_ANGSTROM_PER_S = 2.99792458e18
PLANCK_ERG_S = 6.62607015e-27
FLUX_UNIT = 1e-17  # erg/s/cm2/A of the simulators' FLUX arrays
AB_ZERO_POINT = 48.6  # m_AB = -2.5 log10(f_nu / erg/s/cm2/Hz) - 48.6 (Oke & Gunn 1983, ApJ 266, 713)
FWHM_PER_SIGMA = 2.3548  # 2 sqrt(2 ln 2): a Gaussian's FWHM over its sigma


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Air -> vacuum wavelengths (Morton 1991, ApJS 77, 119), Angstrom."""
    sigma2 = (1e4 / np.asarray(wave_air, dtype=np.float64)) ** 2
    return wave_air * (1.0 + 6.4328e-5 + 2.94981e-2 / (146.0 - sigma2) + 2.5540e-4 / (41.0 - sigma2))


# --- photometry ----------------------------------------------------------------------------------


def ab_to_f_nu(mag: np.ndarray | float) -> np.ndarray | float:
    """f_nu [erg/s/cm2/Hz] of an AB magnitude."""
    return 10 ** (-0.4 * (mag + AB_ZERO_POINT))


def f_nu_to_f_lambda(f_nu: np.ndarray | float, wave: np.ndarray) -> np.ndarray:
    """f_lambda [FLUX_UNIT] = f_nu c / lambda^2."""
    return f_nu * C_ANGSTROM_PER_S / wave**2 / FLUX_UNIT


def band_f_nu_weights(wave: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """Weights w with <f_nu> [erg/s/cm2/Hz] = f_lambda [FLUX_UNIT] @ w through a photon-counting band:
    <f_nu> = int f_lambda lambda T dlambda / (c int T / lambda dlambda) on a constant-step grid
    (Fukugita et al. 1996, AJ 111, 1748, eq. 2 with T the transmission per photon)."""
    return FLUX_UNIT * wave * transmission / (C_ANGSTROM_PER_S * np.sum(transmission / wave))


# --- photon counting -----------------------------------------------------------------------------


def photon_energy(wave: np.ndarray) -> np.ndarray:
    """E = h c / lambda, erg."""
    return PLANCK_ERG_S * C_ANGSTROM_PER_S / wave


def counts_per_flux(wave: np.ndarray, area_cm2: float, pixel_angstrom: float) -> np.ndarray:
    """Photons per second per pixel per FLUX_UNIT collected by `area_cm2` (before throughput)."""
    return FLUX_UNIT * area_cm2 * pixel_angstrom / photon_energy(wave)


# --- the night sky -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def sky_lines() -> tuple[np.ndarray, np.ndarray]:
    """Night-sky lines from package data ``sky_lines.txt`` (air wavelengths, Osterbrock et al. 1996):
    vacuum wavelength [A], surface brightness [FLUX_UNIT A / arcsec2]."""
    path = resources.files("lymannet") / "data" / "sky_lines.txt"
    table = np.loadtxt(str(path), usecols=(0, 1))
    return air_to_vacuum(table[:, 0]), table[:, 1]


def gaussian_lines(wave: np.ndarray, centres: np.ndarray, integrals: np.ndarray,
                   sigma: np.ndarray | float) -> np.ndarray:
    """Sum of Gaussian lines of the given integrals (flux x A) and sigma [A] (one, or one per line)."""
    offsets = (wave[:, None] - centres[None, :]) / sigma
    return (integrals / (sigma * math.sqrt(2 * math.pi)) * np.exp(-0.5 * offsets**2)).sum(1)


def sky_surface_brightness(wave: np.ndarray, continuum_ab: np.ndarray | float, *,
                           sigma_angstrom: float | None = None, resolution: float | None = None) -> np.ndarray:
    """Dark-sky spectrum [FLUX_UNIT / arcsec2]: an AB continuum (mag/arcsec2, scalar or per pixel)
    plus the night-sky lines of :func:`sky_lines`, seen through a Gaussian LSF of constant
    `sigma_angstrom` or of FWHM lambda / `resolution` (give one)."""
    if (sigma_angstrom is None) == (resolution is None):
        raise ValueError("give exactly one of sigma_angstrom and resolution")
    continuum = f_nu_to_f_lambda(ab_to_f_nu(continuum_ab), wave)
    line_wave, line_sb = sky_lines()
    sigma = sigma_angstrom if sigma_angstrom is not None else line_wave / resolution / FWHM_PER_SIGMA
    return continuum + gaussian_lines(wave, line_wave, line_sb, sigma)


# --- quasars -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadLine:
    name: str
    wavelength: float  # rest, vacuum, Angstrom
    ew: float  # rest equivalent width, Angstrom
    fwhm_kms: float  # typical width, for simulators that do not draw one per object


# Rest EWs of the SDSS composite (Vanden Berk et al. 2001, AJ 122, 549, Table 2): its 92.9 A
# Ly-alpha+NV blend split 75/18, Ly-beta+OVI, SiIV+OIV], CIV, HeII, CIII], MgII, H-gamma, H-beta,
# H-alpha. FWHMs (used by the 4MOST simulator; the DESI one draws a width per object): typical
# broad-line widths of 3500-5000 km/s, 4500 km/s for the Balmer lines.
QSO_BROAD_LINES: tuple[BroadLine, ...] = (
    BroadLine("LYB_OVI", 1033.8, 9.0, 5000.0),
    BroadLine("LYA", 1215.67, 75.0, 4500.0),
    BroadLine("NV", 1240.14, 18.0, 3500.0),
    BroadLine("SIIV_OIV", 1399.8, 8.1, 5000.0),
    BroadLine("CIV", 1549.06, 23.8, 4500.0),
    BroadLine("HEII", 1640.4, 1.0, 4000.0),
    BroadLine("CIII", 1908.73, 21.2, 5000.0),
    BroadLine("MGII", 2798.75, 32.3, 4500.0),
    BroadLine("HGAMMA", 4341.68, 6.0, 4500.0),
    BroadLine("HBETA", 4862.68, 46.2, 4500.0),
    BroadLine("HALPHA", 6564.61, 194.5, 4500.0),
)
