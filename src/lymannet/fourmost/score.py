"""Scoring the 4MOST networks on the test split, and the summary table of every figure of merit.

One function per scoring rule: it takes the ingested set and a loaded model file and returns the
tables and the metrics dictionary the rule writes. The figures of merit themselves live in
:mod:`.metrics`; the window encoding and decoding in :mod:`.features`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from ..bootstrap import N_RESAMPLES, Interval
from ..lines import LYA
from . import features as ft
from .ingest import Ingested
from .bal import trough_pixel_ranges
from .metrics import (
    CONFUSER_ORDER,
    NHI_EDGES,
    SNR_EDGES,
    auc,
    auc_interval,
    bin_label,
    confuser_of,
    match_catalogue,
    merge_windows,
    nmad,
    purity_completeness_by_bin,
    ratio_interval,
    redshift_by_bin,
    redshift_metrics,
    roc_curve,
    snr_groups,
)
from .tasks import dla_inputs, predict_batches, predict_redshift

log = logging.getLogger("lymannet.fourmost")

NATIVE_PIXEL_ANGSTROM = 0.25  # the simulator's (and the slides') grid step
PRESENCE_THRESHOLD = 0.5
CATALOGUE_COLUMNS = [
    "FILE",
    "ROW",
    "Z_ABS",
    "LOG_NHI",
    "CONFIDENCE",
    "N_WINDOWS",
    "TRUE_MATCH",
    "SNR",
    "FALSE_POSITIVE_CAUSE",
]
# What the slides report for each model, quoted beside ours in the summary.
SLIDES = {
    "dense": "test loss 0.0441, 548M parameters, 6,776 s",
    "gru": "MAPE 1.14%, 7,548 s",
    "quasarnet": "(not in the slides)",
    "dense_slides": "test loss 0.0441 (quantile-transformed target), 548M parameters, 6,776 s",
    "presence": "AUC 0.9154, 84,865 parameters",
    "location": "accuracy ~90%",
}


def training_record(payload: dict[str, Any]) -> dict[str, Any]:
    """The model file's size and training cost, reported beside every score."""
    return {
        "parameters": payload["parameters"],
        "train_seconds": payload["train_seconds"],
        "epochs": len(payload["history"]["epoch"]),
        "n_train": payload["info"].get("n_train"),
    }


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")


# --- redshift ------------------------------------------------------------------------------------


def score_redshift(
    data: Ingested, network: nn.Module, payload: dict[str, Any], catastrophic_dz: float
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(predictions per test sightline, metrics) of a redshift regressor."""
    rows = data.rows("test")
    z_true = data.sightlines["Z_QSO"].to_numpy()[rows]
    z_pred = predict_redshift(network, payload["info"], data, rows, payload["kind"], payload["spec"])
    snr = data.sightlines["SNR"].to_numpy()[rows]
    bal = data.sightlines["BAL"].to_numpy()[rows].astype(bool)
    table = pd.DataFrame(
        {
            "FILE": data.sightlines["FILE"].to_numpy()[rows],
            "Z_TRUE": z_true,
            "Z_PRED": z_pred,
            "SNR": snr,
            "BAL": bal.astype(int),
        }
    )
    result = redshift_metrics(z_pred, z_true, catastrophic_dz)
    # bootstrap intervals over the test sightlines (Interval.to_dict(): lo68/hi68, lo95/hi95)
    ones = np.ones(len(z_true))
    result["mape_percent_interval"] = ratio_interval(
        result["mape_percent"], 100.0 * np.abs(z_pred - z_true) / np.abs(z_true), ones
    )
    result["catastrophic_fraction_interval"] = ratio_interval(
        result["catastrophic_fraction"], np.abs(z_pred - z_true) > catastrophic_dz, ones
    )
    result["by_snr"] = redshift_by_bin(z_pred, z_true, snr_groups(snr), catastrophic_dz)
    result["by_bal"] = redshift_by_bin(z_pred, z_true, {"BAL": bal, "non-BAL": ~bal}, catastrophic_dz)
    result.update({"model": payload["kind"], **training_record(payload)})
    return table, result


# --- DLA presence --------------------------------------------------------------------------------


def hi_absorbers_by_row(data: Ingested, below: float = 20.3) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """row -> (Ly-alpha centre pixels on the DLA grid, log N_HI) of the HI absorbers below `below`
    (the non-DLA confusers: Lyman-limit systems and sub-DLAs); empty without an ABSORBERS table."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if data.absorbers is None or not len(data.absorbers):
        return out
    table = data.absorbers[data.absorbers["LOG_NHI"] < below]
    centres = ft.pixel_of(data.dla_wave, LYA * (1 + table["Z_ABS"].to_numpy()))
    for row, centre, log_n in zip(table["ROW"].to_numpy(), centres, table["LOG_NHI"].to_numpy()):
        pix, nhi = out.get(int(row), (np.zeros(0), np.zeros(0)))
        out[int(row)] = (np.append(pix, centre), np.append(nhi, log_n))
    return out


def bal_pixel_ranges(data: Ingested) -> dict[int, list[tuple[float, float]]]:
    """row -> [(first, last pixel)] of each true BAL trough (CIV, SiIV, NV, Ly-alpha) on the DLA
    grid: every row of the BALS table, flagged or not (what false positives are attributed to)."""
    return trough_pixel_ranges(data, flagged_only=False)


def _segment_context(
    data: Ingested, seg: ft.Segments, length: int, near: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment: strongest non-DLA HI absorber centred inside (NaN if none), a DLA centred
    within `near` pixels outside it, a BAL trough overlapping it."""
    confusers, dlas, bals = hi_absorbers_by_row(data), ft.dla_pixels_by_row(data), bal_pixel_ranges(data)
    max_log_n = np.full(len(seg.rows), np.nan)
    dla_near = np.zeros(len(seg.rows), bool)
    bal = np.zeros(len(seg.rows), bool)
    for k, (row, start) in enumerate(zip(seg.rows, seg.starts)):
        pix, nhi = confusers.get(int(row), (np.zeros(0), np.zeros(0)))
        inside = (pix >= start) & (pix < start + length)
        if inside.any():
            max_log_n[k] = nhi[inside].max()
        dpix, _ = dlas.get(int(row), (np.zeros(0), np.zeros(0)))
        dla_near[k] = bool(
            np.any(
                ((dpix >= start - near) & (dpix < start))
                | ((dpix >= start + length) & (dpix < start + length + near))
            )
        )
        bal[k] = any(lo < start + length and hi >= start for lo, hi in bals.get(int(row), []))
    return max_log_n, dla_near, bal


def false_positive_causes(causes: list[str]) -> dict[str, int]:
    return {name: int(sum(c == name for c in causes)) for name in CONFUSER_ORDER}


def presence_predictions(
    data: Ingested, network: nn.Module, payload: dict[str, Any], options: dict[str, Any], rows: np.ndarray
) -> tuple[ft.Segments, np.ndarray]:
    """The segments tiling the sightlines `rows` and the presence CNN's probability for each."""
    length = payload["info"]["n_pixels"]
    seg = ft.presence_segments(
        data, rows, length, int(options["segment_stride"]), int(options["edge_pixels"])
    )
    logits = predict_batches(network, ft.cut_windows(dla_inputs(data, options), seg.rows, seg.starts, length))
    return seg, 1.0 / (1.0 + np.exp(-logits))


def score_presence(
    data: Ingested, network: nn.Module, payload: dict[str, Any], options: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(every test segment with its score, metrics) of the presence CNN. The headline AUC counts
    every segment (label: a DLA centre anywhere inside), edge ones included; the AUC over the
    unambiguous segments only (training's labels) is reported beside it. At the working threshold:
    completeness per log N_HI bin, purity and completeness per S/N bin (as Wang et al. 2022 for
    desi-dlas), and what each false positive sits on (sub-DLA, LLS, BAL trough, a DLA next to it)."""
    length = payload["info"]["n_pixels"]
    seg, score = presence_predictions(data, network, payload, options, data.rows("test"))
    snr = data.sightlines["SNR"].to_numpy()[seg.rows]
    max_log_n, dla_near, bal = _segment_context(data, seg, length, near=2.0 * int(options["edge_pixels"]))
    predicted = score >= PRESENCE_THRESHOLD
    positive = seg.label_any == 1
    causes = [
        confuser_of(m, d, b) if (p and not t) else ""
        for m, d, b, p, t in zip(max_log_n, dla_near, bal, predicted, positive)
    ]
    table = pd.DataFrame(
        {
            "ROW": seg.rows,
            "START": seg.starts,
            "LABEL": seg.label.astype(int),
            "LABEL_ANY": seg.label_any.astype(int),
            "AMBIGUOUS": seg.ambiguous,
            "LOG_NHI": seg.log_n,
            "SNR": snr,
            "BAL": data.sightlines["BAL"].to_numpy()[seg.rows].astype(int),
            "MAX_LOG_NHI_NON_DLA": max_log_n,
            "DLA_NEAR": dla_near,
            "BAL_TROUGH": bal,
            "SCORE": score,
            "FALSE_POSITIVE_CAUSE": causes,
        }
    )
    clean = ~seg.ambiguous
    # Balanced like the slides' test set: every clean positive and as many clean negatives.
    balanced = ft.balance(seg, np.random.default_rng(0))
    fp_causes = false_positive_causes([c for c in causes if c])
    by_nhi = purity_completeness_by_bin(
        seg.log_n[positive], predicted[positive], np.full(0, np.nan), np.zeros(0, bool), NHI_EDGES
    )
    by_snr = purity_completeness_by_bin(
        snr[positive], predicted[positive], snr[predicted], positive[predicted], SNR_EDGES
    )
    result = {
        "auc": auc(score, seg.label_any),
        "auc_unambiguous": auc(score[clean], seg.label[clean]),
        "auc_balanced": auc(score[balanced], seg.label[balanced]),
        "n_segments": int(len(seg.rows)),
        "n_ambiguous": int(seg.ambiguous.sum()),
        "n_positive": int(positive.sum()),
        "n_positive_unambiguous": int((seg.label[clean] == 1).sum()),
        "threshold": PRESENCE_THRESHOLD,
        "completeness": _fraction(predicted[positive]),
        "purity": _fraction(positive[predicted]),
        "completeness_unambiguous": _fraction(predicted[clean & (seg.label == 1)]),
        "purity_unambiguous": _fraction((seg.label == 1)[clean & predicted]),
        "accuracy_balanced": (
            float((predicted[balanced] == (seg.label[balanced] == 1)).mean())
            if balanced.size
            else float("nan")
        ),
        "completeness_by_log_nhi": {
            k: {"completeness": v["completeness"], "n_true": v["n_true"]} for k, v in by_nhi.items()
        },
        "by_snr": by_snr,
        "false_positive_causes": fp_causes,
        "main_false_positive_cause": max(fp_causes, key=fp_causes.get) if sum(fp_causes.values()) else "",
        **training_record(payload),
    }
    # bootstrap intervals, whole sightlines resampled (their segments overlap: not independent)
    result["auc_interval"] = auc_interval(score, seg.label_any, seg.rows)
    result["completeness_interval"] = ratio_interval(
        result["completeness"], predicted & positive, positive, seg.rows
    )
    result["purity_interval"] = ratio_interval(result["purity"], predicted & positive, predicted, seg.rows)
    return table, result


def presence_roc(segments: pd.DataFrame, unambiguous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) over all segments (LABEL_ANY), or over the
    unambiguous ones (LABEL)."""
    if unambiguous:
        clean = segments[~segments["AMBIGUOUS"]]
        fpr, tpr, _ = roc_curve(clean["SCORE"].to_numpy(), clean["LABEL"].to_numpy())
    else:
        fpr, tpr, _ = roc_curve(segments["SCORE"].to_numpy(), segments["LABEL_ANY"].to_numpy())
    return fpr, tpr


# --- DLA localisation ----------------------------------------------------------------------------


@dataclass
class Localisation:
    catalogue: (
        pd.DataFrame
    )  # merged DLAs: FILE, ROW, POSITION, Z_ABS, LOG_NHI, CONFIDENCE, N_WINDOWS, TRUE_MATCH
    truth: pd.DataFrame  # test DLAs with MATCH, FOUND, DELTA_A, PRED_LOG_NHI, SNR, NEAREST_DELTA_A
    metrics: dict[str, Any]


def window_votes(
    data: Ingested, network: nn.Module, length: int, options: dict[str, Any], rows: np.ndarray
) -> tuple[ft.Windows, ft.WindowVotes]:
    """The location network's sliding windows over the sightlines `rows` and their decoded votes."""
    windows = ft.sliding_windows(data, rows, length, int(options["slide_stride"]))
    log.info("%d sliding windows over %d sightlines", len(windows.rows), len(rows))
    x = ft.cut_windows(
        dla_inputs(data, options), windows.rows, ft.window_starts(windows.centres, length), length
    )
    return windows, ft.decode_windows(windows, predict_batches(network, x), length)


def dla_catalogue(
    data: Ingested,
    network: nn.Module,
    length: int,
    options: dict[str, Any],
    rows: np.ndarray | None = None,
    keep_vote: Callable[..., np.ndarray] | None = None,
    votes: tuple[ft.Windows, ft.WindowVotes] | None = None,
    vote_value: np.ndarray | None = None,
) -> pd.DataFrame:
    """Slide windows over the test sightlines (or `rows`), decode their votes and merge them into
    DLAs (Parks et al. 2018, MNRAS 476, 1151): FILE, ROW, POSITION [DLA-grid pixel], Z_ABS,
    LOG_NHI, ...; `keep_vote` (a function of (windows, votes) -> bool per vote) drops votes before
    the merge (the BAL-trough mask); `votes` reuses :func:`window_votes`' output; `vote_value`
    (one per vote) is summed per DLA into VOTE_SUM (default: the vote probabilities)."""
    rows = data.rows("test") if rows is None else np.asarray(rows)
    windows, votes = window_votes(data, network, length, options, rows) if votes is None else votes
    keep = (
        np.ones(len(windows.rows), bool) if keep_vote is None else np.asarray(keep_vote(windows, votes), bool)
    )
    step = float(data.dla_wave[1] - data.dla_wave[0])
    cat = merge_windows(
        windows.rows[keep],
        votes.position[keep],
        votes.log_n[keep],
        votes.probability[keep],
        float(options["merge_threshold"]),
        float(options["merge_radius_angstrom"]) / step,
        None if vote_value is None else np.asarray(vote_value)[keep],
    )
    cat.insert(1, "FILE", data.sightlines["FILE"].to_numpy()[cat["ROW"].to_numpy()] if len(cat) else [])
    cat["Z_ABS"] = ft.wavelength_of(data.dla_wave, cat["POSITION"].to_numpy()) / LYA - 1
    return cat


def _nearest_offsets(truth: pd.DataFrame, cat: pd.DataFrame) -> list[float]:
    """Pixel offset of the nearest catalogue DLA on the same sightline, whatever its distance
    (the residual histogram shows the misses too)."""
    offsets = []
    for row, pos in zip(truth["ROW"], truth["POSITION"]):
        mine = cat["POSITION"].to_numpy()[cat["ROW"].to_numpy() == row] if len(cat) else np.zeros(0)
        offsets.append(mine[np.argmin(np.abs(mine - pos))] - pos if mine.size else np.nan)
    return offsets


def match_truth(
    data: Ingested, cat: pd.DataFrame, tolerance_angstrom: float, rows: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test DLAs, or those on `rows`, matched one-to-one to the catalogue within the tolerance,
    catalogue with TRUE_MATCH)."""
    step = float(data.dla_wave[1] - data.dla_wave[0])
    rows = data.rows("test") if rows is None else np.asarray(rows)
    truth = data.dlas[data.dlas["ROW"].isin(rows)].reset_index(drop=True)
    truth["POSITION"] = ft.pixel_of(data.dla_wave, LYA * (1 + truth["Z_ABS"].to_numpy()))
    truth, cat = match_catalogue(truth, cat, tolerance_angstrom / step)
    truth["SNR"] = data.sightlines["SNR"].to_numpy()[truth["ROW"].to_numpy()]
    truth["FOUND"] = truth["MATCH"] >= 0
    truth["DELTA_A"] = truth["DELTA"] * step
    truth["NEAREST_DELTA_A"] = np.asarray(_nearest_offsets(truth, cat), float) * step
    return truth, cat


def location_metrics(truth: pd.DataFrame, cat: pd.DataFrame, options: dict[str, Any]) -> dict[str, Any]:
    """Completeness (all, and S/N > snr_min), catalogue purity, position and log N_HI errors."""
    high = truth["SNR"] > float(options["snr_min"])
    found = truth["FOUND"].to_numpy()
    err = (truth["PRED_LOG_NHI"] - truth["LOG_NHI"]).to_numpy()[found]
    dz = truth["DELTA_A"].to_numpy()[found]
    return {
        "n_true_dlas": int(len(truth)),
        "n_catalogue": int(len(cat)),
        "fraction_found_within_tolerance": _fraction(found),
        "fraction_found_within_tolerance_snr_gt_min": (
            float(found[high].mean()) if high.any() else float("nan")
        ),
        "n_true_dlas_snr_gt_min": int(high.sum()),
        "purity": _fraction((cat["TRUE_MATCH"] >= 0).to_numpy()),
        "n_false_positives": int((cat["TRUE_MATCH"] < 0).sum()) if len(cat) else 0,
        "position_rms_angstrom": _rms(dz),
        "position_rms_pixels_native_0.25A": _rms(dz) / NATIVE_PIXEL_ANGSTROM if dz.size else float("nan"),
        "log_nhi_rms_dex": _rms(err),
        "log_nhi_nmad_dex": nmad(err),
        "log_nhi_bias_dex": float(np.mean(err)) if err.size else float("nan"),
        "tolerance_angstrom": float(options["match_tolerance_angstrom"]),
        "snr_min": float(options["snr_min"]),
    }


def sightline_rates(truth: pd.DataFrame, cat: pd.DataFrame, test_rows: np.ndarray) -> dict[str, float]:
    """Per sightline at the match tolerance: completeness = share of the sightlines with a true DLA
    on which one is found; purity = share of the sightlines with a catalogue DLA on which one
    matches a true DLA."""
    with_dla = set(truth["ROW"].tolist())
    found = set(truth.loc[truth["FOUND"], "ROW"].tolist())
    flagged = set(cat["ROW"].tolist()) if len(cat) else set()
    correct = set(cat.loc[cat["TRUE_MATCH"] >= 0, "ROW"].tolist()) if len(cat) else set()
    return {
        "sightline_completeness": len(found) / len(with_dla) if with_dla else float("nan"),
        "sightline_purity": len(correct) / len(flagged) if flagged else float("nan"),
        "n_sightlines": int(len(test_rows)),
        "n_sightlines_with_dla": len(with_dla),
        "n_sightlines_flagged": len(flagged),
    }


def catalogue_false_positive_causes(
    data: Ingested, truth: pd.DataFrame, cat: pd.DataFrame, tolerance: float
) -> list[str]:
    """What each unmatched catalogue DLA sits on (pixels; see :func:`.metrics.confuser_of`):
    a true DLA within 3x the tolerance, a non-DLA HI absorber within 2x, a BAL trough."""
    confusers, bals = hi_absorbers_by_row(data), bal_pixel_ranges(data)
    causes = []
    for row, pos, match in zip(cat["ROW"], cat["POSITION"], cat["TRUE_MATCH"]):
        if match >= 0:
            causes.append("")
            continue
        true_pos = truth["POSITION"].to_numpy()[truth["ROW"].to_numpy() == row]
        pix, nhi = confusers.get(int(row), (np.zeros(0), np.zeros(0)))
        close = np.abs(pix - pos) <= 2 * tolerance
        max_log_n = float(nhi[close].max()) if close.any() else float("nan")
        bal = any(lo <= pos <= hi for lo, hi in bals.get(int(row), []))
        causes.append(confuser_of(max_log_n, bool(np.any(np.abs(true_pos - pos) <= 3 * tolerance)), bal))
    return causes


def score_location(
    data: Ingested,
    network: nn.Module,
    payload: dict[str, Any],
    options: dict[str, Any],
    votes: tuple[ft.Windows, ft.WindowVotes] | None = None,
) -> Localisation:
    """The location CNN's DLA catalogue over the test split, matched to the truth, and its metrics:
    per-DLA and per-sightline purity/completeness, both per log N_HI bin (true N_HI for
    completeness, the catalogue's for purity) and per S/N bin, N_HI residuals per true N_HI bin,
    and what the false positives sit on; `votes`: :func:`window_votes` on the test split, if at hand."""
    cat = dla_catalogue(data, network, payload["info"]["n_pixels"], options, votes=votes)
    truth, cat = match_truth(data, cat, float(options["match_tolerance_angstrom"]))
    step = float(data.dla_wave[1] - data.dla_wave[0])
    cat["SNR"] = data.sightlines["SNR"].to_numpy()[cat["ROW"].to_numpy()] if len(cat) else []
    cat["FALSE_POSITIVE_CAUSE"] = (
        catalogue_false_positive_causes(data, truth, cat, float(options["match_tolerance_angstrom"]) / step)
        if len(cat)
        else []
    )
    correct = (cat["TRUE_MATCH"] >= 0).to_numpy() if len(cat) else np.zeros(0, bool)
    found = truth["FOUND"].to_numpy()
    residual = (truth["PRED_LOG_NHI"] - truth["LOG_NHI"]).to_numpy()
    residual_by_nhi = {}
    for lo, hi in zip(NHI_EDGES[:-1], NHI_EDGES[1:]):
        pick = found & (truth["LOG_NHI"].to_numpy() >= lo) & (truth["LOG_NHI"].to_numpy() < hi)
        residual_by_nhi[bin_label(lo, hi)] = {
            "n": int(pick.sum()),
            "bias_dex": float(residual[pick].mean()) if pick.any() else float("nan"),
            "rms_dex": _rms(residual[pick]),
        }
    fp = false_positive_causes([c for c in cat["FALSE_POSITIVE_CAUSE"] if c]) if len(cat) else {}
    metrics = {
        **location_metrics(truth, cat, options),
        **sightline_rates(truth, cat, data.rows("test")),
        "by_log_nhi": purity_completeness_by_bin(
            truth["LOG_NHI"], found, cat["LOG_NHI"] if len(cat) else [], correct, NHI_EDGES
        ),
        "by_snr": purity_completeness_by_bin(
            truth["SNR"], found, cat["SNR"] if len(cat) else [], correct, SNR_EDGES
        ),
        "log_nhi_residual_by_log_nhi": residual_by_nhi,
        "false_positive_causes": fp,
        "main_false_positive_cause": max(fp, key=fp.get) if fp and sum(fp.values()) else "",
        **training_record(payload),
    }
    metrics.update(location_intervals(truth, cat, data.rows("test"), metrics))
    return Localisation(cat, truth, metrics)


def location_intervals(
    truth: pd.DataFrame, cat: pd.DataFrame, test_rows: np.ndarray, metrics: dict[str, Any]
) -> dict[str, Any]:
    """Bootstrap intervals of the catalogue's completeness and purity, per DLA and per sightline:
    the test sightlines resampled with replacement (every test sightline, those without a true or
    a catalogue DLA too: how many of them a resample holds is part of the spread)."""
    position = {int(row): k for k, row in enumerate(np.asarray(test_rows))}
    n = len(position)

    def per_sightline(rows: Any, weights: Any) -> np.ndarray:
        index = np.array([position[int(r)] for r in rows], dtype=int)
        return (
            np.bincount(index, weights=np.asarray(weights, float), minlength=n) if index.size else np.zeros(n)
        )

    n_true = per_sightline(truth["ROW"], np.ones(len(truth)))
    n_found = per_sightline(truth["ROW"], truth["FOUND"].to_numpy(float))
    n_cat = per_sightline(cat["ROW"], np.ones(len(cat))) if len(cat) else np.zeros(n)
    n_correct = (
        per_sightline(cat["ROW"], (cat["TRUE_MATCH"] >= 0).to_numpy(float)) if len(cat) else np.zeros(n)
    )
    return {
        "fraction_found_within_tolerance_interval": ratio_interval(
            metrics["fraction_found_within_tolerance"], n_found, n_true
        ),
        "purity_interval": ratio_interval(metrics["purity"], n_correct, n_cat),
        "sightline_completeness_interval": ratio_interval(
            metrics["sightline_completeness"], n_found > 0, n_true > 0
        ),
        "sightline_purity_interval": ratio_interval(metrics["sightline_purity"], n_correct > 0, n_cat > 0),
    }


# --- summary -------------------------------------------------------------------------------------


INTERVAL_KEYS = ("lo68", "hi68", "lo95", "hi95")


def _row(
    pipeline: str,
    model: str,
    figure: str,
    value: float,
    m: dict[str, Any],
    catastrophic: str = "",
    interval: dict[str, Any] | None = None,
) -> dict:
    """One summary row; ``interval``: the figure's bootstrap interval (Interval.to_dict()), its
    bounds in columns lo68, hi68, lo95, hi95 (NaN without one)."""
    bounds = {
        key: float("nan") if not interval or interval.get(key) is None else float(interval[key])
        for key in INTERVAL_KEYS
    }
    return {
        "pipeline": pipeline,
        "model": model,
        "figure": figure,
        "value": value,
        **bounds,
        "catastrophic (|dz|>0.1)": catastrophic,
        "parameters": m["parameters"],
        "train_seconds": m["train_seconds"],
        "epochs": m["epochs"],
        "slides": SLIDES[model],
    }


def _catastrophic_detail(m: dict[str, Any]) -> str:
    """ "3/100" and, with its interval, "3/100 (0.030 ± 0.017)"."""
    text = f"{m['n_catastrophic']}/{m['n']}"
    interval = Interval.from_dict(m.get("catastrophic_fraction_interval"))
    return f"{text} ({interval.text(digits=3)})" if interval is not None else text


def summary_table(
    redshift: list[dict[str, Any]],
    presence: dict[str, Any] | None,
    location: dict[str, Any] | None,
    catalogue_rows: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per figure of merit (from the scoring rules' metrics), with the slides' value: the
    headline first, then the breakdowns (S/N, BAL, log N_HI bins) under the same pipeline; then
    `catalogue_rows`, the calibrated DLA catalogue's (:func:`.dla_catalogue.summary_rows`)."""
    rows = []
    for m in redshift:
        rows.append(
            _row(
                "redshift",
                m["model"],
                "MAPE [%]",
                m["mape_percent"],
                m,
                _catastrophic_detail(m),
                m.get("mape_percent_interval"),
            )
        )
        for group in ("by_snr", "by_bal"):
            for name, g in m.get(group, {}).items():
                rows.append(
                    _row(
                        "redshift",
                        m["model"],
                        f"MAPE [%], {name} (n={g['n']})",
                        g["mape_percent"],
                        m,
                        f"{g['catastrophic_fraction']:.3g}",
                    )
                )
    if presence:
        m = presence
        rows.append(
            _row("dla_presence", "presence", "AUC, all segments", m["auc"], m, interval=m.get("auc_interval"))
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                "AUC, unambiguous segments only",
                m.get("auc_unambiguous", float("nan")),
                m,
            )
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                f"completeness at p>={m.get('threshold', PRESENCE_THRESHOLD):g}",
                m.get("completeness", float("nan")),
                m,
                interval=m.get("completeness_interval"),
            )
        )
        rows.append(
            _row(
                "dla_presence",
                "presence",
                "purity",
                m.get("purity", float("nan")),
                m,
                interval=m.get("purity_interval"),
            )
        )
        for name, g in m.get("completeness_by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"completeness, log N_HI {name} (n={g['n_true']})",
                    g["completeness"],
                    m,
                )
            )
        for name, g in m.get("by_snr", {}).items():
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"completeness / purity, S/N {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        if m.get("main_false_positive_cause"):
            rows.append(
                _row(
                    "dla_presence",
                    "presence",
                    f"false positives: most on {m['main_false_positive_cause']}",
                    m["false_positive_causes"][m["main_false_positive_cause"]]
                    / max(sum(m["false_positive_causes"].values()), 1),
                    m,
                    str(m["false_positive_causes"]),
                )
            )
    if location:
        m = location
        rows.append(
            _row(
                "dla_location",
                "location",
                f"catalogue completeness (per DLA, {m['tolerance_angstrom']:g} A)",
                m["fraction_found_within_tolerance"],
                m,
                interval=m.get("fraction_found_within_tolerance_interval"),
            )
        )
        rows.append(
            _row(
                "dla_location",
                "location",
                "catalogue purity (per DLA)",
                m["purity"],
                m,
                interval=m.get("purity_interval"),
            )
        )
        for key, figure in (
            ("sightline_completeness", "sightline completeness"),
            ("sightline_purity", "sightline purity"),
        ):
            if key in m:
                rows.append(
                    _row("dla_location", "location", figure, m[key], m, interval=m.get(f"{key}_interval"))
                )
        for figure, key in (
            (
                f"found within {m['tolerance_angstrom']:g} A, S/N>{m['snr_min']:g}",
                "fraction_found_within_tolerance_snr_gt_min",
            ),
            ("position rms [A]", "position_rms_angstrom"),
            ("log N_HI rms [dex]", "log_nhi_rms_dex"),
        ):
            rows.append(_row("dla_location", "location", figure, m[key], m))
        for name, g in m.get("by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"completeness / purity, log N_HI {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        for name, g in m.get("by_snr", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"completeness / purity, S/N {name}",
                    g["completeness"],
                    m,
                    f"purity {g['purity']:.3g}",
                )
            )
        for name, g in m.get("log_nhi_residual_by_log_nhi", {}).items():
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"log N_HI bias [dex], true {name}",
                    g["bias_dex"],
                    m,
                    f"rms {g['rms_dex']:.3g}",
                )
            )
        if m.get("main_false_positive_cause"):
            total = max(sum(m["false_positive_causes"].values()), 1)
            rows.append(
                _row(
                    "dla_location",
                    "location",
                    f"false positives: most on {m['main_false_positive_cause']}",
                    m["false_positive_causes"][m["main_false_positive_cause"]] / total,
                    m,
                    str(m["false_positive_causes"]),
                )
            )
    rows += catalogue_rows or []
    table = pd.DataFrame(rows).rename(columns={"catastrophic (|dz|>0.1)": "detail"})
    if len(table):  # the slides' figure once per model, on its headline row
        table.loc[table.duplicated(["pipeline", "model"]), "slides"] = ""
    return table


def summary_markdown(table: pd.DataFrame, size: str) -> str:
    """The summary table as Markdown, floats to 4 significant digits; a value with a bootstrap
    interval as "value ± half-width of the 68% interval" (the bounds stay in the CSV)."""
    columns = [c for c in table.columns if c not in INTERVAL_KEYS]
    lines = [f"# 4MOST quasar pipelines: {size} set (test split)", ""]
    if all(k in table for k in INTERVAL_KEYS) and np.isfinite(table["lo68"].to_numpy(float)).any():
        lines += [
            f"± is the half-width of the 68% interval of a percentile bootstrap ({N_RESAMPLES} resamples) "
            "over the test sightlines: whole sightlines resampled, since the segments and windows of one "
            "sightline overlap; the CSV gives the 68% (lo68, hi68) and 95% (lo95, hi95) bounds.",
            "",
        ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in table.iterrows():
        cells = []
        for c in columns:
            v = r[c]
            if (
                c == "value"
                and isinstance(v, float)
                and np.isfinite([r.get("lo68", np.nan), r.get("hi68", np.nan)]).all()
            ):
                cells.append(f"{v:.4g} ± {0.5 * (r['hi68'] - r['lo68']):.2g}")
            else:
                cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
