"""The compare rule's summary of score files: tables and Markdown (thesis table 5.1).

- :func:`summary_table`: one row per (model, combo) with one score, chance, skill and interval
  column per test set, beside the architecture facts of the model files (:func:`model_facts`).
- :func:`markdown`: table 5.1 and the per-combo scores, the calibration and false-positive sections;
  :func:`seed_spread` / :func:`seed_markdown`: runs trained with several seeds.
- :func:`cell`, :func:`with_error`, :func:`interval_text`: a table cell, a value ± its 68%
  half-width; the experiments' tables (lymannet.experiments) use them too, in their own style.

Reading the score files, drawing and writing are `lymannet.score`'s (:func:`~lymannet.score.compare_scores`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import Interval
from .calibrate import calibration_columns, calibration_markdown
from .fileio import file_sha256
from .metrics import chance_score, skill_score

log = logging.getLogger("lymannet.summary")
PLATEAU_SPREAD = 0.02  # a validation-loss curve within 2% over its last three epochs is flat


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
        return cell(summary.get(figure), digits or 3)
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


def cell(value: Any, digits: int = 3, missing: str = "n/a", scientific_below: float = 1e-3) -> str:
    """A table cell: a number to `digits` decimals (a non-zero one of magnitude under
    `scientific_below`, a learning rate, as 1e-04), anything else as text, `missing` for none."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return missing
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}" if abs(value) >= scientific_below or value == 0 else f"{value:.0e}"
    return str(value)


# The experiments' tables (lymannet.experiments, lymannet.experiment_seeds) as they always were:
# "-" where a value is missing, fixed-point even under 1e-3 (a median |dz| of 4e-4 reads 0.000).
EXPERIMENT_STYLE: dict[str, Any] = {"missing": "-", "scientific_below": 0.0}


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
            cell(float(values[0]))
            if len(values) == 1
            else f"{cell(float(values.min()))}-{cell(float(values.max()))}" if len(values) else "n/a"
        )
    return levels


def with_error(
    row: Any, column: str, digits: int = 3, missing: str = "n/a", scientific_below: float = 1e-3
) -> str:
    """ "0.943 ± 0.012": the value and the half-width of its 68% interval (<column>_lo/_hi of a
    row, a Series or a dict), or the value alone where there is none (:func:`cell`'s style)."""
    style = {"missing": missing, "scientific_below": scientific_below}
    value, lo, hi = (row.get(f"{column}{s}") for s in ("", "_lo", "_hi"))
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in (value, lo, hi)):
        return cell(value, digits, **style)
    return f"{cell(value, digits, **style)} ± {0.5 * (hi - lo):.{digits}f}"


def _score_with_skill(row: pd.Series, testset: str) -> str:
    return f"{with_error(row, f'score_{testset}', 3)} " f"(skill {with_error(row, f'skill_{testset}', 2)})"


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
            cell(row["lr"], 4) if row["lr"] is not None else "n/a",
            _parameters(row["parameters"]),
            _count(row["epochs"]),
            cell(row["stopped"]),
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
            entry = (
                f"{cell(row[f'score_{t}'])} ± {cell(row[f'score_{t}_sd'])} "
                f"[{cell(row[f'score_{t}_min'])}, {cell(row[f'score_{t}_max'])}] "
                f"(boot ± {cell(row[f'score_{t}_boot68'])})"
            )
            if f"ensemble_{t}" in row and pd.notna(row.get(f"ensemble_{t}")):
                half = 0.5 * (row[f"ensemble_{t}_hi"] - row[f"ensemble_{t}_lo"])
                entry += (
                    f"; ensemble {cell(row[f'ensemble_{t}'])} ± {cell(half)} "
                    f"({float(row[f'ensemble_minus_best_{t}']):+.3f} vs the best member)"
                )
            cells.append(entry)
        lines.append(f"| {row['model']} / {row['combo']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return lines + [""]
