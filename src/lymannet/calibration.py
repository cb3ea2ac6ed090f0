"""Calibrated probabilities, a working point and redshift errors, all fitted on a validation split.

A network's CONFIDENCE (the best line's box confidence) is no probability: its scale differs from
one network to the next, so no fixed c_th is a working point. After training, rule `calibrate`
runs the network over its own validation split (never a test set) and stores in the model file:

- **PROB** = P(a true target whose redshift is correct, |dz| < score.dz_max), by *beta calibration*
  (Kull, Silva Filho & Flach 2017): logit PROB = a ln c - b ln(1 - c) + m with a, b >= 0, where c
  is the detection score (the ``min_lines``-th largest line confidence, the number IS_<CLASS>
  thresholds). Why beta: the line finder's sigmoids pile confidences up at 0 and 1, where
  temperature (Platt) scaling on logit c has one slope for both ends and under-corrects one; beta
  calibration fits each end with its own exponent, stays monotonic (so a cut on PROB is a cut on
  CONFIDENCE), has three parameters (stable on a few thousand validation spectra, where isotonic
  regression's steps are noisy) and contains the identity (a = b = 1, m = 0).
- **Prior correction**: a survey does not have the validation split's target fraction pi_v. With a
  stated fraction pi_s the probability's odds are multiplied by [pi_s / (1 - pi_s)] / [pi_v / (1 - pi_v)]
  (Bayes; the classes' likelihoods are what the network learned, only the prior changes).
- **A working point**: the lowest threshold whose purity on the validation split (reweighted to a
  stated target fraction when one is given) reaches the asked purity (or efficiency), stored as a
  threshold on CONFIDENCE and on PROB, with the validation counts per threshold so that it can be
  chosen again for another class mix without the validation data.
- **ZERR** = (1 + z) sqrt(b^2 + (a s)^2), s the confidence-weighted spread of the other confident
  lines' redshifts around Z (0 when only one line is seen): one line alone pins z to its box
  offset's precision (b), several lines that disagree widen it. a and b are chosen on the
  validation split so that 68% of the correct detections have |dz| < ZERR, both among those whose
  lines agree and among those whose lines disagree; the share within 2 ZERR is measured.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

log = logging.getLogger("lymannet.calibration")

CALIBRATION_FORMAT = "lymannet-calibration-1"
N_ECE_BINS = 10  # equal-count bins of the expected calibration error
CLIP = 1e-7  # confidences are clipped into [CLIP, 1 - CLIP] before their logarithms
CONFIDENT_LINE = 0.5  # a line counts towards the redshift spread above this confidence
MIN_WP_DETECTIONS = 20  # a working point needs at least this many validation detections


# --------------------------------------------------------------------------- probability


def _beta_features(confidence: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(confidence, float), CLIP, 1.0 - CLIP)
    return np.column_stack([np.log(c), -np.log1p(-c)])


def _logistic_fit(
    features: np.ndarray,
    outcome: np.ndarray,
    ridge: float = 1e-4,
    iterations: int = 100,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Weights (..., intercept) of a logistic regression by Newton's method; a tiny ridge keeps a
    perfectly separated validation set from sending the weights to infinity. ``sample_weight``
    (default 1 each): importance weights of the examples, e.g. a validation split reweighted to
    another class mix (lymannet.fourmost.dla_calibration)."""
    design = np.column_stack([features, np.ones(len(features))])
    sw = np.ones(len(design)) if sample_weight is None else np.asarray(sample_weight, float)
    weights = np.zeros(design.shape[1])
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -35.0, 35.0)))
        gradient = design.T @ (sw * (p - outcome)) + penalty @ weights
        hessian = (design * (sw * p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(len(weights))
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return weights


def fit_logistic(
    features: np.ndarray, outcome: np.ndarray, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Weights (one per feature column, then the intercept) of a (weighted) logistic regression:
    the Newton fit beta calibration uses, for a probability of several scores at once."""
    return _logistic_fit(np.asarray(features, float), np.asarray(outcome, float), sample_weight=sample_weight)


def fit_beta(
    confidence: np.ndarray, outcome: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(a, b, m) of beta calibration with a, b >= 0 (a feature whose weight comes out negative is
    dropped and the rest refitted, as Kull et al. do), so PROB is non-decreasing in c.
    ``sample_weight``: optional importance weights of the validation examples."""
    outcome = np.asarray(outcome, float)
    if outcome.min(initial=1) == outcome.max(initial=0):
        raise ConfigError(
            "calibration needs both outcomes in the validation split (targets with a correct "
            "redshift and others)"
        )
    features = _beta_features(confidence)
    a, b, m = _logistic_fit(features, outcome, sample_weight=sample_weight)
    if a < 0 or b < 0:
        keep = 0 if a >= b else 1
        weight, m = _logistic_fit(features[:, [keep]], outcome, sample_weight=sample_weight)
        a, b = (max(weight, 0.0), 0.0) if keep == 0 else (0.0, max(weight, 0.0))
    return float(a), float(b), float(m)


def apply_beta(confidence: np.ndarray, coefficients: tuple[float, float, float]) -> np.ndarray:
    a, b, m = coefficients
    features = _beta_features(confidence)
    return 1.0 / (1.0 + np.exp(-np.clip(a * features[:, 0] + b * features[:, 1] + m, -35.0, 35.0)))


def prior_shift(probability: np.ndarray, from_fraction: float, to_fraction: float) -> np.ndarray:
    """Bayes' odds correction of a calibrated probability from one target fraction to another."""
    for fraction in (from_fraction, to_fraction):
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"a target fraction must be in (0, 1), not {fraction}")
    p = np.clip(np.asarray(probability, float), 1e-12, 1 - 1e-12)
    ratio = (to_fraction / (1 - to_fraction)) / (from_fraction / (1 - from_fraction))
    odds = p / (1 - p) * ratio
    return odds / (1 + odds)


def reliability(
    probability: np.ndarray,
    outcome: np.ndarray,
    n_bins: int = N_ECE_BINS,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Equal-count bins of the probability: mean probability, observed frequency, counts; and the
    expected calibration error ECE = sum_bins n_b / N |frequency_b - mean probability_b|. With
    ``sample_weight`` (importance weights) the means, frequencies and bin shares are weighted and
    the bins hold equal weight (counts stay the examples per bin)."""
    probability, outcome = np.asarray(probability, float), np.asarray(outcome, float)
    sw = np.ones(len(probability)) if sample_weight is None else np.asarray(sample_weight, float)
    finite = np.isfinite(probability)
    probability, outcome, sw = probability[finite], outcome[finite], sw[finite]
    if len(probability) == 0:
        return {"ece": float("nan"), "mean_probability": [], "frequency": [], "count": []}
    order = np.argsort(probability, kind="stable")
    if sample_weight is None:
        bins = [b for b in np.array_split(order, min(n_bins, len(order))) if len(b)]
    else:  # equal-weight bins: cut the cumulative weight into n_bins equal parts
        cumulative = np.cumsum(sw[order]) / max(sw.sum(), 1e-300)
        which = np.minimum((cumulative * n_bins - 1e-9).astype(int), n_bins - 1)
        bins = [b for b in (order[which == k] for k in range(n_bins)) if len(b) and sw[b].sum() > 0]
    mean_p = np.array([np.average(probability[b], weights=sw[b]) for b in bins])
    frequency = np.array([np.average(outcome[b], weights=sw[b]) for b in bins])
    count = np.array([len(b) for b in bins])
    share = np.array([sw[b].sum() for b in bins])
    ece = float(np.sum(share / share.sum() * np.abs(frequency - mean_p)))
    return {
        "ece": ece,
        "mean_probability": mean_p.tolist(),
        "frequency": frequency.tolist(),
        "count": count.tolist(),
    }


# --------------------------------------------------------------------------- working point


@dataclass
class ValidationCounts:
    """Per threshold on the detection score: detections that are good (target, correct z), target
    detections (good or with a wrong z), contaminant detections; and the class totals."""

    thresholds: np.ndarray
    good: np.ndarray
    target: np.ndarray
    contaminant: np.ndarray
    n_targets: int
    n_contaminants: int

    @classmethod
    def measure(cls, score: np.ndarray, is_target: np.ndarray, is_good: np.ndarray) -> "ValidationCounts":
        score = np.asarray(score, float)
        thresholds = np.unique(np.concatenate([[0.0], np.quantile(score, np.linspace(0, 1, 401)), [1.0]]))

        def above(mask: np.ndarray) -> np.ndarray:
            values = np.sort(score[mask])
            return len(values) - np.searchsorted(values, thresholds, side="right")

        return cls(
            thresholds,
            above(is_good),
            above(is_target),
            above(~is_target),
            int(is_target.sum()),
            int((~is_target).sum()),
        )

    def purity_efficiency(self, target_fraction: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Purity and efficiency per threshold; with a target fraction, targets and contaminants
        are reweighted to that class mix (efficiency does not depend on it)."""
        w_target, w_contaminant = 1.0, 1.0
        if target_fraction is not None:
            w_target = target_fraction / max(self.n_targets, 1)
            w_contaminant = (1 - target_fraction) / max(self.n_contaminants, 1)
        detected = w_target * self.target + w_contaminant * self.contaminant
        with np.errstate(invalid="ignore", divide="ignore"):
            purity = np.where(detected > 0, w_target * self.good / detected, np.nan)
        efficiency = self.good / max(self.n_targets, 1)
        return purity, efficiency

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValidationCounts":
        return cls(**{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in data.items()})


def choose_threshold(
    counts: ValidationCounts, working_point: dict[str, float], target_fraction: float | None = None
) -> float:
    """The detection-score threshold of a working point: for {purity: P} the lowest threshold from
    which purity stays >= P (the most efficient cut that keeps the purity asked for), for
    {efficiency: E} the highest threshold whose efficiency is still >= E."""
    if len(working_point) != 1 or next(iter(working_point)) not in ("purity", "efficiency"):
        raise ConfigError(f"working_point must be {{purity: P}} or {{efficiency: E}}, not {working_point}")
    ((kind, goal),) = working_point.items()
    purity, efficiency = counts.purity_efficiency(target_fraction)
    enough = (counts.target + counts.contaminant) >= MIN_WP_DETECTIONS
    if kind == "efficiency":
        ok = np.flatnonzero(efficiency >= goal)
        return float(counts.thresholds[ok[-1]]) if len(ok) else float(counts.thresholds[0])
    failing = np.flatnonzero(enough & ~(purity >= goal))
    start = failing[-1] + 1 if len(failing) else 0
    if start >= len(counts.thresholds) or not enough[start]:
        # Never reached with enough detections: the purest cut that still has them.
        usable = np.flatnonzero(enough)
        best = usable[np.nanargmax(purity[usable])] if len(usable) else len(counts.thresholds) - 1
        log.warning(
            "working point %s not reached on the validation split (best purity %.3f): using c >= %.4f",
            working_point,
            float(np.nan_to_num(purity[best])),
            counts.thresholds[best],
        )
        return float(counts.thresholds[best])
    return float(counts.thresholds[start])


# --------------------------------------------------------------------------- redshift errors


def line_spread(c_line: np.ndarray, z_line: np.ndarray, best_line: np.ndarray) -> np.ndarray:
    """Confidence-weighted rms of the confident lines' redshifts about the best line's (0 when no
    other line is confident)."""
    c_line, z_line = np.asarray(c_line, float), np.asarray(z_line, float)
    rows = np.arange(len(c_line))
    z_best = z_line[rows, best_line]
    weight = np.where(c_line > CONFIDENT_LINE, c_line, 0.0)
    weight[rows, best_line] = 0.0
    with np.errstate(invalid="ignore"):
        deviation = np.nan_to_num((z_line - z_best[:, None]) ** 2)
    total = weight.sum(axis=1)
    return np.sqrt(
        np.divide((weight * deviation).sum(axis=1), total, out=np.zeros(len(rows)), where=total > 0)
    )


def redshift_error(z_pred: np.ndarray, spread: np.ndarray, coefficients: tuple[float, float]) -> np.ndarray:
    a, b = coefficients
    return (1.0 + np.asarray(z_pred, float)) * np.sqrt(b**2 + (a * np.asarray(spread, float)) ** 2)


def fit_redshift_error(z_pred: np.ndarray, dz: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """(a, b) such that 68% of |dz| < ZERR in each half of the detections split at the median line
    spread: b from the half whose lines agree best (or only one line is seen), a from the other.
    Calibrating each half, not only the whole, keeps ZERR from trading single-line objects
    against multi-line ones; the 95% coverage at 2 ZERR is then measured, not fitted."""
    dz_scaled = np.abs(np.asarray(dz, float)) / (1.0 + np.asarray(z_pred, float))
    spread = np.asarray(spread, float)
    if len(dz_scaled) < 10:
        raise ConfigError(
            f"ZERR needs at least 10 correctly detected validation targets, got {len(dz_scaled)}"
        )
    agree = spread <= np.median(spread)
    if agree.all() or (~agree).sum() < 5:
        return 0.0, _scale_for_coverage(dz_scaled, np.zeros_like(dz_scaled), np.ones_like(dz_scaled), 0.68)
    # b alone covers the agreeing half (its spread term ignored: b never collapses to 0, which
    # would give a single-line object no error at all), then a covers the other half given b.
    # Then one common factor brings the whole split back to 68% (b alone over-covers a little).
    b = float(np.quantile(dz_scaled[agree], 0.68))
    a = _scale_for_coverage(dz_scaled[~agree], np.full((~agree).sum(), b**2), spread[~agree] ** 2, 0.68)
    k = _scale_for_coverage(dz_scaled, np.zeros_like(dz_scaled), b**2 + (a * spread) ** 2, 0.68)
    return float(k * a), float(k * b)


def _scale_for_coverage(
    dz_scaled: np.ndarray, fixed: np.ndarray, per_unit: np.ndarray, coverage: float
) -> float:
    """The k >= 0 at which the share of dz_scaled < sqrt(fixed + k^2 per_unit) is `coverage`
    (bisection: the share grows with k)."""
    low, high = 0.0, 1.0
    while np.mean(dz_scaled < np.sqrt(fixed + high**2 * per_unit)) < coverage and high < 1e6:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if np.mean(dz_scaled < np.sqrt(fixed + middle**2 * per_unit)) < coverage:
            low = middle
        else:
            high = middle
    return high


def zerr_coverage(dz: np.ndarray, zerr: np.ndarray) -> dict[str, float]:
    dz, zerr = np.abs(np.asarray(dz, float)), np.asarray(zerr, float)
    n = len(dz)
    return {
        "n": int(n),
        "within_1": float(np.mean(dz < zerr)) if n else float("nan"),
        "within_2": float(np.mean(dz < 2 * zerr)) if n else float("nan"),
    }


# --------------------------------------------------------------------------- the whole record


@dataclass
class Calibration:
    """What `calibrate` stores in the model file (key ``calibration``)."""

    beta: tuple[float, float, float]
    target_fraction: float  # of the validation split: the prior PROB refers to
    min_lines: int
    dz_max: float
    dv_max_kms: float | None
    working_point: dict[str, float]
    threshold: float  # on the detection score (CONFIDENCE with min_lines 1)
    threshold_prob: float  # the same cut on PROB
    zerr: tuple[float, float]
    counts: ValidationCounts
    validation: dict[str, Any] = field(default_factory=dict)  # sizes, ECE, coverage on the split
    format: str = CALIBRATION_FORMAT

    def probability(self, score: np.ndarray, target_fraction: float | None = None) -> np.ndarray:
        prob = apply_beta(score, self.beta)
        if target_fraction is not None:
            prob = prior_shift(prob, self.target_fraction, target_fraction)
        return prob

    def threshold_for(
        self, target_fraction: float | None = None, working_point: dict[str, float] | None = None
    ) -> float:
        """The detection-score cut of the working point (this one, or another), for the stated
        class mix (None: the validation split's)."""
        if target_fraction is None and working_point is None:
            return self.threshold
        return choose_threshold(self.counts, working_point or self.working_point, target_fraction)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["counts"] = self.counts.to_dict()
        return record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        data = dict(data)
        if data.get("format") != CALIBRATION_FORMAT:
            raise ConfigError(f"unknown calibration format {data.get('format')!r}")
        data["counts"] = ValidationCounts.from_dict(data["counts"])
        data["beta"], data["zerr"] = tuple(data["beta"]), tuple(data["zerr"])
        return cls(**data)


def fit_calibration(
    score: np.ndarray,
    is_target: np.ndarray,
    is_good: np.ndarray,
    z_pred: np.ndarray,
    z_true: np.ndarray,
    spread: np.ndarray,
    working_point: dict[str, float],
    min_lines: int,
    dz_max: float,
    dv_max_kms: float | None = None,
) -> Calibration:
    """Everything `calibrate` fits, from the validation split's predictions."""
    is_target, is_good = np.asarray(is_target, bool), np.asarray(is_good, bool)
    warnings = []
    if 0 < is_good.sum() < len(is_good):
        beta = fit_beta(score, is_good)
    else:  # a network that never (or always) gets it right: nothing to fit, CONFIDENCE as it is
        beta = (1.0, 1.0, 0.0)
        warnings.append(
            f"{int(is_good.sum())} of {len(is_good)} validation spectra are targets with a correct "
            "redshift: PROB is the uncalibrated CONFIDENCE"
        )
    counts = ValidationCounts.measure(score, is_target, is_good)
    threshold = choose_threshold(counts, working_point)
    detected_good = is_good & (np.asarray(score) > threshold)
    if detected_good.sum() < 10:  # too few at a strict working point: every correct detection
        detected_good = is_good & (np.asarray(score) > 0.5)
    dz = np.asarray(z_pred, float) - np.asarray(z_true, float)
    if detected_good.sum() >= 10:
        zerr = fit_redshift_error(np.asarray(z_pred)[detected_good], dz[detected_good], spread[detected_good])
    else:  # a barely trained network: ZERR is half the correct-redshift tolerance, said so
        zerr = (0.0, dz_max / 2 / (1 + float(np.median(z_pred))) if len(z_pred) else dz_max / 2)
        warnings.append(
            f"only {int(detected_good.sum())} correct validation detections: ZERR not fitted "
            f"(half of dz_max)"
        )
    for warning in warnings:
        log.warning("calibration: %s", warning)
    prob = apply_beta(score, beta)
    coverage = zerr_coverage(
        dz[detected_good], redshift_error(np.asarray(z_pred)[detected_good], spread[detected_good], zerr)
    )
    purity, efficiency = counts.purity_efficiency()
    at = int(np.searchsorted(counts.thresholds, threshold))
    validation = {
        "n_spectra": int(len(score)),
        "n_targets": int(is_target.sum()),
        "n_good": int(is_good.sum()),
        "ece_before": reliability(score, is_good)["ece"],
        "ece_after": reliability(prob, is_good)["ece"],
        "purity_at_working_point": float(purity[at]),
        "efficiency_at_working_point": float(efficiency[at]),
        "zerr_coverage": coverage,
        "warnings": warnings,
    }
    return Calibration(
        beta=beta,
        target_fraction=float(is_target.mean()),
        min_lines=min_lines,
        dz_max=dz_max,
        dv_max_kms=dv_max_kms,
        working_point=dict(working_point),
        threshold=threshold,
        threshold_prob=float(apply_beta(np.array([threshold]), beta)[0]),
        zerr=zerr,
        counts=counts,
        validation=validation,
    )


def detection_score(c_line: np.ndarray, votes: np.ndarray, min_lines: int) -> np.ndarray:
    """The number IS_<CLASS> thresholds: the min_lines-th largest confidence of the voting lines."""
    from .metrics import kth_confidence

    return kth_confidence(np.asarray(c_line, float)[:, votes], min_lines)


def object_columns(
    calibration: Calibration,
    c_line: np.ndarray,
    z_line: np.ndarray,
    votes: np.ndarray,
    z_pred: np.ndarray,
    target_fraction: float | None = None,
) -> dict[str, np.ndarray]:
    """PROB and ZERR of each spectrum (a catalogue's columns), from its line outputs."""
    c_vote, z_vote = np.asarray(c_line, float)[:, votes], np.asarray(z_line, float)[:, votes]
    score = detection_score(c_line, votes, calibration.min_lines)
    best = c_vote.argmax(axis=1) if len(c_vote) else np.zeros(0, np.int64)
    spread = line_spread(c_vote, z_vote, best)
    return {
        "PROB": calibration.probability(score, target_fraction).astype(np.float32),
        "ZERR": redshift_error(z_pred, spread, calibration.zerr).astype(np.float32),
    }


def header_cards(
    calibration: Calibration | None,
    threshold: float | None = None,
    target_fraction: float | None = None,
    working_point: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Header cards of a calibrated model's catalogue: the working point (the model's, or the one
    asked for instead) and the class mix PROB is for."""
    if calibration is None:
        return [{"name": "CALIB", "value": False, "comment": "uncalibrated: no PROB, ZERR or working point"}]
    ((kind, goal),) = (working_point or calibration.working_point).items()
    threshold = calibration.threshold if threshold is None else threshold
    cards = [
        {"name": "CALIB", "value": True, "comment": "PROB calibrated on the validation split"},
        {"name": "CALMETH", "value": "beta", "comment": "calibration method (lymannet.calibration)"},
        {"name": "WPKIND", "value": kind, "comment": "working point: purity or efficiency"},
        {"name": "WPGOAL", "value": float(goal), "comment": "working point goal on validation"},
        {"name": "WPCTH", "value": float(threshold), "comment": "working point: detection score cut"},
        {
            "name": "WPPROB",
            "value": float(calibration.probability(np.array([threshold]), target_fraction)[0]),
            "comment": "working point as a cut on PROB",
        },
        {
            "name": "PRIORVAL",
            "value": float(calibration.target_fraction),
            "comment": "target fraction of validation",
        },
        {
            "name": "CALMINL",
            "value": int(calibration.min_lines),
            "comment": "min_lines of the detection score",
        },
    ]
    if target_fraction is not None:
        cards.append(
            {"name": "PRIORSRV", "value": float(target_fraction), "comment": "stated survey target fraction"}
        )
    return cards
