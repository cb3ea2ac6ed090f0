"""Rule `fourmost_score_dla_location`'s catalogue: the calibration applied to the test split,
scored step by step (network, calibrated, working point, BAL handling, 20.0-20.3 neutral, the
S/N footprint) with
bootstrap intervals, the DESI-style `dla_catalogue.fits` (written atomically) and its summary
rows."""

from __future__ import annotations
import logging
from pathlib import Path
from typing import Any
import fitsio
import numpy as np
import pandas as pd
from ..calibration import reliability
from ..fileio import atomic_path
from . import features as ft
from .ingest import Ingested
from .localisation import catalogue_false_positive_causes, window_votes
from .metrics import CONFUSER_ORDER, NHI_EDGES, SNR_EDGES, ratio_interval
from .score import presence_predictions
from .summary import _row
from .dla_probability import DLA_LOG_N, presence_probability, weighted_fraction
from .dla_calibration import VARIANTS, footprint_of, localiser_candidates, nhi_err, nhi_err_coverage
from .dla_rates import catalogue_rates, rates_by_bin

log = logging.getLogger("lymannet.fourmost")


# --- on the test split ---------------------------------------------------------------------------

RUNGS = (
    ("network", "before: every candidate (network p >= merge threshold)"),
    ("calibrated", "step 1: DLA_PROB >= 0.5 (nature's incidence)"),
    ("working_point", "step 2: DLA_PROB > validation working point"),
    ("bal", "step 3: + BAL handling, every sightline"),
    ("neutral", "step 4: the catalogue, 20.0-20.3 neither true nor false"),
    ("footprint", "step 5: THE CATALOGUE on its footprint (sightline S/N >= footprint S/N)"),
    ("footprint_neutral", "step 5 and 20.0-20.3 neither true nor false"),
)


def false_on_bal(
    cat: pd.DataFrame, selected: np.ndarray, data: Ingested, tolerance_pixels: float, truth: pd.DataFrame
) -> dict[str, int]:
    """False selected candidates on BAL quasars, and those attributed to a BAL trough (the first
    cause that applies, :func:`.localisation.catalogue_false_positive_causes`)."""
    pick = np.asarray(selected, bool)
    sub = cat[pick]
    causes = catalogue_false_positive_causes(data, truth, sub, tolerance_pixels) if len(sub) else []
    counts = {name: int(sum(c == name for c in causes)) for name in CONFUSER_ORDER}
    false = (sub["TRUE_MATCH"].to_numpy() < 0) if len(sub) else np.zeros(0, bool)
    return {
        "on_bal_quasars": int(np.sum(false & (sub["BAL"].to_numpy() == 1))) if len(sub) else 0,
        "on_bal_troughs": counts["BAL trough"],
        "causes": counts,
    }


def rung_scores(
    data: Ingested,
    truth: pd.DataFrame,
    cat: pd.DataFrame,
    selected: np.ndarray,
    rows: np.ndarray,
    neutral: bool,
    tolerance_pixels: float,
) -> dict[str, Any]:
    """One rung of the ladder on the test split: per DLA and per sightline, overall (with bootstrap
    intervals over the sightlines), per S/N bin and per log N_HI bin, and the false ones on BALs."""
    out = catalogue_rates(truth, cat, selected, rows, neutral, intervals=True)
    out["by_snr"] = rates_by_bin(truth, cat, selected, rows, neutral, "SNR", SNR_EDGES)
    out["by_log_nhi"] = rates_by_bin(truth, cat, selected, rows, neutral, "LOG_NHI", NHI_EDGES)
    # with the 20.0-20.3 band neutral, its candidates are not false ones on a BAL either
    counted = selected & ~cat["NEUTRAL"].to_numpy(bool) if neutral and len(cat) else selected
    out["false_on_bal"] = false_on_bal(cat, counted, data, tolerance_pixels, truth)
    return out


def test_reliability(
    raw: np.ndarray, corrected: np.ndarray, calibrated: np.ndarray, outcome: np.ndarray
) -> dict[str, Any]:
    return {
        "raw": reliability(raw, outcome),
        "prior_corrected": reliability(corrected, outcome),
        "calibrated": reliability(calibrated, outcome),
    }


def score_dla_catalogue(
    data: Ingested,
    localisers: dict[str, tuple[Any, dict[str, Any]]],
    record: dict[str, Any],
    options: dict[str, Any],
    presence: tuple[Any, dict[str, Any]] | None = None,
    votes: dict[str, tuple[ft.Windows, ft.WindowVotes]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The calibrated DLA catalogue on the test split (nature's incidence) and the ladder of its
    scores before and after each step. Returns (catalogue of the chosen BAL handling, its truth
    table, metrics). `votes`: the localisers' test votes (:func:`.localisation.window_votes`) at hand."""
    rows = data.rows("test")
    step = float(data.dla_wave[1] - data.dla_wave[0])
    tolerance = float(options["match_tolerance_angstrom"]) / step
    margin = float(record["bal_mask_margin_angstrom"])
    votes = dict(votes or {})
    for model in sorted({"location", record["variants"][record["bal_method"]]["model"]} - set(votes)):
        network, payload = localisers[model]
        votes[model] = window_votes(data, network, payload["info"]["n_pixels"], options, rows)
    test_presence = None
    if presence is not None and "presence" in record:
        seg, raw = presence_predictions(data, *presence, options, rows)
        test_presence = (seg, raw, presence_probability(raw, record["presence"]))
    fused = (test_presence[0], test_presence[2]) if test_presence is not None else None
    plain = record["variants"]["none"]
    cat0, truth0 = localiser_candidates(data, votes["location"], plain, options, rows, margin, fused)
    chosen = record["variants"][record["bal_method"]]
    cat, truth = localiser_candidates(data, votes[chosen["model"]], chosen, options, rows, margin, fused)
    cat["NHI_ERR"] = nhi_err(cat, chosen["nhi_err"])
    selected = cat["DLA_PROB"].to_numpy(float) > chosen["working_point"]["threshold"]
    snr_min = float(record.get("footprint_snr_min", 0.0))
    inside, cat_inside, truth_inside = footprint_of(data, rows, snr_min, cat, truth)
    cat["SELECTED"] = selected & cat_inside
    prob0 = cat0["DLA_PROB"].to_numpy(float)
    ladder = {
        "network": rung_scores(data, truth0, cat0, np.ones(len(cat0), bool), rows, False, tolerance),
        "calibrated": rung_scores(data, truth0, cat0, prob0 >= 0.5, rows, False, tolerance),
        "working_point": rung_scores(
            data, truth0, cat0, prob0 > plain["working_point"]["threshold"], rows, False, tolerance
        ),
        "bal": rung_scores(data, truth, cat, selected, rows, False, tolerance),
        "neutral": rung_scores(data, truth, cat, selected, rows, True, tolerance),
        "footprint": rung_scores(data, truth_inside, cat, selected & cat_inside, inside, False, tolerance),
        "footprint_neutral": rung_scores(
            data, truth_inside, cat, selected & cat_inside, inside, True, tolerance
        ),
    }
    correct = cat["TRUE_MATCH"].to_numpy() >= 0 if len(cat) else np.zeros(0, bool)
    correct0 = cat0["TRUE_MATCH"].to_numpy() >= 0 if len(cat0) else np.zeros(0, bool)
    metrics: dict[str, Any] = {
        "rungs": dict(RUNGS),
        "ladder": ladder,
        "bal_method": record["bal_method"],
        "bal_method_rule": record["bal_method_rule"],
        "bal_source": record["bal_source"],
        "working_point": chosen["working_point"],
        "working_point_none": plain["working_point"],
        "purity_goal": record["purity_goal"],
        "footprint_snr_min": snr_min,
        "n_footprint_sightlines": int(len(inside)),
        "n_footprint_dlas": int(len(truth_inside)),
        "reliability": test_reliability(
            cat["CONFIDENCE"].to_numpy(float),
            cat["SUPPORT"].to_numpy(float),
            cat["DLA_PROB"].to_numpy(float),
            correct,
        ),
        "reliability_without_bal_handling": test_reliability(
            cat0["CONFIDENCE"].to_numpy(float), cat0["SUPPORT"].to_numpy(float), prob0, correct0
        ),
        "nhi_err": chosen["nhi_err"],
        "nhi_err_coverage": nhi_err_coverage(cat, selected & correct),
        "nhi_err_coverage_validation": chosen["validation_nhi_err_coverage"],
        "expected_purity_at_working_point": (
            float(cat["DLA_PROB"][selected & cat_inside].mean())
            if (selected & cat_inside).any()
            else float("nan")
        ),
        "validation": {
            name: {
                "purity": v["validation_at_working_point"]["purity"],
                "completeness": v["validation_at_working_point"]["completeness"],
                "threshold": v["working_point"]["threshold"],
                "false_on_bal_quasars": v["validation_false_on_bal_quasars"],
                "ece": {k: r["ece"] for k, r in v["reliability"].items()},
            }
            for name, v in record["variants"].items()
        },
        "model_sha256": record["model_sha256"],
        "n_test_sightlines": int(len(rows)),
        "n_test_dlas": int(len(truth)),
    }
    if test_presence is not None:
        seg, raw, prob = test_presence
        label = seg.label_any == 1
        prec = record["presence"]
        chosen_p = prob > prec["working_point"]["threshold"]
        metrics["presence"] = {
            "reliability": test_reliability(
                raw, presence_probability(raw, prec, "prior_corrected"), prob, label
            ),
            "working_point": prec["working_point"],
            "at_p_0.5": {
                "purity": weighted_fraction(label[raw >= 0.5], np.ones(int((raw >= 0.5).sum()))),
                "completeness": weighted_fraction(raw[label] >= 0.5, np.ones(int(label.sum()))),
            },
            "at_working_point": {
                "purity": weighted_fraction(label[chosen_p], np.ones(int(chosen_p.sum()))),
                "completeness": weighted_fraction(chosen_p[label], np.ones(int(label.sum()))),
                "purity_interval": ratio_interval(
                    weighted_fraction(label[chosen_p], np.ones(int(chosen_p.sum()))),
                    chosen_p & label,
                    chosen_p,
                    seg.rows,
                ),
                "completeness_interval": ratio_interval(
                    weighted_fraction(chosen_p[label], np.ones(int(label.sum()))),
                    chosen_p & label,
                    label,
                    seg.rows,
                ),
            },
        }
    final = ladder["footprint"]
    log.info(
        "test DLA catalogue (%d DLAs on %d sightlines): %s",
        len(truth),
        len(rows),
        "; ".join(
            f"{name}: purity {ladder[name]['purity']:.3f} completeness {ladder[name]['completeness']:.3f}"
            for name, _ in RUNGS
        ),
    )
    log.info(
        "at the working point: DLA_PROB > %.3f, BAL %s, %d selected, %d false (%d on BAL quasars)",
        chosen["working_point"]["threshold"],
        record["bal_method"],
        final["n_selected"],
        final["n_false"],
        final["false_on_bal"]["on_bal_quasars"],
    )
    return cat, truth, metrics


# --- the catalogue file --------------------------------------------------------------------------

CATALOGUE_EXTNAME = "DLACAT"


def catalogue_table(data: Ingested, cat: pd.DataFrame) -> np.ndarray:
    """One row per DLA candidate, in the DESI DLA-catalogue style: TARGETID (when the sightlines
    carry one) or FILE, Z_QSO, Z_DLA, NHI, NHI_ERR, DLA_PROB, SNR, BAL_FLAG, SELECTED (at the working
    point) and the network's CONFIDENCE and N_WINDOWS."""
    rows = cat["ROW"].to_numpy().astype(int) if len(cat) else np.zeros(0, int)
    sightlines = data.sightlines
    columns: list[tuple[str, np.ndarray]] = []
    if "TARGETID" in sightlines.columns:
        columns.append(("TARGETID", sightlines["TARGETID"].to_numpy().astype(np.int64)[rows]))
    files = sightlines["FILE"].astype(str).to_numpy()[rows]
    columns.append(("FILE", files.astype(f"S{max([len(f) for f in files] + [1])}")))
    columns += [
        ("Z_QSO", sightlines["Z_QSO"].to_numpy(float)[rows]),
        ("Z_DLA", cat["Z_ABS"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("NHI", cat["LOG_NHI"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("NHI_ERR", cat["NHI_ERR"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("DLA_PROB", cat["DLA_PROB"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("SNR", sightlines["SNR"].to_numpy(float)[rows]),
        ("BAL_FLAG", sightlines["BAL"].to_numpy().astype(np.int16)[rows]),
        ("SELECTED", cat["SELECTED"].to_numpy(bool) if len(cat) else np.zeros(0, bool)),
        ("CONFIDENCE", cat["CONFIDENCE"].to_numpy(float) if len(cat) else np.zeros(0)),
        ("N_WINDOWS", cat["N_WINDOWS"].to_numpy().astype(np.int32) if len(cat) else np.zeros(0, np.int32)),
    ]
    dtype = [
        (
            name,
            (
                values.dtype
                if values.dtype.kind in "SUb"
                else ("f8" if name.startswith("Z_") else (values.dtype if values.dtype.kind in "i" else "f4"))
            ),
        )
        for name, values in columns
    ]
    table = np.zeros(len(rows), dtype=dtype)
    for name, values in columns:
        table[name] = values
    return table


def catalogue_header(record: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """Header cards: the working point, the class mix DLA_PROB is for, BAL handling, model hashes."""
    chosen = record["variants"][record["bal_method"]]
    point = chosen["working_point"]
    cards = [
        {"name": "CATALOG", "value": "lymannet 4MOST DLA", "comment": "one row per DLA candidate"},
        {"name": "SPLIT", "value": split, "comment": "sightlines searched"},
        {"name": "PROBFOR", "value": "nature", "comment": "DLA_PROB: P(true DLA) at nature's DLA incidence"},
        {
            "name": "CALMETH",
            "value": "prior+beta",
            "comment": "prior correction, beta calibration on validation",
        },
        {"name": "WPKIND", "value": "purity", "comment": "working point: a purity goal on validation"},
        {"name": "WPGOAL", "value": float(point["purity_goal"]), "comment": "purity goal, log N_HI >= 20.3"},
        {
            "name": "WPPROB",
            "value": float(point["threshold"]),
            "comment": "working point: SELECTED = DLA_PROB > WPPROB",
        },
        {
            "name": "WPVALPUR",
            "value": float(np.nan_to_num(point["validation_purity"], nan=-1.0)),
            "comment": "purity reached on validation (nature)",
        },
        {
            "name": "WPVALCOM",
            "value": float(np.nan_to_num(point["validation_completeness"], nan=-1.0)),
            "comment": "completeness reached on validation",
        },
        {"name": "MINNHI", "value": DLA_LOG_N, "comment": "a true DLA: log N_HI >= MINNHI"},
        {
            "name": "SNRMIN",
            "value": float(record.get("footprint_snr_min", 0.0)),
            "comment": "footprint: SELECTED only where sightline SNR >= SNRMIN",
        },
        {
            "name": "PRIORTRN",
            "value": float(chosen["prior_train"]),
            "comment": "windows with a DLA, training",
        },
        {
            "name": "PRIORNAT",
            "value": float(chosen["prior_natural"]),
            "comment": "windows with a DLA, nature",
        },
        {
            "name": "NHIERRA",
            "value": float(chosen["nhi_err"][0]),
            "comment": "NHI_ERR = sqrt(B^2 + (A spread)^2): A",
        },
        {"name": "NHIERRB", "value": float(chosen["nhi_err"][1]), "comment": "NHI_ERR: B [dex]"},
        {"name": "BALMETH", "value": record["bal_method"], "comment": "BAL handling (mask/negatives/none)"},
        {"name": "BALSRC", "value": "truth BAL column", "comment": "BAL flag source (no own classifier)"},
        {
            "name": "BALMARG",
            "value": float(record["bal_mask_margin_angstrom"]),
            "comment": "trough mask margin [A]",
        },
    ]
    for name, digest in sorted(record["model_sha256"].items()):
        key = {"location": "LOCHASH", "location_bal": "LBALHASH", "presence": "PREHASH"}.get(
            name, name[:8].upper()
        )
        cards.append({"name": key, "value": digest, "comment": f"sha256[:16] of models/{name}.pt"})
    return cards


def write_catalogue(path: str | Path, table: np.ndarray, header: list[dict[str, Any]]) -> None:
    """The catalogue as a FITS table (extension DLACAT), written atomically."""
    with atomic_path(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(table, extname=CATALOGUE_EXTNAME, header=header)


# --- the summary ---------------------------------------------------------------------------------


def _pm(value: float, interval: dict[str, Any] | None) -> str:
    """ "0.853 ± 0.031" (half the 68% interval), or the value alone."""
    if value is None or not np.isfinite(value):
        return "nan"
    if interval and interval.get("lo68") is not None and interval.get("hi68") is not None:
        return f"{value:.3f} ± {0.5 * (interval['hi68'] - interval['lo68']):.3f}"
    return f"{value:.3f}"


def summary_rows(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary-table rows (:func:`.summary.summary_table`'s columns) of the calibrated DLA catalogue:
    ECE before/after, the ladder of steps, the working point per S/N and log N_HI bin (strict and
    sub-DLA-neutral), NHI_ERR coverage, the BAL comparison on validation."""
    c = m["calibrated"]
    rows = []
    rel = c["reliability"]
    rows.append(
        _row(
            "dla_catalogue",
            "location",
            "ECE of DLA_PROB (per candidate, 10 bins)",
            rel["calibrated"]["ece"],
            m,
            f"network {rel['raw']['ece']:.3f} -> prior-corrected {rel['prior_corrected']['ece']:.3f} -> "
            f"calibrated {rel['calibrated']['ece']:.3f}",
        )
    )
    if "presence" in c:
        p = c["presence"]
        r = p["reliability"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                "ECE of the presence CNN (per segment, 10 bins)",
                r["calibrated"]["ece"],
                m,
                f"network {r['raw']['ece']:.3f} -> prior-corrected {r['prior_corrected']['ece']:.3f} -> "
                f"calibrated {r['calibrated']['ece']:.3f}",
            )
        )
        at = p["at_working_point"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"presence completeness at p > {p['working_point']['threshold']:.3g} (validation purity goal "
                f"{p['working_point']['purity_goal']:g})",
                at["completeness"],
                m,
                f"purity {_pm(at['purity'], at.get('purity_interval'))}; at p >= 0.5 (network): completeness "
                f"{p['at_p_0.5']['completeness']:.3f}, purity {p['at_p_0.5']['purity']:.3f}",
                at.get("completeness_interval"),
            )
        )
    for key, label in RUNGS:  # in the order of the steps (the JSON holds them sorted)
        if key not in c["ladder"]:  # scored before the footprint existed
            continue
        label = label.replace("footprint S/N", f"{c.get('footprint_snr_min', 0.0):g}")
        g = c["ladder"][key]
        bal = g["false_on_bal"]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per DLA completeness, {label}",
                g["completeness"],
                m,
                f"{g['n_found']}/{g['n_true']}",
                g.get("completeness_interval"),
            )
        )
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per DLA purity, {label}",
                g["purity"],
                m,
                f"{g['n_false']} false of {g['n_selected']} ({bal['on_bal_quasars']} on BAL quasars, "
                f"{bal['on_bal_troughs']} on BAL troughs)"
                + (f", {g['n_neutral']} neutral" if "n_neutral" in g else ""),
                g.get("purity_interval"),
            )
        )
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"per sightline completeness, {label}",
                g["sightline_completeness"],
                m,
                f"purity {_pm(g['sightline_purity'], g.get('sightline_purity_interval'))} "
                f"({g['n_sightlines_flagged']} flagged, {g['n_sightlines_with_dla']} with a DLA)",
                g.get("sightline_completeness_interval"),
            )
        )
    for key in ("bal", "neutral"):
        g = c["ladder"][key]
        for group, what in (("by_snr", "S/N"), ("by_log_nhi", "log N_HI")):
            for name, b in g[group].items():
                rows.append(
                    _row(
                        "dla_catalogue",
                        "location",
                        f"working point{' (20.0-20.3 neutral)' if key == 'neutral' else ''}, "
                        f"{what} {name}: completeness",
                        b["completeness"],
                        m,
                        f"purity {_pm(b['purity'], b.get('purity_interval'))} ({b['n_found']}/{b['n_true']} found, "
                        f"{b['n_false']} false of {b['n_selected']}); per sightline "
                        f"{b['sightline_completeness']:.3f} / {b['sightline_purity']:.3f}",
                        b.get("completeness_interval"),
                    )
                )
    cov = c["nhi_err_coverage"]
    rows.append(
        _row(
            "dla_catalogue",
            "location",
            "NHI_ERR: share within 1 NHI_ERR (goal 0.68)",
            cov["within_1"],
            m,
            f"within 2: {cov['within_2']:.3f} (goal 0.95), n = {cov['n']}; NHI_ERR = sqrt({c['nhi_err'][1]:.3g}^2 + "
            f"({c['nhi_err'][0]:.3g} spread)^2)",
        )
    )
    for name in [v for v in VARIANTS if v in c["validation"]]:
        v = c["validation"][name]
        rows.append(
            _row(
                "dla_catalogue",
                "location",
                f"validation (nature's incidence) at the working point, BAL {name}"
                f"{' (chosen)' if name == c['bal_method'] else ''}: completeness",
                v["completeness"],
                m,
                f"purity {v['purity']:.3f}, DLA_PROB > {v['threshold']:.3g}, {v['false_on_bal_quasars']} false on "
                f"BAL quasars",
            )
        )
    return rows
