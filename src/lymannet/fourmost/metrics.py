"""Figures of merit (no sklearn): MAPE, ROC/AUC, window merging into a DLA catalogue, matching."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..bootstrap import MAX_CELLS, N_RESAMPLES, SEED, interval_from, resample_counts, resample_indices
from ..metrics import nmad, redshift_summary


def mape(z_pred: np.ndarray, z_true: np.ndarray) -> float:
    """Mean absolute percentage error, percent."""
    z_pred, z_true = np.asarray(z_pred, float), np.asarray(z_true, float)
    return float(100.0 * np.mean(np.abs(z_pred - z_true) / np.abs(z_true))) if z_true.size else float("nan")


def redshift_metrics(
    z_pred: np.ndarray, z_true: np.ndarray, catastrophic_dz: float = 0.1
) -> dict[str, float]:
    """The slides' MAPE beside :func:`lymannet.metrics.redshift_summary` (catastrophic: |dz| > catastrophic_dz)."""
    z_pred, z_true = np.asarray(z_pred, float), np.asarray(z_true, float)
    summary = redshift_summary(z_pred, z_true, catastrophic_dz)
    good = np.abs(z_pred - z_true) <= catastrophic_dz
    return {
        "n": summary["n"],
        "mape_percent": mape(z_pred, z_true),
        "mape_percent_without_catastrophic": mape(z_pred[good], z_true[good]),
        "median_abs_dz": summary["median_abs_dz"],
        "sigma_dz_1pz_nmad": summary["sigma_nmad"],
        "n_catastrophic": int((~good).sum()),
        "catastrophic_fraction": summary["frac_catastrophic"],
    }


def roc_curve(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), thresholds descending; ties handled
    by grouping equal scores into one step. Starts at (0, 0), ends at (1, 1)."""
    score, label = np.asarray(score, float), np.asarray(label).astype(bool)
    order = np.argsort(-score, kind="mergesort")
    score, label = score[order], label[order]
    last_of_group = (
        np.r_[np.flatnonzero(np.diff(score) != 0), score.size - 1] if score.size else np.zeros(0, int)
    )
    tp = np.cumsum(label)[last_of_group]
    fp = np.cumsum(~label)[last_of_group]
    n_pos, n_neg = max(label.sum(), 1), max((~label).sum(), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, score[last_of_group]]


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties count 1/2
    (Mann-Whitney U from mid-ranks)."""
    score, label = np.asarray(score, float), np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binned_rate(values: np.ndarray, good: np.ndarray, edges: np.ndarray) -> pd.DataFrame:
    """Fraction of `good` per bin of `values` with a binomial (Wilson-free, sqrt(p(1-p)/n)) error."""
    values, good = np.asarray(values, float), np.asarray(good, bool)
    which = np.digitize(values, edges) - 1
    rows = []
    for k in range(len(edges) - 1):
        members = which == k
        n = int(members.sum())
        p = float(good[members].mean()) if n else float("nan")
        rows.append(
            {
                "lo": edges[k],
                "hi": edges[k + 1],
                "n": n,
                "rate": p,
                "error": float(np.sqrt(p * (1 - p) / n)) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def merge_windows(
    rows: np.ndarray,
    position: np.ndarray,
    log_n: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    radius: float,
    vote_value: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-sightline DLA catalogue from sliding-window predictions by non-maximum suppression.

    Every window with probability >= threshold votes for an absolute position. Per sightline,
    the most confident remaining vote seeds a DLA; all votes within `radius` of it join it and are
    removed; repeat. A DLA's position and log N_HI are the probability-weighted means of its votes,
    its confidence the seed's probability; n_windows counts the votes; LOG_NHI_SPREAD is the
    probability-weighted rms of the votes' log N_HI about that mean (what NHI_ERR is scaled from);
    VOTE_SUM sums `vote_value` (default: the probability) over the votes (the DLA calibration's
    support: prior-corrected vote probabilities).
    """
    vote_value = np.asarray(probability if vote_value is None else vote_value, float)
    rows, position = np.asarray(rows), np.asarray(position, float)
    log_n, probability = np.asarray(log_n, float), np.asarray(probability, float)
    out = []
    keep = probability >= threshold
    for row in np.unique(rows[keep]):
        idx = np.flatnonzero(keep & (rows == row))
        idx = idx[np.argsort(-probability[idx], kind="mergesort")]
        while idx.size:
            seed = idx[0]
            group = idx[np.abs(position[idx] - position[seed]) <= radius]
            weight = probability[group]
            mean_log_n = float(np.average(log_n[group], weights=weight))
            out.append(
                {
                    "ROW": int(row),
                    "POSITION": float(np.average(position[group], weights=weight)),
                    "LOG_NHI": mean_log_n,
                    "CONFIDENCE": float(probability[seed]),
                    "N_WINDOWS": int(group.size),
                    "LOG_NHI_SPREAD": float(
                        np.sqrt(np.average((log_n[group] - mean_log_n) ** 2, weights=weight))
                    ),
                    "VOTE_SUM": float(vote_value[group].sum()),
                }
            )
            idx = idx[np.abs(position[idx] - position[seed]) > radius]
    return pd.DataFrame(
        out, columns=["ROW", "POSITION", "LOG_NHI", "CONFIDENCE", "N_WINDOWS", "LOG_NHI_SPREAD", "VOTE_SUM"]
    )


def match_catalogue(
    truth: pd.DataFrame, catalogue: pd.DataFrame, tolerance: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Greedy one-to-one matching per sightline (closest pairs first) within `tolerance` (same unit
    as POSITION). Returns truth with MATCH (catalogue index or -1), DELTA, PRED_LOG_NHI, and the
    catalogue with TRUE_MATCH (truth index or -1)."""
    truth = truth.copy()
    catalogue = catalogue.copy()
    truth["MATCH"], truth["DELTA"], truth["PRED_LOG_NHI"] = -1, np.nan, np.nan
    catalogue["TRUE_MATCH"] = -1
    for row in np.unique(truth["ROW"]):
        t_idx = np.flatnonzero(truth["ROW"].to_numpy() == row)
        c_idx = np.flatnonzero(catalogue["ROW"].to_numpy() == row) if len(catalogue) else np.zeros(0, int)
        if not c_idx.size:
            continue
        distance = np.abs(
            truth["POSITION"].to_numpy()[t_idx, None] - catalogue["POSITION"].to_numpy()[None, c_idx]
        )
        for flat in np.argsort(distance, axis=None, kind="mergesort"):
            i, j = np.unravel_index(flat, distance.shape)
            if distance[i, j] > tolerance:
                break
            ti, cj = t_idx[i], c_idx[j]
            if (
                truth.iat[ti, truth.columns.get_loc("MATCH")] >= 0
                or catalogue.iat[cj, catalogue.columns.get_loc("TRUE_MATCH")] >= 0
            ):
                continue
            truth.iat[ti, truth.columns.get_loc("MATCH")] = cj
            truth.iat[ti, truth.columns.get_loc("DELTA")] = (
                catalogue["POSITION"].iat[cj] - truth["POSITION"].iat[ti]
            )
            truth.iat[ti, truth.columns.get_loc("PRED_LOG_NHI")] = catalogue["LOG_NHI"].iat[cj]
            catalogue.iat[cj, catalogue.columns.get_loc("TRUE_MATCH")] = ti
    return truth, catalogue


# --- breakdowns ----------------------------------------------------------------------------------

SNR_EDGES = (0.0, 2.0, 4.0, 8.0, float("inf"))  # continuum S/N per 0.5 A pixel
NHI_EDGES = (20.3, 20.5, 21.0, float("inf"))  # Wang et al. 2022's DLA bins: 20.3-20.5, 20.5-21, > 21


def bin_label(lo: float, hi: float) -> str:
    return f">{lo:g}" if not np.isfinite(hi) else f"{lo:g}-{hi:g}"


def purity_completeness_by_bin(
    truth_value: np.ndarray,
    truth_found: np.ndarray,
    pred_value: np.ndarray,
    pred_correct: np.ndarray,
    edges: tuple[float, ...],
) -> dict[str, dict[str, float]]:
    """Per bin: completeness (found / true objects whose `truth_value` lies in the bin) and purity
    (correct / detections whose `pred_value` lies in it), with the counts behind them."""
    out = {}
    truth_value, truth_found = np.asarray(truth_value, float), np.asarray(truth_found, bool)
    pred_value, pred_correct = np.asarray(pred_value, float), np.asarray(pred_correct, bool)
    for lo, hi in zip(edges[:-1], edges[1:]):
        t = (truth_value >= lo) & (truth_value < hi)
        d = (pred_value >= lo) & (pred_value < hi)
        out[bin_label(lo, hi)] = {
            "completeness": float(truth_found[t].mean()) if t.any() else float("nan"),
            "n_true": int(t.sum()),
            "purity": float(pred_correct[d].mean()) if d.any() else float("nan"),
            "n_detected": int(d.sum()),
        }
    return out


def redshift_by_bin(
    z_pred: np.ndarray, z_true: np.ndarray, groups: dict[str, np.ndarray], catastrophic_dz: float
) -> dict[str, dict[str, float]]:
    """MAPE and catastrophic fraction per named group (boolean masks)."""
    out = {}
    for name, mask in groups.items():
        m = redshift_metrics(z_pred[mask], z_true[mask], catastrophic_dz) if np.any(mask) else None
        out[name] = {
            "n": int(np.sum(mask)),
            "mape_percent": m["mape_percent"] if m else float("nan"),
            "catastrophic_fraction": m["catastrophic_fraction"] if m else float("nan"),
        }
    return out


def snr_groups(snr: np.ndarray, edges: tuple[float, ...] = SNR_EDGES) -> dict[str, np.ndarray]:
    return {f"S/N {bin_label(lo, hi)}": (snr >= lo) & (snr < hi) for lo, hi in zip(edges[:-1], edges[1:])}


CONFUSER_ORDER = (
    "DLA next to it",
    "sub-DLA (19-20.3)",
    "BAL trough",
    "Lyman-limit system (17-19)",
    "none of these",
)


def confuser_of(max_log_n: float, dla_near: bool, bal_trough: bool) -> str:
    """What a false DLA detection sits on, first cause in CONFUSER_ORDER that applies: a true DLA
    just outside (its wings, or a mislocated detection), the strongest non-DLA HI absorber inside,
    a BAL trough, else nothing simulated (forest, noise, metals)."""
    if dla_near:
        return CONFUSER_ORDER[0]
    if np.isfinite(max_log_n) and max_log_n >= 19.0:
        return CONFUSER_ORDER[1]
    if bal_trough:
        return CONFUSER_ORDER[2]
    if np.isfinite(max_log_n) and max_log_n >= 17.0:
        return CONFUSER_ORDER[3]
    return CONFUSER_ORDER[4]


# --- bootstrap intervals -------------------------------------------------------------------------
# Resampling unit: the sightline. Segments and sliding windows of one sightline overlap and share
# its noise and absorbers, so they are not independent draws; resampling whole sightlines (a
# cluster bootstrap) keeps that correlation in the interval. The redshift figures have one value
# per sightline, so there the cluster is the object itself.


def _clusters(cluster: np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """(cluster index 0..k-1 of each object, k); every object its own cluster without labels."""
    if cluster is None:
        return np.arange(n), n
    _, index = np.unique(np.asarray(cluster), return_inverse=True)
    return index.ravel(), int(index.max()) + 1 if n else 0


def cluster_counts(n_clusters: int, n_resamples: int, seed: int) -> Any:
    """Per resample, how often each cluster is drawn: (b, n_clusters) chunks."""
    bins = np.arange(n_clusters)
    for rows in resample_indices(n_clusters, n_resamples=n_resamples, seed=seed):
        yield resample_counts(rows, bins, n_clusters)


def ratio_interval(
    value: float,
    numerator: np.ndarray,
    denominator: np.ndarray,
    cluster: np.ndarray | None = None,
    n_resamples: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Bootstrap interval (Interval.to_dict()) of sum(numerator) / sum(denominator) over objects
    (a fraction: numerator a 0/1 flag, denominator 1; a mean: denominator 1), resampling clusters
    (sightlines) with replacement. NaN resamples (an empty denominator) are dropped and counted."""
    n_resamples = N_RESAMPLES if n_resamples is None else n_resamples
    seed = SEED if seed is None else seed
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    index, k = _clusters(cluster, len(numerator))
    if k == 0:
        return interval_from(value, np.full(n_resamples, np.nan), n_resamples, seed).to_dict()
    per_num = np.bincount(index, weights=numerator, minlength=k)
    per_den = np.bincount(index, weights=denominator, minlength=k)
    samples = []
    for counts in cluster_counts(k, n_resamples, seed):
        num, den = counts @ per_num, counts @ per_den
        with np.errstate(invalid="ignore", divide="ignore"):
            samples.append(np.where(den > 0, num / np.where(den > 0, den, 1), np.nan))
    return interval_from(value, np.concatenate(samples), n_resamples, seed).to_dict()


def weighted_auc(score: np.ndarray, label: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties count 1/2, as :func:`auc`) of each row of object weights (b, n): the objects'
    multiplicities in a resample. Counted, not ranked: per distinct score, the weighted positives
    times the weighted negatives below it (plus half those at it). NaN without both classes."""
    score, label = np.asarray(score, float), np.asarray(label).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, float))
    _, level = np.unique(score, return_inverse=True)
    level = level.ravel()
    m = int(level.max()) + 1 if level.size else 0
    b = weights.shape[0]
    flat = (level[None, :] + m * np.arange(b)[:, None]).ravel()
    positives = np.bincount(flat, weights=(weights * label).ravel(), minlength=b * m).reshape(b, m)
    negatives = np.bincount(flat, weights=(weights * ~label).ravel(), minlength=b * m).reshape(b, m)
    below = np.cumsum(negatives, axis=1) - negatives
    n_pos, n_neg = positives.sum(axis=1), negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = (positives * (below + 0.5 * negatives)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), area, np.nan)


def auc_interval(
    score: np.ndarray,
    label: np.ndarray,
    cluster: np.ndarray | None = None,
    n_resamples: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Bootstrap interval (Interval.to_dict()) of the AUC, resampling clusters (sightlines)."""
    n_resamples = N_RESAMPLES if n_resamples is None else n_resamples
    seed = SEED if seed is None else seed
    index, k = _clusters(cluster, len(np.asarray(score)))
    value = auc(score, label)
    if k == 0:
        return interval_from(value, np.full(n_resamples, np.nan), n_resamples, seed).to_dict()
    step = max(1, MAX_CELLS // (4 * max(len(index), 1)))  # (b, n) weights in bounded pieces
    samples = [
        weighted_auc(score, label, counts[start : start + step][:, index])
        for counts in cluster_counts(k, n_resamples, seed)
        for start in range(0, len(counts), step)
    ]
    return interval_from(value, np.concatenate(samples), n_resamples, seed).to_dict()
