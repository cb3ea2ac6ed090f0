"""Bootstrap confidence intervals on the figures the pipeline reports.

A score measured on a few hundred test spectra moves by a few per cent when the test set is drawn
again; a table that compares models to the third decimal without saying so compares noise. This
module resamples the *test objects* (percentile bootstrap, Efron & Tibshirani 1993, ch. 13) and
quotes the 68% and 95% intervals of any figure computed from them.

Stratified by class. The test sets are simulated with a fixed number of targets and of each kind
of contaminant: the class counts are part of the design, not a random draw from a sky. Resampling
targets and contaminants separately keeps those counts fixed, so that

- the target fraction f, hence the chance level of the P = E score, is the same in every resample
  (otherwise the interval would mix the classifier's uncertainty with the spread of a quantity that
  is fixed by construction);
- the P = E crossing, where as many spectra are detected as there are targets, is taken at the
  same detected count in every resample;
- a resample always holds both classes, so purity and efficiency stay defined.

Number of resamples. The percentile bounds are Monte-Carlo estimates: the p-quantile of B draws
from a density g has a standard error sqrt(p (1 - p) / B) / g(x_p). For a normal bootstrap
distribution of width sigma this is, in units of sigma (:func:`percentile_mc_error`):

    B       2.5%/97.5% bound   16%/84% bound   68% half-width
    200     0.19               0.11            0.075 (7.5% of itself)
    1000    0.084              0.048           0.034 (3.4%)
    2000    0.060              0.034           0.024 (2.4%)
    10000   0.027              0.015           0.011 (1.1%)

(the half-width's error is that of a 16% bound over sqrt(2), the two bounds taken as independent).

B = 1000 (:data:`N_RESAMPLES`) puts the 95% bounds within about +-0.08 sigma and the quoted
68% half-width within about 3.5% of itself: finer than the two significant digits an interval is
printed with, at about a second per score (the P = E score of a resample is vectorised, see
:func:`pe_score_resamples`).

NaN-safe. A resample where the figure is undefined (NaN, e.g. a purity with nothing detected) is
dropped and counted (:attr:`Interval.n_dropped`); the percentiles are those of the rest.

Deterministic. The same seed, object count and strata give the same resamples, hence the same
interval: a rerun of the pipeline reproduces its tables bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import numpy as np

N_RESAMPLES = 1000
SEED = 0
# two-sided central intervals: the 68.27% (one sigma) and 95% ones
Q68 = (15.865525393145708, 84.13447460685429)
Q95 = (2.5, 97.5)
MAX_CELLS = 4_000_000  # resample index cells held at once (32 MB of int64): bounds the memory


@dataclass(frozen=True)
class Interval:
    """A figure with its bootstrap intervals (68% and 95%, central percentiles)."""

    value: float  # the figure on the test set itself (not the resamples' median)
    lo68: float
    hi68: float
    lo95: float
    hi95: float
    n_resamples: int  # resamples drawn
    n_dropped: int = 0  # resamples where the figure was undefined (NaN), left out of the percentiles
    seed: int = SEED

    @property
    def half_width(self) -> float:
        """Half the 68% interval: the '1 sigma' of "value +- error"."""
        return 0.5 * (self.hi68 - self.lo68)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN -> None."""
        return {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Interval | None":
        """Back from :meth:`to_dict` (None -> NaN); None for a missing entry."""
        if not data:
            return None
        nan = float("nan")

        def number(key: str) -> float:
            return nan if data.get(key) is None else float(data[key])

        return cls(
            number("value"),
            number("lo68"),
            number("hi68"),
            number("lo95"),
            number("hi95"),
            int(data.get("n_resamples") or 0),
            int(data.get("n_dropped") or 0),
            int(data.get("seed") or SEED),
        )

    def text(self, style: str = "pm", digits: int | None = None) -> str:
        """ "0.943 ± 0.012" (style "pm": the 68% half-width) or "0.943 [0.931, 0.955]" (style
        "range68") or "0.943 [0.92, 0.96]" with the 95% bounds (style "range95"). ``digits``:
        decimals; by default two significant digits of the half-width (at least 2, at most 4)."""
        if not math.isfinite(self.value):
            return "n/a"
        if digits is None:
            digits = decimals_for(self.half_width)
        value = f"{self.value:.{digits}f}"
        if not (math.isfinite(self.lo68) and math.isfinite(self.hi68)):
            return value
        if style == "pm":
            return f"{value} ± {self.half_width:.{digits}f}"
        lo, hi = (self.lo68, self.hi68) if style == "range68" else (self.lo95, self.hi95)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return value
        return f"{value} [{lo:.{digits}f}, {hi:.{digits}f}]"

    def excludes(self, x: float, level: int = 95) -> bool:
        """True when ``x`` lies outside the 68% or 95% interval (False where it is undefined)."""
        lo, hi = (self.lo68, self.hi68) if level == 68 else (self.lo95, self.hi95)
        return bool(math.isfinite(lo) and math.isfinite(hi) and (x < lo or x > hi))


def decimals_for(error: float, minimum: int = 2, maximum: int = 4) -> int:
    """Decimals that show two significant digits of ``error``, within [minimum, maximum]."""
    if not math.isfinite(error) or error <= 0:
        return max(minimum, 3)
    return int(min(maximum, max(minimum, 1 - math.floor(math.log10(error)))))


def percentile_mc_error(p: float, n_resamples: int) -> float:
    """Standard error, in units of the bootstrap distribution's sigma, of its p-quantile estimated
    from ``n_resamples`` draws when that distribution is normal: sqrt(p(1-p)/B) / phi(z_p)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return math.sqrt(p * (1 - p) / n_resamples) / density


def _strata_members(n_objects: int, strata: np.ndarray | None) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n_objects)]
    strata = np.asarray(strata)
    if strata.shape != (n_objects,):
        raise ValueError(f"strata must have one label per object ({n_objects}), got shape {strata.shape}")
    _, labels = np.unique(strata, return_inverse=True)
    return [np.flatnonzero(labels == k) for k in range(labels.max() + 1)] if n_objects else []


def resample_indices(
    n_objects: int, *, n_resamples: int = N_RESAMPLES, seed: int = SEED, strata: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Bootstrap resamples of ``n_objects`` objects, in chunks of shape (b, n_objects) (b rows at a
    time, bounded by MAX_CELLS): each row draws, within every stratum, as many objects as the
    stratum holds, with replacement. Columns keep the strata's positions: the objects of stratum k
    are always drawn into the columns where stratum k sits, so ``strata[row]`` == ``strata``."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    members = _strata_members(n_objects, strata)
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_CELLS // max(n_objects, 1))
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        rows = np.empty((b, n_objects), dtype=np.int64)
        for member in members:
            rows[:, member] = member[rng.integers(0, len(member), size=(b, len(member)))]
        yield rows
        done += b


def interval_from(value: float, samples: np.ndarray, n_resamples: int, seed: int = SEED) -> Interval:
    """The :class:`Interval` of ``value`` from its resampled values (NaNs dropped and counted)."""
    samples = np.asarray(samples, float)
    finite = samples[np.isfinite(samples)]
    n_dropped = int(samples.size - finite.size)
    if finite.size:
        lo68, hi68, lo95, hi95 = (float(x) for x in np.percentile(finite, [*Q68, *Q95]))
    else:
        lo68 = hi68 = lo95 = hi95 = float("nan")
    return Interval(float(value), lo68, hi68, lo95, hi95, int(n_resamples), n_dropped, int(seed))


def bootstrap_samples(
    statistic: Callable[[np.ndarray], Any],
    n_objects: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    strata: np.ndarray | None = None,
    batched: bool = False,
) -> np.ndarray:
    """The statistic on each resample: an array of shape (n_resamples,) or, for a statistic that
    returns k figures at once, (n_resamples, k). ``batched``: the statistic takes a (b, n_objects)
    index array and returns b values (or (b, k)), which spares a Python call per resample."""
    values = []
    for rows in resample_indices(n_objects, n_resamples=n_resamples, seed=seed, strata=strata):
        if batched:
            values.append(np.asarray(statistic(rows), float))
        else:
            values.append(np.array([np.asarray(statistic(row), float) for row in rows]))
    return np.concatenate(values)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n_objects: int,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    strata: np.ndarray | None = None,
    batched: bool = False,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(indices)``, the figure computed on the objects
    ``indices`` (an index array into the test set; ``np.arange(n_objects)`` is the test set itself,
    which gives :attr:`Interval.value`).

    ``strata``: one label per object (e.g. is-target); objects are resampled within their stratum,
    so every resample holds as many of each label as the test set (module docstring: why).
    ``batched``: the statistic takes a (b, n_objects) array of b resamples and returns b values.
    Deterministic for a given seed."""
    identity = np.arange(n_objects)
    value = float(
        np.asarray(statistic(identity[None, :]) if batched else statistic(identity), float).ravel()[0]
    )
    samples = bootstrap_samples(
        statistic, n_objects, n_resamples=n_resamples, seed=seed, strata=strata, batched=batched
    )
    return interval_from(value, samples, n_resamples, seed)


# --- the P = E score and the purity / efficiency of resamples, vectorised -------------------------------


def resample_counts(
    rows: np.ndarray, bins: np.ndarray, n_bins: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """For each resample (row of object indices), the (weighted) number of its objects in each of
    ``n_bins`` bins, where ``bins[i]`` is object i's bin: an (b, n_bins) array, one bincount."""
    b = rows.shape[0]
    flat = (bins[rows] + n_bins * np.arange(b)[:, None]).ravel()
    w = None if weights is None else np.asarray(weights, float)[rows].ravel()
    return np.bincount(flat, weights=w, minlength=b * n_bins).reshape(b, n_bins)


def pe_crossings(n_detected: np.ndarray, n_good: np.ndarray, n_targets: np.ndarray | float) -> np.ndarray:
    """The P = E score of each row of curves (b, m) sampled at increasing thresholds, with the rule
    of :func:`lymannet.metrics.pe_crossing`: points with nothing detected are left out, the first
    point where P == E wins unless a sign change of P - E comes first, which is interpolated
    linearly. NaN where there is no crossing."""
    n_detected = np.asarray(n_detected, float)
    n_good = np.asarray(n_good, float)
    n_targets = np.broadcast_to(
        np.asarray(n_targets, float).reshape(-1, 1) if np.ndim(n_targets) else np.asarray(n_targets, float),
        n_detected.shape,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(n_detected > 0, n_good / n_detected, np.nan)
        efficiency = np.where(n_targets > 0, n_good / n_targets, np.nan)
    diff = purity - efficiency
    defined = np.isfinite(diff)
    if not (defined[:, :-1] >= defined[:, 1:]).all():
        # pack the defined points of a row to its front (n_detected falls with the threshold, so
        # they usually are a prefix already and this sort is skipped)
        order = np.argsort(~defined, axis=1, kind="stable")
        diff = np.take_along_axis(diff, order, axis=1)
        purity = np.take_along_axis(purity, order, axis=1)
    b = diff.shape[0]
    score = np.full(b, np.nan)
    if diff.shape[1] == 0:
        return score
    exact = diff == 0
    sign = np.sign(diff)
    change = np.zeros_like(exact)
    change[:, :-1] = sign[:, :-1] * sign[:, 1:] < 0
    has_exact, has_change = exact.any(axis=1), change.any(axis=1)
    first_exact = np.where(has_exact, exact.argmax(axis=1), diff.shape[1])
    first_change = np.where(has_change, change.argmax(axis=1), diff.shape[1])
    rows = np.arange(b)
    use_exact = has_exact & (first_exact <= first_change)
    score[use_exact] = purity[rows[use_exact], first_exact[use_exact]]
    use_change = has_change & ~use_exact
    i = first_change[use_change]
    r = rows[use_change]
    d0, d1 = diff[r, i], diff[r, i + 1]
    t = d0 / (d0 - d1)
    score[use_change] = purity[r, i] + t * (purity[r, i + 1] - purity[r, i])
    return score


class PEResampler:
    """The P = E score, and purity / efficiency at a fixed threshold, of bootstrap resamples.

    The curve of a resample is counted, not recomputed: each object falls in the bin of the
    thresholds it exceeds (one searchsorted for the whole test set, done once), so a resample's
    detected and good counts above every threshold are one weighted bincount and a reversed
    cumulative sum. The thresholds are the test set's exact ones (grid + every distinct
    confidence inside it, :func:`lymannet.metrics.exact_thresholds`): a resample's confidences
    are a subset of the test set's, so its curve steps only at these points and its crossing is
    the one :func:`lymannet.metrics.pe_crossing` finds on its own exact curve.
    """

    def __init__(
        self, confidence: np.ndarray, is_target: np.ndarray, is_correct: np.ndarray, thresholds: np.ndarray
    ):
        self.confidence = np.asarray(confidence, float)
        self.is_target = np.asarray(is_target, bool)
        self.good = self.is_target & np.asarray(is_correct, bool)
        self.thresholds = np.sort(np.asarray(thresholds, float))
        # object i is detected at thresholds[j] iff confidence_i > thresholds[j] iff j < position_i
        self.position = np.searchsorted(self.thresholds, self.confidence, side="left")
        self.n_bins = len(self.thresholds) + 1

    def curves(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_detected, n_good, n_targets) of each resample: (b, m), (b, m), (b,)."""
        detected = resample_counts(rows, self.position, self.n_bins)
        good = resample_counts(rows, self.position, self.n_bins, self.good)
        # counts above thresholds[j] = objects whose position > j: reversed cumulative sum from bin j+1
        n_detected = np.cumsum(detected[:, ::-1], axis=1)[:, ::-1][:, 1:]
        n_good = np.cumsum(good[:, ::-1], axis=1)[:, ::-1][:, 1:]
        n_targets = self.is_target[rows].sum(axis=1)
        return n_detected, n_good, n_targets

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """The P = E score of each resample (rows of object indices)."""
        rows = np.atleast_2d(rows)
        n_detected, n_good, n_targets = self.curves(rows)
        return pe_crossings(n_detected, n_good, n_targets)

    def at_threshold(self, rows: np.ndarray, threshold: float) -> np.ndarray:
        """(purity, efficiency) of each resample at one threshold: a (b, 2) array, NaN where undefined."""
        rows = np.atleast_2d(rows)
        detected = self.confidence[rows] > threshold
        n_detected = detected.sum(axis=1).astype(float)
        n_good = (detected & self.good[rows]).sum(axis=1).astype(float)
        n_targets = self.is_target[rows].sum(axis=1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            purity = np.where(n_detected > 0, n_good / n_detected, np.nan)
            efficiency = np.where(n_targets > 0, n_good / n_targets, np.nan)
        return np.stack([purity, efficiency], axis=1)


def pe_score_resamples(
    confidence: np.ndarray,
    is_target: np.ndarray,
    is_correct: np.ndarray,
    thresholds: np.ndarray,
    rows: np.ndarray,
) -> np.ndarray:
    """The P = E score of each resample ``rows`` (b, n): see :class:`PEResampler`."""
    return PEResampler(confidence, is_target, is_correct, thresholds).scores(rows)
