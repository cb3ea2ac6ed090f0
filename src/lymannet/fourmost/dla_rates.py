"""Purity and completeness of a DLA catalogue, per DLA and per sightline, weighted to nature's
incidence or not, with bootstrap intervals over the sightlines, overall and per bin (S/N, log
N_HI): what the calibration (validation) and the catalogue's scores (test) count with."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .metrics import bin_label, ratio_interval


def _per_row(rows: np.ndarray, values: np.ndarray, position: dict[int, int], n: int) -> np.ndarray:
    """Sum of `values` per scored sightline; entries on sightlines outside them (a footprint) drop."""
    index = np.array([position.get(int(r), -1) for r in rows], dtype=int)
    keep = index >= 0
    values = np.asarray(values, float)[keep] if index.size else np.zeros(0)
    return np.bincount(index[keep], weights=values, minlength=n) if keep.any() else np.zeros(n)


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
