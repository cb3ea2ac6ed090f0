"""DESI-format spectrum simulator: Lyman Break Galaxies and the contaminants a colour-selected LBG
sample lets in (QSOs with and without BAL troughs, ELGs, passive and weak-line galaxies, stars).

The pipeline's embedded default data. Writes a DESI coadd file (PRIMARY, FIBERMAP, per arm
``<ARM>_WAVELENGTH/_FLUX/_IVAR/_MASK``; Guy et al. 2023, AJ 165, 144 for the format) and a truth
table (extname TRUTH). Everything is vectorised over a chunk of spectra; no Python loop runs over
pixels or objects.

Populations (rest-frame models, redshifted onto the merged native grid 3600-9824 A, 0.8 A)
-----------------------------------------------------------------------------------------
LBG (2 <= z <= 4)
    UV continuum f_lambda ~ lambda^beta, beta ~ N(-1.7, 0.4) (Shapley et al. 2003, ApJ 588, 65;
    Bouwens et al. 2009, ApJ 705, 936). Intrinsic Lyman-continuum escape fraction 0-10% below
    912 A rest (Steidel et al. 2018, ApJ 869, 123). Ly-alpha in four template classes after the
    Lyman-alpha-EW quartiles of Shapley et al. 2003 (their Table 3: -14.9, -1.1, +11.0, +52.6 A):
    rest EW uniform in [-15, -3] (0: absorption, no emission), [3, 10] (1: weak), [10, 30]
    (2: moderate), [30, 80] (3: strong emitter). Emission is redshifted by ~ +400 km/s from
    systemic and interstellar absorption blueshifted by ~ -150 km/s (Shapley et al. 2003;
    Steidel et al. 2010, ApJ 717, 289); the IGM then eats the blue side of the line. Interstellar
    absorption lines (SiII, OI, CII, SiIV, CIV, FeII, AlII, Ly-beta) with the composite rest EWs of
    Shapley et al. 2003 (Table 1, blends split), scaled down for stronger Ly-alpha emitters (their
    Fig. 8 / Table 3 trend) with 25% lognormal per-object scatter; weak NV, HeII 1640 and
    CIII] 1909 emission.
QSO (1.8 <= z <= 4)
    Power law f_nu ~ nu^alpha_nu, alpha_nu ~ N(-0.5, 0.3), broad lines with the rest EWs of the
    SDSS composite (Vanden Berk et al. 2001, AJ 122, 549: Ly-alpha+NV, SiIV+OIV], CIV, CIII],
    MgII, H-beta, H-alpha; :data:`lymannet.physics.QSO_BROAD_LINES`), 30% lognormal EW scatter,
    FWHM ~ N(4500, 1200) km/s.
ELG (0.05 <= z <= 0.2)
    Blue continuum with a weak 4000 A break, [OII]3726,3729, H-beta, [OIII]4959,5007, H-alpha,
    [NII]6548,6584, [SII]6717,6731: H-alpha EW lognormal around 50 A, Balmer decrement 2.86-4.5,
    BPT-like ratios of star-forming galaxies (Baldwin, Phillips & Terlevich 1981, PASP 93, 5;
    Kewley et al. 2001, ApJ 556, 121), [OIII]5007/4959 = 2.98, [NII]6584/6548 = 3.05.

QSO, SUBTYPE BAL (a share ``bal_fraction``, default 15%, of the QSOs at z > 1.6)
    Broad absorption troughs with one outflow velocity profile (start 1,000-15,000 km/s, width
    2,500-17,500 km/s, depth 0.3-0.95, logistic edges) in CIV, SiIV, NV and Ly-alpha (relative
    depths 1, 0.7, 0.9, 0.8), absorbing continuum and emission alike (Weymann et al. 1991, ApJ 373,
    23; Hall et al. 2002, ApJS 141, 267; Trump et al. 2006, ApJS 165, 1; Gibson et al. 2009, ApJ 692,
    758: 13% of SDSS QSOs at 1.7 < z < 4.9 have BI > 0, ~15-20% after selection effects).
GALAXY (0.3 <= z <= 1.6), SUBTYPE PASSIVE or WEAKLINE (``passive_fraction``, default 0.5)
    Evolved stellar populations: f_lambda ~ lambda^beta (beta ~ N(-0.6, 0.2) passive, N(-1.1, 0.25)
    weak-line), a 4000 A break of amplitude 1.6-2.1 (passive) or 1.25-1.6 (weak-line) across the
    Dn4000 bimodality (Balogh et al. 1999, ApJ 527, 54; Kauffmann et al. 2003, MNRAS 341, 33), a steep
    near-UV decline below 3500 A, absorption lines with early-type Lick-index strengths (Ca II H&K,
    H-delta, G band, H-beta, Mg b, Fe 5270, Na D: Trager et al. 1998, ApJS 116, 1; Worthey &
    Ottaviani 1997, ApJS 111, 377; MgII 2800 and FeII 2600/2383 at z > 0.9: Weiner et al. 2009, ApJ
    692, 187), velocity dispersion 150-250 km/s, and weak [OII] 3727 (rest EW 0-3 A passive, 3-12 A
    weak-line, against > 20 A for ELGs) with LINER-like H-beta, [OIII], H-alpha, [NII] (Yan et al.
    2006, ApJ 648, 281).
STAR (Z = radial velocity / c, sigma 100 km/s), SUBTYPE M, K, G or F
    Analytic dwarf templates (no spectral library ships on PyPI in a usable form, and runs never
    download data): a Planck continuum at Teff (Pecaut & Mamajek 2013, ApJS 208, 9: F 6000-7200 K,
    G 5340-5930 K, K 3970-5270 K, M 2650-3850 K) with blue line blanketing (10-65% below ~4300 A,
    more in cooler stars), Ca II H&K, Balmer, G band, Mg b, Fe 5270, Na D, K I 7700, Na I 8190 and
    Ca II triplet absorption with rest EWs interpolated in Teff (Jacoby, Hunter & Christian 1984,
    ApJS 56, 257; Pickles 1998, PASP 110, 863; Worthey et al. 1994, ApJS 94, 687; Cenarro et al.
    2001, MNRAS 326, 959), and TiO/CaH bands below ~4100 K (Kirkpatrick et al. 1991, ApJS 77, 417),
    calibrated so that the TiO5 index of Reid, Hawley & Gizis 1995 (AJ 110, 1838) is ~0.85 at M0 and
    ~0.45 at M4. Colours: g-r ~0.4 (F5), 0.6 (G2), 1.0 (K4), 1.55 (M3) against 0.35, 0.45, 1.0,
    1.45 for SDSS dwarfs (Covey et al. 2007, AJ 134, 2398). The type mix (default M 15%, K 35%, G 35%,
    F 15%) follows the LBG colour box crossing the stellar locus at G-K colours.

IGM: the Inoue et al. 2014 mean transmission with lognormal per-sightline scatter
(:mod:`lymannet.igm`), applied to LBGs and QSOs.

Photometry: each noiseless spectrum is scaled to its drawn AB r magnitude through a smooth
top-hat approximation of the DECam r filter (5650-7100 A); FLUX_G/R/Z (nanomaggies) in the
FIBERMAP come from the noiseless spectrum (g: 4000-5500 A, z: 8300-9824 A, truncated at the DESI
red end).

Noise ("observing" the spectrum for EXPTIME seconds): counts = f_lambda x collecting area
(8.68 m^2, DESI Collaboration 2022, AJ 164, 207) x throughput(arm, lambda) x exptime x pixel
width / photon energy; object counts are scaled by a fibre-aperture fraction. Variance = object
counts + sky counts (dark Kitt Peak continuum + the night-sky lines of package data
`sky_lines.txt`, through a 1.5" fibre; :mod:`lymannet.physics`) + read noise per 900 s exposure. Per-arm throughputs
(atmosphere at airmass ~1.1 + telescope + spectrograph + CCD, approximate shapes after the DESI
instrument papers) fall through the dichroics at 5780 and 7570 A, so the arm overlaps have larger
noise; O2 A/B and H2O telluric bands lower them too. The noise is Gaussian with exactly the
variance written to IVAR (so chi2 of flux - model is 1 per pixel on average). MASK is 0 (good).

Low-S/N spectra with no usable feature are the faint end of these populations: magnitudes are
drawn from number counts dN/dm ~ 10^(mag_slope m) within mag_r (``mag_slope``, per data set or per
population; 0 = uniform; faint galaxy counts in r have ~0.35: Metcalfe et al. 2001, MNRAS 323, 795),
so a survey-like data set is dominated by its faintest magnitude bin.

Modes (config ``datasets.<name>.simulate``): ``continuous`` (populations with counts and redshift
ranges, magnitudes from number counts, exposure times drawn from a list) or ``templates`` (LBGs on the
discrete grid z x template x magnitude x exposure x copies, thesis section 3.5.1).

Determinism: output bytes depend on (seed, dataset name, spec, chunk_rows). TARGETIDs start at a
base derived from the dataset name alone, so data sets of one config never share a TARGETID.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd
from scipy.special import expit

from . import desi
from .config import job_seed
from .errors import ConfigError
from .fileio import atomic_path
from .igm import IGM_MODELS, InoueIGM, MadauIGM, correlated_gaussian_field, fluctuate_tau
from .lines import LBG_LINES, LYA, LYMAN_LIMIT
from .physics import (BAL_LINES, C_KMS, QSO_BROAD_LINES, ab_to_f_nu, band_f_nu_weights, counts_per_flux,
                      bal_transmission, sky_surface_brightness)
from .runtime import Progress
from .spectra import complete_truth, truth_to_records

log = logging.getLogger("lymannet.simulate")

NANOMAGGY_F_NU = ab_to_f_nu(22.5)  # erg/s/cm2/Hz
TELESCOPE_AREA_CM2 = 8.678e4
FIBRE_AREA_ARCSEC2 = math.pi * 0.75**2  # 1.5" diameter fibre
EXPOSURE_SECONDS = 900.0  # a coadd of EXPTIME counts read noise once per nominal exposure
READ_VARIANCE_PER_EXPOSURE = 60.0  # electrons^2 per 0.8 A pixel (3.3 e- rms over ~5.5 CCD pixels)
INSTRUMENT_SIGMA_ANGSTROM = 0.75  # Gaussian LSF sigma (FWHM ~1.8 A)
# Share of the object's light in the 1.5" fibre: point sources (stars, QSOs) ~0.75-0.8 in ~1.1"
# seeing, compact LBGs 0.6, extended low-z galaxies 0.5.
FIBRE_FRACTION = {"LBG": 0.6, "QSO": 0.75, "ELG": 0.5, "STAR": 0.78, "GALAXY": 0.5}
# LBG and ELG are this project's classes; STAR, GALAXY and QSO are DESI's SPECTYPEs, with SUBTYPE
# M/K/G/F for stars, PASSIVE/WEAKLINE for galaxies and BAL for broad-absorption-line quasars.
SPECTYPES = ("LBG", "QSO", "ELG", "STAR", "GALAXY")
LBG_TEMPLATE_EW_RANGES = ((-15.0, -3.0), (3.0, 10.0), (10.0, 30.0), (30.0, 80.0))
LBG_TEMPLATE_FREQUENCIES = (0.2, 0.3, 0.3, 0.2)  # thesis 1.4: ~20% of LBGs have no Ly-alpha emission
LBG_ISM_SCALE_BY_TEMPLATE = np.array([1.3, 1.1, 0.9, 0.6])  # Shapley 2003: weaker ISM lines in emitters
LBG_EMISSION_SCALE_BY_TEMPLATE = np.array([0.6, 0.9, 1.1, 1.6])
# Rest EW (A, positive = absorption depth) of the interstellar lines, Shapley et al. 2003 Table 1.
LBG_ISM_EW = {
    "LYB": 2.5, "SIII1260": 1.63, "OI1302": 1.35, "SIII1304": 0.85, "CII1334": 1.72, "SIIV1393": 1.83,
    "SIIV1402": 0.81, "SIII1526": 1.72, "CIV1548": 1.85, "CIV1550": 1.18, "FEII1608": 0.91, "ALII1670": 1.04,
}
LBG_EMISSION_EW = {"NV1240": 0.6, "HEII1640": 1.3, "CIII1908": 1.7}  # weak nebular/stellar emission
# ELG narrow lines: rest wavelength (vacuum), name of its ratio in `_elg_line_fluxes`.
ELG_LINES = (
    (3727.09, "OII_a"), (3729.88, "OII_b"), (4862.68, "HBETA"), (4960.30, "OIII_a"), (5008.24, "OIII_b"),
    (6549.86, "NII_a"), (6564.61, "HALPHA"), (6585.27, "NII_b"), (6718.29, "SII_a"), (6732.67, "SII_b"),
)


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
        "B": ([3550, 3700, 3900, 4200, 4600, 5000, 5500, 5850], [0.05, 0.12, 0.22, 0.30, 0.35, 0.36, 0.34, 0.32]),
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
    return sky_surface_brightness(wave, np.interp(wave, knot_wave, knot_mag), sigma_angstrom=INSTRUMENT_SIGMA_ANGSTROM)


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


# --------------------------------------------------------------------------------------------
# Object parameters: the truth table (drawn up front; cheap, one row per spectrum)
# --------------------------------------------------------------------------------------------

def _params_rng(seed: int, dataset: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & (2**63 - 1), job_seed(seed, "simulate", dataset), stream])


def targetid_base(dataset: str) -> int:
    """First TARGETID of a data set: from a hash of its name, leaving 2^24 ids per data set."""
    return (job_seed(0, "simulate-targetid", dataset) >> 24) << 24


def _float_list(value: Any, what: str, dataset: str) -> list[float]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"datasets.{dataset}.simulate.{what} must be numbers, got {value!r}") from None
    if not out:
        raise ConfigError(f"datasets.{dataset}.simulate.{what} is empty")
    return out


def _range(value: Any, what: str, dataset: str, allowed: tuple[float, float] | None = None) -> tuple[float, float]:
    pair = _float_list(value, what, dataset)
    if len(pair) != 2 or pair[1] < pair[0]:
        raise ConfigError(f"datasets.{dataset}.simulate.{what} must be [low, high] with low <= high, got {value!r}")
    if allowed and (pair[0] < allowed[0] - 1e-9 or pair[1] > allowed[1] + 1e-9):
        raise ConfigError(f"datasets.{dataset}.simulate.{what} = {value!r} is outside the simulator's "
                          f"range {list(allowed)}")
    return pair[0], pair[1]


POPULATION_Z_LIMITS = {"LBG": (1.5, 4.5), "QSO": (1.0, 4.5), "ELG": (0.0, 0.5), "STAR": (-0.002, 0.002),
                       "GALAXY": (0.0, 2.0)}


def _exptimes(spec: dict[str, Any], dataset: str) -> list[float]:
    exptimes = _float_list(spec.get("exptime", [7200]), "exptime", dataset)
    if min(exptimes) <= 0:
        raise ConfigError(f"datasets.{dataset}.simulate.exptime must be positive seconds, got {exptimes}")
    return exptimes


def _empty_truth(n: int) -> dict[str, np.ndarray]:
    return {
        "Z": np.zeros(n), "SPECTYPE": np.full(n, "LBG", dtype="U8"), "TEMPLATE": np.full(n, -1, np.int16),
        "MAG_R": np.zeros(n), "EXPTIME": np.zeros(n), "LYA_EW": np.full(n, np.nan), "Z_GRID": np.full(n, np.nan),
        "SUBTYPE": np.full(n, "", dtype="U8"),
    }


def _continuous_objects(spec: dict[str, Any], rng: np.random.Generator, dataset: str) -> dict[str, np.ndarray]:
    populations = spec.get("populations")
    if not isinstance(populations, dict) or not populations:
        raise ConfigError(f"datasets.{dataset}.simulate.populations must map LBG/QSO/ELG to {{n, z}}")
    unknown = set(populations) - set(SPECTYPES)
    if unknown:
        raise ConfigError(f"datasets.{dataset}.simulate.populations: unknown {sorted(unknown)}; valid: {SPECTYPES}")
    exptimes = _exptimes(spec, dataset)
    mag_range = _range(spec.get("mag_r", [22.5, 24.5]), "mag_r", dataset, MAG_LIMITS)
    mag_slope = _mag_slope(spec.get("mag_slope", 0.0), "mag_slope", dataset)
    parts = []
    for spectype in SPECTYPES:
        if spectype not in populations:
            continue
        pop = populations[spectype] or {}
        if not isinstance(pop, dict):
            raise ConfigError(f"datasets.{dataset}.simulate.populations.{spectype} must be a mapping {{n, z}}")
        _check_population_keys(pop, spectype, dataset)
        n = int(pop.get("n", 0))
        if n < 0:
            raise ConfigError(f"datasets.{dataset}.simulate.populations.{spectype}.n must be >= 0")
        z_mean, z_sigma = pop.get("z_mean"), pop.get("z_sigma")
        if spectype == "STAR":  # Z = radial velocity / c unless the population says otherwise
            pop = {"z": list(POPULATION_Z_LIMITS["STAR"]), **pop}
            z_mean, z_sigma = (0.0, STAR_RV_SIGMA_KMS / C_KMS) if z_mean is None or z_sigma is None else (z_mean, z_sigma)
        z_lo, z_hi = _range(pop.get("z"), f"populations.{spectype}.z", dataset, POPULATION_Z_LIMITS[spectype])
        part = _empty_truth(n)
        part["SPECTYPE"][:] = spectype
        part["Z"] = _draw_redshift(rng, n, z_lo, z_hi, z_mean, z_sigma)
        if spectype == "LBG":
            part["TEMPLATE"] = rng.choice(4, size=n, p=LBG_TEMPLATE_FREQUENCIES).astype(np.int16)
        lo, hi = (_range(pop["mag_r"], f"populations.{spectype}.mag_r", dataset, MAG_LIMITS)
                  if "mag_r" in pop else mag_range)
        slope = (_mag_slope(pop["mag_slope"], f"populations.{spectype}.mag_slope", dataset)
                 if "mag_slope" in pop else mag_slope)
        part["MAG_R"] = draw_magnitudes(rng, n, lo, hi, slope)
        part["EXPTIME"] = rng.choice(np.asarray(exptimes), size=n)
        part["SUBTYPE"] = _draw_subtypes(rng, spectype, pop, part["Z"], dataset)
        parts.append(part)
    objects = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = rng.permutation(objects["Z"].size)  # populations interleaved, as on a real tile
    return {key: value[order] for key, value in objects.items()}


MAG_LIMITS = (15.0, 27.0)
POPULATION_KEYS = {"n", "z", "z_mean", "z_sigma", "mag_r", "mag_slope"}
POPULATION_EXTRA_KEYS = {"QSO": {"bal_fraction"}, "GALAXY": {"passive_fraction"}, "STAR": {"subtypes"}}
# BAL quasars: ~15% of optically selected QSOs at z > 1.6 show CIV/SiIV troughs (BI > 0: Gibson
# et al. 2009, ApJ 692, 758, 13.3% of SDSS DR5 QSOs at 1.68 < z < 4.93, ~20% after correcting for
# selection; Allen et al. 2011, MNRAS 410, 860). Below z ~ 1.6 CIV leaves the DESI range.
BAL_FRACTION = 0.15
BAL_MIN_Z = 1.6
PASSIVE_FRACTION = 0.5
# Stars inside an LBG colour box: the u-g / g-r box of z ~ 3 dropouts crosses the stellar locus at
# G-K colours (Steidel et al. 2003, ApJ 592, 728, Fig. 1; Sawicki et al. 2019, MNRAS 489, 5202),
# so G and K dwarfs of the halo dominate, with a tail of F turn-off stars and M dwarfs.
STAR_SUBTYPES = ("M", "K", "G", "F")
STAR_SUBTYPE_FRACTIONS = {"M": 0.15, "K": 0.35, "G": 0.35, "F": 0.15}
GALAXY_SUBTYPES = ("PASSIVE", "WEAKLINE")


def _check_population_keys(pop: dict[str, Any], spectype: str, dataset: str) -> None:
    valid = POPULATION_KEYS | POPULATION_EXTRA_KEYS.get(spectype, set())
    unknown = sorted(set(pop) - valid)
    if unknown:
        raise ConfigError(f"datasets.{dataset}.simulate.populations.{spectype}: unknown key(s) {unknown}; "
                          f"valid: {sorted(valid)}")


def _mag_slope(value: Any, what: str, dataset: str) -> float:
    try:
        slope = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"datasets.{dataset}.simulate.{what} must be a number (dlog10 N / dm), got {value!r}") from None
    if not -1.0 <= slope <= 1.0:
        raise ConfigError(f"datasets.{dataset}.simulate.{what} = {slope} is outside [-1, 1] (dlog10 N / dm; "
                          "galaxy counts at r ~ 23-25 have ~0.3-0.4)")
    return slope


def draw_magnitudes(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Magnitudes in [lo, hi] with number counts dN/dm ~ 10^(slope m) (slope 0: uniform).

    Inverse CDF of the truncated exponential: m = lo + log10(1 + u (10^(slope (hi - lo)) - 1)) / slope.
    Faint galaxy counts in r have dlog10 N/dm ~ 0.31-0.36 at r ~ 22-25 (Metcalfe et al. 2001,
    MNRAS 323, 795; Yasuda et al. 2001, AJ 122, 1104 for the bright end), so a magnitude-limited
    survey is dominated by its faint end."""
    u = rng.uniform(size=n)
    if abs(slope) < 1e-9 or hi <= lo:
        return lo + u * (hi - lo)
    return lo + np.log10(1.0 + u * (10.0 ** (slope * (hi - lo)) - 1.0)) / slope


def _fraction(value: Any, what: str, dataset: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"datasets.{dataset}.simulate.{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def _draw_subtypes(rng: np.random.Generator, spectype: str, pop: dict[str, Any], z: np.ndarray,
                   dataset: str) -> np.ndarray:
    """SUBTYPE per object: BAL for a share of z > 1.6 QSOs, M/K/G/F stars, PASSIVE/WEAKLINE galaxies."""
    n = z.size
    where = f"populations.{spectype}"
    if spectype == "QSO":
        share = _fraction(pop.get("bal_fraction", BAL_FRACTION), f"{where}.bal_fraction", dataset)
        return np.where((rng.uniform(size=n) < share) & (z > BAL_MIN_Z), "BAL", "").astype("U8")
    if spectype == "GALAXY":
        share = _fraction(pop.get("passive_fraction", PASSIVE_FRACTION), f"{where}.passive_fraction", dataset)
        return np.where(rng.uniform(size=n) < share, "PASSIVE", "WEAKLINE").astype("U8")
    if spectype == "STAR":
        weights = pop.get("subtypes", STAR_SUBTYPE_FRACTIONS)
        if not isinstance(weights, dict) or not weights or not set(weights) <= set(STAR_SUBTYPES):
            raise ConfigError(f"datasets.{dataset}.simulate.{where}.subtypes must map some of "
                              f"{list(STAR_SUBTYPES)} to weights, got {weights!r}")
        names = sorted(weights, key=STAR_SUBTYPES.index)
        p = np.array([_fraction(weights[k], f"{where}.subtypes.{k}", dataset) for k in names])
        if p.sum() <= 0:
            raise ConfigError(f"datasets.{dataset}.simulate.{where}.subtypes: the weights sum to 0")
        return np.asarray(names, dtype="U8")[rng.choice(len(names), size=n, p=p / p.sum())]
    return np.full(n, "", dtype="U8")


def _draw_redshift(rng: np.random.Generator, n: int, lo: float, hi: float,
                   mean: float | None, sigma: float | None) -> np.ndarray:
    """Uniform in [lo, hi], or a normal(mean, sigma) truncated to it (inverse-CDF draw)."""
    if mean is None or sigma is None:
        return rng.uniform(lo, hi, n)
    from scipy.stats import norm

    cdf_lo, cdf_hi = norm.cdf([(lo - float(mean)) / float(sigma), (hi - float(mean)) / float(sigma)])
    return np.clip(float(mean) + float(sigma) * norm.ppf(rng.uniform(cdf_lo, cdf_hi, n)), lo, hi)


def template_z_grid(z_grid: dict[str, Any], dataset: str = "?") -> np.ndarray:
    """The discrete redshifts of templates mode: start, start+step, ..., stop (inclusive)."""
    try:
        start, stop, step = (float(z_grid[k]) for k in ("start", "stop", "step"))
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"datasets.{dataset}.simulate.z_grid must be {{start, stop, step}}, got {z_grid!r}") from None
    if step <= 0 or stop < start:
        raise ConfigError(f"datasets.{dataset}.simulate.z_grid needs step > 0 and stop >= start, got {z_grid!r}")
    n = int(math.floor((stop - start) / step + 1e-6)) + 1
    grid = np.round(start + step * np.arange(n), 10)
    _range([grid[0], grid[-1]], "z_grid", dataset, POPULATION_Z_LIMITS["LBG"])
    return grid


def _template_objects(spec: dict[str, Any], rng: np.random.Generator, dataset: str) -> dict[str, np.ndarray]:
    z_values = template_z_grid(spec.get("z_grid"), dataset)
    templates = [int(t) for t in _float_list(spec.get("templates", [0, 1, 2, 3]), "templates", dataset)]
    if not set(templates) <= {0, 1, 2, 3}:
        raise ConfigError(f"datasets.{dataset}.simulate.templates must be among 0-3, got {templates}")
    mags = _float_list(spec.get("mag_levels"), "mag_levels", dataset)
    exptimes = _exptimes(spec, dataset)
    copies = int(spec.get("copies", 1))
    if copies < 1:
        raise ConfigError(f"datasets.{dataset}.simulate.copies must be >= 1, got {copies}")
    z, template, mag, exptime, _ = (a.ravel() for a in np.meshgrid(
        z_values, templates, mags, exptimes, np.arange(copies), indexing="ij"))
    objects = _empty_truth(z.size)
    objects.update(Z=z, Z_GRID=z.copy(), TEMPLATE=template.astype(np.int16), MAG_R=mag, EXPTIME=exptime)
    return objects


def _physical_parameters(objects: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Per-object shape parameters (slopes, line strengths, velocities), drawn for every row."""
    n = objects["Z"].size
    spectype, template = objects["SPECTYPE"], objects["TEMPLATE"]
    lbg, qso, elg = spectype == "LBG", spectype == "QSO", spectype == "ELG"
    # Draw every parameter for every row, then keep the relevant ones: one draw order for all.
    beta_lbg, alpha_nu, beta_elg = rng.normal(-1.7, 0.4, n), rng.normal(-0.5, 0.3, n), rng.normal(-1.2, 0.4, n)
    ew_unit = rng.uniform(size=n)
    ew_ranges = np.asarray(LBG_TEMPLATE_EW_RANGES)[np.clip(template, 0, 3)]
    objects["LYA_EW"] = np.where(lbg, ew_ranges[:, 0] + ew_unit * (ew_ranges[:, 1] - ew_ranges[:, 0]), np.nan)
    objects["BETA"] = np.select([lbg, qso, elg], [beta_lbg, -2.0 - alpha_nu, beta_elg])
    objects["ALPHA_NU"] = np.where(qso, alpha_nu, np.nan)
    objects["LYA_VOFF_KMS"] = np.where(lbg, np.clip(rng.normal(400.0, 120.0, n), 100.0, None), np.nan)
    objects["ISM_VOFF_KMS"] = np.where(lbg, rng.normal(-150.0, 60.0, n), np.nan)
    objects["LINE_SIGMA_KMS"] = np.select(
        [lbg, qso, elg],
        [np.clip(rng.normal(250.0, 60.0, n), 100, None), np.clip(rng.normal(4500.0, 1200.0, n), 1500, 9000) / 2.3548,
         np.full(n, 50.0)])
    objects["ISM_EW_SCALE"] = np.where(
        lbg, LBG_ISM_SCALE_BY_TEMPLATE[np.clip(template, 0, 3)] * rng.lognormal(0.0, 0.25, n), np.nan)
    objects["LYC_ESCAPE"] = np.where(lbg, rng.uniform(0.0, 0.1, n), np.nan)
    objects["D4000"] = np.where(elg, rng.uniform(1.05, 1.3, n), np.nan)
    objects["HALPHA_EW"] = np.where(elg, rng.lognormal(np.log(50.0), 0.5, n), np.nan)
    objects["FIBER_FRAC"] = np.select([spectype == k for k in FIBRE_FRACTION], list(FIBRE_FRACTION.values()))
    # Seeds for the per-line strength scatter drawn inside the renderers.
    objects["LINE_SEED"] = rng.integers(0, 2**31 - 1, n)
    _contaminant_parameters(objects, rng)


# Effective temperatures of dwarfs by type (Pecaut & Mamajek 2013, ApJS 208, 9, Table 5):
# F0-F9 7220-6000 K, G0-G9 5930-5340 K, K0-K7 5270-3970 K, M0-M7 3850-2650 K.
STAR_TEFF_RANGES = {"F": (6000.0, 7200.0), "G": (5340.0, 5930.0), "K": (3970.0, 5270.0), "M": (2650.0, 3850.0)}
STAR_RV_SIGMA_KMS = 100.0  # halo dwarfs: heliocentric radial velocities of ~100 km/s rms


def _contaminant_parameters(objects: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Parameters of stars, passive/weak-line galaxies and BAL troughs (drawn after the others,
    for every row, so that adding these classes leaves the older parameters' draws unchanged)."""
    n = objects["Z"].size
    spectype, subtype = objects["SPECTYPE"], objects["SUBTYPE"]
    star, galaxy, bal = spectype == "STAR", spectype == "GALAXY", (spectype == "QSO") & (subtype == "BAL")
    passive = galaxy & (subtype == "PASSIVE")
    unit = rng.uniform(size=(6, n))
    lo = pd.Series(subtype).map({k: v[0] for k, v in STAR_TEFF_RANGES.items()}).to_numpy(np.float64)
    hi = pd.Series(subtype).map({k: v[1] for k, v in STAR_TEFF_RANGES.items()}).to_numpy(np.float64)
    objects["TEFF"] = np.where(star, lo + unit[0] * (hi - lo), np.nan)
    # Passive galaxies: Dn4000 1.6-2.1, weak-line (post-starburst, green-valley) 1.25-1.6: the two
    # sides of the Dn4000 bimodality (Kauffmann et al. 2003, MNRAS 341, 33; Balogh et al. 1999,
    # ApJ 527, 54). [OII] 3727 rest EW 0-3 A (passive) and 3-12 A (weak-line; star-forming ELGs
    # have > 20 A: Mostek et al. 2012, ApJ 746, 124; Lemaux et al. 2010, ApJ 716, 970 for weak [OII]).
    objects["D4000"] = np.where(galaxy, np.where(passive, 1.6 + 0.5 * unit[1], 1.25 + 0.35 * unit[1]),
                                objects["D4000"])
    objects["OII_EW"] = np.where(galaxy, np.where(passive, 3.0 * unit[2], 3.0 + 9.0 * unit[2]), np.nan)
    # Red optical continua: f_lambda ~ lambda^beta redward of 4000 A, beta ~ -0.6 (old) to -1.1 (younger).
    beta = np.where(passive, rng.normal(-0.6, 0.2, n), rng.normal(-1.1, 0.25, n))
    objects["BETA"] = np.where(galaxy, beta, objects["BETA"])
    objects["LINE_SIGMA_KMS"] = np.where(galaxy, 150.0 + 100.0 * unit[3], objects["LINE_SIGMA_KMS"])
    objects["LINE_SIGMA_KMS"] = np.where(star, 40.0, objects["LINE_SIGMA_KMS"])
    objects["BETA"] = np.where(star, np.nan, objects["BETA"])
    # BAL troughs (Weymann et al. 1991, ApJ 373, 23: BI counts absorption >= 10% deep over > 2000 km/s
    # between 3000 and 25000 km/s; observed troughs start at 0-15000 km/s and span 2000-20000 km/s,
    # Gibson et al. 2009 Fig. 5; Trump et al. 2006, ApJS 165, 1).
    vmin = 1000.0 + 14000.0 * unit[4]
    objects["BAL_VMIN_KMS"] = np.where(bal, vmin, np.nan)
    objects["BAL_VMAX_KMS"] = np.where(bal, np.minimum(vmin + 2500.0 + 15000.0 * unit[5], 29000.0), np.nan)
    objects["BAL_DEPTH"] = np.where(bal, rng.uniform(0.3, 0.95, n), np.nan)


def draw_objects(spec: dict[str, Any], seed: int, dataset: str) -> pd.DataFrame:
    """The truth table of a data set before rendering: one row per spectrum, in file order."""
    spec = _simulate_block(spec, dataset)
    rng = _params_rng(seed, dataset, 0)
    mode = spec.get("mode")
    if mode == "continuous":
        objects = _continuous_objects(spec, rng, dataset)
    elif mode == "templates":
        objects = _template_objects(spec, rng, dataset)
    else:
        raise ConfigError(f"datasets.{dataset}.simulate.mode must be 'continuous' or 'templates', not {mode!r}")
    n = objects["Z"].size
    if n == 0:
        raise ConfigError(f"datasets.{dataset}.simulate describes no spectra")
    if n >= 2**24:
        raise ConfigError(f"datasets.{dataset}.simulate: {n} spectra exceed the 2^24 TARGETIDs of a data set")
    _physical_parameters(objects, rng)
    _robustness_options(spec, objects, _params_rng(seed, dataset, ROBUSTNESS_STREAM), dataset)
    _randomise(spec, objects, _params_rng(seed, dataset, RANDOMISE_STREAM), dataset)
    truth = pd.DataFrame(objects)
    truth.insert(0, "TARGETID", targetid_base(dataset) + np.arange(n, dtype=np.int64))
    truth["SOURCE"] = f"simulated:{dataset}"
    truth["TARGET_RA"] = 150.1 + rng.uniform(-0.8, 0.8, n)  # a COSMOS-like patch
    truth["TARGET_DEC"] = 2.2 + rng.uniform(-0.8, 0.8, n)
    return truth


# --------------------------------------------------------------------------------------------
# Robustness options: physics and observing conditions the training sets never see
# --------------------------------------------------------------------------------------------

ROBUSTNESS_STREAM = 2**40  # an rng stream of its own (chunks use 1, 2, ...)
LYA_EW_DISTRIBUTIONS = ("templates", "exponential")
LYA_EW_TEMPLATE_EDGES = (0.0, 10.0, 30.0)  # EW -> template: < 0: 0, [0, 10): 1, [10, 30): 2, >= 30: 3


def _robustness_options(spec: dict[str, Any], objects: dict[str, np.ndarray], rng: np.random.Generator,
                        dataset: str) -> None:
    """Per-object columns for the data set's `igm`, `sky_scale` and `lya_ew` options.

    * ``igm: {model: inoue14 | madau95, tau_scale: 1.0}``: the mean IGM optical depth of LBGs and
      QSOs (:mod:`lymannet.igm`), scaled by tau_scale, before the per-sightline fluctuations.
      Columns IGM_MODEL, IGM_TAU_SCALE.
    * ``sky_scale: 1.0``: the sky background (continuum and lines) times this factor: 1 is the
      dark Kitt Peak sky; a partly moonlit (grey) sky is ~0.5-1 mag brighter in g and r, a factor
      ~1.5-2.5 (Krisciunas & Schaefer 1991, PASP 103, 1033). Column SKY_SCALE, read by
      :func:`arm_variance`.
    * ``lya_ew: {distribution: exponential, scale: 25, absorber_fraction: 0.3}`` (continuous mode):
      instead of the four Shapley et al. 2003 template classes, each LBG is an absorber (share
      absorber_fraction, rest EW -Exp(8 A), floor -30 A) or an emitter with rest EW ~ Exp(scale)
      (cap 200 A): the exponential EW distributions of z ~ 3 LBGs/LAEs (Gronwall et al. 2007, ApJ 667,
      79; Kornei et al. 2010, ApJ 711, 693). Unlike the templates it fills the weak-line gap
      -3 < EW < 3 A. TEMPLATE is then the class of the drawn EW (< 0, 0-10, 10-30, >= 30 A) and the
      interstellar-line strength follows the new class.
    """
    n = objects["Z"].size
    where = f"datasets.{dataset}.simulate"
    igm = spec.get("igm") or {}
    if not isinstance(igm, dict) or set(igm) - {"model", "tau_scale"}:
        raise ConfigError(f"{where}.igm must be {{model: inoue14|madau95, tau_scale: number}}, got {igm!r}")
    model = igm.get("model", "inoue14")
    if model not in IGM_MODELS:
        raise ConfigError(f"{where}.igm.model must be one of {sorted(IGM_MODELS)}, got {model!r}")
    objects["IGM_MODEL"] = np.full(n, model, dtype="U8")
    objects["IGM_TAU_SCALE"] = np.full(n, _positive(igm.get("tau_scale", 1.0), f"{where}.igm.tau_scale"))
    objects["SKY_SCALE"] = np.full(n, _positive(spec.get("sky_scale", 1.0), f"{where}.sky_scale"))
    lya = spec.get("lya_ew") or {}
    if not isinstance(lya, dict) or set(lya) - {"distribution", "scale", "absorber_fraction"}:
        raise ConfigError(f"{where}.lya_ew must be {{distribution, scale, absorber_fraction}}, got {lya!r}")
    distribution = lya.get("distribution", "templates")
    if distribution not in LYA_EW_DISTRIBUTIONS:
        raise ConfigError(f"{where}.lya_ew.distribution must be one of {list(LYA_EW_DISTRIBUTIONS)}, "
                          f"got {distribution!r}")
    lbg = objects["SPECTYPE"] == "LBG"
    # What the data set drew, per object (the randomise block below may change it).
    objects["LYA_EW_MODEL"] = np.where(lbg, "templates", "").astype("U12")
    objects["LYA_EW_SCALE"] = np.full(n, np.nan)
    objects["LYA_EW_ABSFRAC"] = np.full(n, np.nan)
    for column in ("LINE_WIDTH_SCALE", "ISM_SCALE"):
        objects[column] = np.ones(n)
    objects["BETA_SHIFT"] = np.zeros(n)
    objects["MAG_FAINT"] = np.full(n, np.nan)
    if distribution == "templates":
        return
    if spec.get("mode") != "continuous":
        raise ConfigError(f"{where}.lya_ew.distribution {distribution!r} needs mode continuous "
                          "(templates mode draws the EW of each template class)")
    scale = _positive(lya.get("scale", 25.0), f"{where}.lya_ew.scale")
    absorbers = _fraction(lya.get("absorber_fraction", 0.3), "lya_ew.absorber_fraction", dataset)
    lbg = objects["SPECTYPE"] == "LBG"
    _exponential_ew(objects, lbg, rng, scale, absorbers)
    objects["LYA_EW_MODEL"] = np.where(lbg, "exponential", "").astype("U12")
    objects["LYA_EW_SCALE"] = np.where(lbg, scale, np.nan)
    objects["LYA_EW_ABSFRAC"] = np.where(lbg, absorbers, np.nan)


def _exponential_ew(objects: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator,
                    scale: np.ndarray | float, absorbers: np.ndarray | float) -> None:
    """Rows (bool mask) get an exponential Ly-alpha EW: an absorber (share `absorbers`, rest EW
    -Exp(8 A), floor -30 A) or an emitter (Exp(scale), cap 200 A); TEMPLATE becomes the class of
    the EW and the interstellar-line strength follows it. Draws for every row (one draw order)."""
    n = objects["Z"].size
    absorbing = rng.uniform(size=n) < absorbers
    ew = np.where(absorbing, -np.minimum(rng.exponential(8.0, n), 30.0), np.minimum(rng.exponential(scale, n), 200.0))
    template = np.searchsorted(np.asarray(LYA_EW_TEMPLATE_EDGES), ew, side="right").astype(np.int16)
    old = np.clip(objects["TEMPLATE"], 0, 3)
    objects["ISM_EW_SCALE"] = np.where(
        rows, objects["ISM_EW_SCALE"] * LBG_ISM_SCALE_BY_TEMPLATE[template] / LBG_ISM_SCALE_BY_TEMPLATE[old],
        objects["ISM_EW_SCALE"])
    objects["LYA_EW"] = np.where(rows, ew, objects["LYA_EW"])
    objects["TEMPLATE"] = np.where(rows, template, objects["TEMPLATE"]).astype(np.int16)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) > 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# Domain randomisation: the simulator's free choices drawn per object from broad distributions
# --------------------------------------------------------------------------------------------

RANDOMISE_STREAM = 2**41  # an rng stream of its own: a data set without `randomise` draws as before
# Knob -> (what it draws, modes it applies to). A range [low, high] is drawn uniformly per object;
# a single number fixes the value (a robustness set outside the training's ranges).
RANDOMISE_KEYS = {
    "igm_models": "IGM model of each LBG/QSO, uniformly among the list (replaces igm.model)",
    "tau_scale": "IGM optical-depth scale (replaces igm.tau_scale)",
    "lya_ew": "LBG Ly-alpha EW distribution: {distributions, scale, absorber_fraction} (continuous mode)",
    "line_width_scale": "line widths (LINE_SIGMA_KMS) of every class but stars times this",
    "ism_scale": "LBG interstellar absorption strengths (ISM_EW_SCALE) times this",
    "beta_shift": "continuum slope beta + this (LBG, ELG, GALAXY; QSO alpha_nu - this)",
    "exptime": "exposure time in s, uniform (replaces exptime; continuous mode)",
    "sky_scale": "sky background factor (replaces sky_scale)",
    "mag_faint": "faint end of each object's r range: mag_r [lo, hi] stretched to [lo, mag_faint] (continuous mode)",
}
CONTINUOUS_ONLY = ("lya_ew", "exptime", "mag_faint")


def _drawn_range(value: Any, what: str, low_limit: float = 0.0, strict: bool = True) -> tuple[float, float]:
    """A knob's [low, high] (a single number is [v, v]); values must exceed low_limit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or float(value[0]) > float(value[1])):
        raise ConfigError(f"{what} must be a number or [low, high] with low <= high, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if (low <= low_limit) if strict else (low < low_limit):
        raise ConfigError(f"{what} = {value!r} must be {'>' if strict else '>='} {low_limit}")
    return low, high


def _uniform_draw(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], n) if bounds[1] > bounds[0] else np.full(n, bounds[0])


def randomise_ranges(spec: dict[str, Any], dataset: str = "?") -> dict[str, Any]:
    """The checked `randomise` block of a data set's simulate spec: knob -> (low, high), the
    list of IGM models, and lya_ew's {distributions, scale, absorber_fraction}."""
    spec = _simulate_block(spec, dataset)
    block = spec.get("randomise") or {}
    where = f"datasets.{dataset}.simulate.randomise"
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping of knobs, got {block!r}")
    unknown = sorted(set(block) - set(RANDOMISE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown knob(s) {unknown}; valid: {sorted(RANDOMISE_KEYS)}")
    if spec.get("mode") != "continuous":
        wrong = sorted(set(block) & set(CONTINUOUS_ONLY))
        if wrong:
            raise ConfigError(f"{where}: {wrong} need mode continuous (templates mode is a grid of "
                              "templates, exposure times and magnitudes by design)")
    out: dict[str, Any] = {}
    if "igm_models" in block:
        models = block["igm_models"]
        if not isinstance(models, (list, tuple)) or not models or set(models) - set(IGM_MODELS):
            raise ConfigError(f"{where}.igm_models must be a non-empty list among {sorted(IGM_MODELS)}, got {models!r}")
        out["igm_models"] = [str(m) for m in models]
    for key in ("tau_scale", "line_width_scale", "ism_scale", "sky_scale"):
        if key in block:
            out[key] = _drawn_range(block[key], f"{where}.{key}")
    if "beta_shift" in block:
        out["beta_shift"] = _drawn_range(block["beta_shift"], f"{where}.beta_shift", -np.inf)
        if max(abs(v) for v in out["beta_shift"]) > 2.0:
            raise ConfigError(f"{where}.beta_shift = {block['beta_shift']!r}: |shift| <= 2 (UV slopes span ~-3..0)")
    if "exptime" in block:
        out["exptime"] = _drawn_range(block["exptime"], f"{where}.exptime")
    if "mag_faint" in block:
        out["mag_faint"] = _drawn_range(block["mag_faint"], f"{where}.mag_faint", MAG_LIMITS[0])
        if out["mag_faint"][1] > MAG_LIMITS[1]:
            raise ConfigError(f"{where}.mag_faint = {block['mag_faint']!r} is fainter than {MAG_LIMITS[1]}")
    if "lya_ew" in block:
        lya = block["lya_ew"]
        if not isinstance(lya, dict) or set(lya) - {"distributions", "scale", "absorber_fraction"}:
            raise ConfigError(f"{where}.lya_ew must be {{distributions, scale, absorber_fraction}}, got {lya!r}")
        distributions = lya.get("distributions", list(LYA_EW_DISTRIBUTIONS))
        if (not isinstance(distributions, (list, tuple)) or not distributions
                or set(distributions) - set(LYA_EW_DISTRIBUTIONS)):
            raise ConfigError(f"{where}.lya_ew.distributions must be a non-empty list among "
                              f"{list(LYA_EW_DISTRIBUTIONS)}, got {distributions!r}")
        absorbers = _drawn_range(lya.get("absorber_fraction", 0.3), f"{where}.lya_ew.absorber_fraction", 0.0, False)
        if absorbers[1] > 1:
            raise ConfigError(f"{where}.lya_ew.absorber_fraction must be within [0, 1], got {lya['absorber_fraction']!r}")
        out["lya_ew"] = {"distributions": [str(d) for d in distributions],
                         "scale": _drawn_range(lya.get("scale", 25.0), f"{where}.lya_ew.scale"),
                         "absorber_fraction": absorbers}
    return out


def _randomise(spec: dict[str, Any], objects: dict[str, np.ndarray], rng: np.random.Generator,
               dataset: str) -> None:
    """Domain randomisation (`simulate.randomise`): per object, the simulator's free choices drawn
    from the given ranges instead of the data set's single values, recorded in the truth
    (IGM_MODEL, IGM_TAU_SCALE, LYA_EW_MODEL/_SCALE/_ABSFRAC, LINE_WIDTH_SCALE, ISM_SCALE,
    BETA_SHIFT, EXPTIME, SKY_SCALE, MAG_FAINT). Knobs draw in a fixed order, each only if given."""
    ranges = randomise_ranges(spec, dataset)
    if not ranges:
        return
    n = objects["Z"].size
    spectype = objects["SPECTYPE"]
    lbg, qso, star = spectype == "LBG", spectype == "QSO", spectype == "STAR"
    if "igm_models" in ranges:
        models = np.asarray(ranges["igm_models"], dtype="U8")
        objects["IGM_MODEL"] = models[rng.integers(0, len(models), n)]
    if "tau_scale" in ranges:
        objects["IGM_TAU_SCALE"] = _uniform_draw(rng, ranges["tau_scale"], n)
    if "lya_ew" in ranges:
        lya = ranges["lya_ew"]
        distributions = np.asarray(lya["distributions"], dtype="U12")
        chosen = distributions[rng.integers(0, len(distributions), n)]
        scale = _uniform_draw(rng, lya["scale"], n)
        absorbers = _uniform_draw(rng, lya["absorber_fraction"], n)
        # Rows drawn "templates" keep the EW of their template class (or the data set's exponential
        # draw, if it asked for one, when "exponential" is not in the list).
        exponential = lbg & (chosen == "exponential")
        _exponential_ew(objects, exponential, rng, scale, absorbers)
        objects["LYA_EW_MODEL"] = np.where(exponential, "exponential", objects["LYA_EW_MODEL"]).astype("U12")
        objects["LYA_EW_SCALE"] = np.where(exponential, scale, objects["LYA_EW_SCALE"])
        objects["LYA_EW_ABSFRAC"] = np.where(exponential, absorbers, objects["LYA_EW_ABSFRAC"])
    if "line_width_scale" in ranges:
        factor = np.where(star, 1.0, _uniform_draw(rng, ranges["line_width_scale"], n))
        objects["LINE_WIDTH_SCALE"] = factor
        objects["LINE_SIGMA_KMS"] = objects["LINE_SIGMA_KMS"] * factor
    if "ism_scale" in ranges:
        factor = np.where(lbg, _uniform_draw(rng, ranges["ism_scale"], n), 1.0)
        objects["ISM_SCALE"] = factor
        objects["ISM_EW_SCALE"] = objects["ISM_EW_SCALE"] * factor
    if "beta_shift" in ranges:
        shift = np.where(star, 0.0, _uniform_draw(rng, ranges["beta_shift"], n))
        objects["BETA_SHIFT"] = shift
        objects["BETA"] = objects["BETA"] + shift  # stars' BETA is NaN and stays so
        objects["ALPHA_NU"] = np.where(qso, objects["ALPHA_NU"] - shift, objects["ALPHA_NU"])
    if "exptime" in ranges:
        objects["EXPTIME"] = np.round(_uniform_draw(rng, ranges["exptime"], n))
    if "sky_scale" in ranges:
        objects["SKY_SCALE"] = _uniform_draw(rng, ranges["sky_scale"], n)
    if "mag_faint" in ranges:
        faint = _uniform_draw(rng, ranges["mag_faint"], n)
        low, high = _magnitude_ranges(spec, objects, dataset)
        if np.any(faint <= low):
            raise ConfigError(f"datasets.{dataset}.simulate.randomise.mag_faint {list(ranges['mag_faint'])} must "
                              f"be fainter than the bright end of mag_r ({float(low.max())})")
        stretch = np.divide(faint - low, high - low, out=np.ones(n), where=high > low)
        objects["MAG_R"] = np.where(high > low, low + (objects["MAG_R"] - low) * stretch, faint)
        objects["MAG_FAINT"] = faint


def simulator_choices(spec: dict[str, Any], dataset: str = "?") -> dict[str, Any]:
    """What a data set draws for each free choice of the simulator: knob -> (low, high), or a set
    of names for igm_model and lya_ew_distribution. With :func:`randomise_ranges`'s ranges where
    the data set randomises, its single values otherwise; lya_ew_scale is None without any
    exponential EWs. Used to check that a robustness set lies outside what training draws."""
    spec = _simulate_block(spec, dataset)
    ranges = randomise_ranges(spec, dataset)
    igm = spec.get("igm") or {}
    lya = spec.get("lya_ew") or {}
    fixed = lambda value: (float(value), float(value))  # noqa: E731
    own_distribution = lya.get("distribution", "templates")
    choices: dict[str, Any] = {
        "igm_model": set(ranges.get("igm_models", [igm.get("model", "inoue14")])),
        "tau_scale": ranges.get("tau_scale", fixed(igm.get("tau_scale", 1.0))),
        "line_width_scale": ranges.get("line_width_scale", (1.0, 1.0)),
        "ism_scale": ranges.get("ism_scale", (1.0, 1.0)),
        "beta_shift": ranges.get("beta_shift", (0.0, 0.0)),
        "sky_scale": ranges.get("sky_scale", fixed(spec.get("sky_scale", 1.0))),
    }
    exptimes = _exptimes(spec, dataset)
    choices["exptime"] = ranges.get("exptime", (min(exptimes), max(exptimes)))
    if spec.get("mode") == "templates":
        choices["mag_faint"] = fixed(max(_float_list(spec.get("mag_levels"), "mag_levels", dataset)))
    else:
        faint = [_range(spec.get("mag_r", [22.5, 24.5]), "mag_r", dataset)[1]]
        faint += [_range(pop["mag_r"], "mag_r", dataset)[1] for pop in (spec.get("populations") or {}).values()
                  if isinstance(pop, dict) and "mag_r" in pop]
        choices["mag_faint"] = ranges.get("mag_faint", (min(faint), max(faint)))
    scales, absorbers = [], []
    distributions = {own_distribution}
    if own_distribution == "exponential":
        scales.append(fixed(lya.get("scale", 25.0)))
        absorbers.append(fixed(lya.get("absorber_fraction", 0.3)))
    else:
        absorbers.append(fixed(LBG_TEMPLATE_FREQUENCIES[0]))  # template 0: Ly-alpha in absorption
    if "lya_ew" in ranges:
        drawn = set(ranges["lya_ew"]["distributions"])
        distributions |= drawn
        if "exponential" in drawn:
            scales.append(ranges["lya_ew"]["scale"])
            absorbers.append(ranges["lya_ew"]["absorber_fraction"])
    choices["lya_ew_distribution"] = distributions
    choices["lya_ew_scale"] = (min(a for a, _ in scales), max(b for _, b in scales)) if scales else None
    choices["lya_absorber_fraction"] = (min(a for a, _ in absorbers), max(b for _, b in absorbers))
    return choices


def _magnitude_ranges(spec: dict[str, Any], objects: dict[str, np.ndarray], dataset: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Each object's [low, high] r range in a continuous data set (its population's or the set's)."""
    default = _range(spec.get("mag_r", [22.5, 24.5]), "mag_r", dataset, MAG_LIMITS)
    low, high = np.full(objects["Z"].size, default[0]), np.full(objects["Z"].size, default[1])
    for spectype, pop in (spec.get("populations") or {}).items():
        if isinstance(pop, dict) and "mag_r" in pop:
            rows = objects["SPECTYPE"] == spectype
            low[rows], high[rows] = _range(pop["mag_r"], f"populations.{spectype}.mag_r", dataset, MAG_LIMITS)
    return low, high


def _simulate_block(spec: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Accept either the `simulate:` block itself or the data set's block that contains it."""
    if not isinstance(spec, dict):
        raise ConfigError(f"datasets.{dataset}.simulate must be a mapping, got {type(spec).__name__}")
    if "mode" not in spec and isinstance(spec.get("simulate"), dict):
        return spec["simulate"]
    return spec


# --------------------------------------------------------------------------------------------
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
        start = np.clip(np.round(centre_pix).astype(np.int64) - half, -self.pad, self.n_pixels + self.pad - 2 * half - 1)
        pixels = start[:, None] + np.arange(2 * half + 1)[None, :]  # (N, W), unique per row
        offsets = (self.wave0 + desi.PIXEL_STEP * pixels - centre[:, None]) / sigma[:, None]
        # Sampled at pixel centres: integral x normalised Gaussian (per Angstrom).
        amplitude = np.where(visible, integral / (sigma * math.sqrt(2 * math.pi)), 0.0)
        values = amplitude[:, None] * np.exp(-0.5 * offsets**2)
        rows = np.arange(centre.size)[:, None] * self.buffer.shape[1]
        self.buffer.ravel()[(rows + pixels + self.pad).ravel()] += values.astype(np.float32).ravel()

    @property
    def profiles(self) -> np.ndarray:
        return self.buffer[:, self.pad:self.pad + self.n_pixels]


def _observed_sigma(rest_sigma_kms: np.ndarray, wave_obs: np.ndarray) -> np.ndarray:
    return np.hypot(wave_obs * rest_sigma_kms / C_KMS, INSTRUMENT_SIGMA_ANGSTROM)


def _line_scatter(objects: pd.DataFrame, n_lines: int, sigma: float) -> np.ndarray:
    """Lognormal per-object, per-line strength factors, determined by the rows' LINE_SEEDs."""
    seeds = objects["LINE_SEED"].to_numpy()
    rng = np.random.default_rng(seeds.astype(np.uint64) if seeds.size else 0)
    return rng.lognormal(0.0, sigma, (seeds.size, n_lines))


def _log_rest(objects: pd.DataFrame) -> np.ndarray:
    """ln(rest wavelength) per object and native pixel, float32 (N, P)."""
    return instrument().log_wave[None, :] - np.log1p(objects["Z"].to_numpy(np.float64)).astype(np.float32)[:, None]


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
    return {"HALPHA": halpha, "HBETA": hbeta, "OIII_b": oiii, "OIII_a": oiii / 2.98, "NII_b": nii,
            "NII_a": nii / 3.05, "SII_a": 0.55 * sii, "SII_b": 0.45 * sii, "OII_a": oii / 2.3, "OII_b": oii * 1.3 / 2.3}


def _render_elg(objects: pd.DataFrame) -> np.ndarray:
    n, wave = len(objects), instrument().wave
    z, beta, d4000 = (objects[k].to_numpy() for k in ("Z", "BETA", "D4000"))
    log_rest = _log_rest(objects)
    continuum = _power_law(log_rest, beta, 5500.0)
    rest = np.exp(log_rest)
    step = np.float32(1.0) / (1.0 + np.exp((4000.0 - rest) / np.float32(40.0)))  # 0 blue, 1 red of the break
    continuum *= (1.0 / d4000.astype(np.float32))[:, None] + step * (1.0 - 1.0 / d4000.astype(np.float32))[:, None]
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
    transmission[rows, lo:hi] = bal_transmission(window, one_plus_z, f32("BAL_VMIN_KMS"), f32("BAL_VMAX_KMS"),
                                                 depth[rows, None].astype(np.float32))
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
    ("CAII_K", 3934.78, (10.0, 20.0, 18.0, 9.0)), ("CAII_H", 3969.59, (8.0, 15.0, 14.0, 9.0)),
    ("HDELTA", 4102.89, (0.5, 1.0, 2.5, 6.0)), ("GBAND", 4305.0, (2.0, 6.0, 6.0, 3.0)),
    ("HGAMMA", 4341.68, (0.5, 1.0, 3.0, 7.0)), ("HBETA", 4862.68, (0.5, 1.2, 3.5, 7.0)),
    ("MGB", 5176.7, (6.0, 8.0, 4.0, 2.0)), ("FE5270", 5271.4, (2.0, 3.0, 2.2, 1.2)),
    ("NAD", 5895.6, (8.0, 5.0, 2.5, 1.5)), ("HALPHA", 6564.61, (0.5, 1.2, 3.0, 6.0)),
    ("KI_a", 7667.0, (2.0, 0.8, 0.4, 0.1)), ("KI_b", 7701.1, (1.5, 0.6, 0.3, 0.1)),
    ("NAI_a", 8185.5, (3.0, 1.0, 0.5, 0.2)), ("NAI_b", 8197.1, (3.0, 1.0, 0.5, 0.2)),
    ("CAT_a", 8500.4, (1.0, 1.6, 1.3, 1.0)), ("CAT_b", 8544.4, (2.0, 3.5, 3.2, 2.6)),
    ("CAT_c", 8664.5, (1.8, 3.0, 2.7, 2.2)),
)
# Molecular bands of M dwarfs (and late K): band head (rest A, degraded to the red), depth at full
# strength, e-folding length (A). TiO: 4955, 5167, 5448, 5847, 6159, 6651, 7055, 7589, 8432;
# CaH: 6385, 6830 (Kirkpatrick, Henry & McCarthy 1991, ApJS 77, 417; Reid et al. 1995: the TiO5
# index, flux 7126-7135 over 7042-7046 A, falls from ~0.8 at M0 to ~0.3 at M5).
STAR_BANDS = ((4955.0, 0.30, 120.0), (5167.0, 0.35, 120.0), (5448.0, 0.35, 150.0), (5847.0, 0.40, 150.0),
              (6159.0, 0.55, 180.0), (6385.0, 0.30, 60.0), (6651.0, 0.45, 120.0), (6830.0, 0.35, 100.0),
              (7055.0, 0.85, 200.0), (7589.0, 0.55, 120.0), (8432.0, 0.40, 150.0))
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
    ("FEII2383", 2382.8, (2.0, 1.5)), ("FEII2600", 2600.2, (3.0, 2.0)), ("MGII2800", 2798.75, (5.0, 3.0)),
    ("CAII_K", 3934.78, (9.0, 5.0)), ("CAII_H", 3969.59, (8.0, 5.0)), ("HDELTA", 4102.89, (1.5, 3.5)),
    ("GBAND", 4305.0, (5.0, 3.0)), ("HBETA", 4862.68, (2.0, 3.0)), ("MGB", 5176.7, (4.5, 2.5)),
    ("FE5270", 5271.4, (2.5, 1.5)), ("NAD", 5895.6, (3.5, 2.0)),
)
# Weak emission relative to [OII] 3727 (EW ratios): LINER-like ratios of passive galaxies
# (Yan et al. 2006, ApJ 648, 281: [OII]/H-alpha ~ 1-3, [NII]/H-alpha > 0.6).
GALAXY_EMISSION = ((3727.09, 1.0 / 2.3), (3729.88, 1.3 / 2.3), (4862.68, 0.2), (4960.30, 0.4 / 2.98),
                   (5008.24, 0.4), (6564.61, 0.5), (6585.27, 0.4))


def _galaxy_continuum(rest: np.ndarray, beta: np.ndarray, d4000: np.ndarray, uv_slope: np.ndarray) -> np.ndarray:
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


def _apply_igm(flux: np.ndarray, z: np.ndarray, rng: np.random.Generator, model: str = "inoue14",
               tau_scale: np.ndarray | float = 1.0) -> None:
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


RENDERERS = {"LBG": _render_lbg, "QSO": _render_qso, "ELG": _render_elg, "STAR": _render_star,
             "GALAXY": _render_galaxy}


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
# Observing: noise per arm
# --------------------------------------------------------------------------------------------

def arm_variance(model: np.ndarray, objects: pd.DataFrame, arm: str) -> np.ndarray:
    """Expected flux variance (1e-17 units squared) per pixel of one arm: object + sky + read noise.

    With K electrons per flux unit: var = (model K + sky + read) / K^2 = model / K + (sky + read) / K^2.
    """
    inst = instrument()
    exptime = objects["EXPTIME"].to_numpy(np.float64)
    fibre = objects["FIBER_FRAC"].to_numpy(np.float64)
    n_exposures = np.maximum(1.0, np.round(exptime / EXPOSURE_SECONDS))
    inv_counts = (1.0 / inst.counts_per_flux[arm]).astype(np.float32)[None, :]
    object_term = np.maximum(model[:, inst.slices[arm]], np.float32(0.0)) * inv_counts
    object_term *= (1.0 / (exptime * fibre)).astype(np.float32)[:, None]
    sky_term = (inst.sky_counts_per_s[arm] / inst.counts_per_flux[arm] ** 2).astype(np.float32)[None, :]
    sky_scale = objects["SKY_SCALE"].to_numpy(np.float64) if "SKY_SCALE" in objects else 1.0
    sky_term = sky_term * (sky_scale / (exptime * fibre**2)).astype(np.float32)[:, None]
    read_term = (READ_VARIANCE_PER_EXPOSURE / inst.counts_per_flux[arm] ** 2).astype(np.float32)[None, :]
    read_term = read_term * (n_exposures / (exptime * fibre) ** 2).astype(np.float32)[:, None]
    return object_term + sky_term + read_term


def observe(model: np.ndarray, objects: pd.DataFrame, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per arm (flux, ivar), float32: model + Gaussian noise whose variance is 1/ivar exactly."""
    out = {}
    for arm, cut in instrument().slices.items():
        variance = arm_variance(model, objects, arm)
        noise = rng.standard_normal(variance.shape, dtype=np.float32)
        noise *= np.sqrt(variance)
        noise += model[:, cut]
        out[arm] = (noise, np.reciprocal(variance, out=variance))
    return out


@dataclass
class SimulatedChunk:
    truth: pd.DataFrame  # rows of this chunk, with FLUX_G/R/Z and SNR columns filled
    model: np.ndarray  # (N, P native) noiseless flux
    arms: dict[str, tuple[np.ndarray, np.ndarray]]  # arm -> (flux, ivar)


def simulate_chunk(objects: pd.DataFrame, rng: np.random.Generator) -> SimulatedChunk:
    """Render and observe one chunk of objects (rows of :func:`draw_objects`)."""
    objects = objects.reset_index(drop=True).copy()
    model = render_model(objects, rng)
    arms = observe(model, objects, rng)
    for band in ("g", "r", "z"):
        objects[f"FLUX_{band.upper()}"] = nanomaggies(model, band).astype(np.float32)
    r_flux, r_ivar = model[:, instrument().slices["R"]], arms["R"][1]
    objects["SNR_R"] = np.median(r_flux * np.sqrt(r_ivar), axis=1).astype(np.float32)
    return SimulatedChunk(objects, model, arms)


# --------------------------------------------------------------------------------------------
# Writing: DESI coadd + truth, chunked and atomic
# --------------------------------------------------------------------------------------------

FLUX_BUNIT = "10**-17 erg/(s cm2 Angstrom)"
IVAR_BUNIT = "10**+34 (s2 cm4 Angstrom2) / erg2"
TRUTH_EXTRA_COLUMNS = ("Z_GRID", "BETA", "ALPHA_NU", "LYA_VOFF_KMS", "ISM_VOFF_KMS", "LINE_SIGMA_KMS",
                       "ISM_EW_SCALE", "LYC_ESCAPE", "D4000", "HALPHA_EW", "FIBER_FRAC", "FLUX_G", "FLUX_R",
                       "FLUX_Z", "SNR_R", "TARGET_RA", "TARGET_DEC", "TEFF", "OII_EW", "BAL_VMIN_KMS",
                       "BAL_VMAX_KMS", "BAL_DEPTH", "IGM_MODEL", "IGM_TAU_SCALE", "SKY_SCALE", "LYA_EW_MODEL",
                       "LYA_EW_SCALE", "LYA_EW_ABSFRAC", "LINE_WIDTH_SCALE", "ISM_SCALE", "BETA_SHIFT",
                       "MAG_FAINT")


def _fibermap(truth: pd.DataFrame) -> np.ndarray:
    n = len(truth)
    exptime = truth["EXPTIME"].to_numpy()
    fields = [
        ("TARGETID", "i8", truth["TARGETID"].to_numpy()), ("COADD_FIBERSTATUS", "i4", 0),
        ("TARGET_RA", "f8", truth["TARGET_RA"].to_numpy()), ("TARGET_DEC", "f8", truth["TARGET_DEC"].to_numpy()),
        ("OBJTYPE", "U3", "TGT"),
        ("MORPHTYPE", "U4", np.where(np.isin(truth["SPECTYPE"].to_numpy(), ("QSO", "STAR")), "PSF", "REX")),
        ("EBV", "f4", 0.02),
        ("FLUX_G", "f4", truth.get("FLUX_G", np.nan)), ("FLUX_R", "f4", truth.get("FLUX_R", np.nan)),
        ("FLUX_Z", "f4", truth.get("FLUX_Z", np.nan)),
        ("PHOTSYS", "U1", "S"),
        ("COADD_NUMEXP", "i2", np.maximum(1, np.round(exptime / EXPOSURE_SECONDS))),
        ("COADD_EXPTIME", "f4", exptime),
    ]
    table = np.zeros(n, dtype=[(name, dtype) for name, dtype, _ in fields])
    for name, _, values in fields:
        table[name] = values
    return table


def _truth_records(truth: pd.DataFrame) -> np.ndarray:
    columns = ["TARGETID", "Z", "SPECTYPE", "SUBTYPE", "TEMPLATE", "MAG_R", "EXPTIME", "LYA_EW", "SOURCE",
               *TRUTH_EXTRA_COLUMNS]
    table = complete_truth(truth[columns])
    return truth_to_records(table)


def _primary_header(dataset: str, seed: int, mode: str, n: int) -> dict[str, Any]:
    return {"SPGRP": "simulated", "SURVEY": "sim", "PROGRAM": "dark", "LNSIM": "lymannet.simulate",
            "DATASET": dataset[:68], "SIMSEED": int(seed), "SIMMODE": mode, "NSPEC": n}


def _open_coadd(path: Path, truth: pd.DataFrame, header: dict[str, Any]) -> fitsio.FITS:
    fits = fitsio.FITS(str(path), "rw", clobber=True)
    fits.write(None, header=header)
    fits.write(_fibermap(truth), extname="FIBERMAP")
    n = max(len(truth), 1)
    for arm in desi.ARMS:
        wave = desi.arm_wavelength(arm)
        fits.write(wave, extname=f"{arm}_WAVELENGTH", header={"BUNIT": "Angstrom"})
        for kind, unit in (("FLUX", FLUX_BUNIT), ("IVAR", IVAR_BUNIT)):
            fits.create_image_hdu(dims=[n, wave.size], dtype="f4", extname=f"{arm}_{kind}")
            fits[f"{arm}_{kind}"].write_key("BUNIT", unit)
        # cfitsio zero-fills new images and every simulated pixel is good: MASK needs no writes.
        fits.create_image_hdu(dims=[n, wave.size], dtype="i4", extname=f"{arm}_MASK")
    return fits


def _write_chunk(fits: fitsio.FITS, chunk: SimulatedChunk, start: int) -> None:
    for arm, (flux, ivar) in chunk.arms.items():
        fits[f"{arm}_FLUX"].write(np.ascontiguousarray(flux, np.float32), start=[start, 0])
        fits[f"{arm}_IVAR"].write(np.ascontiguousarray(ivar, np.float32), start=[start, 0])
    for band in ("G", "R", "Z"):
        fits["FIBERMAP"].write_column(f"FLUX_{band}", chunk.truth[f"FLUX_{band}"].to_numpy(np.float32), firstrow=start)


def simulate_dataset(spec: dict[str, Any], seed: int, dataset: str, coadd_path: str | Path,
                     truth_path: str | Path, chunk_rows: int = 2000) -> dict[str, Any]:
    """Simulate one data set into a DESI coadd file and a truth table (both written atomically).

    Returns counts and summary statistics (per SPECTYPE / TEMPLATE counts, median S/N, rate).
    """
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    spec = _simulate_block(spec, dataset)
    objects = draw_objects(spec, seed, dataset)
    n = len(objects)
    progress = Progress(total=n, what="spectra", logger=log)
    chunks_truth = []
    coadd_path, truth_path = Path(coadd_path), Path(truth_path)
    try:
        with atomic_path(coadd_path) as coadd_tmp, atomic_path(truth_path) as truth_tmp:
            fits = _open_coadd(coadd_tmp, objects, _primary_header(dataset, seed, spec["mode"], n))
            try:
                for index, start in enumerate(range(0, n, chunk_rows)):
                    rng = _params_rng(seed, dataset, 1 + index)
                    chunk = simulate_chunk(objects.iloc[start:start + chunk_rows], rng)
                    _write_chunk(fits, chunk, start)
                    chunks_truth.append(chunk.truth)
                    progress.update(len(chunk.truth))
            finally:
                fits.close()
            truth = pd.concat(chunks_truth, ignore_index=True)
            fitsio.write(str(truth_tmp), _truth_records(truth), extname="TRUTH", clobber=True,
                         header=_primary_header(dataset, seed, spec["mode"], n))
    except BaseException:
        # atomic_path renames the truth file before the coadd: never leave one without the other.
        if truth_path.exists() and not coadd_path.exists():
            os.unlink(truth_path)
        raise
    rate = progress.done()
    return _summary(truth, rate)


def _summary(truth: pd.DataFrame, rate: float) -> dict[str, Any]:
    lbg = truth[truth["SPECTYPE"] == "LBG"]
    return {
        "n_spectra": int(len(truth)),
        "n_by_spectype": {k: int(v) for k, v in truth["SPECTYPE"].value_counts().sort_index().items()},
        "n_by_subtype": {f"{a}:{b}": int(v) for (a, b), v in
                         truth[truth["SUBTYPE"] != ""].groupby(["SPECTYPE", "SUBTYPE"]).size().items()},
        "n_lbg_by_template": {int(k): int(v) for k, v in lbg["TEMPLATE"].value_counts().sort_index().items()},
        "median_snr_r": float(np.median(truth["SNR_R"])),
        "z_range": [float(truth["Z"].min()), float(truth["Z"].max())],
        "spectra_per_second": float(rate),
    }
