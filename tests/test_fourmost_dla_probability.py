"""DLA probabilities (lymannet.fourmost.dla_probability): reweighting to nature's DLA incidence,
the prior correction and weighted beta calibration, the working point, a candidate's support and
DLA_PROB (fused with the presence score at the candidate)."""

import numpy as np
import pandas as pd
import pytest

from conftest import balanced_posterior_scores as _synthetic
from conftest import dla_candidates as _candidates
from lymannet import calibration
from lymannet.fourmost import dla_calibration as dc
from lymannet.fourmost import dla_probability as dp
from lymannet.fourmost import features as ft


def test_natural_weights_turn_a_boosted_poisson_split_into_natures():
    rng = np.random.default_rng(1)
    z = rng.uniform(2.0, 4.0, 40_000)
    mu = dp.expected_dlas(z, {})
    boost = 5.0
    k = rng.poisson(boost * mu)
    w = dp.natural_weights(z, k, boost, {})
    assert w.mean() == pytest.approx(1.0)
    assert np.average(k, weights=w) == pytest.approx(mu.mean(), rel=0.05)  # nature's mean count
    assert np.average(k > 0, weights=w) == pytest.approx(np.mean(1 - np.exp(-mu)), rel=0.05)
    assert np.all(dp.natural_weights(z[:10], k[:10], 1.0, {}) == 1.0)  # a natural split: untouched
    with pytest.raises(Exception):
        dp.natural_weights(z[:10], k[:10], 0.0, {})


def test_prior_correction_and_weighted_beta_give_natures_probabilities():
    rng = np.random.default_rng(2)
    natural, boosted = 0.04, 0.3
    # validation drawn at the boosted prior, weighted to nature's; test drawn at nature's
    y_val, p_val = _synthetic(rng, 20_000, boosted)
    w_val = np.where(y_val, natural / boosted, (1 - natural) / (1 - boosted))
    y_test, p_test = _synthetic(rng, 50_000, natural)
    assert dp.weighted_fraction(y_val, w_val) == pytest.approx(natural, rel=0.05)
    corrected_test = calibration.prior_shift(p_test, 0.5, natural)
    raw_ece = calibration.reliability(p_test, y_test)["ece"]
    corrected_ece = calibration.reliability(corrected_test, y_test)["ece"]
    assert raw_ece > 0.05 and corrected_ece < 0.02  # the prior correction alone fixes an exact posterior
    # a miscalibrated network (too confident): the prior correction is not enough, beta on validation is
    sharp = 1.0 / (1.0 + np.exp(-2.0 * np.log(p_val / (1 - p_val))))
    sharp_test = 1.0 / (1.0 + np.exp(-2.0 * np.log(p_test / (1 - p_test))))
    corrected_val = calibration.prior_shift(sharp, 0.5, natural)
    record = dp.calibrate_scores(sharp, corrected_val, y_val, w_val, 0.5, natural, "synthetic")
    test_prob = dp.presence_probability(sharp_test, record)
    assert (
        calibration.reliability(calibration.prior_shift(sharp_test, 0.5, natural), y_test)["ece"]
        > calibration.reliability(test_prob, y_test)["ece"]
    )
    assert calibration.reliability(test_prob, y_test)["ece"] < 0.01
    assert record["reliability"]["calibrated"]["ece"] < record["reliability"]["raw"]["ece"]


def test_safe_fit_beta_falls_back_to_the_identity():
    assert dp.safe_fit_beta(np.array([0.2, 0.9]), np.array([1, 1]), np.ones(2), "x") == dp.IDENTITY_BETA


def test_working_point_is_the_lowest_threshold_of_expected_purity():
    rng = np.random.default_rng(3)
    score_ = rng.uniform(0, 1, 20000)
    correct = rng.uniform(0, 1, score_.size) < score_  # calibrated: P(true) = score
    w = np.ones(score_.size)
    point = dp.choose_working_point(score_, correct, w, n_true=float(correct.sum()), purity=0.9)
    selected = score_ > point["threshold"]
    assert score_[selected].mean() >= 0.9 > np.append(score_[selected], point["threshold"]).mean()
    assert point["threshold"] == pytest.approx(0.8, abs=0.01)  # mean of U(t, 1) = 0.9
    assert point["validation_purity"] == pytest.approx(correct[selected].mean())
    assert point["validation_purity"] == pytest.approx(0.9, abs=0.01)
    assert point["validation_completeness"] == pytest.approx(correct[selected].sum() / correct.sum())
    # weights count: candidates of low probability weighted up pull the expected purity down
    heavier = dp.choose_working_point(score_, correct, np.where(score_ < 0.9, 3.0, 1.0), correct.sum(), 0.9)
    assert heavier["threshold"] > point["threshold"]
    # a few heavily weighted false ones at the top (a boosted validation split reweighted to
    # nature's) leave the threshold where the probabilities put it, not near 1
    dip = correct.copy()
    dip[np.argsort(-score_)[:5]] = False
    shaken = dp.choose_working_point(score_, dip, np.where(dip, 1.0, 5.0), dip.sum(), 0.9)
    assert shaken["threshold"] < 0.85
    assert (
        dp.choose_working_point(np.array([0.3, 0.2]), np.array([True, False]), np.ones(2), 1.0, 0.9)[
            "validation_completeness"
        ]
        == 0.0
    )  # nothing is that probable: nothing selected


def test_support_dla_prob_and_nhi_err():
    _, _, cat = _candidates()
    record = {"expected_votes": 20.0, "beta": [1.0, 1.0, 0.0]}
    sup = dp.support(cat, record)
    assert sup.tolist() == pytest.approx([0.9, 0.2, 0.05, 0.3])
    assert dp.dla_probability(cat, record) == pytest.approx(sup)  # the identity calibration
    record["beta"] = [2.0, 0.5, -1.0]
    prob = dp.dla_probability(cat, record)
    assert np.all(np.diff(prob[np.argsort(sup)]) >= 0)  # monotonic in the support
    cat["NHI_ERR"] = dc.nhi_err(cat, (2.0, 0.1))
    assert cat["NHI_ERR"].iloc[3] == pytest.approx(np.hypot(0.1, 0.2))
    cat["TRUE_LOG_NHI"] = [20.8, np.nan, np.nan, np.nan]
    coverage = dc.nhi_err_coverage(cat, np.ones(4, bool))
    assert coverage["n"] == 1 and coverage["within_1"] == 1.0  # |20.9 - 20.8| < 0.2236


def test_presence_at_takes_the_segments_that_hold_the_candidate_away_from_their_edges():
    seg = ft.Segments(
        np.array([0, 0, 0, 1]),
        np.array([1000, 1200, 1400, 1000]),
        np.zeros(4),
        np.zeros(4, bool),
        np.full(4, np.nan),
    )
    prob = np.array([0.1, 0.7, 0.3, 0.9])
    cat = pd.DataFrame({"ROW": [0, 0, 2], "POSITION": [1390.0, 1405.0, 1100.0]})
    out = dp.presence_at(cat, seg, prob, 400, 20, default=0.05)
    # 1390: inside segments 1200 (rel 190) and 1000 (rel 390: within 20 of its end) -> 0.7
    # 1405: 1200 (rel 205) and 1400 (rel 5: at its edge) -> 0.7; row 2 has no segment -> default
    assert out.tolist() == pytest.approx([0.7, 0.7, 0.05])


def test_fused_dla_prob_rises_with_each_feature_it_was_fitted_on():
    rng = np.random.default_rng(5)
    n = 3000
    cat = pd.DataFrame(
        {
            "SUPPORT": rng.uniform(0.01, 0.99, n),
            "PRESENCE": rng.uniform(0.01, 0.99, n),
            "SNR": rng.uniform(0.5, 20, n),
            "LOG_NHI": rng.uniform(20.0, 21.5, n),
        }
    )
    logit = 2 * dp._logit(cat["SUPPORT"]) + dp._logit(cat["PRESENCE"]) + np.log(cat["SNR"]) - 2
    true = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    features = ["support", "presence", "snr"]
    record = {
        "features": features,
        "combiner": calibration.fit_logistic(dp.candidate_features(cat, features), true).tolist(),
    }
    assert record["combiner"][:3] == pytest.approx([2.0, 1.0, 1.0], abs=0.35)
    prob = dp.dla_probability(cat, record)
    assert calibration.reliability(prob, true)["ece"] < 0.04
    with pytest.raises(Exception):
        dp.candidate_features(cat, ["colour"])
