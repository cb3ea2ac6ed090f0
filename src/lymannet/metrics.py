"""Purity / efficiency of a line-finder classifier, as a function of the confidence threshold.

Definitions (standard ones, as in QuasarNET, Busca & Balland 2018). For a confidence threshold
c_th, a spectrum is *detected* when at least ``min_lines`` of its line confidences exceed c_th
(strictly). A redshift is *correct* when |z_pred - z_true| < dz_max (default 0.05, thesis section
2.3) or, if a velocity is given, when |dz| / (1 + z_true) * c < dv_max_kms. Then

- purity     = (true targets detected with a correct redshift) / (all detected spectra)
- efficiency = (true targets detected with a correct redshift) / (all true targets)

Efficiency is also called completeness (recall); purity is the precision. NB: the text of the
thesis (section 2.3) swaps the two names; its figures and scores follow the definitions above.

The *score* of a model on a test set is the value where the purity and efficiency curves cross
(thesis section 5.1, table 5.1). Since both share the numerator, P - E has the sign of
(n_targets - n_detected): the crossing is where as many spectra are detected as there are true
targets, so it is unique. It is searched on the exact curve: the configured threshold grid plus
every distinct confidence inside it (where the curve steps), so a well-separated model whose
crossing lies between two grid points (say in (0.995, 1]) still gets its score. It is found by
linear interpolation between the two points that bracket the sign change, or exactly at a point
where P == E.

*Chance level*: the P = E score of a random guess under the same rules, redshift rule included.
The guess detects each spectrum with probability p whatever its class (a random confidence) and
gives it a redshift drawn from the training split's N(z) (the redshifts of its targets). A true
target i detected so counts as good with probability q_i = P(|z_drawn - z_i| < dz_max), counted
exactly on the training redshifts (:func:`redshift_hit_probability`). Then purity = f q and
efficiency = p q, with f the test set's target fraction and q the mean of q_i over its targets:
they cross at p = f, and the chance level is f q (:func:`chance_score`). Crediting the guess with
the correct redshift of every target it detects (q = 1) gives the *classification-only chance*
f, the test set's target fraction, which is also reported ("chance_classification"). Without a
training split (the template-fit baseline, which trains on nothing) the N(z) is the test set's
own targets, each target's own redshift left out. A score means something only against the chance
level: the *skill* (score - chance) / (1 - chance) is 0 for a random guess and 1 for a perfect
classifier, comparable across test sets whose target fractions and redshift ranges differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError
from .lines import Line, line_votes

C_LIGHT_KMS = 299_792.458
CURVE_QUANTILES = 200  # saved curves add this many quantiles of the confidences to the grid


# The detection threshold c_th on the line confidences (thesis section 2.3) where nothing else sets
# it: config score.c_th, uncalibrated weights in `classify`. One default for the whole package.
DEFAULT_C_TH = 0.5


@dataclass(frozen=True)
class ScoreOptions:
    """The config's ``score:`` slice, with its defaults."""

    dz_max: float = 0.05
    dv_max_kms: float | None = None
    target_class: str = "LBG"
    thresholds: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 201))
    min_lines: int = 1
    c_th: float = DEFAULT_C_TH
    n_resamples: int = 1000  # bootstrap resamples of the test objects for the intervals (lymannet.bootstrap)
    bootstrap_seed: int = 0

    @classmethod
    def from_config(cls, score: dict[str, Any] | None) -> "ScoreOptions":
        score = dict(score or {})
        grid = score.get("threshold_grid", {"start": 0.0, "stop": 1.0, "n": 201})
        options = cls(
            dz_max=float(score.get("dz_max", 0.05)),
            dv_max_kms=None if score.get("dv_max_kms") is None else float(score["dv_max_kms"]),
            target_class=str(score.get("target_class", "LBG")),
            thresholds=tuple(threshold_grid(grid)),
            min_lines=int(score.get("min_lines", 1)),
            c_th=float(score.get("c_th", DEFAULT_C_TH)),
            n_resamples=int((score.get("bootstrap") or {}).get("n_resamples", 1000)),
            bootstrap_seed=int((score.get("bootstrap") or {}).get("seed", 0)),
        )
        if options.n_resamples < 0:
            raise ConfigError(f"score.bootstrap.n_resamples must be >= 0, not {options.n_resamples}")
        if options.min_lines < 1:
            raise ConfigError(f"score.min_lines must be >= 1, not {options.min_lines}")
        if options.dz_max <= 0 or (options.dv_max_kms is not None and options.dv_max_kms <= 0):
            raise ConfigError("score.dz_max and score.dv_max_kms must be positive")
        return options

    @property
    def correct_redshift_rule(self) -> str:
        """Human-readable rule, for captions and JSON."""
        if self.dv_max_kms is not None:
            return f"|dz|/(1+z) * c < {self.dv_max_kms:g} km/s"
        return f"|dz| < {self.dz_max:g}"


def threshold_grid(spec: dict[str, Any]) -> np.ndarray:
    """Thresholds from the config's ``{start, stop, n}`` (inclusive ends)."""
    start, stop, n = float(spec.get("start", 0.0)), float(spec.get("stop", 1.0)), int(spec.get("n", 201))
    if n < 2 or stop <= start:
        raise ConfigError(f"score.threshold_grid needs n >= 2 and stop > start, got {spec}")
    return np.linspace(start, stop, n)


def correct_redshift(
    z_pred: np.ndarray, z_true: np.ndarray, dz_max: float = 0.05, dv_max_kms: float | None = None
) -> np.ndarray:
    """True where the predicted redshift is within tolerance (NaN anywhere -> False)."""
    z_pred, z_true = np.asarray(z_pred, float), np.asarray(z_true, float)
    dz = np.abs(z_pred - z_true)
    with np.errstate(invalid="ignore"):
        if dv_max_kms is not None:
            return dz / (1.0 + z_true) * C_LIGHT_KMS < dv_max_kms
        return dz < dz_max


def kth_confidence(c_line: np.ndarray, min_lines: int = 1) -> np.ndarray:
    """The ``min_lines``-th largest line confidence of each spectrum.

    A spectrum has at least ``min_lines`` confidences > c_th exactly when this value is > c_th,
    which turns the whole threshold scan into one sort.
    """
    c_line = np.asarray(c_line, float)
    if c_line.ndim != 2:
        raise ValueError(f"c_line must be (N, n_lines), got shape {c_line.shape}")
    if not 1 <= min_lines <= c_line.shape[1]:
        raise ConfigError(f"min_lines = {min_lines} but the model has {c_line.shape[1]} lines")
    return np.sort(c_line, axis=1)[:, -min_lines]


def is_detected(
    c_line: np.ndarray, threshold: float, min_lines: int = 1, lines: Sequence[Line] | None = None
) -> np.ndarray:
    """The class decision (QuasarNET's): at least ``min_lines`` line confidences strictly above
    ``threshold``. Given the lines of the columns, BAL heads do not count (DESI's afterburner counts
    the lines of QuasarNP's process_preds c_line, which holds no BAL head)."""
    c_line = np.asarray(c_line, float)
    if lines is not None:
        c_line = c_line[:, line_votes(lines)]
    return kth_confidence(c_line, min_lines) > threshold


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (undefined, not 0/0 warnings)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def purity_efficiency_curve(
    c_line: np.ndarray,
    is_target: np.ndarray,
    is_correct: np.ndarray,
    thresholds: np.ndarray,
    min_lines: int = 1,
) -> pd.DataFrame:
    """Purity and efficiency at each threshold.

    Returns one row per threshold: THRESHOLD, N_DETECTED, N_GOOD (true targets detected with a
    correct redshift), N_TARGETS, PURITY (NaN when nothing is detected), EFFICIENCY (NaN when the
    test set has no target).
    """
    thresholds = np.asarray(thresholds, float)
    kth = kth_confidence(c_line, min_lines)
    good = np.asarray(is_target, bool) & np.asarray(is_correct, bool)
    n_detected = _count_above(kth, thresholds)
    n_good = _count_above(kth[good], thresholds)
    n_targets = int(np.count_nonzero(is_target))
    return pd.DataFrame(
        {
            "THRESHOLD": thresholds,
            "N_DETECTED": n_detected,
            "N_GOOD": n_good,
            "N_TARGETS": np.full(len(thresholds), n_targets),
            "PURITY": _ratio(n_good, n_detected),
            "EFFICIENCY": _ratio(n_good, np.full(len(thresholds), n_targets)),
        }
    )


def exact_thresholds(c_line: np.ndarray, thresholds: np.ndarray, min_lines: int = 1) -> np.ndarray:
    """The threshold grid plus every distinct ``min_lines``-th confidence inside its range: the
    points where the purity/efficiency curve steps, so that no crossing falls between grid points."""
    thresholds = np.asarray(thresholds, float)
    kth = kth_confidence(c_line, min_lines)
    inside = kth[(kth >= thresholds.min()) & (kth <= thresholds.max())]
    return np.union1d(thresholds, inside)


def curve_thresholds(c_line: np.ndarray, thresholds: np.ndarray, min_lines: int = 1) -> np.ndarray:
    """The grid plus CURVE_QUANTILES quantiles of the confidences inside its range: a saved curve
    of bounded size that still resolves where the confidences pile up (often just below 1)."""
    thresholds = np.asarray(thresholds, float)
    kth = kth_confidence(c_line, min_lines)
    inside = kth[(kth >= thresholds.min()) & (kth <= thresholds.max())]
    if not inside.size:
        return thresholds
    # method="lower": quantiles that are confidences themselves, i.e. points where the curve steps
    return np.union1d(thresholds, np.quantile(inside, np.linspace(0, 1, CURVE_QUANTILES), method="lower"))


def _count_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly greater than each threshold."""
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side="right")


@dataclass(frozen=True)
class Crossing:
    score: float  # purity = efficiency there (NaN when undefined)
    threshold: float  # c_th of the crossing (NaN when undefined)
    exact: bool  # True when the crossing is on a grid point
    note: str  # why the score is NaN, or "" when it is defined


def pe_crossing(curve: pd.DataFrame) -> Crossing:
    """Where purity = efficiency along a curve from :func:`purity_efficiency_curve`.

    Points with an undefined purity or efficiency are ignored. The first grid point where P == E
    exactly wins (on a plateau, the lowest threshold); otherwise the first pair of consecutive
    defined points where P - E changes sign is interpolated linearly.
    """
    defined = curve.dropna(subset=["PURITY", "EFFICIENCY"])
    if curve["EFFICIENCY"].isna().all():
        return Crossing(np.nan, np.nan, False, "efficiency undefined: the test set has no true target")
    if defined.empty:
        return Crossing(np.nan, np.nan, False, "purity undefined at every threshold: nothing detected")
    c_th = defined["THRESHOLD"].to_numpy()
    purity, efficiency = defined["PURITY"].to_numpy(), defined["EFFICIENCY"].to_numpy()
    diff = purity - efficiency
    exact = np.flatnonzero(diff == 0)
    change = np.flatnonzero(np.sign(diff[:-1]) * np.sign(diff[1:]) < 0)
    if exact.size and (not change.size or exact[0] <= change[0]):
        i = exact[0]
        return Crossing(float(purity[i]), float(c_th[i]), True, "")
    if not change.size:
        side = "above" if diff[0] > 0 else "below"
        return Crossing(
            np.nan, np.nan, False, f"no crossing over the threshold range: purity stays {side} efficiency"
        )
    i = change[0]
    t = diff[i] / (diff[i] - diff[i + 1])
    score = purity[i] + t * (purity[i + 1] - purity[i])
    return Crossing(float(score), float(c_th[i] + t * (c_th[i + 1] - c_th[i])), False, "")


def purity_efficiency_at(
    c_line: np.ndarray, is_target: np.ndarray, is_correct: np.ndarray, threshold: float, min_lines: int = 1
) -> tuple[float, float]:
    """(purity, efficiency) at one threshold (NaN where undefined)."""
    curve = purity_efficiency_curve(c_line, is_target, is_correct, np.array([threshold]), min_lines)
    return float(curve["PURITY"].iloc[0]), float(curve["EFFICIENCY"].iloc[0])


def binned_efficiency(values: np.ndarray, is_good: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    """Efficiency (fraction of ``is_good``) of true targets in bins of ``values``.

    Returns CENTER, LOW, HIGH, N, EFFICIENCY (NaN for empty bins) and ERROR, the binomial standard
    error sqrt(e(1-e)/n) (0 when e is 0 or 1: small bins then look more certain than they are).
    """
    values, is_good = np.asarray(values, float), np.asarray(is_good, bool)
    edges = np.asarray(edges, float)
    index = np.digitize(values, edges) - 1
    inside = (index >= 0) & (index < len(edges) - 1)
    n = np.bincount(index[inside], minlength=len(edges) - 1)
    n_good = np.bincount(index[inside], weights=is_good[inside].astype(float), minlength=len(edges) - 1)
    efficiency = _ratio(n_good, n)
    with np.errstate(invalid="ignore"):
        error = np.sqrt(efficiency * (1 - efficiency) / np.where(n > 0, n, np.nan))
    return pd.DataFrame(
        {
            "CENTER": 0.5 * (edges[:-1] + edges[1:]),
            "LOW": edges[:-1],
            "HIGH": edges[1:],
            "N": n,
            "EFFICIENCY": efficiency,
            "ERROR": error,
        }
    )


def best_line_counts(c_line: np.ndarray, line_names: list[str]) -> pd.DataFrame:
    """How often each line has the highest and the second-highest confidence (thesis fig 6.1).

    Ties are broken towards the line listed first (a stable sort), like numpy.argmax.
    """
    c_line = np.asarray(c_line, float)
    order = np.argsort(-c_line, axis=1, kind="stable")
    n_lines = c_line.shape[1]
    first = np.bincount(order[:, 0], minlength=n_lines) if len(c_line) else np.zeros(n_lines, int)
    second = (
        np.bincount(order[:, 1], minlength=n_lines) if len(c_line) and n_lines > 1 else np.zeros(n_lines, int)
    )
    return pd.DataFrame({"LINE": list(line_names), "N_FIRST": first, "N_SECOND": second})


def redshift_summary(z_pred: np.ndarray, z_true: np.ndarray, dz_max: float = 0.05) -> dict[str, float]:
    """Redshift accuracy of true targets: catastrophic fraction, median |dz|, NMAD of dz/(1+z)."""
    z_pred, z_true = np.asarray(z_pred, float), np.asarray(z_true, float)
    if not len(z_true):
        return {"n": 0, "frac_catastrophic": np.nan, "median_abs_dz": np.nan, "sigma_nmad": np.nan}
    dz = z_pred - z_true
    return {
        "n": int(len(z_true)),
        "frac_catastrophic": float(np.mean(np.abs(dz) > dz_max)),
        "median_abs_dz": float(np.median(np.abs(dz))),
        "sigma_nmad": nmad(dz / (1 + z_true)),
    }


def nmad(x: np.ndarray) -> float:
    """Normalised median absolute deviation, a robust sigma: 1.4826 median(|x - median(x)|)."""
    x = np.asarray(x, float)
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def chance_score(n_targets: int, n_contaminants: int, redshift_hit: float = 1.0) -> float:
    """P = E score of a random guess: the test set's target fraction times ``redshift_hit``, the
    mean probability that its random redshift is correct (module docstring). The default 1 gives
    the classification-only chance, the target fraction."""
    n_spectra = n_targets + n_contaminants
    return n_targets / n_spectra * redshift_hit if n_spectra else float("nan")


def redshift_hit_probability(
    z_true: np.ndarray,
    z_drawn: np.ndarray,
    dz_max: float = 0.05,
    dv_max_kms: float | None = None,
    exclude_self: bool = False,
) -> np.ndarray:
    """For each true redshift, the probability that a redshift drawn from ``z_drawn`` (an empirical
    N(z), e.g. the training split's target redshifts) is correct under the rule of
    :func:`correct_redshift`: the fraction of ``z_drawn`` strictly within tolerance, counted
    exactly with two binary searches. ``exclude_self``: ``z_drawn`` is ``z_true`` itself and each
    object's own redshift is left out (leave-one-out). NaN when nothing is left to draw from."""
    z_true = np.asarray(z_true, float)
    drawn = np.sort(np.asarray(z_drawn, float)[np.isfinite(np.asarray(z_drawn, float))])
    tolerance = (
        np.full(z_true.shape, float(dz_max))
        if dv_max_kms is None
        else dv_max_kms * (1.0 + z_true) / C_LIGHT_KMS
    )
    # surely inside: within tolerance (1 - 1e-9); at the edges (1 +- 1e-9), the rule itself decides,
    # so a redshift counts here exactly when correct_redshift calls it correct
    wide, narrow = tolerance * (1 + 1e-9), tolerance * (1 - 1e-9)
    lo, hi = np.searchsorted(drawn, z_true - wide, "left"), np.searchsorted(drawn, z_true + wide, "right")
    inner_lo = np.maximum(lo, np.searchsorted(drawn, z_true - narrow, "right"))
    inner_hi = np.maximum(inner_lo, np.searchsorted(drawn, z_true + narrow, "left"))
    inside = (inner_hi - inner_lo).astype(float)
    for i in np.flatnonzero((inner_lo > lo) | (hi > inner_hi)):
        edges = np.concatenate([drawn[lo[i] : inner_lo[i]], drawn[inner_hi[i] : hi[i]]])
        inside[i] += np.count_nonzero(
            correct_redshift(edges, np.full(len(edges), z_true[i]), dz_max, dv_max_kms)
        )
    n = float(len(drawn))
    if exclude_self:
        inside, n = inside - np.isfinite(z_true), n - 1
    return inside / n if n > 0 else np.full(z_true.shape, np.nan)


def skill_score(score: float | None, chance: float | None) -> float:
    """(score - chance) / (1 - chance): 0 for a random guess, 1 for a perfect classifier; NaN where
    either is undefined or the test set holds only targets (every guess is then right)."""
    if score is None or chance is None or not np.isfinite(score) or not np.isfinite(chance) or chance >= 1:
        return float("nan")
    return (score - chance) / (1.0 - chance)
