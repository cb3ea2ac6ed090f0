"""4MOST-like quasar spectra with Ly-alpha forest, metal absorbers and damped Ly-alpha absorbers.

Grid: the slides' 3671.5-9524 A in 0.25 A bins (23,411 pixels). Every quasar is

    f(lambda) = [power law + broad emission lines] x exp(-tau_forest - tau_metals - tau_DLA)

smoothed to the 4MOST low-resolution spectrograph (R ~ 5000), observed through a smooth
throughput for `exptime` seconds with photon noise of object + sky (continuum + night-sky lines)
and read noise. Ingredients:

- continuum f_nu ~ nu^alpha_nu, alpha_nu ~ N(-0.5, 0.3) (Vanden Berk et al. 2001, AJ 122, 549);
  broad lines with that composite's rest equivalent widths (:data:`lymannet.physics.QSO_BROAD_LINES`,
  shared with the DESI simulator), 30% lognormal scatter;
- Ly-alpha forest: the Inoue et al. 2014 mean optical depth with lognormal per-sightline scatter
  (:mod:`lymannet.igm`); its smooth "DLA" term is the statistical mean, the explicit DLAs below add
  the discrete ones the networks must find;
- metal absorbers: Poisson(`metal_absorbers_mean`) systems per sightline, z_abs uniform in
  [0.3, z_qso], each with MgII, FeII, CIV, SiIV, SiII, CII, AlII lines and a weak optically thin
  Ly-alpha, rest EWs lognormal;
- DLAs: 0-3 per sightline (probabilities `n_dla_probabilities`), log N_HI >= 20.3 drawn from the
  Gamma-function column-density distribution f(N) ~ (N/N_g)^alpha exp(-N/N_g) (Prochaska,
  Herbert-Fort & Wolfe 2005; Noterdaeme et al. 2009/2012 fit the same form), z_abs uniform between
  Ly-beta and Ly-alpha emission avoiding the proximity zone, Voigt Ly-alpha and Ly-beta profiles
  (scipy.special.voigt_profile) plus low-ionisation metal lines at the DLA redshift.

Everything is vectorised over a chunk of spectra; output depends only on (seed, spec).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import voigt_profile

from ..config import job_seed
from ..errors import ConfigError
from ..igm import InoueIGM, correlated_gaussian_field, fluctuate_tau
from ..lines import LYA, LYB
from ..physics import (C_CMS, C_KMS, FWHM_PER_SIGMA, QSO_BROAD_LINES, ab_to_f_nu, band_f_nu_weights, counts_per_flux,
                       sky_surface_brightness)
from ..runtime import Progress

log = logging.getLogger("lymannet.fourmost")

WAVE_MIN, WAVE_STEP, N_PIXELS = 3671.5, 0.25, 23411  # the slides' grid: 3671.5 ... 9524.0 A
SIGMA0 = 0.0265400  # pi e^2 / (m_e c) in cm^2 Hz


@dataclass(frozen=True)
class Transition:
    wavelength: float  # rest, Angstrom
    oscillator_strength: float
    damping: float  # Gamma, s^-1


LYA_TRANSITION = Transition(LYA, 0.4164, 6.265e8)
LYB_TRANSITION = Transition(LYB, 0.07912, 1.897e8)

# Metal lines of an absorption system: rest wavelength [A], strength relative to the system's EW scale.
METAL_LINES = np.array([
    (2796.35, 1.0), (2803.53, 0.8), (2600.17, 0.6), (2382.77, 0.5), (1548.20, 0.9), (1550.78, 0.6),
    (1393.76, 0.5), (1402.77, 0.3), (1526.71, 0.3), (1334.53, 0.4), (1670.79, 0.3), (1215.67, 1.5),
])

DEFAULTS: dict[str, Any] = {
    "n_spectra": 10000,
    "z": [2.0, 4.0],
    "mag": [18.0, 20.5],
    "exptime": 2400.0,
    "resolution": 5000.0,
    "n_dla_probabilities": [0.45, 0.35, 0.15, 0.05],
    "cddf": {"alpha": -1.8, "log_n_gamma": 21.48, "log_n_min": 20.3, "log_n_max": 22.5},
    "dla_b_kms": [15.0, 40.0],
    "proximity_kms": 3000.0,
    "min_separation_kms": 3000.0,
    "metal_absorbers_mean": 4.0,
    "metal_ew_median": 0.3,
    "chunk": 256,
}


def wavelength_grid() -> np.ndarray:
    return WAVE_MIN + WAVE_STEP * np.arange(N_PIXELS)


def complete_spec(spec: dict[str, Any]) -> dict[str, Any]:
    full = {**DEFAULTS, **spec}
    full["cddf"] = {**DEFAULTS["cddf"], **spec.get("cddf", {})}
    probs = np.asarray(full["n_dla_probabilities"], float)
    if probs.size < 1 or probs.size > 4 or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ConfigError(f"n_dla_probabilities must be 1-4 non-negative numbers summing to 1, got {list(probs)}")
    if full["z"][0] >= full["z"][1] or full["mag"][0] >= full["mag"][1]:
        raise ConfigError(f"z and mag ranges must be [low, high], got z={full['z']}, mag={full['mag']}")
    return full


# --- physics ---------------------------------------------------------------------------------


def voigt_tau(wave_rest: np.ndarray, log_n: np.ndarray, b_kms: np.ndarray,
              line: Transition = LYA_TRANSITION) -> np.ndarray:
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


def cddf_log_pdf(log_n: np.ndarray, alpha: float, log_n_gamma: float) -> np.ndarray:
    """Unnormalised density in log N of the Gamma-function f(N) = (N/N_g)^alpha exp(-N/N_g):
    p(log N) = f(N) N ln10 ~ (N/N_g)^(alpha+1) exp(-N/N_g)."""
    x = 10.0 ** (np.asarray(log_n, float) - log_n_gamma)
    return x ** (alpha + 1.0) * np.exp(-x)


def draw_column_density(rng: np.random.Generator, n: int, cddf: dict[str, float]) -> np.ndarray:
    """log N_HI from the Gamma-function CDDF by inverse transform on a fine grid."""
    grid = np.linspace(cddf["log_n_min"], cddf["log_n_max"], 4001)
    cdf = np.cumsum(cddf_log_pdf(grid, cddf["alpha"], cddf["log_n_gamma"]))
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return np.interp(rng.uniform(size=n), cdf, grid)


def dla_redshift_window(z_qso: np.ndarray, proximity_kms: float, wave_min: float = WAVE_MIN,
                        margin_angstrom: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """[z_lo, z_hi] of DLA redshifts: Ly-alpha absorption between Ly-beta and Ly-alpha emission,
    outside the proximity zone, and on the grid (margin_angstrom above its blue end)."""
    z_lo = np.maximum((1 + z_qso) * LYB / LYA - 1, (wave_min + margin_angstrom) / LYA - 1)
    z_hi = (1 + z_qso) * (1 - proximity_kms / C_KMS) - 1
    return z_lo, z_hi


def _place_dlas(rng: np.random.Generator, z_lo: float, z_hi: float, n: int, min_sep_kms: float) -> np.ndarray:
    """n redshifts uniform in [z_lo, z_hi] at least min_sep_kms apart (fewer if they do not fit)."""
    placed: list[float] = []
    for _ in range(50 * n):
        if len(placed) == n:
            break
        z = rng.uniform(z_lo, z_hi)
        if all(abs(z - p) / (1 + p) * C_KMS >= min_sep_kms for p in placed):
            placed.append(z)
    return np.sort(np.array(placed))


# --- instrument ------------------------------------------------------------------------------

COLLECTING_AREA_CM2 = 1.0e5  # VISTA 4.1 m minus obstruction, ~10 m^2
FIBRE_AREA_ARCSEC2 = np.pi * (1.45 / 2) ** 2
READ_NOISE_E = 5.0  # per 0.25 A pixel, summed over the spatial profile
SKY_CONTINUUM_AB = 21.3  # dark sky, AB mag / arcsec^2
SKY_LINE_RESOLUTION = 5000.0  # the LRS resolving power the sky lines are seen at


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
        out[:, lo:hi] = gaussian_filter1d(flux[:, a:b], sigma_pix, axis=1, mode="nearest")[:, lo - a:hi - a]
    return out


# --- the sightlines ----------------------------------------------------------------------------


def draw_sightlines(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """Per-sightline parameters and the absorber lists (everything random except the pixels)."""
    spec = complete_spec(spec)
    rng = np.random.default_rng(job_seed(seed, "fourmost", "sightlines"))
    n = int(spec["n_spectra"])
    z_qso = rng.uniform(*spec["z"], size=n)
    mag = rng.uniform(*spec["mag"], size=n)
    alpha_nu = rng.normal(-0.5, 0.3, size=n)
    ew_scatter = np.exp(rng.normal(0.0, 0.3, size=(n, len(QSO_BROAD_LINES))))
    n_dla_wanted = rng.choice(len(spec["n_dla_probabilities"]), size=n, p=spec["n_dla_probabilities"])
    z_lo, z_hi = dla_redshift_window(z_qso, spec["proximity_kms"])
    dla_rows: list[tuple[int, float]] = []
    for i in np.flatnonzero(n_dla_wanted):
        if z_hi[i] > z_lo[i]:
            for z_abs in _place_dlas(rng, z_lo[i], z_hi[i], int(n_dla_wanted[i]), spec["min_separation_kms"]):
                dla_rows.append((i, z_abs))
    dla_sightline = np.array([r[0] for r in dla_rows], dtype=np.int64)
    dla_z = np.array([r[1] for r in dla_rows], dtype=np.float64)
    dla_log_n = draw_column_density(rng, len(dla_rows), spec["cddf"])
    dla_b = rng.uniform(*spec["dla_b_kms"], size=len(dla_rows))
    n_metal = rng.poisson(spec["metal_absorbers_mean"], size=n)
    metal_sightline = np.repeat(np.arange(n), n_metal)
    metal_z = rng.uniform(0.3, z_qso[metal_sightline])
    metal_ew = spec["metal_ew_median"] * np.exp(rng.normal(0.0, 0.6, size=metal_sightline.size))
    n_dla = np.bincount(dla_sightline, minlength=n)
    return {
        "z_qso": z_qso, "mag": mag, "alpha_nu": alpha_nu, "ew_scatter": ew_scatter,
        "n_dla": n_dla, "n_abs": n_dla + n_metal,
        "dla": {"sightline": dla_sightline, "z_abs": dla_z, "log_n": dla_log_n, "b_kms": dla_b},
        "metal": {"sightline": metal_sightline, "z_abs": metal_z, "ew": metal_ew},
    }


def quasar_continuum(wave: np.ndarray, z: np.ndarray, alpha_nu: np.ndarray, ew_scatter: np.ndarray) -> np.ndarray:
    """Unabsorbed quasar (N, P), continuum = 1 at 1450 A rest: power law + Gaussian broad lines."""
    rest = wave[None, :] / (1 + z[:, None])
    continuum = (rest / 1450.0) ** (-(2.0 + alpha_nu[:, None]))
    lines = np.zeros_like(rest)
    for k, line in enumerate(QSO_BROAD_LINES):
        sigma = line.wavelength * line.fwhm_kms / C_KMS / FWHM_PER_SIGMA
        near = np.abs(rest - line.wavelength) < 6 * sigma
        if not near.any():
            continue
        amplitude = (line.ew * ew_scatter[:, k] / (np.sqrt(2 * np.pi) * sigma))[:, None]
        cont_at_line = ((line.wavelength / 1450.0) ** (-(2.0 + alpha_nu)))[:, None]
        profile = np.exp(-0.5 * ((rest - line.wavelength) / sigma) ** 2)
        lines += np.where(near, amplitude * cont_at_line * profile, 0.0)
    return continuum + lines


def scale_to_magnitude(flux: np.ndarray, wave: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Scale rows to AB magnitude `mag` in an r-like top hat (5650-7100 A), photon-weighted."""
    top_hat = ((wave >= 5650) & (wave <= 7100)).astype(float)
    f_nu = flux @ band_f_nu_weights(wave, top_hat)
    return flux * (ab_to_f_nu(mag) / f_nu)[:, None]


def _add_metal_lines(tau: np.ndarray, rows: np.ndarray, z_abs: np.ndarray, ew: np.ndarray, wave: np.ndarray,
                     b_kms: float = 40.0, half_window: int = 40) -> None:
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


def _dla_tau(wave: np.ndarray, z_abs: np.ndarray, log_n: np.ndarray, b_kms: np.ndarray) -> np.ndarray:
    """(n_dla, P) Ly-alpha + Ly-beta Voigt optical depth of each DLA over the whole grid."""
    rest = wave[None, :] / (1 + z_abs[:, None])
    tau = voigt_tau(rest, log_n[:, None], b_kms[:, None], LYA_TRANSITION)
    tau += voigt_tau(rest, log_n[:, None], b_kms[:, None], LYB_TRANSITION)
    return tau


def simulate_chunk(params: dict[str, Any], rows: np.ndarray, spec: dict[str, Any], rng: np.random.Generator,
                   igm: InoueIGM) -> tuple[np.ndarray, np.ndarray]:
    """Observed (flux, ivar) float32 (len(rows), P) for the sightlines `rows`."""
    wave = wavelength_grid()
    z = params["z_qso"][rows]
    flux = quasar_continuum(wave, z, params["alpha_nu"][rows], params["ew_scatter"][rows])
    flux = scale_to_magnitude(flux, wave, params["mag"][rows])
    field = correlated_gaussian_field(rng, (rows.size, wave.size), WAVE_STEP)
    tau = fluctuate_tau(igm.tau(z), field).astype(np.float64)
    local = {int(r): k for k, r in enumerate(rows)}
    metal = params["metal"]
    pick = np.isin(metal["sightline"], rows)
    _add_metal_lines(tau, np.array([local[s] for s in metal["sightline"][pick]], dtype=np.int64),
                     metal["z_abs"][pick], metal["ew"][pick], wave)
    dla = params["dla"]
    pick = np.flatnonzero(np.isin(dla["sightline"], rows))
    if pick.size:
        dla_rows = np.array([local[s] for s in dla["sightline"][pick]], dtype=np.int64)
        np.add.at(tau, dla_rows, _dla_tau(wave, dla["z_abs"][pick], dla["log_n"][pick], dla["b_kms"][pick]))
        # DLAs are metal-rich: low-ionisation lines at the DLA redshift, EW ~ 2x a typical system
        _add_metal_lines(tau, dla_rows, dla["z_abs"][pick], np.full(pick.size, 2 * spec["metal_ew_median"]), wave)
    model = smooth_to_resolution(flux * np.exp(-tau), spec["resolution"])
    per_flux = electrons_per_flux(wave, spec["exptime"])
    variance_counts = np.clip(model, 0, None) * per_flux + sky_flux() * per_flux + READ_NOISE_E**2
    sigma = np.sqrt(variance_counts) / per_flux
    observed = model + sigma * rng.standard_normal(model.shape)
    return observed.astype(np.float32), (1.0 / sigma**2).astype(np.float32)


def simulate(spec: dict[str, Any], seed: int, write_chunk) -> dict[str, Any]:
    """Simulate spec['n_spectra'] sightlines chunk by chunk, calling write_chunk(rows, flux, ivar)."""
    spec = complete_spec(spec)
    params = draw_sightlines(spec, seed)
    igm = InoueIGM(wavelength_grid())
    n, chunk = int(spec["n_spectra"]), int(spec["chunk"])
    progress = Progress(n, "spectra", logger=log)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        rng = np.random.default_rng(job_seed(seed, "fourmost", "pixels", str(start)))
        flux, ivar = simulate_chunk(params, rows, spec, rng, igm)
        write_chunk(rows, flux, ivar)
        progress.update(rows.size)
    progress.done()
    return params


def spectrum_name(index: int) -> str:
    """PAQS_absorber_000001.fits for index 0 (the slides' names, 1-based)."""
    return f"PAQS_absorber_{index + 1:06d}.fits"


def output_paths(spectra_dir: str | Path, n: int) -> list[Path]:
    return [Path(spectra_dir) / spectrum_name(i) for i in range(n)]
