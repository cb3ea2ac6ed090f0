"""Scoring a prediction catalogue: the figures the score stage writes for one (model, combo, test set).

:func:`evaluate` applies the definitions of :mod:`lymannet.metrics` (the detection rule, the
purity / efficiency curves, the P = E score, the chance level and the skill) to a catalogue, and
adds where its false positives come from (:func:`false_positives_by_population`).

*Intervals* (:func:`evaluate` with ``intervals=True``): percentile bootstrap over the test
objects, targets and contaminants resampled separately (:mod:`lymannet.bootstrap`), on the
score, the skill, the chance level (its q moves with the resampled targets) and the purity and
efficiency at the default threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metrics import (
    Crossing,
    ScoreOptions,
    chance_score,
    correct_redshift,
    curve_thresholds,
    exact_thresholds,
    is_detected,
    kth_confidence,
    pe_crossing,
    purity_efficiency_at,
    purity_efficiency_curve,
    redshift_hit_probability,
    redshift_summary,
    skill_score,
)


@dataclass
class Evaluation:
    """Everything the score script writes for one (model, combo, test set)."""

    curve: pd.DataFrame
    crossing: Crossing
    summary: dict[str, Any]


def evaluate(
    catalogue: pd.DataFrame,
    c_line: np.ndarray,
    options: ScoreOptions,
    chance_redshifts: np.ndarray | None = None,
    chance_nz: str = "training split",
    intervals: bool = False,
) -> Evaluation:
    """Score a prediction catalogue (columns Z, SPECTYPE, Z_PRED) with line confidences ``c_line``.

    ``chance_redshifts``: the N(z) a random guess draws its redshifts from (the training split's
    target redshifts; ``chance_nz`` names it); None: the test set's own targets, each one's own
    redshift left out. ``intervals``: bootstrap intervals (``options.n_resamples`` resamples) on
    the score, skill, chance and the purity / efficiency at the default threshold."""
    z_true = catalogue["Z"].to_numpy(float)
    z_pred = catalogue["Z_PRED"].to_numpy(float)
    is_target = (
        catalogue["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == options.target_class.upper()
    )
    is_correct = correct_redshift(z_pred, z_true, options.dz_max, options.dv_max_kms)
    curve = purity_efficiency_curve(
        c_line,
        is_target,
        is_correct,
        curve_thresholds(c_line, options.thresholds, options.min_lines),
        options.min_lines,
    )
    exact_curve = purity_efficiency_curve(
        c_line,
        is_target,
        is_correct,
        exact_thresholds(c_line, options.thresholds, options.min_lines),
        options.min_lines,
    )
    crossing = pe_crossing(exact_curve)
    purity, efficiency = purity_efficiency_at(c_line, is_target, is_correct, options.c_th, options.min_lines)
    detected = is_detected(c_line, options.c_th, options.min_lines)
    warnings = [crossing.note] if crossing.note else []
    if not is_target.any():
        warnings.append(f"the test set has no {options.target_class}: efficiency is undefined")
    if not (~is_target).any():
        warnings.append("the test set has no contaminant: purity only measures redshift errors")
    summary: dict[str, Any] = {
        "score": _json_float(crossing.score),
        "threshold_at_crossing": _json_float(crossing.threshold),
        "crossing_on_grid_point": crossing.exact,
        "n_spectra": int(len(catalogue)),
        "n_targets": int(is_target.sum()),
        "n_contaminants": int((~is_target).sum()),
        "target_class": options.target_class,
        "c_th": options.c_th,
        "min_lines": options.min_lines,
        "purity_at_default": _json_float(purity),
        "efficiency_at_default": _json_float(efficiency),
        "n_detected_at_default": int(detected.sum()),
        "n_contaminants_detected_at_default": int((detected & ~is_target).sum()),
        "correct_redshift": options.correct_redshift_rule,
        "targets_redshift": {
            k: _json_float(v)
            for k, v in redshift_summary(z_pred[is_target], z_true[is_target], options.dz_max).items()
        },
        "definitions": (
            "purity = true targets detected with a correct redshift / all detected; "
            "efficiency = true targets detected with a correct redshift / all true targets "
            "(the thesis text, section 2.3, swaps the two names)"
        ),
        "warnings": warnings,
    }
    summary["frac_catastrophic"] = summary["targets_redshift"]["frac_catastrophic"]
    # where the false positives come from, at the threshold the score is quoted at
    at_crossing = is_detected(
        c_line, crossing.threshold if np.isfinite(crossing.threshold) else options.c_th, options.min_lines
    )
    summary["false_positives_at_crossing"] = false_positives_by_population(catalogue, at_crossing, is_target)
    hit = np.zeros(len(catalogue))
    if chance_redshifts is None:
        chance_nz = "the test set's own targets (no training split), each one's own redshift left out"
        hit[is_target] = redshift_hit_probability(
            z_true[is_target], z_true[is_target], options.dz_max, options.dv_max_kms, exclude_self=True
        )
    else:
        hit[is_target] = redshift_hit_probability(
            z_true[is_target], chance_redshifts, options.dz_max, options.dv_max_kms
        )
    q = float(hit[is_target].mean()) if is_target.any() else float("nan")
    chance = chance_score(summary["n_targets"], summary["n_contaminants"], q)
    summary["chance"] = _json_float(chance)
    summary["chance_classification"] = _json_float(
        chance_score(summary["n_targets"], summary["n_contaminants"])
    )
    summary["chance_redshift_hit"] = _json_float(q)
    summary["chance_nz"] = chance_nz
    summary["chance_rule"] = (
        "P = E score of a random guess: random confidence, redshift drawn from the N(z) of "
        f"{chance_nz}; chance = target fraction x P(drawn redshift correct, "
        f"{options.correct_redshift_rule})"
    )
    summary["skill"] = _json_float(skill_score(crossing.score, chance))
    if intervals and options.n_resamples > 0 and len(catalogue):
        kth = kth_confidence(c_line, options.min_lines)
        summary.update(
            score_intervals(
                kth,
                is_target,
                is_correct,
                hit,
                crossing.score,
                chance,
                purity,
                efficiency,
                options,
                exact_thresholds(c_line, options.thresholds, options.min_lines),
            )
        )
    return Evaluation(curve, crossing, summary)


INTERVAL_FIGURES = ("score", "skill", "chance", "purity_at_default", "efficiency_at_default")


def score_intervals(
    confidence: np.ndarray,
    is_target: np.ndarray,
    is_correct: np.ndarray,
    hit: np.ndarray,
    score: float,
    chance: float,
    purity: float,
    efficiency: float,
    options: ScoreOptions,
    thresholds: np.ndarray,
) -> dict[str, Any]:
    """Bootstrap intervals of the score, skill, chance and the purity / efficiency at the default
    threshold: {"<figure>_interval": Interval.to_dict(), "bootstrap": how}. ``confidence``: each
    object's detection confidence (the min_lines-th line confidence); ``hit``: each target's
    probability that a random redshift is correct (0 for contaminants)."""
    from .bootstrap import PEResampler, bootstrap_samples, interval_from

    is_target = np.asarray(is_target, bool)
    resampler = PEResampler(confidence, is_target, is_correct, thresholds)
    n_targets, n_objects = int(is_target.sum()), len(is_target)

    def figures(rows: np.ndarray) -> np.ndarray:
        scores = resampler.scores(rows)
        at_default = resampler.at_threshold(rows, options.c_th)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = hit[rows].sum(axis=1) / n_targets if n_targets else np.full(len(rows), np.nan)
            chances = n_targets / n_objects * q
            skills = np.where(chances < 1, (scores - chances) / (1 - chances), np.nan)
        return np.column_stack([scores, skills, chances, at_default[:, 0], at_default[:, 1]])

    samples = bootstrap_samples(
        figures,
        n_objects,
        n_resamples=options.n_resamples,
        seed=options.bootstrap_seed,
        strata=is_target,
        batched=True,
    )
    values = (score, skill_score(score, chance), chance, purity, efficiency)
    out: dict[str, Any] = {
        f"{name}_interval": interval_from(
            np.nan if value is None else value, samples[:, k], options.n_resamples, options.bootstrap_seed
        ).to_dict()
        for k, (name, value) in enumerate(zip(INTERVAL_FIGURES, values))
    }
    out["bootstrap"] = {
        "n_resamples": options.n_resamples,
        "seed": options.bootstrap_seed,
        "method": "percentile bootstrap over the test objects, targets and contaminants resampled "
        "separately (class counts fixed); intervals are central 68% (lo68, hi68) and "
        "95% (lo95, hi95)",
    }
    return out


def paired_score_difference(
    catalogue_a: pd.DataFrame,
    c_line_a: np.ndarray,
    catalogue_b: pd.DataFrame,
    c_line_b: np.ndarray,
    options: ScoreOptions,
) -> dict[str, Any]:
    """The P = E score of B minus that of A on the same test objects, with its paired bootstrap
    interval: both scored on each resample of the objects, so what the two share (which spectra
    are hard) cancels, and a difference smaller than either score's own interval can still be
    beyond its noise. {"score_a", "score_b", "difference": Interval.to_dict(), "p_b_above_a":
    share of resamples where B scores higher}."""
    from .bootstrap import PEResampler, bootstrap_samples, interval_from

    ids_a, ids_b = catalogue_a["TARGETID"].to_numpy(), catalogue_b["TARGETID"].to_numpy()
    if len(ids_a) != len(ids_b) or not np.array_equal(ids_a, ids_b):
        raise ValueError("the two catalogues list other spectra (TARGETIDs differ): not one test set")
    resamplers = []
    for catalogue, c_line in ((catalogue_a, c_line_a), (catalogue_b, c_line_b)):
        is_target = (
            catalogue["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy()
            == options.target_class.upper()
        )
        is_correct = correct_redshift(
            catalogue["Z_PRED"].to_numpy(float),
            catalogue["Z"].to_numpy(float),
            options.dz_max,
            options.dv_max_kms,
        )
        resamplers.append(
            PEResampler(
                kth_confidence(c_line, options.min_lines),
                is_target,
                is_correct,
                exact_thresholds(c_line, options.thresholds, options.min_lines),
            )
        )
    identity = np.arange(len(ids_a))[None, :]
    score_a, score_b = (float(r.scores(identity)[0]) for r in resamplers)
    samples = bootstrap_samples(
        lambda rows: resamplers[1].scores(rows) - resamplers[0].scores(rows),
        len(ids_a),
        n_resamples=max(options.n_resamples, 1),
        seed=options.bootstrap_seed,
        strata=resamplers[0].is_target,
        batched=True,
    )
    finite = samples[np.isfinite(samples)]
    return {
        "score_a": score_a,
        "score_b": score_b,
        "difference": interval_from(
            score_b - score_a, samples, max(options.n_resamples, 1), options.bootstrap_seed
        ).to_dict(),
        "p_b_above_a": float(np.mean(finite > 0)) if finite.size else float("nan"),
        "n_spectra": int(len(ids_a)),
    }


def populations(catalogue: pd.DataFrame) -> np.ndarray:
    """Each row's population: SPECTYPE, or SPECTYPE/SUBTYPE where the truth gives a subtype
    (a star's spectral type, a BAL quasar), so false positives can be traced to their source."""
    spectype = catalogue["SPECTYPE"].astype(str).str.strip().str.upper()
    if "SUBTYPE" not in catalogue:
        return spectype.to_numpy()
    subtype = catalogue["SUBTYPE"].astype(str).str.strip()
    return np.where(subtype.isin(["", "nan", "None"]), spectype, spectype + "/" + subtype)


def false_positives_by_population(
    catalogue: pd.DataFrame, detected: np.ndarray, is_target: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Contaminants detected as targets, per population, most detected first:
    {population: {"n": contaminants, "detected": detected, "rate": detected / n}}."""
    population = populations(catalogue)[~is_target]
    detected = np.asarray(detected, bool)[~is_target]
    counts = {}
    for name in np.unique(population):
        members = population == name
        n, n_detected = int(members.sum()), int(detected[members].sum())
        counts[str(name)] = {"n": n, "detected": n_detected, "rate": n_detected / n}
    return dict(sorted(counts.items(), key=lambda item: (-item[1]["detected"], item[0])))


def _json_float(value: Any) -> Any:
    """NaN -> None so the JSON stays standard (null); ints stay ints."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if np.isnan(value) else value
