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
    truth = pd.DataFrame({"SNR": [10.0, 3.0, 8.0], "FOUND": [True, True, False], "DELTA_A": [2.0, -2.0, np.nan],
                          "LOG_NHI": [21.0, 20.5, 20.4], "PRED_LOG_NHI": [21.1, 20.3, np.nan]})
    cat = pd.DataFrame({"TRUE_MATCH": [0, 1, -1, -1]})
    m = score.location_metrics(truth, cat, {"snr_min": 5.0, "match_tolerance_angstrom": 10.0})
    assert m["fraction_found_within_tolerance"] == pytest.approx(2 / 3)
    assert m["fraction_found_within_tolerance_snr_gt_min"] == pytest.approx(0.5)
    assert m["purity"] == pytest.approx(0.5) and m["n_false_positives"] == 2
    assert m["position_rms_angstrom"] == pytest.approx(2.0) and m["position_rms_pixels_native_0.25A"] == pytest.approx(8.0)
    assert m["log_nhi_bias_dex"] == pytest.approx(-0.05) and m["log_nhi_rms_dex"] == pytest.approx(np.sqrt(0.025))


def test_summary_table_rows_and_markdown():
    cost = {"parameters": 10, "train_seconds": 1.5, "epochs": 2}
    table = score.summary_table(
        [{"model": "dense", "mape_percent": 0.28, "n_catastrophic": 0, "n": 100, **cost}],
        {"auc": 0.99, **cost},
        {"tolerance_angstrom": 10.0, "snr_min": 5.0, "fraction_found_within_tolerance_snr_gt_min": 0.9,
         "log_nhi_rms_dex": 0.08, "purity": 0.8, **cost})
    assert table["figure"].tolist() == ["MAPE [%]", "AUC", "found within 10 A, S/N>5", "log N_HI rms [dex]",
                                        "catalogue purity"]
    assert table["catastrophic (|dz|>0.1)"].iloc[0] == "0/100" and table["slides"].iloc[1] == score.SLIDES["presence"]
    text = score.summary_markdown(table, "demo")
    assert text.startswith("# 4MOST quasar pipelines: demo set") and "| redshift | dense | MAPE [%] | 0.28 |" in text


def test_training_record():
    payload = {"parameters": 5, "train_seconds": 2.0, "history": {"epoch": [1, 2, 3]}, "info": {"n_train": 40}}
    assert score.training_record(payload) == {"parameters": 5, "train_seconds": 2.0, "epochs": 3, "n_train": 40}
