"""Optical depths of the absorbers in front of the 4MOST simulator's quasars: Voigt Ly-alpha and
Ly-beta lines and the Lyman continuum of HI absorbers (LLS, sub-DLAs, DLAs), Gaussian metal
lines, and the redshift window a DLA can sit in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import voigt_profile

from ..lines import LYA, LYB
from ..physics import LYMAN_LIMIT as LYMAN_LIMIT_ANGSTROM, C_CMS, C_KMS, lyman_limit_tau
from .spectrograph import WAVE_MIN, WAVE_STEP

SIGMA0 = 0.0265400  # pi e^2 / (m_e c) in cm^2 Hz


@dataclass(frozen=True)
class Transition:
    wavelength: float  # rest, Angstrom
    oscillator_strength: float
    damping: float  # Gamma, s^-1


LYA_TRANSITION = Transition(LYA, 0.4164, 6.265e8)
LYB_TRANSITION = Transition(LYB, 0.07912, 1.897e8)

# Metal lines of an absorption system: rest wavelength [A], strength relative to the system's EW scale.
METAL_LINES = np.array(
    [
        (2796.35, 1.0),
        (2803.53, 0.8),
        (2600.17, 0.6),
        (2382.77, 0.5),
        (1548.20, 0.9),
        (1550.78, 0.6),
        (1393.76, 0.5),
        (1402.77, 0.3),
        (1526.71, 0.3),
        (1334.53, 0.4),
        (1670.79, 0.3),
        (1215.67, 1.5),
    ]
)


def voigt_tau(
    wave_rest: np.ndarray, log_n: np.ndarray, b_kms: np.ndarray, line: Transition = LYA_TRANSITION
) -> np.ndarray:
    """Optical depth tau(lambda_rest) = N sigma0 f phi(nu) of a Voigt profile (broadcasting)."""
    nu0 = C_CMS / (line.wavelength * 1e-8)
    nu = C_CMS / (np.asarray(wave_rest, float) * 1e-8)
    sigma_nu = np.asarray(b_kms, float) / C_KMS * nu0 / np.sqrt(2.0)  # Gaussian std of the Doppler core
    gamma_nu = line.damping / (4.0 * np.pi)  # Lorentzian HWHM
    phi = voigt_profile(nu - nu0, sigma_nu, gamma_nu)
    return 10.0 ** np.asarray(log_n, float) * SIGMA0 * line.oscillator_strength * phi


def damped_equivalent_width(log_n: float, line: Transition = LYA_TRANSITION) -> float:
    """Rest EW [A] in the damped (square-root) regime: W = lambda0^2/c sqrt(N sigma0 f Gamma / pi)."""
    w_nu = np.sqrt(10.0**log_n * SIGMA0 * line.oscillator_strength * line.damping / np.pi)
    return float((line.wavelength * 1e-8) ** 2 / C_CMS * w_nu * 1e8)


def dla_redshift_window(
    z_qso: np.ndarray, proximity_kms: float, wave_min: float = WAVE_MIN, margin_angstrom: float = 20.0
) -> tuple[np.ndarray, np.ndarray]:
    """[z_lo, z_hi] of DLA redshifts: Ly-alpha absorption between Ly-beta and Ly-alpha emission,
    outside the proximity zone, and on the grid (margin_angstrom above its blue end)."""
    z_lo = np.maximum((1 + z_qso) * LYB / LYA - 1, (wave_min + margin_angstrom) / LYA - 1)
    z_hi = (1 + z_qso) * (1 - proximity_kms / C_KMS) - 1
    return z_lo, z_hi


def _add_metal_lines(
    tau: np.ndarray,
    rows: np.ndarray,
    z_abs: np.ndarray,
    ew: np.ndarray,
    wave: np.ndarray,
    b_kms: float = 40.0,
    half_window: int = 40,
) -> None:
    """Add Gaussian optical-depth metal lines (all lines of each system) in small pixel windows."""
    if rows.size == 0:
        return
    centres = (1 + z_abs[:, None]) * METAL_LINES[None, :, 0]  # (S, L) observed
    strength = ew[:, None] * METAL_LINES[None, :, 1] * (1 + z_abs[:, None])  # observed EW
    sigma = centres * b_kms / C_KMS / np.sqrt(2)
    tau0 = strength / (np.sqrt(2 * np.pi) * sigma)
    pixel = np.rint((centres - WAVE_MIN) / WAVE_STEP).astype(np.int64)
    offsets = np.arange(-half_window, half_window + 1)
    index = pixel[..., None] + offsets  # (S, L, W)
    inside = (index >= 0) & (index < wave.size)
    safe = np.clip(index, 0, wave.size - 1)
    values = tau0[..., None] * np.exp(-0.5 * ((wave[safe] - centres[..., None]) / sigma[..., None]) ** 2)
    row_index = np.broadcast_to(rows[:, None, None], index.shape)
    np.add.at(tau, (row_index[inside], safe[inside]), values[inside])


def _absorber_tau(
    tau: np.ndarray, row: int, wave: np.ndarray, z_abs: float, log_n: float, b_kms: float
) -> None:
    """Add one HI absorber's Voigt Ly-alpha and Ly-beta and its Lyman continuum to tau[row], the
    Voigt lines within a window where the damping wings still matter (tau > ~1e-4)."""
    half_rest = max(5.0, 28.0 * damped_equivalent_width(log_n))
    for line in (LYA_TRANSITION, LYB_TRANSITION):
        centre = line.wavelength * (1 + z_abs)
        half = half_rest * (1 + z_abs) * line.wavelength / LYA
        lo, hi = np.searchsorted(wave, [centre - half, centre + half])
        if hi > lo:
            tau[row, lo:hi] += voigt_tau(wave[lo:hi] / (1 + z_abs), log_n, b_kms, line)
    edge = int(np.searchsorted(wave, LYMAN_LIMIT_ANGSTROM * (1 + z_abs), side="right"))
    if edge > 0:
        tau[row, :edge] += lyman_limit_tau(wave[:edge], z_abs, log_n)


def _dla_tau(wave: np.ndarray, z_abs: np.ndarray, log_n: np.ndarray, b_kms: np.ndarray) -> np.ndarray:
    """(n, P) Ly-alpha + Ly-beta Voigt optical depth and Lyman continuum of each absorber."""
    tau = np.zeros((len(z_abs), wave.size))
    for k in range(len(z_abs)):
        _absorber_tau(tau, k, wave, float(z_abs[k]), float(log_n[k]), float(b_kms[k]))
    return tau
