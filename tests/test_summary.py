"""lymannet.summary: the compare rule's tables and Markdown from score records, by hand.

The compare rule end to end (score files -> summary.csv/.md and figures) is in test_score.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.config import seed_groups
from lymannet.summary import (
    EXPERIMENT_STYLE,
    cell,
    chance_levels,
    false_positive_markdown,
    false_positive_table,
    interval_note,
    interval_text,
    seed_markdown,
    seed_spread,
    summary_table,
    training_facts,
    with_error,
)


def record(model: str, testset: str, score: float, half: float = 0.01, **extra) -> dict:
    """A score JSON as score_catalogue writes it, reduced to what the summary reads."""
    interval = {
        "value": score,
        "lo68": score - half,
        "hi68": score + half,
        "lo95": score - 2 * half,
        "hi95": score + 2 * half,
        "n_resamples": 200,
    }
    return {
        "model": model,
        "combo": "c",
        "testset": testset,
        "score": score,
        "score_interval": interval,
        "chance": 0.1,
        "chance_classification": 0.4,
        "n_targets": 40,
        "n_contaminants": 60,
        "threshold_at_crossing": 0.5,
        **extra,
    }


def test_training_facts_say_why_training_ended():
    early = {
        "epochs_run": 14,
        "stopped_by": "early stopping",
        "best_epoch": 9,
        "val_loss_spread_last3": 0.004,
    }
    assert training_facts(early) == {"epochs": 14, "stopped": "early stopping (best epoch 9)"}
    flat = {"epochs_run": 12, "stopped_by": "epoch limit", "val_loss_spread_last3": 0.012}
    assert training_facts(flat)["stopped"] == "epoch limit, flat (1.2% over 3 epochs)"
    falling = {"epochs_run": 2, "stopped_by": "epoch limit", "val_loss_spread_last3": float("nan")}
    assert training_facts(falling)["stopped"] == "epoch limit, under 3 epochs"
    still = {"epochs_run": 4, "stopped_by": "epoch limit", "val_loss_spread_last3": 0.083}
    assert training_facts(still)["stopped"] == "epoch limit, NOT flat (8.3% over 3 epochs)"
    assert training_facts({}) == {"epochs": None, "stopped": None}  # model files of older versions


def test_a_cell_is_a_rounded_number_a_learning_rate_or_text():
    assert cell(0.94349) == "0.943" and cell(np.float32(0.5), 2) == "0.50" and cell(0.0) == "0.000"
    assert cell(1e-4, 4) == "1e-04"  # a learning rate under 1e-3 stays readable
    assert cell(7) == "7" and cell("early stopping") == "early stopping"
    assert cell(None) == cell(float("nan")) == "n/a"
    # the experiments' tables: "-" for nothing, fixed-point throughout
    assert cell(None, **EXPERIMENT_STYLE) == cell(np.nan, **EXPERIMENT_STYLE) == "-"
    assert cell(4e-4, **EXPERIMENT_STYLE) == "0.000" and cell(0.25, **EXPERIMENT_STYLE) == "0.250"


def test_with_error_gives_the_half_width_of_the_68_percent_interval():
    row = pd.Series({"score": 0.943, "score_lo": 0.931, "score_hi": 0.955, "skill": 0.5, "skill_lo": np.nan})
    assert with_error(row, "score") == "0.943 ± 0.012"
    assert with_error(row, "score", 2) == "0.94 ± 0.01"
    assert with_error(row, "skill") == "0.500"  # no interval: the value alone
    assert with_error({"score": None}, "score") == "n/a"
    assert with_error({"score": None}, "score", **EXPERIMENT_STYLE) == "-"  # a dict row, experiment style


def test_interval_text_reads_a_score_json():
    summary = record("m", "t", 0.8, half=0.05)
    assert interval_text(summary, "score") == "0.800 ± 0.050"
    assert interval_text({"skill": 0.25}, "skill") == "0.250"  # written before the intervals
    assert interval_text({"skill": None}, "skill") == "n/a"


def test_summary_table_has_a_column_per_test_set_and_figure():
    records = [record("m", "a", 0.8), record("m", "b", 0.6), record("n", "a", 0.7)]
    facts = {"m.pt": {"layers": 4, "filters": 100}}
    table = summary_table(records + [dict(record("n", "b", 0.5), model="x")], facts, ["a", "b", "c"])
    assert table[["model", "combo"]].values.tolist() == [["m", "c"], ["n", "c"], ["x", "c"]]
    assert table["score_a"].tolist()[:2] == pytest.approx([0.8, 0.7]) and np.isnan(table["score_a"].iloc[2])
    assert table["score_b_lo"].tolist() == pytest.approx([0.59, np.nan, 0.49], nan_ok=True)
    assert table["score_a_hi95"].iloc[0] == pytest.approx(0.82)
    # skill = (score - chance) / (1 - chance); a test set without scores gets empty columns
    assert table["skill_a"].iloc[0] == pytest.approx((0.8 - 0.1) / 0.9)
    assert table["chance_classification_a"].iloc[0] == pytest.approx(0.4)
    assert table[["score_c", "skill_c_lo", "threshold_c"]].isna().all().all()
    assert table.attrs["n_resamples"] == [200]
    # architecture facts by model file path (or sha256)
    with_facts = summary_table([dict(records[0], model_file="m.pt")], facts, ["a"])
    assert (with_facts["layers"].iloc[0], with_facts["filters"].iloc[0]) == (4, 100)


def test_chance_levels_and_the_interval_note():
    table = pd.DataFrame({"chance_a": [0.111, 0.111], "chance_b": [0.1, 0.12], "chance_c": [np.nan, np.nan]})
    assert chance_levels(table, ["a", "b", "c"]) == {"a": "0.111", "b": "0.100-0.120", "c": "n/a"}
    table.attrs["n_resamples"] = [500, 1000]
    assert "(500-1000 resamples;" in interval_note(table)
    table.attrs["n_resamples"] = []
    assert interval_note(table).startswith("No bootstrap intervals")


def test_false_positives_by_population():
    counts = {"ELG": {"n": 4, "detected": 1, "rate": 0.25}, "QSO": {"n": 2, "detected": 2, "rate": 1.0}}
    records = [
        record("m", "a", 0.8, false_positives_at_crossing=counts),
        record("n", "a", 0.7, false_positives_at_crossing={"ELG": {"n": 4, "detected": 0, "rate": 0.0}}),
        record("n", "b", 0.7),  # written before the counts
    ]
    table = false_positive_table(records)
    assert table[["model", "population", "detected"]].values.tolist() == [
        ["m", "ELG", 1],
        ["m", "QSO", 2],
        ["n", "ELG", 0],
    ]
    text = "\n".join(false_positive_markdown(table, ["a", "b"]))
    # populations by how many they fool, most first; a run without that population says n/a
    assert "| model | combo | QSO | ELG |" in text
    assert "| m | c | 2 / 2 (100%) | 1 / 4 (25%) |" in text and "| n | c | n/a | 0 / 4 (0%) |" in text
    assert "### b" not in text
    assert false_positive_markdown(false_positive_table([]), ["a"]) == []


def test_seed_spread_sets_the_seeds_beside_their_bootstrap_and_the_ensemble():
    scores = {"m": 0.90, "m.seed1": 0.92, "m.seed2": 0.94, "m.ensemble": 0.95}
    table = summary_table([record(model, "t", s) for model, s in scores.items()], {}, ["t"])
    groups = seed_groups([{"model": "m", "combo": "c", "seeds": 3, "ensemble": True}])
    spread = seed_spread(table, groups, ["t"])
    row = spread.iloc[0]
    assert (row["model"], row["aggregate"], row["seeds"], row["n_seeds"]) == ("m", "seeds", "0 1 2", 3)
    assert row["score_t"] == pytest.approx(0.92) and row["score_t_sd"] == pytest.approx(0.02)
    assert (row["score_t_min"], row["score_t_max"], row["score_t_boot68"]) == pytest.approx((0.9, 0.94, 0.01))
    assert row["ensemble_t"] == pytest.approx(0.95) and row["ensemble_minus_best_t"] == pytest.approx(0.01)
    text = "\n".join(seed_markdown(spread, ["t"]))
    assert (
        "| m / c | 0 1 2 | 0.920 ± 0.020 [0.900, 0.940] (boot ± 0.010); "
        "ensemble 0.950 ± 0.010 (+0.010 vs the best member) |" in text
    )
    assert seed_markdown(seed_spread(table, [], ["t"]), ["t"]) == []
