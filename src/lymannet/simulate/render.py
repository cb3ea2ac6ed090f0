"""Noiseless models of every population (LBG, QSO with BAL troughs, ELG, stars, galaxies) with
the IGM, on the spectrograph's grid."""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import expit

from .. import desi
from ..igm import IGM_MODELS, InoueIGM, MadauIGM, correlated_gaussian_field, fluctuate_tau
from ..lines import LBG_LINES, LYA, LYMAN_LIMIT
from ..physics import BAL_LINES, C_KMS, QSO_BROAD_LINES, bal_transmission
from .spectrograph import INSTRUMENT_SIGMA_ANGSTROM, ab_magnitude, instrument
from .populations import LBG_EMISSION_SCALE_BY_TEMPLATE

# Rest EW (A, positive = absorption depth) of the interstellar lines, Shapley et al. 2003 Table 1.
LBG_ISM_EW = {
    "LYB": 2.5,
    "SIII1260": 1.63,
    "OI1302": 1.35,
    "SIII1304": 0.85,
    "CII1334": 1.72,
    "SIIV1393": 1.83,
    "SIIV1402": 0.81,
    "SIII1526": 1.72,
    "CIV1548": 1.85,
    "CIV1550": 1.18,
    "FEII1608": 0.91,
    "ALII1670": 1.04,
}
LBG_EMISSION_EW = {"NV1240": 0.6, "HEII1640": 1.3, "CIII1908": 1.7}  # weak nebular/stellar emission
# ELG narrow lines: rest wavelength (vacuum), name of its ratio in `_elg_line_fluxes`.
ELG_LINES = (
    (3727.09, "OII_a"),
    (3729.88, "OII_b"),
    (4862.68, "HBETA"),
    (4960.30, "OIII_a"),
    (5008.24, "OIII_b"),
    (6549.86, "NII_a"),
    (6564.61, "HALPHA"),
    (6585.27, "NII_b"),
    (6718.29, "SII_a"),
    (6732.67, "SII_b"),
)


# Rendering: noiseless spectra on the native grid, vectorised over a chunk
# --------------------------------------------------------------------------------------------


class _LineCanvas:
    """Adds Gaussian profiles (one line at a time, for many objects) to a padded (N, P) buffer."""

    def __init__(self, n_rows: int, n_pixels: int, pad: int = 600):
        self.pad, self.n_pixels = pad, n_pixels
        self.buffer = np.zeros((n_rows, n_pixels + 2 * pad), dtype=np.float32)
        self.wave0 = float(instrument().wave[0])

    def add(self, centre: np.ndarray, sigma: np.ndarray, integral: np.ndarray) -> None:
        """Profiles of total `integral` (flux x A, or EW-like for depths), centred at `centre` (A)."""
        half = int(min(self.pad - 1, math.ceil(5.0 * float(sigma.max()) / desi.PIXEL_STEP)))
        centre_pix = (centre - self.wave0) / desi.PIXEL_STEP
        visible = (centre_pix > -half) & (centre_pix < self.n_pixels + half)
        start = np.clip(
            np.round(centre_pix).astype(np.int64) - half, -self.pad, self.n_pixels + self.pad - 2 * half - 1
        )
        pixels = start[:, None] + np.arange(2 * half + 1)[None, :]  # (N, W), unique per row
        offsets = (self.wave0 + desi.PIXEL_STEP * pixels - centre[:, None]) / sigma[:, None]
        # Sampled at pixel centres: integral x normalised Gaussian (per Angstrom).
        amplitude = np.where(visible, integral / (sigma * math.sqrt(2 * math.pi)), 0.0)
        values = amplitude[:, None] * np.exp(-0.5 * offsets**2)
        rows = np.arange(centre.size)[:, None] * self.buffer.shape[1]
        self.buffer.ravel()[(rows + pixels + self.pad).ravel()] += values.astype(np.float32).ravel()

    @property
    def profiles(self) -> np.ndarray:
        return self.buffer[:, self.pad : self.pad + self.n_pixels]


def _observed_sigma(rest_sigma_kms: np.ndarray, wave_obs: np.ndarray) -> np.ndarray:
    return np.hypot(wave_obs * rest_sigma_kms / C_KMS, INSTRUMENT_SIGMA_ANGSTROM)


def _line_scatter(objects: pd.DataFrame, n_lines: int, sigma: float) -> np.ndarray:
    """Lognormal per-object, per-line strength factors, determined by the rows' LINE_SEEDs."""
    seeds = objects["LINE_SEED"].to_numpy()
    rng = np.random.default_rng(seeds.astype(np.uint64) if seeds.size else 0)
    return rng.lognormal(0.0, sigma, (seeds.size, n_lines))


def _log_rest(objects: pd.DataFrame) -> np.ndarray:
    """ln(rest wavelength) per object and native pixel, float32 (N, P)."""
    return (
        instrument().log_wave[None, :]
        - np.log1p(objects["Z"].to_numpy(np.float64)).astype(np.float32)[:, None]
    )


def _power_law(log_rest: np.ndarray, slope: np.ndarray, pivot: float) -> np.ndarray:
    return np.exp(slope.astype(np.float32)[:, None] * (log_rest - np.float32(math.log(pivot))))


MAX_ISM_DEPTH = 0.6  # LBG interstellar lines are saturated but cover the source partially (Shapley 2003)


def _trough_sigma(ew_obs: np.ndarray, sigma: np.ndarray, max_depth: float) -> np.ndarray:
    """Widen an absorption line of equivalent width ew_obs so its central depth stays <= max_depth."""
    return np.maximum(sigma, ew_obs / (max_depth * math.sqrt(2 * math.pi)))


def _render_lbg(objects: pd.DataFrame) -> np.ndarray:
    n, wave = len(objects), instrument().wave
    z, beta, template = (objects[k].to_numpy() for k in ("Z", "BETA", "TEMPLATE"))
    log_rest = _log_rest(objects)
    continuum = _power_law(log_rest, beta, 1500.0)
    lyc = log_rest < np.float32(math.log(LYMAN_LIMIT))
    continuum = np.where(lyc, continuum * objects["LYC_ESCAPE"].to_numpy(np.float32)[:, None], continuum)
    one_plus_z = 1.0 + z
    line_sigma = objects["LINE_SIGMA_KMS"].to_numpy()
    ism_v = objects["ISM_VOFF_KMS"].to_numpy()
    lines = {line.name: line.wavelength for line in LBG_LINES}
    scatter = _line_scatter(objects, len(LBG_ISM_EW) + len(LBG_EMISSION_EW) + 1, 0.25)
    depth = _LineCanvas(n, wave.size)
    for k, (name, ew) in enumerate(LBG_ISM_EW.items()):
        centre = lines[name] * one_plus_z * (1 + ism_v / C_KMS)
        ew_obs = ew * objects["ISM_EW_SCALE"].to_numpy() * scatter[:, k] ** 0.6 * one_plus_z  # ~15% per line
        depth.add(centre, _trough_sigma(ew_obs, _observed_sigma(line_sigma, centre), MAX_ISM_DEPTH), ew_obs)
    lya_ew = objects["LYA_EW"].to_numpy()
    absorbing = lya_ew < 0
    if absorbing.any():  # damped, broad Ly-alpha absorption trough (template 0)
        centre = LYA * one_plus_z * (1 + ism_v / C_KMS)
        ew_obs = np.where(absorbing, -lya_ew, 0.0) * one_plus_z
        depth.add(centre, _trough_sigma(ew_obs, _observed_sigma(line_sigma, centre), 0.85), ew_obs)
    transmitted = continuum * np.clip(1.0 - depth.profiles, 0.0, 1.0)
    emission = _LineCanvas(n, wave.size)
    beta_f = beta.astype(np.float64)
    emission_scale = LBG_EMISSION_SCALE_BY_TEMPLATE[np.clip(template, 0, 3)]
    for k, (name, ew) in enumerate(LBG_EMISSION_EW.items()):
        centre = lines[name] * one_plus_z
        cont_at_line = (lines[name] / 1500.0) ** beta_f
        flux = ew * emission_scale * scatter[:, len(LBG_ISM_EW) + k] * one_plus_z * cont_at_line
        emission.add(centre, _observed_sigma(line_sigma, centre), flux)
    lya_centre = LYA * one_plus_z * (1 + objects["LYA_VOFF_KMS"].to_numpy() / C_KMS)
    lya_flux = np.where(absorbing, 0.0, lya_ew) * one_plus_z * (LYA / 1500.0) ** beta_f
    emission.add(lya_centre, _observed_sigma(line_sigma, lya_centre), lya_flux)
    return transmitted + emission.profiles


def _render_qso(objects: pd.DataFrame) -> np.ndarray:
    n, wave = len(objects), instrument().wave
    z, beta = objects["Z"].to_numpy(), objects["BETA"].to_numpy()
    continuum = _power_law(_log_rest(objects), beta, 1500.0)
    sigma_kms = objects["LINE_SIGMA_KMS"].to_numpy()
    scatter = _line_scatter(objects, len(QSO_BROAD_LINES), 0.3)
    emission = _LineCanvas(n, wave.size)
    for k, line in enumerate(QSO_BROAD_LINES):
        centre = line.wavelength * (1.0 + z)
        flux = line.ew * scatter[:, k] * (1.0 + z) * (line.wavelength / 1500.0) ** beta
        emission.add(centre, _observed_sigma(sigma_kms, centre), flux)
    return (continuum + emission.profiles) * _bal_transmission(objects)


def _elg_line_fluxes(objects: pd.DataFrame) -> dict[str, np.ndarray]:
    """Line fluxes relative to H-alpha's (EW x continuum), star-forming-galaxy ratios."""
    n = len(objects)
    rng = np.random.default_rng((objects["LINE_SEED"].to_numpy().astype(np.uint64) + 7) if n else 0)
    halpha = np.ones(n)
    hbeta = halpha / rng.uniform(2.86, 4.5, n)
    oiii = hbeta * 10 ** rng.normal(0.2, 0.3, n)
    nii = halpha * 10 ** rng.normal(-0.6, 0.2, n)
    sii = halpha * 10 ** rng.normal(-0.6, 0.15, n)
    oii = hbeta * 10 ** rng.normal(0.3, 0.2, n)
    return {
        "HALPHA": halpha,
        "HBETA": hbeta,
        "OIII_b": oiii,
        "OIII_a": oiii / 2.98,
        "NII_b": nii,
        "NII_a": nii / 3.05,
        "SII_a": 0.55 * sii,
        "SII_b": 0.45 * sii,
        "OII_a": oii / 2.3,
        "OII_b": oii * 1.3 / 2.3,
    }


def _render_elg(objects: pd.DataFrame) -> np.ndarray:
    n, wave = len(objects), instrument().wave
    z, beta, d4000 = (objects[k].to_numpy() for k in ("Z", "BETA", "D4000"))
    log_rest = _log_rest(objects)
    continuum = _power_law(log_rest, beta, 5500.0)
    rest = np.exp(log_rest)
    step = np.float32(1.0) / (1.0 + np.exp((4000.0 - rest) / np.float32(40.0)))  # 0 blue, 1 red of the break
    continuum *= (1.0 / d4000.astype(np.float32))[:, None] + step * (1.0 - 1.0 / d4000.astype(np.float32))[
        :, None
    ]
    halpha_flux = objects["HALPHA_EW"].to_numpy() * (1.0 + z) * (6564.61 / 5500.0) ** beta
    ratios = _elg_line_fluxes(objects)
    emission = _LineCanvas(n, wave.size)
    sigma_kms = objects["LINE_SIGMA_KMS"].to_numpy()
    for rest_wave, name in ELG_LINES:
        centre = rest_wave * (1.0 + z)
        emission.add(centre, _observed_sigma(sigma_kms, centre), halpha_flux * ratios[name])
    return continuum + emission.profiles


# --- contaminants a real LBG target selection lets in: BAL troughs, stars, passive galaxies ------


def _bal_transmission(objects: pd.DataFrame) -> np.ndarray | float:
    """Multiplicative BAL trough transmission (N, P) for QSOs with SUBTYPE BAL (the profile of
    :func:`lymannet.physics.bal_transmission`); 1.0 without any."""
    if "BAL_DEPTH" not in objects:
        return 1.0
    depth = objects["BAL_DEPTH"].to_numpy(np.float64)
    bal = np.isfinite(depth) & (depth > 0)
    if not bal.any():
        return 1.0
    rows = np.flatnonzero(bal)
    wave = instrument().wave
    f32 = lambda column: objects[column].to_numpy(np.float32)[rows, None]  # noqa: E731
    one_plus_z = 1.0 + f32("Z")
    # Only pixels that can be in a trough: rest (1 - 30,000 km/s / c) x Ly-alpha to CIV.
    lo = np.searchsorted(wave, BAL_LINES[-1][1] * 0.9 * float(one_plus_z.min()))
    hi = np.searchsorted(wave, BAL_LINES[0][1] * 1.01 * float(one_plus_z.max()))
    window = wave[None, lo:hi].astype(np.float32)
    transmission = np.ones((len(objects), wave.size), dtype=np.float32)
    transmission[rows, lo:hi] = bal_transmission(
        window, one_plus_z, f32("BAL_VMIN_KMS"), f32("BAL_VMAX_KMS"), depth[rows, None].astype(np.float32)
    )
    return transmission


# Stellar absorption lines (rest vacuum A) and rest EWs (A) of dwarfs at Teff 3000, 4500, 5700,
# 6600 K (~M4, K4, G2, F5), interpolated in Teff: Balmer lines peak in A/F stars, Ca II H&K, the
# G band, Mg b, Na D and the Ca II triplet grow towards K, Na D and the Na I 8190 / K I 7700 gravity
# doublets are strongest in M dwarfs. Values read off the spectral atlases of Jacoby, Hunter &
# Christian 1984 (ApJS 56, 257) and Pickles 1998 (PASP 110, 863), the Lick indices of Worthey et al.
# 1994 (ApJS 94, 687), the Ca triplet of Cenarro et al. 2001 (MNRAS 326, 959) and the M dwarf
# indices of Reid, Hawley & Gizis 1995 (AJ 110, 1838); approximate, not fits.
STAR_TEFF_KNOTS = (3000.0, 4500.0, 5700.0, 6600.0)
STAR_LINES = (
    ("CAII_K", 3934.78, (10.0, 20.0, 18.0, 9.0)),
    ("CAII_H", 3969.59, (8.0, 15.0, 14.0, 9.0)),
    ("HDELTA", 4102.89, (0.5, 1.0, 2.5, 6.0)),
    ("GBAND", 4305.0, (2.0, 6.0, 6.0, 3.0)),
    ("HGAMMA", 4341.68, (0.5, 1.0, 3.0, 7.0)),
    ("HBETA", 4862.68, (0.5, 1.2, 3.5, 7.0)),
    ("MGB", 5176.7, (6.0, 8.0, 4.0, 2.0)),
    ("FE5270", 5271.4, (2.0, 3.0, 2.2, 1.2)),
    ("NAD", 5895.6, (8.0, 5.0, 2.5, 1.5)),
    ("HALPHA", 6564.61, (0.5, 1.2, 3.0, 6.0)),
    ("KI_a", 7667.0, (2.0, 0.8, 0.4, 0.1)),
    ("KI_b", 7701.1, (1.5, 0.6, 0.3, 0.1)),
    ("NAI_a", 8185.5, (3.0, 1.0, 0.5, 0.2)),
    ("NAI_b", 8197.1, (3.0, 1.0, 0.5, 0.2)),
    ("CAT_a", 8500.4, (1.0, 1.6, 1.3, 1.0)),
    ("CAT_b", 8544.4, (2.0, 3.5, 3.2, 2.6)),
    ("CAT_c", 8664.5, (1.8, 3.0, 2.7, 2.2)),
)
# Molecular bands of M dwarfs (and late K): band head (rest A, degraded to the red), depth at full
# strength, e-folding length (A). TiO: 4955, 5167, 5448, 5847, 6159, 6651, 7055, 7589, 8432;
# CaH: 6385, 6830 (Kirkpatrick, Henry & McCarthy 1991, ApJS 77, 417; Reid et al. 1995: the TiO5
# index, flux 7126-7135 over 7042-7046 A, falls from ~0.8 at M0 to ~0.3 at M5).
STAR_BANDS = (
    (4955.0, 0.30, 120.0),
    (5167.0, 0.35, 120.0),
    (5448.0, 0.35, 150.0),
    (5847.0, 0.40, 150.0),
    (6159.0, 0.55, 180.0),
    (6385.0, 0.30, 60.0),
    (6651.0, 0.45, 120.0),
    (6830.0, 0.35, 100.0),
    (7055.0, 0.85, 200.0),
    (7589.0, 0.55, 120.0),
    (8432.0, 0.40, 150.0),
)
HC_OVER_K = 1.438777e8  # h c / k_B in A K


def _molecular_strength(teff: np.ndarray) -> np.ndarray:
    """0 at Teff >= 4100 K (no TiO), 1 at <= 3000 K (~M5): TiO appears at K7/M0 and deepens."""
    return np.clip((4100.0 - teff) / 1100.0, 0.0, 1.0)


def _render_star(objects: pd.DataFrame) -> np.ndarray:
    """Dwarf stars: a Planck continuum at Teff with blue line blanketing, atomic lines, TiO/CaH bands."""
    n, wave = len(objects), instrument().wave
    teff = objects["TEFF"].to_numpy(np.float64)
    rest = np.exp(_log_rest(objects))
    x = (HC_OVER_K / teff.astype(np.float32)[:, None]) / rest
    continuum = (rest / np.float32(5500.0)) ** -5 / np.expm1(np.minimum(x, 80.0))
    continuum /= continuum.max(axis=1, keepdims=True)
    # Line blanketing by metal lines and the Balmer/Ca II break suppresses the flux blueward of
    # ~4300 A more in cooler stars (by ~10% at F5 to ~60% in M dwarfs).
    blanket = np.clip((7000.0 - teff) / 5500.0, 0.05, 0.65).astype(np.float32)[:, None]
    continuum *= 1.0 - blanket / (1.0 + np.exp((rest - np.float32(4300.0)) / np.float32(150.0)))
    strength = _molecular_strength(teff).astype(np.float32)
    cool = np.flatnonzero(strength > 0)  # only stars below ~4100 K have molecular bands
    if cool.size:
        bands = np.ones((cool.size, wave.size), np.float32)
        for head, depth, length in STAR_BANDS:
            beyond = rest[cool] - np.float32(head)
            shape = np.exp(-np.maximum(beyond, 0.0) / np.float32(length)) * expit(beyond / np.float32(3.0))
            bands *= 1.0 - strength[cool, None] * np.float32(depth) * shape
        continuum[cool] *= bands
    one_plus_z = 1.0 + objects["Z"].to_numpy()
    sigma_kms = objects["LINE_SIGMA_KMS"].to_numpy()
    scatter = _line_scatter(objects, len(STAR_LINES), 0.15)
    depth = _LineCanvas(n, wave.size)
    for k, (_, rest_wave, ews) in enumerate(STAR_LINES):
        centre = rest_wave * one_plus_z
        ew_obs = np.interp(teff, STAR_TEFF_KNOTS, ews) * scatter[:, k] * one_plus_z
        depth.add(centre, _trough_sigma(ew_obs, _observed_sigma(sigma_kms, centre), 0.7), ew_obs)
    return continuum * np.clip(1.0 - depth.profiles, 0.0, 1.0)


# Passive and weak-line galaxies at 0.3 < z < 1.6: absorption lines (rest vacuum A) with rest EWs
# (A) of passive / weak-line spectra: Ca II H&K, H-delta, G band, H-beta, Mg b, Fe 5270, Na D (the
# Lick indices of early-type galaxies, Trager et al. 1998, ApJS 116, 1; Worthey & Ottaviani 1997,
# ApJS 111, 377 for H-delta), and the near-UV MgII 2800, FeII 2600/2383 seen at z > 0.9 (composite
# of passive galaxies at z ~ 1: the DEEP2/VVDS red-sequence composites, e.g. Weiner et al. 2009,
# ApJ 692, 187).
GALAXY_ABSORPTION = (
    ("FEII2383", 2382.8, (2.0, 1.5)),
    ("FEII2600", 2600.2, (3.0, 2.0)),
    ("MGII2800", 2798.75, (5.0, 3.0)),
    ("CAII_K", 3934.78, (9.0, 5.0)),
    ("CAII_H", 3969.59, (8.0, 5.0)),
    ("HDELTA", 4102.89, (1.5, 3.5)),
    ("GBAND", 4305.0, (5.0, 3.0)),
    ("HBETA", 4862.68, (2.0, 3.0)),
    ("MGB", 5176.7, (4.5, 2.5)),
    ("FE5270", 5271.4, (2.5, 1.5)),
    ("NAD", 5895.6, (3.5, 2.0)),
)
# Weak emission relative to [OII] 3727 (EW ratios): LINER-like ratios of passive galaxies
# (Yan et al. 2006, ApJ 648, 281: [OII]/H-alpha ~ 1-3, [NII]/H-alpha > 0.6).
GALAXY_EMISSION = (
    (3727.09, 1.0 / 2.3),
    (3729.88, 1.3 / 2.3),
    (4862.68, 0.2),
    (4960.30, 0.4 / 2.98),
    (5008.24, 0.4),
    (6564.61, 0.5),
    (6585.27, 0.4),
)


def _galaxy_continuum(
    rest: np.ndarray, beta: np.ndarray, d4000: np.ndarray, uv_slope: np.ndarray
) -> np.ndarray:
    """f_lambda of an evolved population: lambda^beta, a 4000 A break of amplitude d4000, and a
    steep near-UV decline below 3500 A (f_lambda ~ lambda^uv_slope; old stars emit little UV)."""
    f = np.exp(beta[:, None] * (np.log(rest) - np.float32(math.log(5500.0))))
    step = np.float32(1.0) / (1.0 + np.exp((np.float32(4000.0) - rest) / np.float32(30.0)))
    f *= (1.0 / d4000)[:, None] + step * (1.0 - 1.0 / d4000)[:, None]
    f *= np.exp(uv_slope[:, None] * np.minimum(np.log(rest) - np.float32(math.log(3500.0)), 0.0))
    return f


def _render_galaxy(objects: pd.DataFrame) -> np.ndarray:
    n, wave = len(objects), instrument().wave
    z = objects["Z"].to_numpy()
    passive = objects["SUBTYPE"].to_numpy() == "PASSIVE"
    beta, d4000 = (objects[k].to_numpy(np.float32) for k in ("BETA", "D4000"))
    uv_slope = np.where(passive, 2.5, 1.0).astype(np.float32)
    rest = np.exp(_log_rest(objects))
    continuum = _galaxy_continuum(rest, beta, d4000, uv_slope)
    one_plus_z = 1.0 + z
    sigma_kms = objects["LINE_SIGMA_KMS"].to_numpy()
    scatter = _line_scatter(objects, len(GALAXY_ABSORPTION) + 1, 0.2)
    depth = _LineCanvas(n, wave.size)
    for k, (_, rest_wave, (ew_passive, ew_weak)) in enumerate(GALAXY_ABSORPTION):
        centre = rest_wave * one_plus_z
        ew_obs = np.where(passive, ew_passive, ew_weak) * scatter[:, k] * one_plus_z
        depth.add(centre, _trough_sigma(ew_obs, _observed_sigma(sigma_kms, centre), 0.6), ew_obs)
    emission = _LineCanvas(n, wave.size)
    oii_ew = objects["OII_EW"].to_numpy() * scatter[:, -1]
    for rest_wave, ratio in GALAXY_EMISSION:
        at_line = np.full((1, 1), rest_wave, np.float32)
        cont = _galaxy_continuum(np.broadcast_to(at_line, (n, 1)), beta, d4000, uv_slope)[:, 0]
        centre = rest_wave * one_plus_z
        emission.add(centre, _observed_sigma(sigma_kms, centre), oii_ew * ratio * one_plus_z * cont)
    return continuum * np.clip(1.0 - depth.profiles, 0.0, 1.0) + emission.profiles


def _apply_igm(
    flux: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    model: str = "inoue14",
    tau_scale: np.ndarray | float = 1.0,
) -> None:
    """Multiply in place by one fluctuating sightline per object (pixels blueward of Ly-alpha) of
    the mean IGM `model` (I14 by default) with its optical depth times `tau_scale`."""
    if z.size == 0:
        return
    wave = instrument().wave
    n_forest = int(np.searchsorted(wave, LYA * (1.0 + z.max()), side="right"))
    if n_forest == 0:
        return
    mean_tau = _igm_model(n_forest, model).tau(z)
    if not np.all(np.asarray(tau_scale) == 1.0):
        mean_tau = mean_tau * np.reshape(tau_scale, (-1, 1))
    field = correlated_gaussian_field(rng, mean_tau.shape, desi.PIXEL_STEP)
    tau = fluctuate_tau(mean_tau, field)
    flux[:, :n_forest] *= np.exp(-tau).astype(np.float32)


def _apply_igm_by_model(flux: np.ndarray, objects: pd.DataFrame, rng: np.random.Generator) -> None:
    """:func:`_apply_igm` on each group of rows sharing an IGM_MODEL (default: all I14)."""
    z = objects["Z"].to_numpy()
    if "IGM_MODEL" not in objects:
        _apply_igm(flux, z, rng)
        return
    models = objects["IGM_MODEL"].to_numpy().astype(str)
    scale = objects["IGM_TAU_SCALE"].to_numpy(np.float64) if "IGM_TAU_SCALE" in objects else np.ones(len(z))
    for model in sorted(set(models)):
        rows = np.flatnonzero(models == model)
        if rows.size == len(z):  # one group: no copies
            _apply_igm(flux, z, rng, model, scale)
        else:
            part = flux[rows]
            _apply_igm(part, z[rows], rng, model, scale[rows])
            flux[rows] = part


@lru_cache(maxsize=8)
def _igm_model(n_pixels: int, model: str = "inoue14") -> InoueIGM | MadauIGM:
    return IGM_MODELS[model](instrument().wave[:n_pixels])


RENDERERS = {
    "LBG": _render_lbg,
    "QSO": _render_qso,
    "ELG": _render_elg,
    "STAR": _render_star,
    "GALAXY": _render_galaxy,
}


def render_model(objects: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Noiseless spectra (N, P native) in 1e-17 erg/s/cm2/A, float32, scaled to each MAG_R."""
    objects = objects.reset_index(drop=True)
    model = np.zeros((len(objects), instrument().wave.size), dtype=np.float32)
    for spectype, render in RENDERERS.items():
        rows = np.flatnonzero(objects["SPECTYPE"].to_numpy() == spectype)
        if rows.size == 0:
            continue
        part = render(objects.iloc[rows]).astype(np.float32, copy=False)
        if spectype in ("LBG", "QSO"):
            _apply_igm_by_model(part, objects.iloc[rows], rng)
        model[rows] = part
    current = ab_magnitude(model, "r")
    model *= (10 ** (-0.4 * (objects["MAG_R"].to_numpy() - current))).astype(np.float32)[:, None]
    return model


# --------------------------------------------------------------------------------------------
