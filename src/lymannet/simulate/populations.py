"""What each population of a simulated data set draws: redshifts, magnitudes, LBG templates,
physical and contaminant parameters (:func:`lymannet.simulate.choices.draw_objects` puts them
together)."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from ..config import job_seed
from ..errors import ConfigError
from ..physics import C_KMS

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


def _range(
    value: Any, what: str, dataset: str, allowed: tuple[float, float] | None = None
) -> tuple[float, float]:
    pair = _float_list(value, what, dataset)
    if len(pair) != 2 or pair[1] < pair[0]:
        raise ConfigError(
            f"datasets.{dataset}.simulate.{what} must be [low, high] with low <= high, got {value!r}"
        )
    if allowed and (pair[0] < allowed[0] - 1e-9 or pair[1] > allowed[1] + 1e-9):
        raise ConfigError(
            f"datasets.{dataset}.simulate.{what} = {value!r} is outside the simulator's "
            f"range {list(allowed)}"
        )
    return pair[0], pair[1]


POPULATION_Z_LIMITS = {
    "LBG": (1.5, 4.5),
    "QSO": (1.0, 4.5),
    "ELG": (0.0, 0.5),
    "STAR": (-0.002, 0.002),
    "GALAXY": (0.0, 2.0),
}


def _exptimes(spec: dict[str, Any], dataset: str) -> list[float]:
    exptimes = _float_list(spec.get("exptime", [7200]), "exptime", dataset)
    if min(exptimes) <= 0:
        raise ConfigError(f"datasets.{dataset}.simulate.exptime must be positive seconds, got {exptimes}")
    return exptimes


def _empty_truth(n: int) -> dict[str, np.ndarray]:
    return {
        "Z": np.zeros(n),
        "SPECTYPE": np.full(n, "LBG", dtype="U8"),
        "TEMPLATE": np.full(n, -1, np.int16),
        "MAG_R": np.zeros(n),
        "EXPTIME": np.zeros(n),
        "LYA_EW": np.full(n, np.nan),
        "Z_GRID": np.full(n, np.nan),
        "SUBTYPE": np.full(n, "", dtype="U8"),
    }


def _continuous_objects(
    spec: dict[str, Any], rng: np.random.Generator, dataset: str
) -> dict[str, np.ndarray]:
    populations = spec.get("populations")
    if not isinstance(populations, dict) or not populations:
        raise ConfigError(f"datasets.{dataset}.simulate.populations must map LBG/QSO/ELG to {{n, z}}")
    unknown = set(populations) - set(SPECTYPES)
    if unknown:
        raise ConfigError(
            f"datasets.{dataset}.simulate.populations: unknown {sorted(unknown)}; valid: {SPECTYPES}"
        )
    exptimes = _exptimes(spec, dataset)
    mag_range = _range(spec.get("mag_r", [22.5, 24.5]), "mag_r", dataset, MAG_LIMITS)
    mag_slope = _mag_slope(spec.get("mag_slope", 0.0), "mag_slope", dataset)
    parts = []
    for spectype in SPECTYPES:
        if spectype not in populations:
            continue
        pop = populations[spectype] or {}
        if not isinstance(pop, dict):
            raise ConfigError(
                f"datasets.{dataset}.simulate.populations.{spectype} must be a mapping {{n, z}}"
            )
        _check_population_keys(pop, spectype, dataset)
        n = int(pop.get("n", 0))
        if n < 0:
            raise ConfigError(f"datasets.{dataset}.simulate.populations.{spectype}.n must be >= 0")
        z_mean, z_sigma = pop.get("z_mean"), pop.get("z_sigma")
        if spectype == "STAR":  # Z = radial velocity / c unless the population says otherwise
            pop = {"z": list(POPULATION_Z_LIMITS["STAR"]), **pop}
            z_mean, z_sigma = (
                (0.0, STAR_RV_SIGMA_KMS / C_KMS) if z_mean is None or z_sigma is None else (z_mean, z_sigma)
            )
        z_lo, z_hi = _range(pop.get("z"), f"populations.{spectype}.z", dataset, POPULATION_Z_LIMITS[spectype])
        part = _empty_truth(n)
        part["SPECTYPE"][:] = spectype
        part["Z"] = _draw_redshift(rng, n, z_lo, z_hi, z_mean, z_sigma)
        if spectype == "LBG":
            part["TEMPLATE"] = rng.choice(4, size=n, p=LBG_TEMPLATE_FREQUENCIES).astype(np.int16)
        lo, hi = (
            _range(pop["mag_r"], f"populations.{spectype}.mag_r", dataset, MAG_LIMITS)
            if "mag_r" in pop
            else mag_range
        )
        slope = (
            _mag_slope(pop["mag_slope"], f"populations.{spectype}.mag_slope", dataset)
            if "mag_slope" in pop
            else mag_slope
        )
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
        raise ConfigError(
            f"datasets.{dataset}.simulate.populations.{spectype}: unknown key(s) {unknown}; "
            f"valid: {sorted(valid)}"
        )


def _mag_slope(value: Any, what: str, dataset: str) -> float:
    try:
        slope = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"datasets.{dataset}.simulate.{what} must be a number (dlog10 N / dm), got {value!r}"
        ) from None
    if not -1.0 <= slope <= 1.0:
        raise ConfigError(
            f"datasets.{dataset}.simulate.{what} = {slope} is outside [-1, 1] (dlog10 N / dm; "
            "galaxy counts at r ~ 23-25 have ~0.3-0.4)"
        )
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


def _draw_subtypes(
    rng: np.random.Generator, spectype: str, pop: dict[str, Any], z: np.ndarray, dataset: str
) -> np.ndarray:
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
            raise ConfigError(
                f"datasets.{dataset}.simulate.{where}.subtypes must map some of "
                f"{list(STAR_SUBTYPES)} to weights, got {weights!r}"
            )
        names = sorted(weights, key=STAR_SUBTYPES.index)
        p = np.array([_fraction(weights[k], f"{where}.subtypes.{k}", dataset) for k in names])
        if p.sum() <= 0:
            raise ConfigError(f"datasets.{dataset}.simulate.{where}.subtypes: the weights sum to 0")
        return np.asarray(names, dtype="U8")[rng.choice(len(names), size=n, p=p / p.sum())]
    return np.full(n, "", dtype="U8")


def _draw_redshift(
    rng: np.random.Generator, n: int, lo: float, hi: float, mean: float | None, sigma: float | None
) -> np.ndarray:
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
        raise ConfigError(
            f"datasets.{dataset}.simulate.z_grid must be {{start, stop, step}}, got {z_grid!r}"
        ) from None
    if step <= 0 or stop < start:
        raise ConfigError(
            f"datasets.{dataset}.simulate.z_grid needs step > 0 and stop >= start, got {z_grid!r}"
        )
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
    z, template, mag, exptime, _ = (
        a.ravel() for a in np.meshgrid(z_values, templates, mags, exptimes, np.arange(copies), indexing="ij")
    )
    objects = _empty_truth(z.size)
    objects.update(Z=z, Z_GRID=z.copy(), TEMPLATE=template.astype(np.int16), MAG_R=mag, EXPTIME=exptime)
    return objects


def _physical_parameters(objects: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Per-object shape parameters (slopes, line strengths, velocities), drawn for every row."""
    n = objects["Z"].size
    spectype, template = objects["SPECTYPE"], objects["TEMPLATE"]
    lbg, qso, elg = spectype == "LBG", spectype == "QSO", spectype == "ELG"
    # Draw every parameter for every row, then keep the relevant ones: one draw order for all.
    beta_lbg, alpha_nu, beta_elg = (
        rng.normal(-1.7, 0.4, n),
        rng.normal(-0.5, 0.3, n),
        rng.normal(-1.2, 0.4, n),
    )
    ew_unit = rng.uniform(size=n)
    ew_ranges = np.asarray(LBG_TEMPLATE_EW_RANGES)[np.clip(template, 0, 3)]
    objects["LYA_EW"] = np.where(lbg, ew_ranges[:, 0] + ew_unit * (ew_ranges[:, 1] - ew_ranges[:, 0]), np.nan)
    objects["BETA"] = np.select([lbg, qso, elg], [beta_lbg, -2.0 - alpha_nu, beta_elg])
    objects["ALPHA_NU"] = np.where(qso, alpha_nu, np.nan)
    objects["LYA_VOFF_KMS"] = np.where(lbg, np.clip(rng.normal(400.0, 120.0, n), 100.0, None), np.nan)
    objects["ISM_VOFF_KMS"] = np.where(lbg, rng.normal(-150.0, 60.0, n), np.nan)
    objects["LINE_SIGMA_KMS"] = np.select(
        [lbg, qso, elg],
        [
            np.clip(rng.normal(250.0, 60.0, n), 100, None),
            np.clip(rng.normal(4500.0, 1200.0, n), 1500, 9000) / 2.3548,
            np.full(n, 50.0),
        ],
    )
    objects["ISM_EW_SCALE"] = np.where(
        lbg, LBG_ISM_SCALE_BY_TEMPLATE[np.clip(template, 0, 3)] * rng.lognormal(0.0, 0.25, n), np.nan
    )
    objects["LYC_ESCAPE"] = np.where(lbg, rng.uniform(0.0, 0.1, n), np.nan)
    objects["D4000"] = np.where(elg, rng.uniform(1.05, 1.3, n), np.nan)
    objects["HALPHA_EW"] = np.where(elg, rng.lognormal(np.log(50.0), 0.5, n), np.nan)
    objects["FIBER_FRAC"] = np.select([spectype == k for k in FIBRE_FRACTION], list(FIBRE_FRACTION.values()))
    # Seeds for the per-line strength scatter drawn inside the renderers.
    objects["LINE_SEED"] = rng.integers(0, 2**31 - 1, n)
    _contaminant_parameters(objects, rng)


# Effective temperatures of dwarfs by type (Pecaut & Mamajek 2013, ApJS 208, 9, Table 5):
# F0-F9 7220-6000 K, G0-G9 5930-5340 K, K0-K7 5270-3970 K, M0-M7 3850-2650 K.
STAR_TEFF_RANGES = {
    "F": (6000.0, 7200.0),
    "G": (5340.0, 5930.0),
    "K": (3970.0, 5270.0),
    "M": (2650.0, 3850.0),
}
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
    objects["D4000"] = np.where(
        galaxy, np.where(passive, 1.6 + 0.5 * unit[1], 1.25 + 0.35 * unit[1]), objects["D4000"]
    )
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
