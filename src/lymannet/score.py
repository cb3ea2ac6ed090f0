"""The score stage (rules `score`, `compare`): what is written from prediction catalogues.

- :func:`score_catalogue`: one catalogue -> P = E score and summary (JSON), purity/efficiency curve
  (CSV), the six-panel figure (thesis figs 5.1-5.4).
- :func:`compare_scores`: every score -> the table 5.1 summary (CSV, Markdown) with architecture
  facts read from the model files, P/E curves overlaid per test set, scores per combo.

The arithmetic (curves, crossing, detection) is `lymannet.metrics`'s, the figures `lymannet.plots`'s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .calibrate import (
    calibration_columns,
    calibration_figure as calibration_figure_of,
    calibration_markdown,
    calibration_report,
)
from .calibration import Calibration
from .errors import InputFileError, LymannetError
from .fileio import file_sha256, write_json_atomic, write_text_atomic
from .metrics import (
    ScoreOptions,
    best_line_counts,
    chance_score,
    correct_redshift,
    evaluate,
    is_detected,
    kth_confidence,
    populations,
    skill_score,
)
from .plots import (
    combos_figure,
    compare_pe_figure,
    crossing_from,
    false_positive_figure,
    note_figure,
    plot_pe_curve,
    score_figure,
)
from .spectra import SpectraFile
from .lines import votes_by_name
from .bootstrap import Interval
from .predict import read_catalogue

log = logging.getLogger("lymannet.score")
PLATEAU_SPREAD = 0.02  # a validation-loss curve within 2% over its last three epochs is flat


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
    from .spectra import read_truth

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


MODEL_FACTS = ("layers", "filters", "lr", "parameters", "epochs", "stopped")


def training_facts(training: dict[str, Any]) -> dict[str, Any]:
    """Epochs trained and why training ended, as the summary shows them: a network that stopped on
    its epoch limit while its validation loss still moved by more than 2% over its last three
    epochs has not reached its plateau, and its scores are not the network's."""
    epochs = training.get("epochs_run")
    spread = training.get("val_loss_spread_last3")
    if training.get("stopped_by") == "early stopping":
        stopped = f"early stopping (best epoch {training.get('best_epoch')})"
    elif spread is None or not np.isfinite(spread):
        stopped = "epoch limit, under 3 epochs" if epochs else None
    else:
        stopped = f"epoch limit, {'flat' if spread <= PLATEAU_SPREAD else 'NOT flat'} ({100 * spread:.1f}% over 3 epochs)"
    return {"epochs": epochs, "stopped": stopped}


def model_facts(model_files: list[str]) -> dict[str, dict[str, Any]]:
    """Architecture facts of each model file, keyed by both its sha256 and its path."""
    facts: dict[str, dict[str, Any]] = {}
    for path in model_files:
        info: dict[str, Any] = dict.fromkeys(MODEL_FACTS)
        try:
            from .modelfile import load_model_file  # torch: only where model files are read
            from .models import count_parameters

            loaded = load_model_file(path)
            spec = loaded.spec or {}
            info.update(
                layers=spec.get("conv", {}).get("layers"),
                filters=spec.get("conv", {}).get("filters"),
                lr=spec.get("train", {}).get("lr"),
                parameters=count_parameters(loaded.model, trainable_only=False),
                **training_facts(loaded.training or {}),
            )
        except ImportError as error:  # no torch: the table keeps empty cells
            log.warning("cannot load %s (%s): architecture columns left empty", path, error)
        facts[file_sha256(path)] = info
        facts[str(Path(path))] = info
    return facts


SCORE_COLUMNS = (
    "score_",
    "chance_",
    "chance_classification_",
    "skill_",
    "threshold_",
)  # one of each per test set
INTERVAL_COLUMNS = {
    "_lo": "lo68",
    "_hi": "hi68",
    "_lo95": "lo95",
    "_hi95": "hi95",
}  # score_<t>_lo, skill_<t>_hi...


def interval_text(summary: dict[str, Any], figure: str, digits: int | None = None) -> str:
    """ "0.943 ± 0.012" from a score JSON's <figure>_interval (the bare value without one)."""
    interval = Interval.from_dict(summary.get(f"{figure}_interval"))
    if interval is None:
        return _cell(summary.get(figure), digits or 3)
    return interval.text(digits=digits)


def summary_table(
    scores: list[dict[str, Any]], facts: dict[str, dict[str, Any]], testsets: list[str]
) -> pd.DataFrame:
    """One row per (model, combo), like thesis table 5.1, with one score column per test set."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    table_attrs: dict[str, Any] = {"n_resamples": set()}
    for score in scores:
        key = (score["model"], score["combo"])
        info = facts.get(score.get("model_sha256", ""), facts.get(str(Path(score.get("model_file", ""))), {}))
        row = rows.setdefault(
            key, {"model": key[0], "combo": key[1], **{k: info.get(k) for k in MODEL_FACTS}}
        )
        testset = score["testset"]
        # the stored chance (random guess under the redshift rule); score files written before it
        # existed get the classification-only chance from their counts
        classification_chance = chance_score(score.get("n_targets", 0), score.get("n_contaminants", 0))
        chance = score.get("chance") if "chance_classification" in score else classification_chance
        chance = np.nan if chance is None else chance
        row[f"score_{testset}"] = score.get("score")
        row[f"chance_{testset}"] = chance
        row[f"chance_classification_{testset}"] = classification_chance
        row[f"skill_{testset}"] = skill_score(score.get("score"), chance)
        for figure in ("score", "skill"):
            interval = Interval.from_dict(score.get(f"{figure}_interval"))
            for suffix, key in INTERVAL_COLUMNS.items():
                row[f"{figure}_{testset}{suffix}"] = np.nan if interval is None else getattr(interval, key)
            if interval is not None:
                table_attrs["n_resamples"].add(interval.n_resamples)
        row[f"threshold_{testset}"] = score.get("threshold_at_crossing")
        row.update(calibration_columns(score, testset))
    table = pd.DataFrame(list(rows.values()))
    for testset in testsets:
        for prefix in SCORE_COLUMNS:
            if f"{prefix}{testset}" not in table:
                table[f"{prefix}{testset}"] = np.nan
        for column in (f"{f}_{testset}{suffix}" for f in ("score", "skill") for suffix in INTERVAL_COLUMNS):
            if column not in table:
                table[column] = np.nan
    table.attrs["n_resamples"] = sorted(table_attrs["n_resamples"])  # for the summary's text
    return table


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.0e}"
    return str(value)


def _count(value: Any) -> str:
    """Layers, filters, epochs: integers, also where a row without them (the template fit) made
    the column float."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return str(int(value)) if float(value).is_integer() else str(value)


def _parameters(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    value = float(value)
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"


def chance_levels(table: pd.DataFrame, testsets: list[str]) -> dict[str, str]:
    """Each test set's chance level as text: one value, or the range where rows differ (a model
    whose catalogue lost rows)."""
    levels = {}
    for testset in testsets:
        values = pd.to_numeric(table.get(f"chance_{testset}"), errors="coerce").dropna().round(3).unique()
        levels[testset] = (
            _cell(float(values[0]))
            if len(values) == 1
            else f"{_cell(float(values.min()))}-{_cell(float(values.max()))}" if len(values) else "n/a"
        )
    return levels


def _with_error(row: pd.Series, column: str, digits: int) -> str:
    """ "0.943 ± 0.012": the value and the half-width of its 68% interval (columns <column>_lo/_hi)."""
    value, lo, hi = (row.get(f"{column}{s}") for s in ("", "_lo", "_hi"))
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in (value, lo, hi)):
        return _cell(value, digits)
    return f"{_cell(value, digits)} ± {0.5 * (hi - lo):.{digits}f}"


def _score_with_skill(row: pd.Series, testset: str) -> str:
    return f"{_with_error(row, f'score_{testset}', 3)} " f"(skill {_with_error(row, f'skill_{testset}', 2)})"


def interval_note(table: pd.DataFrame) -> str:
    """What the ± in the summary means, with the number of resamples."""
    n = table.attrs.get("n_resamples") or []
    if not n:
        return "No bootstrap intervals (score files written before they existed)."
    resamples = str(n[0]) if len(n) == 1 else f"{n[0]}-{n[-1]}"
    return (
        f"± is the half-width of the 68% interval of a percentile bootstrap over the test objects "
        f"({resamples} resamples; targets and contaminants resampled separately, so the class counts "
        f"and the target fraction stay fixed); summary.csv gives the 68% bounds (score_<test set>_lo, "
        f"_hi) and the 95% ones (_lo95, _hi95), for the skill too. A skill is different from zero "
        f"(better or worse than a random guess) only where its 95% interval excludes zero."
    )


def false_positive_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (model, combo, test set, contaminant population): how many of that population
    the test set holds and how many the model detects at its P = E threshold."""
    rows = [
        {
            "model": r["model"],
            "combo": r["combo"],
            "testset": r["testset"],
            "population": population,
            **counts,
        }
        for r in records
        for population, counts in (r.get("false_positives_at_crossing") or {}).items()
    ]
    return pd.DataFrame(rows, columns=["model", "combo", "testset", "population", "n", "detected", "rate"])


def false_positive_markdown(false_positives: pd.DataFrame, testsets: list[str]) -> list[str]:
    """Per test set: contaminants detected at each run's P = E threshold, by population."""
    if false_positives.empty:
        return []
    lines = [
        "## Where the false positives come from",
        "",
        "Contaminants detected as targets at each run's P = E threshold, by population: detected / "
        "in the test set (rate).",
        "",
    ]
    for testset in testsets:
        subset = false_positives[false_positives["testset"] == testset]
        if subset.empty:
            continue
        names = list(
            subset.groupby("population")["detected"].sum().sort_values(ascending=False, kind="stable").index
        )
        lines += [
            f"### {testset}",
            "",
            "| model | combo | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for (model, combo), group in subset.groupby(["model", "combo"], sort=False):
            counts = group.set_index("population")
            cells = [
                (
                    f"{int(counts.at[n, 'detected'])} / {int(counts.at[n, 'n'])} ({100 * counts.at[n, 'rate']:.0f}%)"
                    if n in counts.index
                    else "n/a"
                )
                for n in names
            ]
            lines.append(f"| {model} | {combo} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(
    table: pd.DataFrame,
    testsets: list[str],
    false_positives: pd.DataFrame | None = None,
    records: list[dict[str, Any]] | None = None,
) -> str:
    """Table 5.1 (architecture + scores with their chance level and skill) and the per-combo scores."""
    chance = chance_levels(table, testsets)
    head = ["model", "combo", "layers", "filters", "lr", "parameters", "epochs", "stopped by"]
    head += [f"{t} (chance {chance[t]})" for t in testsets]
    lines = [
        "# Model comparison",
        "",
        "Score = the value where purity equals efficiency (purity: detected spectra that are true "
        "targets with a correct redshift; efficiency: true targets detected with a correct redshift). "
        "Each cell is the score and, in brackets, the skill (score - chance) / (1 - chance); the "
        "chance level is the score of a random guess under the same rules: random confidence and a "
        "redshift drawn from the N(z) of the run's training split (for the template fit, which trains "
        "on nothing, of the test set's own targets), so chance = target fraction x P(drawn redshift "
        "correct); a score at the chance level is no skill at all. The classification-only chance "
        "(the target fraction, crediting the guess with every correct redshift) is in summary.csv "
        "(chance_classification_<test set>).",
        "",
        interval_note(table),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for _, row in table.iterrows():
        cells = [
            row["model"],
            row["combo"],
            _count(row["layers"]),
            _count(row["filters"]),
            _cell(row["lr"], 4) if row["lr"] is not None else "n/a",
            _parameters(row["parameters"]),
            _count(row["epochs"]),
            _cell(row["stopped"]),
        ]
        cells += [_score_with_skill(row, t) for t in testsets]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "## Scores (skill) per training combination (appendix C)", ""]
    for model, group in table.groupby("model", sort=False):
        lines += [
            f"### {model}",
            "",
            "| combo | " + " | ".join(f"{t} (chance {chance[t]})" for t in testsets) + " |",
            "|---|" + "---|" * len(testsets),
        ]
        for _, row in group.iterrows():
            lines.append(
                f"| {row['combo']} | " + " | ".join(_score_with_skill(row, t) for t in testsets) + " |"
            )
        lines.append("")
    lines += calibration_markdown(records or [], testsets)
    if false_positives is not None:
        lines += false_positive_markdown(false_positives, testsets)
    return "\n".join(lines) + "\n"


def seed_spread(table: pd.DataFrame, groups: list[dict[str, Any]], testsets: list[str]) -> pd.DataFrame:
    """One row per run trained with several seeds (lymannet.config.seed_groups): per test set the
    mean of its members' P = E scores (score_<t>), their standard deviation (score_<t>_sd, the
    seed-to-seed spread), min and max, the mean half-width of the members' 68% bootstrap intervals
    (score_<t>_boot68: the test set's own noise, to compare the spread with) and, for a run with
    `ensemble: true`, the ensemble's score with its interval, the best member's score and the
    difference (ensemble_minus_best_<t>)."""
    rows = []
    for group in groups:
        members = [model for model, _ in group["members"]]
        subset = table[table["model"].isin(members) & (table["combo"] == group["combo"])]
        row: dict[str, Any] = {
            "model": group["model"],
            "combo": group["combo"],
            "aggregate": "seeds",
            "seeds": " ".join(str(k) for k in group["seeds"]),
            "n_seeds": len(subset),
        }
        ensemble = table[
            (table["model"] == f"{group['model']}.ensemble") & (table["combo"] == group["combo"])
        ]
        for testset in testsets:
            values = pd.to_numeric(subset[f"score_{testset}"], errors="coerce").dropna()
            half = 0.5 * (
                pd.to_numeric(subset[f"score_{testset}_hi"], errors="coerce")
                - pd.to_numeric(subset[f"score_{testset}_lo"], errors="coerce")
            )
            row[f"score_{testset}"] = values.mean() if len(values) else np.nan
            row[f"score_{testset}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row[f"score_{testset}_min"] = values.min() if len(values) else np.nan
            row[f"score_{testset}_max"] = values.max() if len(values) else np.nan
            row[f"score_{testset}_boot68"] = half.mean() if half.notna().any() else np.nan
            if group.get("ensemble"):
                score = float(ensemble[f"score_{testset}"].iloc[0]) if len(ensemble) else np.nan
                row[f"ensemble_{testset}"] = score
                for suffix in ("_lo", "_hi"):
                    row[f"ensemble_{testset}{suffix}"] = (
                        float(ensemble[f"score_{testset}{suffix}"].iloc[0]) if len(ensemble) else np.nan
                    )
                row[f"best_member_{testset}"] = values.max() if len(values) else np.nan
                row[f"ensemble_minus_best_{testset}"] = score - row[f"best_member_{testset}"]
        rows.append(row)
    return pd.DataFrame(rows)


def seed_markdown(spread: pd.DataFrame, testsets: list[str]) -> list[str]:
    """The summary's section on runs trained with several seeds."""
    if spread.empty:
        return []
    lines = [
        "## Seeds: the spread between trainings",
        "",
        "Runs trained with several seeds (`runs[].seeds`; seed k > 0 is the row <model>.seed<k> above). "
        "Each cell: the mean of the members' P = E scores ± their standard deviation (seed to seed), the "
        "range [min, max], and (boot ±) the mean half-width of the members' 68% bootstrap intervals, the "
        "test set's own noise. Ensemble: mean of the members' calibrated PROB, redshift from the most "
        "confident member (row <model>.ensemble above), its score ± its 68% bootstrap half-width and the "
        "difference from the best member.",
        "",
        "| run | seeds | " + " | ".join(testsets) + " |",
        "|---|---|" + "---|" * len(testsets),
    ]
    for _, row in spread.iterrows():
        cells = []
        for t in testsets:
            cell = (
                f"{_cell(row[f'score_{t}'])} ± {_cell(row[f'score_{t}_sd'])} "
                f"[{_cell(row[f'score_{t}_min'])}, {_cell(row[f'score_{t}_max'])}] "
                f"(boot ± {_cell(row[f'score_{t}_boot68'])})"
            )
            if f"ensemble_{t}" in row and pd.notna(row.get(f"ensemble_{t}")):
                half = 0.5 * (row[f"ensemble_{t}_hi"] - row[f"ensemble_{t}_lo"])
                cell += (
                    f"; ensemble {_cell(row[f'ensemble_{t}'])} ± {_cell(half)} "
                    f"({float(row[f'ensemble_minus_best_{t}']):+.3f} vs the best member)"
                )
            cells.append(cell)
        lines.append(f"| {row['model']} / {row['combo']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return lines + [""]


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
