"""Scoring the 4MOST redshift regressors and the DLA presence CNN on the test split.

One function per scoring rule: it takes the ingested set and a loaded model file and returns the
tables and the metrics dictionary the rule writes. The DLA localiser's scoring lives in
:mod:`.localisation`, the summary table of every figure of merit in :mod:`.summary`; the figures of
merit themselves in :mod:`.metrics`; the window encoding and decoding in :mod:`.features`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

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
    confuser_of,
    purity_completeness_by_bin,
    ratio_interval,
    redshift_by_bin,
    redshift_metrics,
    roc_curve,
    snr_groups,
)
from .tasks import dla_inputs, predict_batches, predict_redshift

PRESENCE_THRESHOLD = 0.5


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
