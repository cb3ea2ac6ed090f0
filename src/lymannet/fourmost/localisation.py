"""Scoring the 4MOST DLA localiser: the catalogue of merged DLAs over the test split, matched to
the truth, and its figures of merit (per DLA and per sightline, per log N_HI and S/N bin, with
bootstrap intervals, and what the false positives sit on).

The sliding windows and their decoding live in :mod:`.features`, the merge and the match in
:mod:`.metrics`; the calibrated catalogue built on this one in :mod:`.dla_catalogue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from ..lines import LYA
from . import features as ft
from .ingest import Ingested
from .metrics import (
    NHI_EDGES,
    SNR_EDGES,
    bin_label,
    confuser_of,
    match_catalogue,
    merge_windows,
    nmad,
    purity_completeness_by_bin,
    ratio_interval,
)
from .score import _fraction, bal_pixel_ranges, false_positive_causes, hi_absorbers_by_row, training_record
from .tasks import dla_inputs, predict_batches

log = logging.getLogger("lymannet.fourmost")

NATIVE_PIXEL_ANGSTROM = 0.25  # the simulator's (and the slides') grid step
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


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else float("nan")


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
