"""4MOST DLA localisation: the catalogue's metrics per DLA and per sightline, and their bootstrap
intervals (with the summary table that shows them)."""

import numpy as np
import pandas as pd
import pytest

from lymannet.fourmost import localisation, summary


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
    m = localisation.location_metrics(truth, cat, {"snr_min": 5.0, "match_tolerance_angstrom": 10.0})
    assert m["fraction_found_within_tolerance"] == pytest.approx(2 / 3)
    assert m["fraction_found_within_tolerance_snr_gt_min"] == pytest.approx(0.5)
    assert m["purity"] == pytest.approx(0.5) and m["n_false_positives"] == 2
    assert m["position_rms_angstrom"] == pytest.approx(2.0) and m[
        "position_rms_pixels_native_0.25A"
    ] == pytest.approx(8.0)
    assert m["log_nhi_bias_dex"] == pytest.approx(-0.05) and m["log_nhi_rms_dex"] == pytest.approx(
        np.sqrt(0.025)
    )


def test_sightline_rates_hand_case():
    truth = pd.DataFrame({"ROW": [0, 0, 1, 2], "FOUND": [True, False, False, True]})
    cat = pd.DataFrame({"ROW": [0, 2, 3, 3], "TRUE_MATCH": [0, 3, -1, -1]})
    rates = localisation.sightline_rates(truth, cat, np.arange(10))
    assert rates["sightline_completeness"] == pytest.approx(2 / 3)  # rows 0 and 2 of 0, 1, 2
    assert rates["sightline_purity"] == pytest.approx(2 / 3)  # rows 0 and 2 of 0, 2, 3


def test_location_intervals_and_the_summary_with_them():
    truth = pd.DataFrame({"ROW": [0, 0, 1, 3], "FOUND": [True, False, True, True]})
    cat = pd.DataFrame({"ROW": [0, 1, 2, 3], "TRUE_MATCH": [0, 2, -1, 3]})
    metrics = {
        "fraction_found_within_tolerance": 0.75,
        "purity": 0.75,
        "sightline_completeness": 1.0,
        "sightline_purity": 0.75,
    }
    out = localisation.location_intervals(truth, cat, np.arange(5), metrics)
    for key, interval in out.items():
        assert interval["value"] == metrics[key.removesuffix("_interval")]
        assert interval["lo95"] <= interval["lo68"] <= interval["hi68"] <= interval["hi95"]
    assert out["sightline_completeness_interval"]["hi95"] == 1.0  # every sightline with a DLA has one found
    cost = {"parameters": 10, "train_seconds": 1.5, "epochs": 2}
    table = summary.summary_table(
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
    text = summary.summary_markdown(table, "demo")
    half = 0.5 * (table["hi68"].iloc[0] - table["lo68"].iloc[0])
    assert f"| 0.75 ± {half:.2g} |" in text and "1000 resamples" in text and "lo68" not in text.split("\n")[4]
