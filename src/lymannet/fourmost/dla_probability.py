"""DLA probabilities for nature's incidence (issue 25), the pieces the calibration and the
catalogue share: importance weights that bring the boosted validation split to nature's DLA
incidence, prior-corrected and calibrated probabilities (presence segments; a localiser
candidate's DLA_PROB from its votes' support, the presence CNN and S/N), and the working point for
a purity goal. The method, and why, in docs/fourmost.md ("A DLA catalogue a survey can use")."""

from __future__ import annotations
import logging
from typing import Any
import numpy as np
import pandas as pd
from ..calibration import apply_beta, fit_beta, prior_shift, reliability
from ..errors import ConfigError
from . import features as ft
from .absorption import dla_redshift_window
from .ingest import Ingested
from .simulate import DLA_LOG_N as SIM_DLA_LOG_N, complete_spec, expected_absorbers

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


def choose_working_point(
    score: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_true: float, purity: float
) -> dict[str, Any]:
    """The lowest threshold on `score` (a calibrated probability: DLA_PROB, the presence CNN's)
    whose selection has an expected purity >= `purity`: the weighted mean probability of the
    candidates above it. Why not the empirical purity curve (the line-finder's rule,
    :func:`lymannet.calibration.choose_threshold`): on the validation split reweighted to nature's
    incidence a false candidate weighs ~5x a true one (the split is boosted 5x in DLAs), so a
    handful of false ones at the top make that curve dip and its "stays >= goal" rule stick near
    1 (on the full size: completeness 0.22 at p > 0.92). The running mean of probabilities sorted
    downwards only falls, so the threshold is unique. The empirical weighted purity and
    completeness reached there are reported beside it."""
    score, correct, weights = np.asarray(score, float), np.asarray(correct, bool), np.asarray(weights, float)
    order = np.argsort(-score, kind="stable")
    s, w = score[order], weights[order]
    expected = np.cumsum(w * s) / np.maximum(np.cumsum(w), 1e-300)
    k = int(np.sum(expected >= purity))  # the top k candidates keep the expected purity
    if k == 0:
        log.warning("working point purity %.2f not reached: no candidate is that probable", purity)
    threshold = float(s[k]) if k < len(s) else float(np.nextafter(s[-1], -np.inf)) if len(s) else 1.0
    selected = score > threshold
    good = float(np.sum(weights * (selected & correct)))
    chosen = float(np.sum(weights * selected))
    return {
        "purity_goal": float(purity),
        "rule": "expected purity (mean calibrated probability above the threshold)",
        "threshold": threshold,
        "expected_purity": float(expected[k - 1]) if k > 0 else float("nan"),
        "validation_purity": good / chosen if chosen > 0 else float("nan"),
        "validation_completeness": good / n_true if n_true > 0 else float("nan"),
    }
