"""4MOST scoring: window decoding inverts the labels, location metrics and the summary table."""

import numpy as np
import pandas as pd
import pytest

from lymannet.fourmost import features as ft
from lymannet.fourmost import score


def test_decode_windows_inverts_label_windows():
    by_row = {0: (np.array([1000.0]), np.array([21.3]))}
    windows = ft.label_windows(np.array([0, 0]), np.array([950.0, 1080.0]), 800, by_row)
    logit = np.where(windows.present == 1, 20.0, -20.0)
    output = np.stack([logit, windows.offset, windows.log_n - ft.LOG_NHI_CENTRE], axis=1).astype(np.float32)
    votes = ft.decode_windows(windows, output, 800)
    assert votes.position == pytest.approx([1000.0, 1000.0], abs=1e-3)
    assert votes.log_n == pytest.approx([21.3, 21.3], abs=1e-5)
    assert votes.probability == pytest.approx([1.0, 1.0])


def test_location_metrics_hand_case():
    truth = pd.DataFrame(
        {
            "SNR": [10.0, 3.0, 8.0],
            "FOUND": [True, True, False],
            "DELTA_A": [2.0, -2.0, np.nan],
            "LOG_NHI": [21.0, 20.5, 20.4],
            "PRED_LOG_NHI": [21.1, 20.3, np.nan],
        }
    )
    cat = pd.DataFrame({"TRUE_MATCH": [0, 1, -1, -1]})
    m = score.location_metrics(truth, cat, {"snr_min": 5.0, "match_tolerance_angstrom": 10.0})
    assert m["fraction_found_within_tolerance"] == pytest.approx(2 / 3)
    assert m["fraction_found_within_tolerance_snr_gt_min"] == pytest.approx(0.5)
    assert m["purity"] == pytest.approx(0.5) and m["n_false_positives"] == 2
    assert m["position_rms_angstrom"] == pytest.approx(2.0) and m[
        "position_rms_pixels_native_0.25A"
    ] == pytest.approx(8.0)
    assert m["log_nhi_bias_dex"] == pytest.approx(-0.05) and m["log_nhi_rms_dex"] == pytest.approx(
        np.sqrt(0.025)
    )


def test_summary_table_rows_and_markdown():
    cost = {"parameters": 10, "train_seconds": 1.5, "epochs": 2}
    table = score.summary_table(
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
    assert table["detail"].iloc[0] == "0/100" and table["slides"].iloc[2] == score.SLIDES["presence"]
    assert table["slides"].iloc[3] == ""  # the slides' figure once per model
    assert table["value"].iloc[6] == pytest.approx(0.75)
    text = score.summary_markdown(table, "demo")
    assert (
        text.startswith("# 4MOST quasar pipelines: demo set")
        and "| redshift | dense | MAPE [%] | 0.28 |" in text
    )


def test_purity_completeness_by_bin_hand_case():
    from lymannet.fourmost import metrics

    out = metrics.purity_completeness_by_bin(
        np.array([20.4, 20.45, 20.8, 21.5]),
        np.array([True, False, True, True]),
        np.array([20.35, 20.9, 20.9, 21.2]),
        np.array([True, False, True, False]),
        metrics.NHI_EDGES,
    )
    assert list(out) == ["20.3-20.5", "20.5-21", ">21"]
    assert out["20.3-20.5"]["completeness"] == 0.5 and out["20.3-20.5"]["purity"] == 1.0
    assert (
        out["20.5-21"]["completeness"] == 1.0
        and out["20.5-21"]["purity"] == 0.5
        and out["20.5-21"]["n_detected"] == 2
    )
    assert out[">21"]["purity"] == 0.0


def test_confuser_priority():
    from lymannet.fourmost.metrics import confuser_of

    assert confuser_of(19.5, True, True) == "DLA next to it"
    assert confuser_of(19.5, False, True) == "sub-DLA (19-20.3)"
    assert confuser_of(17.5, False, True) == "BAL trough"
    assert confuser_of(17.5, False, False) == "Lyman-limit system (17-19)"
    assert confuser_of(np.nan, False, False) == "none of these"


def test_sightline_rates_hand_case():
    truth = pd.DataFrame({"ROW": [0, 0, 1, 2], "FOUND": [True, False, False, True]})
    cat = pd.DataFrame({"ROW": [0, 2, 3, 3], "TRUE_MATCH": [0, 3, -1, -1]})
    rates = score.sightline_rates(truth, cat, np.arange(10))
    assert rates["sightline_completeness"] == pytest.approx(2 / 3)  # rows 0 and 2 of 0, 1, 2
    assert rates["sightline_purity"] == pytest.approx(2 / 3)  # rows 0 and 2 of 0, 2, 3


def test_segment_labels_count_edge_dlas_in_label_any():
    from types import SimpleNamespace

    wave = 3600.0 + 0.5 * np.arange(4000)
    z_qso = 3.0
    # DLA centres 5 px and 150 px after the first segment's start (forest starts at Ly-beta)
    lo = ft.pixel_of(wave, 1025.72 * (1 + z_qso))
    first = int(lo) - 100
    centres = np.array([first + 5.0, first + 150.0])
    z_abs = ft.wavelength_of(wave, centres) / 1215.67 - 1
    data = SimpleNamespace(
        dla_wave=wave,
        sightlines=pd.DataFrame({"Z_QSO": [z_qso]}),
        dlas=pd.DataFrame({"ROW": [0, 0], "Z_ABS": z_abs, "LOG_NHI": [20.5, 21.0]}),
    )
    seg = ft.presence_segments(data, np.array([0]), 400, 200, 20)
    assert seg.starts[0] == first
    assert seg.label[0] == 1 and seg.label_any[0] == 1 and seg.ambiguous[0]
    assert seg.log_n[0] == pytest.approx(21.0)


def test_training_record():
    payload = {
        "parameters": 5,
        "train_seconds": 2.0,
        "history": {"epoch": [1, 2, 3]},
        "info": {"n_train": 40},
    }
    assert score.training_record(payload) == {
        "parameters": 5,
        "train_seconds": 2.0,
        "epochs": 3,
        "n_train": 40,
    }


def test_location_intervals_and_the_summary_with_them():
    truth = pd.DataFrame({"ROW": [0, 0, 1, 3], "FOUND": [True, False, True, True]})
    cat = pd.DataFrame({"ROW": [0, 1, 2, 3], "TRUE_MATCH": [0, 2, -1, 3]})
    metrics = {
        "fraction_found_within_tolerance": 0.75,
        "purity": 0.75,
        "sightline_completeness": 1.0,
        "sightline_purity": 0.75,
    }
    out = score.location_intervals(truth, cat, np.arange(5), metrics)
    for key, interval in out.items():
        assert interval["value"] == metrics[key.removesuffix("_interval")]
        assert interval["lo95"] <= interval["lo68"] <= interval["hi68"] <= interval["hi95"]
    assert out["sightline_completeness_interval"]["hi95"] == 1.0  # every sightline with a DLA has one found
    cost = {"parameters": 10, "train_seconds": 1.5, "epochs": 2}
    table = score.summary_table(
        [],
        None,
        {
            "tolerance_angstrom": 10.0,
            "snr_min": 5.0,
            **metrics,
            **out,
            "fraction_found_within_tolerance_snr_gt_min": 0.9,
            "position_rms_angstrom": 2.0,
            "log_nhi_rms_dex": 0.08,
            **cost,
        },
    )
    assert table["lo68"].iloc[0] == out["fraction_found_within_tolerance_interval"]["lo68"]
    assert np.isnan(table["lo68"].iloc[-1])  # log N_HI rms: no interval
    text = score.summary_markdown(table, "demo")
    half = 0.5 * (table["hi68"].iloc[0] - table["lo68"].iloc[0])
    assert f"| 0.75 ± {half:.2g} |" in text and "1000 resamples" in text and "lo68" not in text.split("\n")[4]
