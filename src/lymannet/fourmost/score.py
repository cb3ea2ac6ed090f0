"""Scoring the 4MOST networks on the test split, and the summary table of every figure of merit.

One function per scoring rule: it takes the ingested set and a loaded model file and returns the
tables and the metrics dictionary the rule writes. The figures of merit themselves live in
:mod:`.metrics`; the window encoding and decoding in :mod:`.features`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ..lines import LYA
from . import features as ft
from .io import Ingested
from .metrics import auc, match_catalogue, merge_windows, nmad, redshift_metrics, roc_curve
from .train import dla_inputs, predict_batches, predict_redshift

log = logging.getLogger("lymannet.fourmost")

NATIVE_PIXEL_ANGSTROM = 0.25  # the simulator's (and the slides') grid step
PRESENCE_THRESHOLD = 0.5
CATALOGUE_COLUMNS = ["FILE", "ROW", "Z_ABS", "LOG_NHI", "CONFIDENCE", "N_WINDOWS", "TRUE_MATCH"]
# What the slides report for each model, quoted beside ours in the summary.
SLIDES = {"dense": "test loss 0.0441, 548M parameters, 6,776 s", "gru": "MAPE 1.14%, 7,548 s",
          "quasarnet": "(not in the slides)", "presence": "AUC 0.9154, 84,865 parameters",
          "location": "accuracy ~90%"}


def training_record(payload: dict[str, Any]) -> dict[str, Any]:
    """The model file's size and training cost, reported beside every score."""
    return {"parameters": payload["parameters"], "train_seconds": payload["train_seconds"],
            "epochs": len(payload["history"]["epoch"]), "n_train": payload["info"].get("n_train")}


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")


# --- redshift ------------------------------------------------------------------------------------


def score_redshift(data: Ingested, network: nn.Module, payload: dict[str, Any],
                   catastrophic_dz: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(predictions per test sightline, metrics) of a redshift regressor."""
    rows = data.rows("test")
    z_true = data.sightlines["Z_QSO"].to_numpy()[rows]
    z_pred = predict_redshift(network, payload["info"], data, rows, payload["kind"], payload["spec"])
    table = pd.DataFrame({"FILE": data.sightlines["FILE"].to_numpy()[rows], "Z_TRUE": z_true, "Z_PRED": z_pred,
                          "SNR": data.sightlines["SNR"].to_numpy()[rows]})
    result = redshift_metrics(z_pred, z_true, catastrophic_dz)
    result.update({"model": payload["kind"], **training_record(payload)})
    return table, result


# --- DLA presence --------------------------------------------------------------------------------


def score_presence(data: Ingested, network: nn.Module, payload: dict[str, Any],
                   options: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(every test segment with its score, metrics) of the presence CNN. The headline AUC leaves
    out the edge-ambiguous segments, as training does; the AUC with them is reported too."""
    length = payload["info"]["n_pixels"]
    seg = ft.presence_segments(data, data.rows("test"), length, int(options["segment_stride"]),
                               int(options["edge_pixels"]))
    logits = predict_batches(network, ft.cut_windows(dla_inputs(data, options), seg.rows, seg.starts, length))
    score = 1.0 / (1.0 + np.exp(-logits))
    table = pd.DataFrame({"ROW": seg.rows, "START": seg.starts, "LABEL": seg.label.astype(int),
                          "AMBIGUOUS": seg.ambiguous, "LOG_NHI": seg.log_n,
                          "SNR": data.sightlines["SNR"].to_numpy()[seg.rows], "SCORE": score})
    clean = ~seg.ambiguous
    # Balanced like the slides' test set: every clean positive and as many clean negatives.
    balanced = ft.balance(seg, np.random.default_rng(0))
    predicted = score >= PRESENCE_THRESHOLD
    positive = seg.label == 1
    result = {
        "auc": auc(score[clean], seg.label[clean]),
        "auc_all_segments_ambiguous_included": auc(score, seg.label),
        "auc_balanced": auc(score[balanced], seg.label[balanced]),
        "n_segments": int(len(seg.rows)), "n_ambiguous": int(seg.ambiguous.sum()),
        "n_positive": int((positive & clean).sum()),
        "completeness_at_0.5": _fraction(predicted[clean & positive]),
        "purity_at_0.5": _fraction(positive[clean & predicted]),
        "accuracy_balanced_at_0.5": float((predicted[balanced] == positive[balanced]).mean()),
        **training_record(payload),
    }
    return table, result


def presence_roc(segments: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) over the unambiguous segments."""
    clean = segments[~segments["AMBIGUOUS"]]
    fpr, tpr, _ = roc_curve(clean["SCORE"].to_numpy(), clean["LABEL"].to_numpy())
    return fpr, tpr


# --- DLA localisation ----------------------------------------------------------------------------


@dataclass
class Localisation:
    catalogue: pd.DataFrame  # merged DLAs: FILE, ROW, POSITION, Z_ABS, LOG_NHI, CONFIDENCE, N_WINDOWS, TRUE_MATCH
    truth: pd.DataFrame  # test DLAs with MATCH, FOUND, DELTA_A, PRED_LOG_NHI, SNR, NEAREST_DELTA_A
    metrics: dict[str, Any]


def dla_catalogue(data: Ingested, network: nn.Module, length: int, options: dict[str, Any]) -> pd.DataFrame:
    """Slide windows over the test sightlines, decode their votes and merge them into DLAs
    (Parks et al. 2018, MNRAS 476, 1151): FILE, ROW, POSITION [DLA-grid pixel], Z_ABS, LOG_NHI, ..."""
    rows = data.rows("test")
    windows = ft.sliding_windows(data, rows, length, int(options["slide_stride"]))
    log.info("%d sliding windows over %d test sightlines", len(windows.rows), len(rows))
    x = ft.cut_windows(dla_inputs(data, options), windows.rows, ft.window_starts(windows.centres, length), length)
    votes = ft.decode_windows(windows, predict_batches(network, x), length)
    step = float(data.dla_wave[1] - data.dla_wave[0])
    cat = merge_windows(windows.rows, votes.position, votes.log_n, votes.probability,
                        float(options["merge_threshold"]), float(options["merge_radius_angstrom"]) / step)
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


def match_truth(data: Ingested, cat: pd.DataFrame, tolerance_angstrom: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test DLAs matched one-to-one to the catalogue within the tolerance, catalogue with TRUE_MATCH)."""
    step = float(data.dla_wave[1] - data.dla_wave[0])
    truth = data.dlas[data.dlas["ROW"].isin(data.rows("test"))].reset_index(drop=True)
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
        "n_true_dlas": int(len(truth)), "n_catalogue": int(len(cat)),
        "fraction_found_within_tolerance": _fraction(found),
        "fraction_found_within_tolerance_snr_gt_min": float(found[high].mean()) if high.any() else float("nan"),
        "n_true_dlas_snr_gt_min": int(high.sum()),
        "purity": _fraction((cat["TRUE_MATCH"] >= 0).to_numpy()),
        "n_false_positives": int((cat["TRUE_MATCH"] < 0).sum()) if len(cat) else 0,
        "position_rms_angstrom": _rms(dz),
        "position_rms_pixels_native_0.25A": _rms(dz) / NATIVE_PIXEL_ANGSTROM if dz.size else float("nan"),
        "log_nhi_rms_dex": _rms(err), "log_nhi_nmad_dex": nmad(err),
        "log_nhi_bias_dex": float(np.mean(err)) if err.size else float("nan"),
        "tolerance_angstrom": float(options["match_tolerance_angstrom"]), "snr_min": float(options["snr_min"]),
    }


def score_location(data: Ingested, network: nn.Module, payload: dict[str, Any],
                   options: dict[str, Any]) -> Localisation:
    """The location CNN's DLA catalogue over the test split, matched to the truth, and its metrics."""
    cat = dla_catalogue(data, network, payload["info"]["n_pixels"], options)
    truth, cat = match_truth(data, cat, float(options["match_tolerance_angstrom"]))
    metrics = {**location_metrics(truth, cat, options), **training_record(payload)}
    return Localisation(cat, truth, metrics)


# --- summary -------------------------------------------------------------------------------------


def _row(pipeline: str, model: str, figure: str, value: float, m: dict[str, Any], catastrophic: str = "") -> dict:
    return {"pipeline": pipeline, "model": model, "figure": figure, "value": value,
            "catastrophic (|dz|>0.1)": catastrophic, "parameters": m["parameters"],
            "train_seconds": m["train_seconds"], "epochs": m["epochs"], "slides": SLIDES[model]}


def summary_table(redshift: list[dict[str, Any]], presence: dict[str, Any] | None,
                  location: dict[str, Any] | None) -> pd.DataFrame:
    """One row per headline figure of merit (from the scoring rules' metrics), with the slides' value."""
    rows = [_row("redshift", m["model"], "MAPE [%]", m["mape_percent"], m, f"{m['n_catastrophic']}/{m['n']}")
            for m in redshift]
    if presence:
        rows.append(_row("dla_presence", "presence", "AUC", presence["auc"], presence))
    if location:
        m = location
        for figure, key in ((f"found within {m['tolerance_angstrom']:g} A, S/N>{m['snr_min']:g}",
                             "fraction_found_within_tolerance_snr_gt_min"),
                            ("log N_HI rms [dex]", "log_nhi_rms_dex"), ("catalogue purity", "purity")):
            rows.append(_row("dla_location", "location", figure, m[key], m))
    return pd.DataFrame(rows)


def summary_markdown(table: pd.DataFrame, size: str) -> str:
    """The summary table as Markdown, floats to 4 significant digits."""
    lines = [f"# 4MOST quasar pipelines: {size} set (test split)", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for _, r in table.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
