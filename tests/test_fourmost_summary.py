"""4MOST summary table: one row per figure of merit, the slides' figure once per model, Markdown."""

import pytest

from lymannet.fourmost import summary


def test_summary_table_rows_and_markdown():
    cost = {"parameters": 10, "train_seconds": 1.5, "epochs": 2}
    table = summary.summary_table(
        [
            {
                "model": "dense",
                "mape_percent": 0.28,
                "n_catastrophic": 0,
                "n": 100,
                **cost,
                "by_bal": {"BAL": {"n": 15, "mape_percent": 0.5, "catastrophic_fraction": 0.1}},
            }
        ],
        {
            "auc": 0.95,
            "auc_unambiguous": 0.99,
            "completeness": 0.8,
            "purity": 0.6,
            "threshold": 0.5,
            **cost,
            "false_positive_causes": {"sub-DLA (19-20.3)": 3, "BAL trough": 1},
            "main_false_positive_cause": "sub-DLA (19-20.3)",
        },
        {
            "tolerance_angstrom": 10.0,
            "snr_min": 5.0,
            "fraction_found_within_tolerance_snr_gt_min": 0.9,
            "fraction_found_within_tolerance": 0.85,
            "position_rms_angstrom": 2.0,
            "sightline_completeness": 0.9,
            "sightline_purity": 0.7,
            "log_nhi_rms_dex": 0.08,
            "purity": 0.8,
            **cost,
        },
    )
    assert table["figure"].tolist() == [
        "MAPE [%]",
        "MAPE [%], BAL (n=15)",
        "AUC, all segments",
        "AUC, unambiguous segments only",
        "completeness at p>=0.5",
        "purity",
        "false positives: most on sub-DLA (19-20.3)",
        "catalogue completeness (per DLA, 10 A)",
        "catalogue purity (per DLA)",
        "sightline completeness",
        "sightline purity",
        "found within 10 A, S/N>5",
        "position rms [A]",
        "log N_HI rms [dex]",
    ]
    assert table["detail"].iloc[0] == "0/100" and table["slides"].iloc[2] == summary.SLIDES["presence"]
    assert table["slides"].iloc[3] == ""  # the slides' figure once per model
    assert table["value"].iloc[6] == pytest.approx(0.75)
    text = summary.summary_markdown(table, "demo")
    assert (
        text.startswith("# 4MOST quasar pipelines: demo set")
        and "| redshift | dense | MAPE [%] | 0.28 |" in text
    )
