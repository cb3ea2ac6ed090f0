"""DLA probabilities for nature's incidence, a working point chosen on validation, BAL handling,
NHI_ERR and the sub-DLA boundary (issue 25): what rule `fourmost_calibrate_dla` fits on the
validation split and stores with the models, and what the test scores report of it.

Why. Both DLA networks learn at a boosted DLA incidence: the simulation multiplies the DLA part of
f(N) by ``dla_boost`` (5) in train and val, the presence CNN trains on balanced segments (half
with a DLA) and the localiser on windows of which about half hold a DLA centre. Their outputs are
probabilities for *that* class mix; read at p = 0.5 on a survey at nature's incidence (a DLA on
~11% of sightlines, in ~1-2% of windows) they flag many times more false DLAs than true ones.

1. **Nature's incidence on the validation split** (:func:`natural_weights`). The validation split
   is simulated at the boosted incidence; it is reweighted to nature's exactly, not redrawn: the
   number k of DLAs on a sightline is Poisson with mean b mu (boosted) instead of mu (nature),
   where mu is the f(N) incidence integrated over the sightline's DLA redshift window
   (:func:`lymannet.fourmost.simulate.expected_absorbers`) and nothing else depends on the boost,
   so the importance weight of a sightline is w = P_mu(k) / P_bmu(k) = exp((b - 1) mu) b^-k. Every
   validation figure below (priors, calibration fits, reliability, purity and completeness at a
   threshold) is weighted by w; the test split is simulated at nature's incidence (w = 1).
2. **Prior correction** (:func:`lymannet.calibration.prior_shift`): the network's odds times
   [pi_nat / (1 - pi_nat)] / [pi_train / (1 - pi_train)], pi_train the positive fraction of its
   training examples (stored in the model file), pi_nat that of the same kind of example at
   nature's incidence (validation segments with a DLA; sliding windows with a DLA centre in their
   central half), both measured, not assumed.
3. **Calibration** on the reweighted validation split. The presence CNN per segment (a DLA centre
   in it) by beta calibration (:func:`lymannet.calibration.fit_beta`, weighted). The catalogue per
   candidate (outcome: it matches a true DLA within the match tolerance): its *support*, the
   prior-corrected probabilities of the window votes merged into it summed over the number of
   windows that see a DLA (capped at 1; high only where many windows agree), fused with the
   presence CNN's calibrated probability at its position and the sightline's S/N by a weighted
   logistic regression (:func:`lymannet.calibration.fit_logistic`, the Newton fit of beta
   calibration; ``dla.calibration.features``; ``[support]`` alone: beta calibration of the
   support). The catalogue's DLA_PROB is this probability: P(this candidate is a true DLA) for a
   survey at nature's incidence. The reliability diagrams and ECE (10 equal-count bins) before
   (the raw network output: the seed vote's probability), after the prior correction (the
   support) and after the calibration are reported on the validation and the test split.
4. **A working point** per catalogue (:func:`choose_working_point`): the lowest DLA_PROB threshold
   whose selection has an expected purity (the reweighted mean DLA_PROB above it) >= the target
   purity (default 0.9 for log N_HI >= 20.3), stored as a threshold on DLA_PROB with the empirical
   validation purity and completeness reached there; the test split reports what it reaches.
5. **BAL quasars** (:mod:`.bal`): the truth list's BAL flag, then either the troughs' wavelengths
   masked in the DLA search, or the troughs taught as negatives (a second localiser,
   ``location_bal``), or both; each is calibrated and given its working point on validation, and
   the one with the highest validation completeness at the working point is used.
6. **NHI_ERR** = sqrt(b^2 + (a s)^2), s the probability-weighted spread of the merged votes' log
   N_HI: :func:`lymannet.calibration.fit_redshift_error` with (1 + z) = 1, so that 68% of the
   validation DLAs found have |log N_HI error| < NHI_ERR (a and b fitted there, 95% within 2 NHI_ERR
   measured, not fitted).
7. **The sub-DLA boundary** (:func:`neutral_candidates`): the test scores are given strictly and
   with candidates that sit on an absorber of log N_HI 20.0-20.3 counted as neither true nor false.
8. **The footprint** (:func:`in_footprint`): the catalogue covers the sightlines of continuum S/N
   >= ``dla.calibration.footprint_snr_min`` (2, as DESI's DR2 DLA catalogue); the working point is
   chosen on the validation sightlines there, and the test scores are given there and on every
   sightline (the same threshold), so that what the footprint buys is seen.
"""

from __future__ import annotations
import logging
import hashlib
from pathlib import Path
from typing import Any
import numpy as np
import pandas as pd
from ..calibration import (
    fit_logistic,
    fit_redshift_error,
    prior_shift,
    redshift_error,
    reliability,
    zerr_coverage,
)
from ..errors import ConfigError
from ..lines import LYA
from . import features as ft
from .bal import BAL_SOURCE, bal_flags, vote_mask
from .ingest import Ingested
from .localisation import dla_catalogue, match_truth, window_votes
from .score import presence_predictions
from .dla_rates import catalogue_rates
from .dla_probability import (
    CALIBRATION_FORMAT,
    DEFAULT_NHI_ERR,
    IDENTITY_BETA,
    MIN_NHI_FIT,
    NEUTRAL_LOG_NHI,
    calibrate_scores,
    candidate_features,
    choose_working_point,
    clip_prior,
    dla_probability,
    expected_votes,
    presence_at,
    presence_probability,
    split_weights,
    support,
    vote_probability,
    weighted_fraction,
)

log = logging.getLogger("lymannet.fourmost")


# --- candidates on a split -----------------------------------------------------------------------


def neutral_candidates(
    data: Ingested, cat: pd.DataFrame, tolerance_pixels: float, band: tuple[float, float] = NEUTRAL_LOG_NHI
) -> np.ndarray:
    """Per catalogue row: unmatched to a DLA, but within the tolerance of an absorber with log N_HI
    in `band` (20.0-20.3): neither true nor false in the neutral scores."""
    out = np.zeros(len(cat), bool)
    if data.absorbers is None or not len(data.absorbers) or not len(cat):
        return out
    table = data.absorbers[(data.absorbers["LOG_NHI"] >= band[0]) & (data.absorbers["LOG_NHI"] < band[1])]
    centres = ft.pixel_of(data.dla_wave, LYA * (1 + table["Z_ABS"].to_numpy()))
    by_row: dict[int, list[float]] = {}
    for row, centre in zip(table["ROW"].to_numpy(), centres):
        by_row.setdefault(int(row), []).append(float(centre))
    for k, (row, pos, match) in enumerate(
        zip(cat["ROW"].to_numpy(), cat["POSITION"].to_numpy(), cat["TRUE_MATCH"].to_numpy())
    ):
        if match < 0 and int(row) in by_row:
            out[k] = bool(np.any(np.abs(np.asarray(by_row[int(row)]) - pos) <= tolerance_pixels))
    return out


def candidates(
    data: Ingested,
    votes: tuple[ft.Windows, ft.WindowVotes],
    options: dict[str, Any],
    rows: np.ndarray,
    mask_bal: bool,
    margin_angstrom: float,
    vote_value: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(merged candidates on `rows` matched to the truth, with SNR, BAL, NEUTRAL, TRUE_LOG_NHI and
    VOTE_SUM = the sum of `vote_value` over their votes; the true DLAs on `rows` with MATCH),
    optionally with the flagged BAL troughs masked in the search."""
    keep = vote_mask(data, margin_angstrom) if mask_bal else None
    cat = dla_catalogue(data, None, 0, options, rows=rows, keep_vote=keep, votes=votes, vote_value=vote_value)
    truth, cat = match_truth(data, cat, float(options["match_tolerance_angstrom"]), rows=rows)
    step = float(data.dla_wave[1] - data.dla_wave[0])
    cat_rows = cat["ROW"].to_numpy().astype(int) if len(cat) else np.zeros(0, int)
    cat["SNR"] = data.sightlines["SNR"].to_numpy()[cat_rows]
    cat["BAL"] = data.sightlines["BAL"].to_numpy()[cat_rows].astype(int)
    cat["NEUTRAL"] = neutral_candidates(data, cat, float(options["match_tolerance_angstrom"]) / step)
    matched = cat["TRUE_MATCH"].to_numpy() if len(cat) else np.zeros(0, int)
    cat["TRUE_LOG_NHI"] = (
        np.where(
            matched >= 0,
            truth["LOG_NHI"].to_numpy()[np.maximum(matched, 0)] if len(truth) else np.nan,
            np.nan,
        )
        if len(cat)
        else []
    )
    return cat, truth


def in_footprint(data: Ingested, rows: np.ndarray, snr_min: float) -> np.ndarray:
    """The sightlines of `rows` in the catalogue's footprint: continuum S/N >= `snr_min` (DESI's DR2
    DLA catalogue covers S/N > 2 the same way; below it a DLA is found by chance more than by its
    damping wings, and a survey publishes the footprint it can stand behind)."""
    rows = np.asarray(rows)
    return rows[data.sightlines["SNR"].to_numpy(float)[rows] >= float(snr_min)]


def footprint_of(
    data: Ingested, rows: np.ndarray, snr_min: float, cat: pd.DataFrame, truth: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(the footprint's sightlines among `rows`, which candidates sit on them, their true DLAs)."""
    inside = in_footprint(data, rows, snr_min)
    cat_inside = np.isin(cat["ROW"].to_numpy(), inside) if len(cat) else np.zeros(0, bool)
    truth_inside = truth[np.isin(truth["ROW"].to_numpy(), inside)] if len(truth) else truth
    return inside, cat_inside, truth_inside


def window_prior(windows: ft.Windows, weights: np.ndarray) -> float:
    """Nature's share of sliding windows with a DLA centre in their central half."""
    return weighted_fraction(windows.present, weights[windows.rows])


# --- the whole calibration -----------------------------------------------------------------------


def sha256_short(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def fit_nhi_err(cat: pd.DataFrame, use: np.ndarray) -> tuple[float, float]:
    """(a, b) of NHI_ERR = sqrt(b^2 + (a spread)^2) on the validation DLAs found (`use`)."""
    use = (
        np.asarray(use, bool) & np.isfinite(cat["TRUE_LOG_NHI"].to_numpy(float))
        if len(cat)
        else np.zeros(0, bool)
    )
    if use.sum() < MIN_NHI_FIT:
        log.warning(
            "NHI_ERR: only %d validation DLAs found; using a = %g, b = %g", int(use.sum()), *DEFAULT_NHI_ERR
        )
        return DEFAULT_NHI_ERR
    error = (cat["LOG_NHI"] - cat["TRUE_LOG_NHI"]).to_numpy(float)[use]
    spread = cat["LOG_NHI_SPREAD"].to_numpy(float)[use]
    a, b = fit_redshift_error(np.zeros(use.sum()), error, spread)
    return float(a), float(b)


def nhi_err(cat: pd.DataFrame, coefficients: tuple[float, float]) -> np.ndarray:
    spread = cat["LOG_NHI_SPREAD"].to_numpy(float) if len(cat) else np.zeros(0)
    return redshift_error(np.zeros(len(spread)), spread, tuple(coefficients))


def nhi_err_coverage(cat: pd.DataFrame, selected: np.ndarray) -> dict[str, float]:
    """Share of the selected true DLAs with |log N_HI error| within 1 and 2 NHI_ERR."""
    use = (
        np.asarray(selected, bool) & np.isfinite(cat["TRUE_LOG_NHI"].to_numpy(float))
        if len(cat)
        else np.zeros(0, bool)
    )
    error = (cat["LOG_NHI"] - cat["TRUE_LOG_NHI"]).to_numpy(float)[use] if len(cat) else np.zeros(0)
    return zerr_coverage(error, cat["NHI_ERR"].to_numpy(float)[use] if len(cat) else np.zeros(0))


def training_prior(payload: dict[str, Any], what: str) -> float:
    prior = payload["info"].get("positive_fraction")
    if prior is None:
        log.warning(
            "%s: the model file does not record its training class mix; assuming 0.5 (retrain it)", what
        )
        prior = 0.5
    return clip_prior(float(prior))


def localiser_candidates(
    data: Ingested,
    votes: tuple[ft.Windows, ft.WindowVotes],
    record: dict[str, Any],
    options: dict[str, Any],
    rows: np.ndarray,
    margin_angstrom: float,
    presence: tuple[ft.Segments, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A calibrated localiser's candidates on `rows` with SUPPORT, PRESENCE (the presence CNN's
    calibrated probability at each, when `presence` = its segments and probabilities is given) and
    DLA_PROB (and its BAL mask)."""
    cat, truth = candidates(
        data, votes, options, rows, record["mask_bal"], margin_angstrom, vote_probability(votes[1], record)
    )
    cat["SUPPORT"] = support(cat, record)
    if presence is not None:
        seg, probability = presence
        cat["PRESENCE"] = presence_at(
            cat,
            seg,
            probability,
            int(options["segment_pixels"]),
            int(options["edge_pixels"]),
            float(np.mean(probability)) if len(probability) else 0.5,
        )
    cat["DLA_PROB"] = dla_probability(cat, record)
    return cat, truth


def calibrate_variant(
    data: Ingested,
    votes: tuple[ft.Windows, ft.WindowVotes],
    payload: dict[str, Any],
    options: dict[str, Any],
    rows: np.ndarray,
    weights: np.ndarray,
    mask_bal: bool,
    purity: float,
    margin_angstrom: float,
    what: str,
    features: list[str] | None = None,
    presence: tuple[ft.Segments, np.ndarray] | None = None,
    footprint_snr_min: float = 0.0,
) -> dict[str, Any]:
    """One localiser with or without the BAL mask, on the validation split: window prior
    correction, candidate calibration (DLA_PROB: beta of the support, or the logistic fusion of
    `features`, fitted on every sightline), the working point (chosen on the catalogue's
    footprint: sightlines of S/N >= `footprint_snr_min`), NHI_ERR."""
    windows, _ = votes
    features = list(features or ["support"])
    if presence is None and "presence" in features:
        log.warning("%s: no presence CNN, so DLA_PROB does without its probability", what)
        features.remove("presence")
    record: dict[str, Any] = {
        "prior_train": training_prior(payload, what),
        "prior_natural": clip_prior(window_prior(windows, weights)),
        "expected_votes": expected_votes(options),
        "mask_bal": bool(mask_bal),
        "beta": list(IDENTITY_BETA),
        "features": features,
    }
    cat, truth = localiser_candidates(data, votes, record, options, rows, margin_angstrom, presence)
    correct = (cat["TRUE_MATCH"].to_numpy() >= 0) if len(cat) else np.zeros(0, bool)
    w_cat = weights[cat["ROW"].to_numpy().astype(int)] if len(cat) else np.zeros(0)
    record.update(
        calibrate_scores(
            cat["CONFIDENCE"].to_numpy(float) if len(cat) else np.zeros(0),
            cat["SUPPORT"].to_numpy(float),
            correct,
            w_cat,
            record["prior_train"],
            record["prior_natural"],
            what,
        )
    )
    if features != ["support"] and len(cat) and 0 < correct.sum() < len(correct):
        record["combiner"] = fit_logistic(
            candidate_features(cat, features), correct, sample_weight=w_cat
        ).tolist()
        record["reliability"]["calibrated"] = reliability(
            dla_probability(cat, record), correct, sample_weight=w_cat
        )
    cat["DLA_PROB"] = dla_probability(cat, record)
    inside, cat_inside, truth_inside = footprint_of(data, rows, footprint_snr_min, cat, truth)
    n_true = float(np.sum(weights[truth_inside["ROW"].to_numpy().astype(int)])) if len(truth_inside) else 0.0
    point = choose_working_point(
        cat["DLA_PROB"].to_numpy(float)[cat_inside], correct[cat_inside], w_cat[cat_inside], n_true, purity
    )
    selected = cat["DLA_PROB"].to_numpy(float) > point["threshold"]
    coefficients = fit_nhi_err(
        cat, selected & correct if (selected & correct).sum() >= MIN_NHI_FIT else correct
    )
    cat["NHI_ERR"] = nhi_err(cat, coefficients)
    validation = catalogue_rates(truth_inside, cat, selected & cat_inside, inside, weights=weights)
    everything = catalogue_rates(truth, cat, np.ones(len(cat), bool), rows, weights=weights)
    record.update(
        {
            "footprint_snr_min": float(footprint_snr_min),
            "validation_footprint_sightlines": int(len(inside)),
            "validation_every_sightline_at_working_point": catalogue_rates(
                truth, cat, selected, rows, weights=weights
            ),
            "bal_trough_windows": int(payload["info"].get("bal_trough_windows", 0) or 0),
            "subdla_windows": int(payload["info"].get("subdla_windows", 0) or 0),
            "working_point": point,
            "nhi_err": list(coefficients),
            "validation_at_working_point": validation,
            "validation_all_candidates": everything,
            "validation_false_on_bal_quasars": int(
                np.sum(selected & ~correct & (cat["BAL"].to_numpy() == 1))
            ),
            "validation_nhi_err_coverage": nhi_err_coverage(cat, selected & correct),
        }
    )
    log.info(
        "%s: window prior %.3f -> %.4f, beta %s, ECE %.3f (network) -> %.3f (prior-corrected support) -> %.3f "
        "(DLA_PROB) at nature's incidence; working point DLA_PROB > %.3f: purity %.3f, completeness %.3f "
        "(every candidate: %.3f / %.3f); NHI_ERR a=%.3g b=%.3g",
        what,
        record["prior_train"],
        record["prior_natural"],
        np.round(record["beta"], 3).tolist(),
        record["reliability"]["raw"]["ece"],
        record["reliability"]["prior_corrected"]["ece"],
        record["reliability"]["calibrated"]["ece"],
        point["threshold"],
        validation["purity"],
        validation["completeness"],
        everything["purity"],
        everything["completeness"],
        *coefficients,
    )
    return record


def calibrate_presence(
    data: Ingested,
    network: Any,
    payload: dict[str, Any],
    options: dict[str, Any],
    rows: np.ndarray,
    weights: np.ndarray,
    purity: float,
) -> dict[str, Any]:
    """The presence CNN on the validation segments: prior correction, beta calibration, a working point."""
    seg, raw = presence_predictions(data, network, payload, options, rows)
    label = seg.label_any == 1
    w = weights[seg.rows]
    prior_train, prior_natural = training_prior(payload, "presence"), clip_prior(weighted_fraction(label, w))
    corrected = prior_shift(raw, prior_train, prior_natural) if len(raw) else np.zeros(0)
    record = calibrate_scores(raw, corrected, label, w, prior_train, prior_natural, "presence")
    prob = presence_probability(raw, record)
    record["working_point"] = choose_working_point(prob, label, w, float(np.sum(w * label)), purity)
    record["_predictions"] = (seg, prob)  # for the DLA catalogue's fused score; not stored
    log.info(
        "presence: prior %.3f -> %.4f, beta %s, ECE %.3f -> %.3f -> %.3f; working point p > %.3f: purity %.3f, "
        "completeness %.3f (validation at nature's incidence)",
        record["prior_train"],
        record["prior_natural"],
        np.round(record["beta"], 3).tolist(),
        record["reliability"]["raw"]["ece"],
        record["reliability"]["prior_corrected"]["ece"],
        record["reliability"]["calibrated"]["ece"],
        record["working_point"]["threshold"],
        record["working_point"]["validation_purity"],
        record["working_point"]["validation_completeness"],
    )
    return record


VARIANTS = {
    "none": ("location", False),
    "mask": ("location", True),
    "negatives": ("location_bal", False),
    "negatives+mask": ("location_bal", True),
}


def choose_bal_method(variants: dict[str, dict[str, Any]], method: str) -> str:
    """`method` if given, else ("best") the BAL handling with the highest validation completeness
    at the working point (its purity goal met), ties to the simpler one."""
    if method != "best":
        if method not in variants:
            raise ConfigError(
                f"fourmost.dla.bal.method {method!r} needs its localiser; available: {sorted(variants)}"
            )
        return method
    handled = [name for name in ("mask", "negatives", "negatives+mask") if name in variants] or ["none"]

    def key(name: str) -> tuple[float, float]:
        v = variants[name]["validation_at_working_point"]
        return (np.nan_to_num(v["completeness"], nan=-1.0), np.nan_to_num(v["purity"], nan=-1.0))

    return max(handled, key=key)


def calibrate_dla(
    data: Ingested,
    presence: tuple[Any, dict[str, Any]] | None,
    localisers: dict[str, tuple[Any, dict[str, Any]]],
    options: dict[str, Any],
    simulate_spec: dict[str, Any],
    hashes: dict[str, str],
) -> dict[str, Any]:
    """Everything rule `fourmost_calibrate_dla` fits on the validation split (see the module docstring)."""
    settings = options["calibration"]
    bal = options["bal"]
    rows = data.rows("val")
    weights = split_weights(data, rows, "val", simulate_spec)
    n_dla_val = int(np.isin(data.dlas["ROW"].to_numpy(), rows).sum())
    log.info(
        "validation split: %d sightlines, %d DLAs; weighted to nature's incidence: %.1f DLAs (%.1f%% of "
        "sightlines with one)",
        len(rows),
        n_dla_val,
        float(np.sum(weights[data.dlas["ROW"].to_numpy()])) if len(data.dlas) else 0.0,
        100
        * weighted_fraction(
            np.bincount(data.dlas["ROW"].to_numpy(), minlength=len(data.sightlines))[rows] > 0, weights[rows]
        ),
    )
    bal_flags(data)
    record: dict[str, Any] = {
        "format": CALIBRATION_FORMAT,
        "validation_sightlines": int(len(rows)),
        "validation_dlas": n_dla_val,
        "bal_source": BAL_SOURCE,
        "bal_mask_margin_angstrom": float(bal["mask_margin_angstrom"]),
        "purity_goal": float(settings["purity"]),
        "footprint_snr_min": float(settings.get("footprint_snr_min", 0.0)),
        "model_sha256": hashes,
        "merge_threshold": float(options["merge_threshold"]),
    }
    val_presence = None
    if presence is not None:
        record["presence"] = calibrate_presence(
            data, *presence, options, rows, weights, float(settings["presence_purity"])
        )
        val_presence = record["presence"].pop("_predictions")
    variants: dict[str, dict[str, Any]] = {}
    votes: dict[str, tuple[ft.Windows, ft.WindowVotes]] = {}
    for name, (model, mask) in VARIANTS.items():
        if model not in localisers:
            continue
        network, payload = localisers[model]
        if model not in votes:
            votes[model] = window_votes(data, network, payload["info"]["n_pixels"], options, rows)
        variants[name] = calibrate_variant(
            data,
            votes[model],
            payload,
            options,
            rows,
            weights,
            mask,
            float(settings["purity"]),
            float(bal["mask_margin_angstrom"]),
            f"localiser {model}, BAL {name}",
            list(settings.get("features", ["support"])),
            val_presence,
            float(settings.get("footprint_snr_min", 0.0)),
        )
        variants[name]["model"] = model
    if not variants:
        raise ConfigError("fourmost_calibrate_dla needs the localiser (models/location.pt)")
    record["variants"] = variants
    record["bal_method"] = choose_bal_method(variants, str(bal["method"]))
    record["bal_method_rule"] = (
        "given (fourmost.dla.bal.method)"
        if bal["method"] != "best"
        else "best validation completeness at the working point"
    )
    log.info(
        "BAL handling: %s (%s); validation at the working point: %s",
        record["bal_method"],
        record["bal_method_rule"],
        {
            k: (
                round(v["validation_at_working_point"]["purity"], 3),
                round(v["validation_at_working_point"]["completeness"], 3),
            )
            for k, v in variants.items()
        },
    )
    return record
