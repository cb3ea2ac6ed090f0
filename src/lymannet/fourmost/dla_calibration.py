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
   whose reweighted validation purity stays >= the target purity (default 0.9 for log N_HI >= 20.3;
   :func:`lymannet.calibration.choose_threshold`), stored as a threshold on DLA_PROB; the test split
   reports the purity and completeness reached there.
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
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calibration import (
    ValidationCounts,
    apply_beta,
    choose_threshold,
    fit_beta,
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
from .io import Ingested
from .metrics import NHI_EDGES, SNR_EDGES, bin_label, ratio_interval

log = logging.getLogger("lymannet.fourmost")

CALIBRATION_FORMAT = "lymannet-4most-dla-calibration-1"
DLA_LOG_N = 20.3
NEUTRAL_LOG_NHI = (20.0, 20.3)  # sub-DLAs at the boundary: neither true nor false in the neutral scores
IDENTITY_BETA = (1.0, 1.0, 0.0)
DEFAULT_NHI_ERR = (0.0, 0.2)  # (a, b) when too few validation DLAs are found to fit them
MIN_NHI_FIT = 10


# --- nature's incidence --------------------------------------------------------------------------


def expected_dlas(z_qso: np.ndarray, simulate_spec: dict[str, Any]) -> np.ndarray:
    """mu: nature's mean number of DLAs in each sightline's DLA redshift window (the simulator's f(N))."""
    from .simulate import DLA_LOG_N as SIM_DLA_LOG_N, complete_spec, dla_redshift_window, expected_absorbers

    spec = complete_spec(dict(simulate_spec))
    z_lo, z_hi = dla_redshift_window(np.asarray(z_qso, float), spec["proximity_kms"])
    absorbers = spec["absorbers"]
    return expected_absorbers(
        z_lo, np.maximum(z_hi, z_lo), SIM_DLA_LOG_N, absorbers["log_n_max"], absorbers["gamma"]
    )


def natural_weights(
    z_qso: np.ndarray, n_dla: np.ndarray, boost: float, simulate_spec: dict[str, Any]
) -> np.ndarray:
    """Importance weight per sightline from a split simulated at `boost` x nature's DLA incidence to
    nature's, w = exp((b - 1) mu) b^-k (k DLAs on it), normalised to mean 1 (1 everywhere at b = 1)."""
    n_dla = np.asarray(n_dla, float)
    if boost <= 0:
        raise ConfigError(f"fourmost: a split simulated with dla_boost {boost} holds no DLA to calibrate on")
    if boost == 1.0 or not len(n_dla):
        return np.ones(len(n_dla))
    log_w = (boost - 1.0) * expected_dlas(z_qso, simulate_spec) - n_dla * np.log(boost)
    w = np.exp(log_w - log_w.max())
    return w / w.mean()


def split_weights(data: Ingested, rows: np.ndarray, split: str, simulate_spec: dict[str, Any]) -> np.ndarray:
    """Per sightline of the whole set (0 outside `rows`): the weight to nature's incidence."""
    from .simulate import complete_spec

    boost = float(complete_spec(dict(simulate_spec))["absorbers"]["dla_boost"][split])
    n_dla = np.bincount(data.dlas["ROW"].to_numpy(), minlength=len(data.sightlines))[rows]
    weights = np.zeros(len(data.sightlines))
    weights[rows] = natural_weights(data.sightlines["Z_QSO"].to_numpy()[rows], n_dla, boost, simulate_spec)
    return weights


def weighted_fraction(label: np.ndarray, weights: np.ndarray) -> float:
    weights = np.asarray(weights, float)
    return (
        float(np.sum(weights * np.asarray(label, float)) / weights.sum())
        if weights.sum() > 0
        else float("nan")
    )


# --- probabilities -------------------------------------------------------------------------------


def safe_fit_beta(
    probability: np.ndarray, outcome: np.ndarray, weights: np.ndarray, what: str
) -> tuple[float, float, float]:
    """fit_beta, or the identity with a warning when the validation split lacks one outcome."""
    try:
        return fit_beta(probability, outcome, sample_weight=weights)
    except ConfigError as error:
        log.warning("%s: no calibration (%s): the prior-corrected probability is used as it is", what, error)
        return IDENTITY_BETA


def calibrate_scores(
    raw: np.ndarray,
    corrected: np.ndarray,
    outcome: np.ndarray,
    weights: np.ndarray,
    prior_train: float,
    prior_natural: float,
    what: str,
) -> dict[str, Any]:
    """Weighted beta calibration of prior-corrected network probabilities `corrected` (from `raw`
    by the prior correction from `prior_train` to `prior_natural`); with the reliability of the
    three (raw, prior-corrected, calibrated) on these examples."""
    beta = safe_fit_beta(corrected, outcome, weights, what)
    calibrated = apply_beta(corrected, beta) if len(corrected) else np.zeros(0)
    return {
        "prior_train": float(prior_train),
        "prior_natural": float(prior_natural),
        "beta": list(beta),
        "reliability": {
            "raw": reliability(raw, outcome, sample_weight=weights),
            "prior_corrected": reliability(corrected, outcome, sample_weight=weights),
            "calibrated": reliability(calibrated, outcome, sample_weight=weights),
        },
    }


def clip_prior(fraction: float) -> float:
    return float(np.clip(fraction, 1e-6, 1 - 1e-6))


def presence_probability(raw: np.ndarray, record: dict[str, Any], stage: str = "calibrated") -> np.ndarray:
    """A presence CNN output at a stage: raw, prior_corrected or calibrated (the segment's P(DLA))."""
    raw = np.asarray(raw, float)
    if stage == "raw" or not len(raw):
        return raw
    corrected = prior_shift(raw, record["prior_train"], record["prior_natural"])
    return corrected if stage == "prior_corrected" else apply_beta(corrected, tuple(record["beta"]))


def expected_votes(options: dict[str, Any]) -> float:
    """Sliding windows whose central half covers a given pixel: the votes a DLA gets at most."""
    return float(options["window_pixels"]) / (2.0 * float(options["slide_stride"]))


def vote_probability(votes: ft.WindowVotes, record: dict[str, Any]) -> np.ndarray:
    """The localiser's window probabilities corrected to nature's share of windows with a DLA."""
    return (
        prior_shift(votes.probability, record["prior_train"], record["prior_natural"])
        if len(votes.probability)
        else np.zeros(0)
    )


def support(cat: pd.DataFrame, record: dict[str, Any]) -> np.ndarray:
    """A candidate's prior-corrected score: its votes' prior-corrected probabilities summed over
    the votes a DLA gets at most (capped at 1): high only where many windows agree."""
    return (
        np.minimum(1.0, cat["VOTE_SUM"].to_numpy(float) / record["expected_votes"])
        if len(cat)
        else np.zeros(0)
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def candidate_features(cat: pd.DataFrame, names: list[str]) -> np.ndarray:
    """(n, len(names)) columns of the fused score: logit SUPPORT, logit PRESENCE (the presence CNN's
    calibrated probability at the candidate), log SNR (the sightline's continuum S/N), LOG_NHI - 20.3
    (the localiser's column density: near the DLA boundary a candidate is as likely a sub-DLA)."""
    columns = {
        "support": lambda: _logit(cat["SUPPORT"]),
        "presence": lambda: _logit(cat["PRESENCE"]),
        "snr": lambda: np.log(np.clip(cat["SNR"].to_numpy(float), 0.25, None)),
        "log_nhi": lambda: cat["LOG_NHI"].to_numpy(float) - DLA_LOG_N,
    }
    unknown = set(names) - set(columns)
    if unknown:
        raise ConfigError(
            f"fourmost.dla.calibration.features: unknown {sorted(unknown)}; valid: {sorted(columns)}"
        )
    return np.column_stack([columns[name]() for name in names]) if len(cat) else np.zeros((0, len(names)))


def dla_probability(cat: pd.DataFrame, record: dict[str, Any]) -> np.ndarray:
    """DLA_PROB: the calibrated probability that a candidate is a true DLA at nature's incidence:
    beta calibration of its support, or (``record["combiner"]``) the logistic fusion of its support
    with the presence CNN's probability there and the S/N."""
    if not len(cat):
        return np.zeros(0)
    if record.get("combiner"):
        weights = np.asarray(record["combiner"], float)
        return 1.0 / (
            1.0
            + np.exp(
                -np.clip(
                    candidate_features(cat, record["features"]) @ weights[:-1] + weights[-1], -35.0, 35.0
                )
            )
        )
    return apply_beta(support(cat, record), tuple(record["beta"]))


def presence_at(
    cat: pd.DataFrame, seg: ft.Segments, probability: np.ndarray, length: int, edge: int, default: float
) -> np.ndarray:
    """Per candidate: the highest presence probability among the segments that hold its position
    at least `edge` pixels from their ends (any segment holding it if none; `default` if none)."""
    out = np.full(len(cat), float(default))
    by_row: dict[int, np.ndarray] = {}
    for k, row in enumerate(seg.rows):
        by_row.setdefault(int(row), []).append(k)
    for i, (row, pos) in enumerate(zip(cat["ROW"].to_numpy(), cat["POSITION"].to_numpy(float))):
        index = np.asarray(by_row.get(int(row), []), int)
        if not index.size:
            continue
        rel = pos - seg.starts[index]
        inner = index[(rel >= edge) & (rel < length - edge)]
        inside = inner if inner.size else index[(rel >= 0) & (rel < length)]
        if inside.size:
            out[i] = float(np.max(probability[inside]))
    return out


# --- working point -------------------------------------------------------------------------------


def weighted_counts(
    score: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_true: float
) -> ValidationCounts:
    """lymannet.calibration.ValidationCounts of a catalogue: per threshold on `score`, the weighted
    true and false detections above it; n_targets = the weighted number of true objects."""
    score, correct, weights = np.asarray(score, float), np.asarray(correct, bool), np.asarray(weights, float)
    thresholds = np.unique(
        np.concatenate([[0.0, 1.0], np.quantile(score, np.linspace(0, 1, 401)) if len(score) else []])
    )
    order = np.argsort(score, kind="stable")
    s, w_true, w_false = score[order], (weights * correct)[order], (weights * ~correct)[order]
    above = np.searchsorted(s, thresholds, side="right")  # first index strictly above each threshold
    tail_true = np.concatenate([np.cumsum(w_true[::-1])[::-1], [0.0]])
    tail_false = np.concatenate([np.cumsum(w_false[::-1])[::-1], [0.0]])
    good = tail_true[above]
    return ValidationCounts(thresholds, good, good, tail_false[above], float(n_true), float(w_false.sum()))


def choose_working_point(
    score: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_true: float, purity: float
) -> dict[str, Any]:
    """The lowest threshold on `score` (DLA_PROB) from which the weighted validation purity stays
    >= `purity`, with the validation purity and completeness reached there."""
    counts = weighted_counts(score, correct, weights, n_true)
    threshold = choose_threshold(counts, {"purity": float(purity)})
    at = int(np.searchsorted(counts.thresholds, threshold))
    detected = counts.good[at] + counts.contaminant[at]
    return {
        "purity_goal": float(purity),
        "threshold": float(threshold),
        "validation_purity": float(counts.good[at] / detected) if detected > 0 else float("nan"),
        "validation_completeness": float(counts.good[at] / n_true) if n_true > 0 else float("nan"),
    }


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
    from .score import dla_catalogue, match_truth

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


def window_prior(windows: ft.Windows, weights: np.ndarray) -> float:
    """Nature's share of sliding windows with a DLA centre in their central half."""
    return weighted_fraction(windows.present, weights[windows.rows])


# --- rates ---------------------------------------------------------------------------------------


def _per_row(rows: np.ndarray, values: np.ndarray, position: dict[int, int], n: int) -> np.ndarray:
    index = np.array([position[int(r)] for r in rows], dtype=int)
    return np.bincount(index, weights=np.asarray(values, float), minlength=n) if index.size else np.zeros(n)


def catalogue_rates(
    truth: pd.DataFrame,
    cat: pd.DataFrame,
    selected: np.ndarray,
    rows: np.ndarray,
    neutral: bool = False,
    weights: np.ndarray | None = None,
    intervals: bool = False,
) -> dict[str, Any]:
    """Purity and completeness per DLA and per sightline of the candidates `selected`, true DLAs
    found = matched to a selected candidate. ``neutral``: candidates on a 20.0-20.3 absorber count
    neither true nor false. ``weights`` (per row of the whole set): the validation split's
    weights to nature's incidence. ``intervals``: bootstrap intervals over the sightlines `rows`."""
    rows = np.asarray(rows)
    position = {int(r): k for k, r in enumerate(rows)}
    n = len(rows)
    w_row = np.ones(n) if weights is None else np.asarray(weights, float)[rows]
    selected = np.asarray(selected, bool)
    counted = selected & ~(
        cat["NEUTRAL"].to_numpy(bool) if neutral and len(cat) else np.zeros(len(cat), bool)
    )
    correct = (cat["TRUE_MATCH"].to_numpy() >= 0) if len(cat) else np.zeros(0, bool)
    found_index = cat.index.to_numpy()[selected & correct] if len(cat) else np.zeros(0, int)
    found = (
        truth["MATCH"].isin(found_index).to_numpy() & (truth["MATCH"].to_numpy() >= 0)
        if len(truth)
        else np.zeros(0, bool)
    )
    cat_rows = cat["ROW"].to_numpy() if len(cat) else np.zeros(0, int)
    n_true = _per_row(truth["ROW"].to_numpy(), np.ones(len(truth)), position, n)
    n_found = _per_row(truth["ROW"].to_numpy(), found, position, n)
    n_sel = _per_row(cat_rows, counted, position, n)
    n_correct = _per_row(cat_rows, counted & correct, position, n)

    def ratio(num: np.ndarray, den: np.ndarray) -> float:
        d = float(np.sum(w_row * den))
        return float(np.sum(w_row * num) / d) if d > 0 else float("nan")

    out = {
        "completeness": ratio(n_found, n_true),
        "purity": ratio(n_correct, n_sel),
        "n_true": int(n_true.sum()),
        "n_found": int(n_found.sum()),
        "n_selected": int(n_sel.sum()),
        "n_false": int((n_sel - n_correct).sum()),
        "sightline_completeness": ratio(n_found > 0, n_true > 0),
        "sightline_purity": ratio(n_correct > 0, n_sel > 0),
        "n_sightlines_with_dla": int((n_true > 0).sum()),
        "n_sightlines_flagged": int((n_sel > 0).sum()),
    }
    if neutral:
        out["n_neutral"] = int((selected & ~counted).sum())
    if intervals and weights is None:
        out["completeness_interval"] = ratio_interval(out["completeness"], n_found, n_true)
        out["purity_interval"] = ratio_interval(out["purity"], n_correct, n_sel)
        out["sightline_completeness_interval"] = ratio_interval(
            out["sightline_completeness"], n_found > 0, n_true > 0
        )
        out["sightline_purity_interval"] = ratio_interval(out["sightline_purity"], n_correct > 0, n_sel > 0)
    return out


def rates_by_bin(
    truth: pd.DataFrame,
    cat: pd.DataFrame,
    selected: np.ndarray,
    rows: np.ndarray,
    neutral: bool,
    column: str,
    edges: tuple[float, ...],
    truth_column: str | None = None,
    intervals: bool = True,
) -> dict[str, dict[str, Any]]:
    """catalogue_rates per bin: true DLAs by `truth_column` (default `column`), candidates by `column`."""
    out = {}
    truth_column = truth_column or column
    for lo, hi in zip(edges[:-1], edges[1:]):
        t_in = (
            ((truth[truth_column] >= lo) & (truth[truth_column] < hi)).to_numpy()
            if len(truth)
            else np.zeros(0, bool)
        )
        c_in = ((cat[column] >= lo) & (cat[column] < hi)).to_numpy() if len(cat) else np.zeros(0, bool)
        sub_truth = truth[t_in]
        rates = catalogue_rates(
            sub_truth, cat, np.asarray(selected, bool) & c_in, rows, neutral, intervals=intervals
        )
        # completeness of this bin's DLAs may come from candidates outside it (a true 20.4 DLA
        # measured as 20.6): found is taken over all selected candidates
        full = catalogue_rates(sub_truth, cat, np.asarray(selected, bool), rows, neutral, intervals=intervals)
        for key in (
            "completeness",
            "n_true",
            "n_found",
            "sightline_completeness",
            "completeness_interval",
            "sightline_completeness_interval",
        ):
            if key in full:
                rates[key] = full[key]
        out[bin_label(lo, hi)] = rates
    return out


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
) -> dict[str, Any]:
    """One localiser with or without the BAL mask, on the validation split: window prior
    correction, candidate calibration (DLA_PROB: beta of the support, or the logistic fusion of
    `features`), the working point, NHI_ERR."""
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
    n_true = float(np.sum(weights[truth["ROW"].to_numpy().astype(int)])) if len(truth) else 0.0
    point = choose_working_point(cat["DLA_PROB"].to_numpy(float), correct, w_cat, n_true, purity)
    selected = cat["DLA_PROB"].to_numpy(float) > point["threshold"]
    coefficients = fit_nhi_err(
        cat, selected & correct if (selected & correct).sum() >= MIN_NHI_FIT else correct
    )
    cat["NHI_ERR"] = nhi_err(cat, coefficients)
    validation = catalogue_rates(truth, cat, selected, rows, weights=weights)
    everything = catalogue_rates(truth, cat, np.ones(len(cat), bool), rows, weights=weights)
    record.update(
        {
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
    from .score import presence_predictions

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
    from .score import window_votes

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


# --- on the test split ---------------------------------------------------------------------------

RUNGS = (
    ("network", "before: every candidate (network p >= merge threshold)"),
    ("calibrated", "step 1: DLA_PROB >= 0.5 (nature's incidence)"),
    ("working_point", "step 2: DLA_PROB > validation working point"),
    ("bal", "step 3: + BAL handling = THE CATALOGUE"),
    ("neutral", "step 4: the catalogue, 20.0-20.3 neither true nor false"),
)


def false_on_bal(
    cat: pd.DataFrame, selected: np.ndarray, data: Ingested, tolerance_pixels: float, truth: pd.DataFrame
) -> dict[str, int]:
    """False selected candidates on BAL quasars, and those attributed to a BAL trough (the first
    cause that applies, :func:`.score.catalogue_false_positive_causes`)."""
    from .metrics import CONFUSER_ORDER
    from .score import catalogue_false_positive_causes

    pick = np.asarray(selected, bool)
    sub = cat[pick]
    causes = catalogue_false_positive_causes(data, truth, sub, tolerance_pixels) if len(sub) else []
    counts = {name: int(sum(c == name for c in causes)) for name in CONFUSER_ORDER}
    false = (sub["TRUE_MATCH"].to_numpy() < 0) if len(sub) else np.zeros(0, bool)
    return {
        "on_bal_quasars": int(np.sum(false & (sub["BAL"].to_numpy() == 1))) if len(sub) else 0,
        "on_bal_troughs": counts["BAL trough"],
        "causes": counts,
    }


def rung_scores(
    data: Ingested,
    truth: pd.DataFrame,
    cat: pd.DataFrame,
    selected: np.ndarray,
    rows: np.ndarray,
    neutral: bool,
    tolerance_pixels: float,
) -> dict[str, Any]:
    """One rung of the ladder on the test split: per DLA and per sightline, overall (with bootstrap
    intervals over the sightlines), per S/N bin and per log N_HI bin, and the false ones on BALs."""
    out = catalogue_rates(truth, cat, selected, rows, neutral, intervals=True)
    out["by_snr"] = rates_by_bin(truth, cat, selected, rows, neutral, "SNR", SNR_EDGES)
    out["by_log_nhi"] = rates_by_bin(truth, cat, selected, rows, neutral, "LOG_NHI", NHI_EDGES)
    out["false_on_bal"] = false_on_bal(cat, selected, data, tolerance_pixels, truth)
    return out


def test_reliability(
    raw: np.ndarray, corrected: np.ndarray, calibrated: np.ndarray, outcome: np.ndarray
) -> dict[str, Any]:
    return {
        "raw": reliability(raw, outcome),
        "prior_corrected": reliability(corrected, outcome),
        "calibrated": reliability(calibrated, outcome),
    }


def score_dla_catalogue(
    data: Ingested,
    localisers: dict[str, tuple[Any, dict[str, Any]]],
    record: dict[str, Any],
    options: dict[str, Any],
    presence: tuple[Any, dict[str, Any]] | None = None,
    votes: dict[str, tuple[ft.Windows, ft.WindowVotes]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The calibrated DLA catalogue on the test split (nature's incidence) and the ladder of its
    scores before and after each step. Returns (catalogue of the chosen BAL handling, its truth
    table, metrics). `votes`: the localisers' test votes (:func:`.score.window_votes`) at hand."""
    from .score import presence_predictions, window_votes

    rows = data.rows("test")
    step = float(data.dla_wave[1] - data.dla_wave[0])
    tolerance = float(options["match_tolerance_angstrom"]) / step
    margin = float(record["bal_mask_margin_angstrom"])
    votes = dict(votes or {})
    for model in sorted({"location", record["variants"][record["bal_method"]]["model"]} - set(votes)):
        network, payload = localisers[model]
        votes[model] = window_votes(data, network, payload["info"]["n_pixels"], options, rows)
    test_presence = None
    if presence is not None and "presence" in record:
        seg, raw = presence_predictions(data, *presence, options, rows)
        test_presence = (seg, raw, presence_probability(raw, record["presence"]))
    fused = (test_presence[0], test_presence[2]) if test_presence is not None else None
    plain = record["variants"]["none"]
    cat0, truth0 = localiser_candidates(data, votes["location"], plain, options, rows, margin, fused)
    chosen = record["variants"][record["bal_method"]]
    cat, truth = localiser_candidates(data, votes[chosen["model"]], chosen, options, rows, margin, fused)
    cat["NHI_ERR"] = nhi_err(cat, chosen["nhi_err"])
    selected = cat["DLA_PROB"].to_numpy(float) > chosen["working_point"]["threshold"]
    cat["SELECTED"] = selected
    prob0 = cat0["DLA_PROB"].to_numpy(float)
    ladder = {
        "network": rung_scores(data, truth0, cat0, np.ones(len(cat0), bool), rows, False, tolerance),
        "calibrated": rung_scores(data, truth0, cat0, prob0 >= 0.5, rows, False, tolerance),
        "working_point": rung_scores(
            data, truth0, cat0, prob0 > plain["working_point"]["threshold"], rows, False, tolerance
        ),
        "bal": rung_scores(data, truth, cat, selected, rows, False, tolerance),
        "neutral": rung_scores(data, truth, cat, selected, rows, True, tolerance),
    }
    correct = cat["TRUE_MATCH"].to_numpy() >= 0 if len(cat) else np.zeros(0, bool)
    correct0 = cat0["TRUE_MATCH"].to_numpy() >= 0 if len(cat0) else np.zeros(0, bool)
    metrics: dict[str, Any] = {
        "rungs": dict(RUNGS),
        "ladder": ladder,
        "bal_method": record["bal_method"],
        "bal_method_rule": record["bal_method_rule"],
        "bal_source": record["bal_source"],
        "working_point": chosen["working_point"],
        "working_point_none": plain["working_point"],
        "purity_goal": record["purity_goal"],
        "reliability": test_reliability(
            cat["CONFIDENCE"].to_numpy(float),
            cat["SUPPORT"].to_numpy(float),
            cat["DLA_PROB"].to_numpy(float),
            correct,
        ),
        "reliability_without_bal_handling": test_reliability(
            cat0["CONFIDENCE"].to_numpy(float), cat0["SUPPORT"].to_numpy(float), prob0, correct0
        ),
        "nhi_err": chosen["nhi_err"],
        "nhi_err_coverage": nhi_err_coverage(cat, selected & correct),
        "nhi_err_coverage_validation": chosen["validation_nhi_err_coverage"],
        "expected_purity_at_working_point": (
            float(cat["DLA_PROB"][selected].mean()) if selected.any() else float("nan")
        ),
        "validation": {
            name: {
                "purity": v["validation_at_working_point"]["purity"],
                "completeness": v["validation_at_working_point"]["completeness"],
                "threshold": v["working_point"]["threshold"],
                "false_on_bal_quasars": v["validation_false_on_bal_quasars"],
                "ece": {k: r["ece"] for k, r in v["reliability"].items()},
            }
            for name, v in record["variants"].items()
        },
        "model_sha256": record["model_sha256"],
        "n_test_sightlines": int(len(rows)),
        "n_test_dlas": int(len(truth)),
    }
    if test_presence is not None:
        seg, raw, prob = test_presence
        label = seg.label_any == 1
        prec = record["presence"]
        chosen_p = prob > prec["working_point"]["threshold"]
        metrics["presence"] = {
            "reliability": test_reliability(
                raw, presence_probability(raw, prec, "prior_corrected"), prob, label
            ),
            "working_point": prec["working_point"],
            "at_p_0.5": {
                "purity": weighted_fraction(label[raw >= 0.5], np.ones(int((raw >= 0.5).sum()))),
                "completeness": weighted_fraction(raw[label] >= 0.5, np.ones(int(label.sum()))),
            },
            "at_working_point": {
                "purity": weighted_fraction(label[chosen_p], np.ones(int(chosen_p.sum()))),
                "completeness": weighted_fraction(chosen_p[label], np.ones(int(label.sum()))),
                "purity_interval": ratio_interval(
                    weighted_fraction(label[chosen_p], np.ones(int(chosen_p.sum()))),
                    chosen_p & label,
                    chosen_p,
                    seg.rows,
                ),
                "completeness_interval": ratio_interval(
                    weighted_fraction(chosen_p[label], np.ones(int(label.sum()))),
                    chosen_p & label,
                    label,
                    seg.rows,
                ),
            },
        }
    final = ladder["bal"]
    log.info(
        "test DLA catalogue (%d DLAs on %d sightlines): %s",
        len(truth),
        len(rows),
        "; ".join(
            f"{name}: purity {ladder[name]['purity']:.3f} completeness {ladder[name]['completeness']:.3f}"
            for name, _ in RUNGS
        ),
    )
    log.info(
        "at the working point: DLA_PROB > %.3f, BAL %s, %d selected, %d false (%d on BAL quasars)",
        chosen["working_point"]["threshold"],
        record["bal_method"],
        final["n_selected"],
        final["n_false"],
        final["false_on_bal"]["on_bal_quasars"],
    )
    return cat, truth, metrics


# --- the catalogue file --------------------------------------------------------------------------

CATALOGUE_EXTNAME = "DLACAT"


def catalogue_table(data: Ingested, cat: pd.DataFrame) -> np.ndarray:
    """One row per DLA candidate, in the DESI DLA-catalogue style: TARGETID (when the sightlines
    carry one) or FILE, Z_QSO, Z_DLA, NHI, NHI_ERR, DLA_PROB, SNR, BAL_FLAG, SELECTED (at the working
    point) and the network's CONFIDENCE and N_WINDOWS."""
    rows = cat["ROW"].to_numpy().astype(int) if len(cat) else np.zeros(0, int)
    sightlines = data.sightlines
    columns: list[tuple[str, np.ndarray]] = []
    if "TARGETID" in sightlines.columns:
        columns.append(("TARGETID", sightlines["TARGETID"].to_numpy().astype(np.int64)[rows]))
    files = sightlines["FILE"].astype(str).to_numpy()[rows]
    columns.append(("FILE", files.astype(f"S{max([len(f) for f in files] + [1])}")))
    columns += [
        ("Z_QSO", sightlines["Z_QSO"].to_numpy(float)[rows]),
        ("Z_DLA", cat["Z_ABS"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("NHI", cat["LOG_NHI"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("NHI_ERR", cat["NHI_ERR"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("DLA_PROB", cat["DLA_PROB"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("SNR", sightlines["SNR"].to_numpy(float)[rows]),
        ("BAL_FLAG", sightlines["BAL"].to_numpy().astype(np.int16)[rows]),
        ("SELECTED", cat["SELECTED"].to_numpy(bool) if len(cat) else np.zeros(0, bool)),
        ("CONFIDENCE", cat["CONFIDENCE"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("N_WINDOWS", cat["N_WINDOWS"].to_numpy().astype(np.int32) if len(cat) else np.zeros(0, np.int32)),
    ]
    dtype = [
        (
            name,
            (
                values.dtype
                if values.dtype.kind in "SUb"
                else ("f8" if name.startswith("Z_") else (values.dtype if values.dtype.kind in "i" else "f4"))
            ),
        )
        for name, values in columns
    ]
    table = np.zeros(len(rows), dtype=dtype)
    for name, values in columns:
        table[name] = values
    return table


def catalogue_header(record: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """Header cards: the working point, the class mix DLA_PROB is for, BAL handling, model hashes."""
    chosen = record["variants"][record["bal_method"]]
    point = chosen["working_point"]
    cards = [
        {"name": "CATALOG", "value": "lymannet 4MOST DLA", "comment": "one row per DLA candidate"},
        {"name": "SPLIT", "value": split, "comment": "sightlines searched"},
        {"name": "PROBFOR", "value": "nature", "comment": "DLA_PROB: P(true DLA) at nature's DLA incidence"},
        {
            "name": "CALMETH",
            "value": "prior+beta",
            "comment": "prior correction, beta calibration on validation",
        },
        {"name": "WPKIND", "value": "purity", "comment": "working point: a purity goal on validation"},
        {"name": "WPGOAL", "value": float(point["purity_goal"]), "comment": "purity goal, log N_HI >= 20.3"},
        {
            "name": "WPPROB",
            "value": float(point["threshold"]),
            "comment": "working point: SELECTED = DLA_PROB > WPPROB",
        },
        {
            "name": "WPVALPUR",
            "value": float(np.nan_to_num(point["validation_purity"], nan=-1.0)),
            "comment": "purity reached on validation (nature)",
        },
        {
            "name": "WPVALCOM",
            "value": float(np.nan_to_num(point["validation_completeness"], nan=-1.0)),
            "comment": "completeness reached on validation",
        },
        {"name": "MINNHI", "value": DLA_LOG_N, "comment": "a true DLA: log N_HI >= MINNHI"},
        {
            "name": "PRIORTRN",
            "value": float(chosen["prior_train"]),
            "comment": "windows with a DLA, training",
        },
        {
            "name": "PRIORNAT",
            "value": float(chosen["prior_natural"]),
            "comment": "windows with a DLA, nature",
        },
        {
            "name": "NHIERRA",
            "value": float(chosen["nhi_err"][0]),
            "comment": "NHI_ERR = sqrt(B^2 + (A spread)^2): A",
        },
        {"name": "NHIERRB", "value": float(chosen["nhi_err"][1]), "comment": "NHI_ERR: B [dex]"},
        {"name": "BALMETH", "value": record["bal_method"], "comment": "BAL handling (mask/negatives/none)"},
        {"name": "BALSRC", "value": "truth BAL column", "comment": "BAL flag source (no own classifier)"},
        {
            "name": "BALMARG",
            "value": float(record["bal_mask_margin_angstrom"]),
            "comment": "trough mask margin [A]",
        },
    ]
    for name, digest in sorted(record["model_sha256"].items()):
        key = {"location": "LOCHASH", "location_bal": "LBALHASH", "presence": "PREHASH"}.get(
            name, name[:8].upper()
        )
        cards.append({"name": key, "value": digest, "comment": f"sha256[:16] of models/{name}.pt"})
    return cards


def write_catalogue(path: str | Path, table: np.ndarray, header: list[dict[str, Any]]) -> None:
    """The catalogue as a FITS table (extension DLACAT), written atomically."""
    import fitsio

    from ..fileio import atomic_path

    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(table, extname=CATALOGUE_EXTNAME, header=header)


# --- the summary ---------------------------------------------------------------------------------


def _pm(value: float, interval: dict[str, Any] | None) -> str:
    """ "0.853 ± 0.031" (half the 68% interval), or the value alone."""
    if value is None or not np.isfinite(value):
        return "nan"
    if interval and interval.get("lo68") is not None and interval.get("hi68") is not None:
        return f"{value:.3f} ± {0.5 * (interval['hi68'] - interval['lo68']):.3f}"
    return f"{value:.3f}"


def summary_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary-table rows (:func:`.score.summary_table`'s columns) of the calibrated DLA catalogue:
    ECE before/after, the ladder of steps, the working point per S/N and log N_HI bin (strict and
    sub-DLA-neutral), NHI_ERR coverage, the BAL comparison on validation."""
    from .score import _row

    c = m["calibrated"]
    rows = []
    rel = c["reliability"]
    rows.append(
        _row(
            "dla_catalogue",
            "location",
            "ECE of DLA_PROB (per candidate, 10 bins)",
            rel["calibrated"]["ece"],
            m,
            f"network {rel['raw']['ece']:.3f} -> prior-corrected {rel['prior_corrected']['ece']:.3f} -> "
            f"calibrated {rel['calibrated']['ece']:.3f}",
        )
    )
    if "presence" in c:
        p = c["presence"]
        r = p["reliability"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                "ECE of the presence CNN (per segment, 10 bins)",
                r["calibrated"]["ece"],
                m,
                f"network {r['raw']['ece']:.3f} -> prior-corrected {r['prior_corrected']['ece']:.3f} -> "
                f"calibrated {r['calibrated']['ece']:.3f}",
            )
        )
        at = p["at_working_point"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"presence completeness at p > {p['working_point']['threshold']:.3g} (validation purity goal "
                f"{p['working_point']['purity_goal']:g})",
                at["completeness"],
                m,
                f"purity {_pm(at['purity'], at.get('purity_interval'))}; at p >= 0.5 (network): completeness "
                f"{p['at_p_0.5']['completeness']:.3f}, purity {p['at_p_0.5']['purity']:.3f}",
                at.get("completeness_interval"),
            )
        )
    for key, label in RUNGS:  # in the order of the steps (the JSON holds them sorted)
        g = c["ladder"][key]
        bal = g["false_on_bal"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per DLA completeness, {label}",
                g["completeness"],
                m,
                f"{g['n_found']}/{g['n_true']}",
                g.get("completeness_interval"),
            )
        )
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per DLA purity, {label}",
                g["purity"],
                m,
                f"{g['n_false']} false of {g['n_selected']} ({bal['on_bal_quasars']} on BAL quasars, "
                f"{bal['on_bal_troughs']} on BAL troughs)"
                + (f", {g['n_neutral']} neutral" if "n_neutral" in g else ""),
                g.get("purity_interval"),
            )
        )
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per sightline completeness, {label}",
                g["sightline_completeness"],
                m,
                f"purity {_pm(g['sightline_purity'], g.get('sightline_purity_interval'))} "
                f"({g['n_sightlines_flagged']} flagged, {g['n_sightlines_with_dla']} with a DLA)",
                g.get("sightline_completeness_interval"),
            )
        )
    for key in ("bal", "neutral"):
        g = c["ladder"][key]
        for group, what in (("by_snr", "S/N"), ("by_log_nhi", "log N_HI")):
            for name, b in g[group].items():
                rows.append(
                    _row(
                        "dla_catalogue",
                        "location",
                        f"working point{' (20.0-20.3 neutral)' if key == 'neutral' else ''}, "
                        f"{what} {name}: completeness",
                        b["completeness"],
                        m,
                        f"purity {_pm(b['purity'], b.get('purity_interval'))} ({b['n_found']}/{b['n_true']} found, "
                        f"{b['n_false']} false of {b['n_selected']}); per sightline "
                        f"{b['sightline_completeness']:.3f} / {b['sightline_purity']:.3f}",
                        b.get("completeness_interval"),
                    )
                )
    cov = c["nhi_err_coverage"]
    rows.append(
        _row(
            "dla_catalogue",
            "location",
            "NHI_ERR: share within 1 NHI_ERR (goal 0.68)",
            cov["within_1"],
            m,
            f"within 2: {cov['within_2']:.3f} (goal 0.95), n = {cov['n']}; NHI_ERR = sqrt({c['nhi_err'][1]:.3g}^2 + "
            f"({c['nhi_err'][0]:.3g} spread)^2)",
        )
    )
    for name in [v for v in VARIANTS if v in c["validation"]]:
        v = c["validation"][name]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"validation (nature's incidence) at the working point, BAL {name}"
                f"{' (chosen)' if name == c['bal_method'] else ''}: completeness",
                v["completeness"],
                m,
                f"purity {v['purity']:.3f}, DLA_PROB > {v['threshold']:.3g}, {v['false_on_bal_quasars']} false on "
                f"BAL quasars",
            )
        )
    return rows
