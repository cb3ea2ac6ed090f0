"""4MOST figures of merit: MAPE, ROC/AUC (hand cases, no sklearn), window merging and matching."""

import numpy as np
import pandas as pd
import pytest

from lymannet.fourmost import metrics


def test_mape_and_catastrophic():
    assert metrics.mape([2.2, 3.0], [2.0, 3.0]) == pytest.approx(5.0)
    result = metrics.redshift_metrics(np.array([2.0, 3.2, 3.05]), np.array([2.0, 3.0, 3.0]))
    assert result["n_catastrophic"] == 1 and result["catastrophic_fraction"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "score, label, expected",
    [
        ([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], 1.0),
        ([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),
        ([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0], 0.75),  # pairs: (.9>.6) (.9>.1) (.4<.6) (.4>.1)
        ([0.7, 0.5, 0.5, 0.2], [1, 1, 0, 0], 0.875),  # one tie counts 1/2
    ],
)
def test_auc_hand_cases(score, label, expected):
    assert metrics.auc(np.array(score), np.array(label)) == pytest.approx(expected)
    fpr, tpr, _ = metrics.roc_curve(np.array(score), np.array(label))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected)  # ROC area = rank AUC, ties included


def test_merge_windows_suppresses_neighbours():
    rows = np.array([0, 0, 0, 0, 0, 1, 1])
    position = np.array([100.0, 102.0, 98.0, 300.0, 500.0, 50.0, 400.0])
    log_n = np.array([21.0, 21.2, 21.0, 20.5, 22.0, 20.4, 20.6])
    probability = np.array([0.9, 0.6, 0.6, 0.8, 0.2, 0.55, 0.7])
    cat = metrics.merge_windows(rows, position, log_n, probability, threshold=0.5, radius=10.0)
    assert len(cat) == 4  # 100 (3 votes), 300; row 1: 50, 400; 500 is below threshold
    first = cat.iloc[0]
    assert first["ROW"] == 0 and first["N_WINDOWS"] == 3 and first["CONFIDENCE"] == 0.9
    assert first["POSITION"] == pytest.approx((100 * 0.9 + 102 * 0.6 + 98 * 0.6) / 2.1)
    assert first["LOG_NHI"] == pytest.approx((21.0 * 0.9 + 21.2 * 0.6 + 21.0 * 0.6) / 2.1)
    assert sorted(cat[cat["ROW"] == 1]["POSITION"]) == [50.0, 400.0]


def test_merge_windows_two_close_dlas_stay_apart_beyond_radius():
    cat = metrics.merge_windows(
        np.zeros(4, int),
        np.array([100.0, 103.0, 140.0, 137.0]),
        np.full(4, 21.0),
        np.array([0.9, 0.8, 0.85, 0.7]),
        threshold=0.5,
        radius=15.0,
    )
    assert len(cat) == 2 and cat["N_WINDOWS"].tolist() == [2, 2]


def test_merge_windows_reports_the_log_nhi_spread_and_the_vote_sum():
    cat = metrics.merge_windows(
        np.zeros(3, int),
        np.array([100.0, 101.0, 102.0]),
        np.array([20.5, 20.7, 20.9]),
        np.array([1.0, 1.0, 1.0]),
        0.5,
        10.0,
        vote_value=np.array([0.1, 0.2, 0.3]),
    )
    assert cat["LOG_NHI"].iloc[0] == pytest.approx(20.7)
    assert cat["LOG_NHI_SPREAD"].iloc[0] == pytest.approx(np.sqrt(0.08 / 3))
    assert cat["VOTE_SUM"].iloc[0] == pytest.approx(0.6)


def test_match_catalogue_one_to_one():
    truth = pd.DataFrame({"ROW": [0, 0, 1], "POSITION": [100.0, 130.0, 50.0], "LOG_NHI": [21.0, 20.5, 20.4]})
    cat = pd.DataFrame({"ROW": [0, 1, 1], "POSITION": [104.0, 90.0, 52.0], "LOG_NHI": [21.1, 20.0, 20.6]})
    matched, cat = metrics.match_catalogue(truth, cat, tolerance=10.0)
    assert matched["MATCH"].tolist() == [0, -1, 2]
    assert matched["DELTA"].iloc[0] == pytest.approx(4.0)
    assert cat["TRUE_MATCH"].tolist() == [0, -1, 2]
    assert matched["PRED_LOG_NHI"].iloc[2] == pytest.approx(20.6)


def test_weighted_auc_equals_the_auc_of_the_repeated_objects():
    from lymannet.fourmost.metrics import auc, weighted_auc

    rng = np.random.default_rng(0)
    label = rng.random(300) < 0.4
    score = np.round(np.where(label, rng.normal(1, 1, 300), rng.normal(0, 1, 300)), 1)  # ties
    weights = rng.integers(0, 3, (4, 300))
    for row, area in zip(weights, weighted_auc(score, label, weights)):
        repeated = np.repeat(np.arange(300), row)
        assert area == pytest.approx(auc(score[repeated], label[repeated]))
    assert np.isnan(weighted_auc(score, label, np.where(label, 0, 1)[None])[0])  # no positive drawn


def test_intervals_resample_whole_sightlines():
    from lymannet.fourmost.metrics import auc_interval, ratio_interval

    rng = np.random.default_rng(1)
    # 100 sightlines of 20 segments each, all segments of a sightline alike: the spread is that
    # of 100 draws, not of 2,000
    found = np.repeat(rng.random(100) < 0.5, 20)
    sightline = np.repeat(np.arange(100), 20)
    clustered = ratio_interval(found.mean(), found, np.ones(found.size), sightline)
    naive = ratio_interval(found.mean(), found, np.ones(found.size))
    half = lambda i: 0.5 * (i["hi68"] - i["lo68"])  # noqa: E731
    assert half(clustered) == pytest.approx(np.sqrt(0.25 / 100), rel=0.2)
    assert half(naive) < 0.5 * half(clustered)
    assert clustered["value"] == pytest.approx(found.mean()) and clustered["n_resamples"] == 1000
    score = found + rng.normal(0, 1, found.size)
    interval = auc_interval(score, found, sightline, n_resamples=200)
    assert interval["lo95"] < interval["value"] < interval["hi95"] and interval["n_resamples"] == 200
