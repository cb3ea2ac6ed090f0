"""The simulator's free choices over a data set: robustness options (another IGM, sky level, Ly-alpha
EW distribution) and domain randomisation (broad distributions instead of single values);
:func:`draw_objects` draws a data set's objects with them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..igm import IGM_MODELS
from .populations import (
    LBG_ISM_SCALE_BY_TEMPLATE,
    LBG_TEMPLATE_FREQUENCIES,
    MAG_LIMITS,
    _continuous_objects,
    _exptimes,
    _float_list,
    _fraction,
    _params_rng,
    _physical_parameters,
    _range,
    _template_objects,
    targetid_base,
)

# Robustness options: physics and observing conditions the training sets never see
# --------------------------------------------------------------------------------------------

ROBUSTNESS_STREAM = 2**40  # an rng stream of its own (chunks use 1, 2, ...)
LYA_EW_DISTRIBUTIONS = ("templates", "exponential")
LYA_EW_TEMPLATE_EDGES = (0.0, 10.0, 30.0)  # EW -> template: < 0: 0, [0, 10): 1, [10, 30): 2, >= 30: 3


def _robustness_options(
    spec: dict[str, Any], objects: dict[str, np.ndarray], rng: np.random.Generator, dataset: str
) -> None:
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
        raise ConfigError(
            f"{where}.lya_ew.distribution must be one of {list(LYA_EW_DISTRIBUTIONS)}, "
            f"got {distribution!r}"
        )
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
        raise ConfigError(
            f"{where}.lya_ew.distribution {distribution!r} needs mode continuous "
            "(templates mode draws the EW of each template class)"
        )
    scale = _positive(lya.get("scale", 25.0), f"{where}.lya_ew.scale")
    absorbers = _fraction(lya.get("absorber_fraction", 0.3), "lya_ew.absorber_fraction", dataset)
    lbg = objects["SPECTYPE"] == "LBG"
    _exponential_ew(objects, lbg, rng, scale, absorbers)
    objects["LYA_EW_MODEL"] = np.where(lbg, "exponential", "").astype("U12")
    objects["LYA_EW_SCALE"] = np.where(lbg, scale, np.nan)
    objects["LYA_EW_ABSFRAC"] = np.where(lbg, absorbers, np.nan)


def _exponential_ew(
    objects: dict[str, np.ndarray],
    rows: np.ndarray,
    rng: np.random.Generator,
    scale: np.ndarray | float,
    absorbers: np.ndarray | float,
) -> None:
    """Rows (bool mask) get an exponential Ly-alpha EW: an absorber (share `absorbers`, rest EW
    -Exp(8 A), floor -30 A) or an emitter (Exp(scale), cap 200 A); TEMPLATE becomes the class of
    the EW and the interstellar-line strength follows it. Draws for every row (one draw order)."""
    n = objects["Z"].size
    absorbing = rng.uniform(size=n) < absorbers
    ew = np.where(
        absorbing, -np.minimum(rng.exponential(8.0, n), 30.0), np.minimum(rng.exponential(scale, n), 200.0)
    )
    template = np.searchsorted(np.asarray(LYA_EW_TEMPLATE_EDGES), ew, side="right").astype(np.int16)
    old = np.clip(objects["TEMPLATE"], 0, 3)
    objects["ISM_EW_SCALE"] = np.where(
        rows,
        objects["ISM_EW_SCALE"] * LBG_ISM_SCALE_BY_TEMPLATE[template] / LBG_ISM_SCALE_BY_TEMPLATE[old],
        objects["ISM_EW_SCALE"],
    )
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
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or float(value[0]) > float(value[1])
    ):
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
            raise ConfigError(
                f"{where}: {wrong} need mode continuous (templates mode is a grid of "
                "templates, exposure times and magnitudes by design)"
            )
    out: dict[str, Any] = {}
    if "igm_models" in block:
        models = block["igm_models"]
        if not isinstance(models, (list, tuple)) or not models or set(models) - set(IGM_MODELS):
            raise ConfigError(
                f"{where}.igm_models must be a non-empty list among {sorted(IGM_MODELS)}, got {models!r}"
            )
        out["igm_models"] = [str(m) for m in models]
    for key in ("tau_scale", "line_width_scale", "ism_scale", "sky_scale"):
        if key in block:
            out[key] = _drawn_range(block[key], f"{where}.{key}")
    if "beta_shift" in block:
        out["beta_shift"] = _drawn_range(block["beta_shift"], f"{where}.beta_shift", -np.inf)
        if max(abs(v) for v in out["beta_shift"]) > 2.0:
            raise ConfigError(
                f"{where}.beta_shift = {block['beta_shift']!r}: |shift| <= 2 (UV slopes span ~-3..0)"
            )
    if "exptime" in block:
        out["exptime"] = _drawn_range(block["exptime"], f"{where}.exptime")
    if "mag_faint" in block:
        out["mag_faint"] = _drawn_range(block["mag_faint"], f"{where}.mag_faint", MAG_LIMITS[0])
        if out["mag_faint"][1] > MAG_LIMITS[1]:
            raise ConfigError(f"{where}.mag_faint = {block['mag_faint']!r} is fainter than {MAG_LIMITS[1]}")
    if "lya_ew" in block:
        lya = block["lya_ew"]
        if not isinstance(lya, dict) or set(lya) - {"distributions", "scale", "absorber_fraction"}:
            raise ConfigError(
                f"{where}.lya_ew must be {{distributions, scale, absorber_fraction}}, got {lya!r}"
            )
        distributions = lya.get("distributions", list(LYA_EW_DISTRIBUTIONS))
        if (
            not isinstance(distributions, (list, tuple))
            or not distributions
            or set(distributions) - set(LYA_EW_DISTRIBUTIONS)
        ):
            raise ConfigError(
                f"{where}.lya_ew.distributions must be a non-empty list among "
                f"{list(LYA_EW_DISTRIBUTIONS)}, got {distributions!r}"
            )
        absorbers = _drawn_range(
            lya.get("absorber_fraction", 0.3), f"{where}.lya_ew.absorber_fraction", 0.0, False
        )
        if absorbers[1] > 1:
            raise ConfigError(
                f"{where}.lya_ew.absorber_fraction must be within [0, 1], got {lya['absorber_fraction']!r}"
            )
        out["lya_ew"] = {
            "distributions": [str(d) for d in distributions],
            "scale": _drawn_range(lya.get("scale", 25.0), f"{where}.lya_ew.scale"),
            "absorber_fraction": absorbers,
        }
    return out


def _randomise(
    spec: dict[str, Any], objects: dict[str, np.ndarray], rng: np.random.Generator, dataset: str
) -> None:
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
            raise ConfigError(
                f"datasets.{dataset}.simulate.randomise.mag_faint {list(ranges['mag_faint'])} must "
                f"be fainter than the bright end of mag_r ({float(low.max())})"
            )
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
        faint += [
            _range(pop["mag_r"], "mag_r", dataset)[1]
            for pop in (spec.get("populations") or {}).values()
            if isinstance(pop, dict) and "mag_r" in pop
        ]
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


def _magnitude_ranges(
    spec: dict[str, Any], objects: dict[str, np.ndarray], dataset: str
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


# --- a data set's objects: the populations' draws with these choices applied


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
        raise ConfigError(
            f"datasets.{dataset}.simulate.mode must be 'continuous' or 'templates', not {mode!r}"
        )
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
