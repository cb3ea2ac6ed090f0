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

from .lines import LYMAN_LIMIT  # noqa: F401  (re-exported: the Lyman limit lives in lymannet.lines)

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


def gaussian_lines(
    wave: np.ndarray, centres: np.ndarray, integrals: np.ndarray, sigma: np.ndarray | float
) -> np.ndarray:
    """Sum of Gaussian lines of the given integrals (flux x A) and sigma [A] (one, or one per line)."""
    offsets = (wave[:, None] - centres[None, :]) / sigma
    return (integrals / (sigma * math.sqrt(2 * math.pi)) * np.exp(-0.5 * offsets**2)).sum(1)


def sky_surface_brightness(
    wave: np.ndarray,
    continuum_ab: np.ndarray | float,
    *,
    sigma_angstrom: float | None = None,
    resolution: float | None = None,
) -> np.ndarray:
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


# --- HI absorbers: column-density distribution, absorption path, Lyman limit -----------------------

# Prochaska et al. 2014 (MNRAS 438, 476) f(N_HI, X) at their pivot z = 2.4: a monotonic Hermite
# spline through these (log N_HI, log f) knots (their Table 3 best fit, as pyigm's default fN
# model), f in (cm^-2)^-1 per unit absorption distance X. Beyond the last knot the last segment's
# slope continues (a power law).
PW14_LOG_N_KNOTS = (12.0, 15.0, 17.0, 18.0, 20.0, 21.0, 21.5, 22.0)
PW14_LOG_F_KNOTS = (-9.72, -14.41, -17.94, -19.39, -21.28, -22.82, -23.95, -25.50)
PW14_Z_PIVOT, PW14_GAMMA = 2.4, 1.5  # l(X) ~ (1+z)^gamma around the pivot
SIGMA_LYMAN_LIMIT = 6.304e-18  # cm^2, HI photo-ionisation cross-section at 912 A


def log_fn_pw14(log_n: np.ndarray, z: np.ndarray | float = PW14_Z_PIVOT) -> np.ndarray:
    """log10 f(N_HI, X) [(cm^-2)^-1 per dX] of Prochaska et al. 2014, scaled by
    ((1+z)/(1+z_pivot))^gamma for the redshift evolution of the incidence."""
    from scipy.interpolate import PchipInterpolator

    knots_n, knots_f = np.asarray(PW14_LOG_N_KNOTS), np.asarray(PW14_LOG_F_KNOTS)
    log_n = np.asarray(log_n, float)
    inside = PchipInterpolator(knots_n, knots_f)(np.clip(log_n, knots_n[0], knots_n[-1]))
    slope = (knots_f[-1] - knots_f[-2]) / (knots_n[-1] - knots_n[-2])
    out = np.where(log_n > knots_n[-1], knots_f[-1] + slope * (log_n - knots_n[-1]), inside)
    return out + PW14_GAMMA * np.log10((1 + np.asarray(z, float)) / (1 + PW14_Z_PIVOT))


def incidence_per_dx(log_n_min: float, log_n_max: float, z: float = PW14_Z_PIVOT) -> float:
    """l(X) = integral of f(N, X) dN over [log_n_min, log_n_max]: absorbers per unit X."""
    grid = np.linspace(log_n_min, log_n_max, 2001)
    integrand = 10.0 ** log_fn_pw14(grid, z) * 10.0**grid * np.log(10.0)  # f(N) dN/dlogN
    return float(np.trapezoid(integrand, grid))


def draw_log_nhi(rng: np.random.Generator, n: int, log_n_min: float, log_n_max: float) -> np.ndarray:
    """n column densities log N_HI drawn from the Prochaska et al. 2014 f(N) (inverse transform on a
    fine grid of p(log N) ~ f(N) N)."""
    grid = np.linspace(log_n_min, log_n_max, 4001)
    pdf = 10.0 ** (log_fn_pw14(grid) + grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return np.interp(rng.uniform(size=n), cdf / cdf[-1], grid)


def dx_dz(z: np.ndarray | float, omega_m: float = 0.3) -> np.ndarray:
    """Absorption distance per unit redshift, dX/dz = (1+z)^2 / E(z), flat LCDM (Omega_m = 0.3)."""
    z = np.asarray(z, float)
    return (1 + z) ** 2 / np.sqrt(omega_m * (1 + z) ** 3 + 1 - omega_m)


def absorption_distance(
    z_lo: np.ndarray | float, z_hi: np.ndarray | float, omega_m: float = 0.3, steps: int = 64
) -> np.ndarray:
    """X(z_hi) - X(z_lo) (0 where z_hi <= z_lo), by the trapezoidal rule in z."""
    z_lo, z_hi = np.broadcast_arrays(np.asarray(z_lo, float), np.asarray(z_hi, float))
    t = np.linspace(0.0, 1.0, steps)
    z = z_lo[..., None] + np.clip(z_hi - z_lo, 0, None)[..., None] * t
    return np.trapezoid(dx_dz(z, omega_m), z, axis=-1)


def draw_redshifts_dx(
    rng: np.random.Generator,
    z_lo: np.ndarray,
    z_hi: np.ndarray,
    gamma: float = 0.0,
    omega_m: float = 0.3,
    steps: int = 256,
) -> np.ndarray:
    """One redshift per (z_lo, z_hi) pair with density dN/dz ~ dX/dz (1+z)^gamma: absorbers
    uniform in absorption distance (gamma = 0) or with an evolving incidence."""
    z_lo, z_hi = np.asarray(z_lo, float), np.asarray(z_hi, float)
    t = np.linspace(0.0, 1.0, steps)
    z = z_lo[:, None] + (z_hi - z_lo)[:, None] * t
    pdf = dx_dz(z, omega_m) * (1 + z) ** gamma
    cdf = np.concatenate(
        [np.zeros((len(z), 1)), np.cumsum(0.5 * (pdf[:, 1:] + pdf[:, :-1]) * np.diff(z, axis=1), axis=1)],
        axis=1,
    )
    u = rng.uniform(size=len(z_lo)) * cdf[:, -1]
    return np.array([np.interp(u[k], cdf[k], z[k]) for k in range(len(z_lo))])


def lyman_limit_tau(wave_obs: np.ndarray, z_abs: float, log_n: float) -> np.ndarray:
    """Lyman-continuum optical depth of one absorber: N sigma_LL (lambda/lambda_LL)^3 blueward of
    its Lyman limit (hydrogenic cross-section ~ nu^-3), 0 redward."""
    rest = np.asarray(wave_obs, float) / (1 + z_abs)
    return np.where(rest <= LYMAN_LIMIT, 10.0**log_n * SIGMA_LYMAN_LIMIT * (rest / LYMAN_LIMIT) ** 3, 0.0)


# --- broad absorption-line (BAL) troughs -----------------------------------------------------------

# BAL troughs: the same outflow velocity profile in each high-ionisation line (rest vacuum A,
# depth relative to CIV): CIV, SiIV (doublet centre), NV and Ly-alpha (Hall et al. 2002, ApJS 141,
# 267; Gibson et al. 2009, ApJ 692, 758). Doublets are treated as one line at their mean. Both
# simulators draw their BAL quasars' troughs with `bal_transmission`.
BAL_LINES: tuple[tuple[str, float, float], ...] = (
    ("CIV", 1549.06, 1.0),
    ("SIIV", 1396.76, 0.7),
    ("NV", 1240.14, 0.9),
    ("LYA", 1215.67, 0.8),
)
BAL_EDGE_KMS = 400.0  # logistic softening of the trough edges


def bal_transmission(
    wave: np.ndarray,
    one_plus_z,
    v_min,
    v_max,
    depth,
    lines: tuple[tuple[str, float, float], ...] = BAL_LINES,
    edge_kms: float = BAL_EDGE_KMS,
) -> np.ndarray:
    """Multiplicative transmission of broad absorption troughs at observed wavelengths `wave`
    [A]: in every line, outflow velocities v_min..v_max [km/s, positive = blueshifted] absorb a
    fraction `depth` (0-1) x the line's relative strength, flat-bottomed with logistic edges of
    width `edge_kms`. The troughs absorb continuum and emission alike. Arguments broadcast (one
    quasar per row: `wave` (1, P), the others (N, 1)); computed in `wave`'s float dtype, so that
    the DESI simulator's float32 spectra repeat bit for bit. BAL quasars are ~15% of optically
    selected quasars at z > 1.6 (Trump et al. 2006; Gibson et al. 2009); a non-zero balnicity
    index needs v_max - v_min >= 2000 km/s."""
    from scipy.special import expit

    wave = np.asarray(wave)
    real = wave.dtype.type if wave.dtype.kind == "f" else np.float64
    edge = real(edge_kms)
    shape = np.broadcast_shapes(wave.shape, *(np.shape(a) for a in (one_plus_z, v_min, v_max, depth)))
    transmission = np.ones(shape, dtype=real)
    for _, rest, relative in lines:
        centre = real(rest) * one_plus_z
        velocity = real(C_KMS) * (centre - wave) / centre  # outflow (blueshift) velocity, km/s
        profile = expit((velocity - v_min) / edge) * expit((v_max - velocity) / edge)
        transmission *= 1.0 - real(relative) * depth * profile
    return transmission
