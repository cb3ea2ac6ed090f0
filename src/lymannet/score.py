"""The score stage (rules `score`, `compare`): what is written from prediction catalogues.

- :func:`score_catalogue`: one catalogue -> P = E score and summary (JSON), purity/efficiency curve
  (CSV), the six-panel figure (thesis figs 5.1-5.4).
- :func:`compare_scores`: every score -> the table 5.1 summary (CSV, Markdown) with architecture
  facts read from the model files, P/E curves overlaid per test set, scores per combo.

The arithmetic (curves, crossing, detection) is `lymannet.metrics`'s, the summary's tables and
Markdown `lymannet.summary`'s, the figures `lymannet.plots`'s and `lymannet.compare_plots`'s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import Interval
from .calibrate import calibration_figure as calibration_figure_of, calibration_report
from .calibration import Calibration
from .compare_plots import combos_figure, compare_pe_figure, crossing_from
from .errors import InputFileError, LymannetError
from .evaluation import evaluate, populations
from .fileio import write_json_atomic, write_text_atomic
from .lines import votes_by_name
from .metrics import ScoreOptions, best_line_counts, correct_redshift, is_detected, kth_confidence
from .plots import false_positive_figure, note_figure, plot_pe_curve, score_figure
from .predict import read_catalogue
from .spectra import SpectraFile, read_truth
from .summary import (
    chance_levels,
    false_positive_table,
    interval_text,
    markdown,
    model_facts,
    seed_markdown,
    seed_spread,
    summary_table,
)

log = logging.getLogger("lymannet.score")


def score_catalogue(
    prediction: str,
    options: dict[str, Any],
    model: str,
    combo: str,
    testset: str,
    score_json: str,
    curve_csv: str,
    figure: str,
    pe_figure: str | None = None,
    testset_file: str | None = None,
    fp_figure: str | None = None,
    calibration_figure: str | None = None,
    train_file: str | None = None,
) -> dict[str, Any]:
    """Score one prediction catalogue: the P = E score and summary (JSON), the purity/efficiency
    curve (CSV), the six-panel figure and, if asked for, the P/E curve alone, (given the test
    set's spectra) the most confident false positives and the calibration figure (reliability,
    ZERR coverage, N(z); a note where the model is uncalibrated)."""
    opts = ScoreOptions.from_config(options)
    catalogue = read_catalogue(prediction)
    # Only the lines that vote (not a BAL head) decide the class, as in predict and classify.
    votes = votes_by_name(catalogue.line_names)
    table, c_line, line_names = (
        catalogue.table,
        catalogue.c_line[:, votes],
        list(np.asarray(catalogue.line_names)[votes]),
    )
    bad = ~np.isfinite(c_line).all(axis=1) | ~np.isfinite(table["Z_PRED"].to_numpy(float))
    if bad.any():
        raise LymannetError(
            f"{int(bad.sum())} rows with NaN predictions from model {catalogue.model}", prediction
        )

    # chance level: a random guess's redshifts come from the training split's N(z) (train_file), or
    # without one (the template fit trains on nothing) from the test set's own targets
    evaluation = evaluate(table, c_line, opts, **chance_nz_of(train_file, opts.target_class), intervals=True)
    summary = dict(
        evaluation.summary,
        model=model,
        combo=combo,
        testset=testset,
        prediction=str(prediction),
        model_file=catalogue.model,
        model_sha256=str(catalogue.header.get("MODELSHA", "")),
        lines=catalogue.line_names,
    )
    calibration = model_calibration_of(catalogue)
    title = f"model {model}, trained on {combo}, tested on {testset}"
    if calibration is not None:
        summary["calibration"] = calibration_report(
            table, c_line, calibration, opts, catalogue.provenance.get("box_edges_wavelength", [])
        )
    if calibration_figure:
        if calibration is None:
            note_figure(
                calibration_figure,
                (
                    f"{title}: an ensemble, PROB the mean of its members' calibrated PROB "
                    "(their calibration: the members' scores)"
                    if catalogue.header.get("ENSEMBLE")
                    else f"{title}: uncalibrated (no validation split), no PROB or ZERR"
                ),
            )
        else:
            calibration_figure_of(
                calibration_figure, table, c_line, calibration, summary["calibration"], opts, title
            )
    for warning in summary["warnings"]:
        log.warning("%s/%s on %s: %s", model, combo, testset, warning)
    write_json_atomic(score_json, summary)
    write_text_atomic(curve_csv, evaluation.curve.to_csv(index=False, float_format="%.6g"))

    is_target = table["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == opts.target_class.upper()
    is_good = (
        is_target
        & is_detected(c_line, opts.c_th, opts.min_lines)
        & correct_redshift(table["Z_PRED"], table["Z"], opts.dz_max, opts.dv_max_kms)
    )
    score_figure(
        figure,
        curve=evaluation.curve,
        crossing=evaluation.crossing,
        table=table,
        is_target=is_target,
        is_good_default=is_good,
        line_counts=best_line_counts(c_line[is_target], line_names),
        dz_max=opts.dz_max,
        target_class=opts.target_class,
        c_th=opts.c_th,
        title=title,
        chance=summary["chance"],
    )
    if pe_figure:
        plot_pe_curve(pe_figure, evaluation.curve, evaluation.crossing, title, chance=summary["chance"])
    if fp_figure:
        if not testset_file:
            raise LymannetError(
                "a false-positive figure needs the test set's spectra (testset_file)", prediction
            )
        _false_positive_figure(fp_figure, testset_file, table, c_line, is_target, evaluation, opts, title)
    log.info(
        "%s: score %s at c_th %s, chance %s (classification only %s), skill %s (%d targets, %d contaminants)",
        title,
        interval_text(summary, "score"),
        summary["threshold_at_crossing"],
        summary["chance"],
        summary["chance_classification"],
        interval_text(summary, "skill"),
        summary["n_targets"],
        summary["n_contaminants"],
    )
    return summary


N_FALSE_POSITIVES_SHOWN = 6


def chance_nz_of(train_file: str | None, target_class: str) -> dict[str, Any]:
    """evaluate()'s chance_redshifts / chance_nz: the target redshifts of the training split, or
    nothing (evaluate then takes the test set's own targets) where there is none."""
    if not train_file:
        return {}
    truth = read_truth(train_file)
    is_target = truth["SPECTYPE"].astype(str).str.strip().str.upper().to_numpy() == target_class.upper()
    if not is_target.any():
        raise InputFileError(
            f"the training split holds no {target_class}: no N(z) for the chance level", train_file
        )
    return {
        "chance_redshifts": truth["Z"].to_numpy(float)[is_target],
        "chance_nz": f"the training split's {int(is_target.sum())} {target_class} ({Path(train_file).parent.name})",
    }


def model_calibration_of(catalogue: Any) -> Calibration | None:
    """The calibration a catalogue was predicted with (its provenance), or None (uncalibrated)."""
    record = catalogue.provenance.get("calibration")
    return Calibration.from_dict(record) if record else None


def _false_positive_figure(
    path: str,
    testset_file: str,
    table: pd.DataFrame,
    c_line: np.ndarray,
    is_target: np.ndarray,
    evaluation: Any,
    opts: ScoreOptions,
    title: str,
) -> None:
    """The most confident contaminants detected at the P = E threshold, from the test set's spectra."""
    threshold = evaluation.crossing.threshold if np.isfinite(evaluation.crossing.threshold) else opts.c_th
    confidence = kth_confidence(c_line, opts.min_lines)
    false_positive = np.flatnonzero(~is_target & (confidence > threshold))
    shown = false_positive[np.argsort(-confidence[false_positive], kind="stable")][:N_FALSE_POSITIVES_SHOWN]
    rows = pd.DataFrame(
        {
            "POPULATION": populations(table)[shown],
            "Z": table["Z"].to_numpy(float)[shown],
            "Z_PRED": table["Z_PRED"].to_numpy(float)[shown],
            "C_DETECT": confidence[shown],
            "MAG_R": (
                table["MAG_R"].to_numpy(float)[shown] if "MAG_R" in table else np.full(len(shown), np.nan)
            ),
        }
    )
    with SpectraFile(testset_file) as spectra_file:
        if len(spectra_file) != len(table):
            raise InputFileError(
                f"{len(spectra_file)} spectra but the catalogue has {len(table)} rows", testset_file
            )
        layer = "native" if spectra_file.has_native else "network"
        picked = [spectra_file.read(layer, int(row), int(row) + 1) for row in shown]
        wavelength = spectra_file.wavelength_of(layer)
    n_pixels = len(wavelength)
    flux = np.concatenate([p.flux for p in picked]) if picked else np.zeros((0, n_pixels), np.float32)
    ivar = np.concatenate([p.ivar for p in picked]) if picked else np.zeros((0, n_pixels), np.float32)
    false_positive_figure(
        path,
        wavelength,
        flux,
        ivar,
        rows,
        f"{title}: the {len(shown)} most confident of {len(false_positive)} false positives "
        f"at c_th = {threshold:.3f}",
    )


def read_score(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputFileError(f"unreadable score JSON ({error})", path) from None


def compare_scores(
    scores: list[str],
    curves: list[str],
    model_files: list[str],
    testsets: list[str],
    summary_csv: str,
    summary_md: str,
    figures: list[str],
    combos_png: str | None = None,
    seed_groups: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Compare runs: the table 5.1 summary (CSV, Markdown), the P/E curves of every run overlaid
    per test set, and, if asked for, the scores per model and training combination. With
    `seed_groups` (runs trained with several seeds), summary.csv gets one more row per such run
    (aggregate "seeds": :func:`seed_spread`) and summary.md a section on them."""
    if len(scores) != len(curves):
        raise InputFileError(
            f"{len(scores)} score files but {len(curves)} curve files", scores[0] if scores else None
        )
    if len(figures) != len(testsets):
        raise InputFileError(
            f"{len(figures)} figures for {len(testsets)} test sets", figures[0] if figures else None
        )
    records = [read_score(path) for path in scores]
    table = summary_table(records, model_facts(list(model_files)), list(testsets))
    spread = seed_spread(table, seed_groups or [], list(testsets))
    text = markdown(table, list(testsets), false_positive_table(records), records)
    if spread.empty:
        write_text_atomic(summary_csv, table.to_csv(index=False, float_format="%.6g"))
    else:
        write_text_atomic(
            summary_csv,
            pd.concat([table, spread], ignore_index=True).to_csv(index=False, float_format="%.6g"),
        )
        text += "\n" + "\n".join(seed_markdown(spread, list(testsets)))
    write_text_atomic(summary_md, text)
    for testset, figure in zip(testsets, figures):
        entries, sizes, intervals = [], set(), []
        for record, curve_path in zip(records, curves):
            if record["testset"] == testset:
                curve = pd.read_csv(curve_path)
                entries.append((f"{record['model']} / {record['combo']}", curve, crossing_from(record)))
                sizes.add((record["n_targets"], record["n_contaminants"]))
                intervals.append(Interval.from_dict(record.get("score_interval")))
        chances = [
            float(c) for c in pd.to_numeric(table[f"chance_{testset}"], errors="coerce") if np.isfinite(c)
        ]
        detail = ""
        if len(sizes) == 1:
            n_targets, n_contaminants = sizes.pop()
            detail = f" ({n_targets} targets, {n_contaminants} contaminants; chance {chance_levels(table, [testset])[testset]})"
        title = f"test set {testset}" + (detail if entries else " (no scores)")
        compare_pe_figure(figure, entries, title, chance=chances or None, intervals=intervals)
    if combos_png:
        chances = {t: pd.to_numeric(table[f"chance_{t}"], errors="coerce").median() for t in testsets}
        combos_figure(
            combos_png,
            table,
            list(testsets),
            "score (P = E, 68% interval) per model and training combination",
            chances=chances,
        )
    log.info("compared %d scores of %d runs on %d test sets", len(records), len(table), len(testsets))
    return table
