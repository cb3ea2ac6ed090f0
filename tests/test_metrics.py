"""Purity / efficiency / P=E score against small cases computed by hand (never against the code)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from lymannet.errors import ConfigError
from lymannet.evaluation import evaluate
from lymannet.metrics import (
    ScoreOptions,
    best_line_counts,
    binned_efficiency,
    correct_redshift,
    is_detected,
    pe_crossing,
    purity_efficiency_curve,
    redshift_summary,
)

# Six spectra, one line each. Targets A, B, C, D; contaminants E, F. C has a wrong redshift.
#            A    B    C    D    E    F
C_ONE = np.array([[0.9], [0.7], [0.4], [0.2], [0.8], [0.3]])
IS_TARGET = np.array([True, True, True, True, False, False])
IS_CORRECT = np.array([True, True, False, True, True, True])
GRID = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


def test_curve_by_hand():
    curve = purity_efficiency_curve(C_ONE, IS_TARGET, IS_CORRECT, GRID)
    # c_th = 0:    all 6 detected, good = A, B, D             -> P = 3/6, E = 3/4
    # c_th = 0.25: A B C E F detected (0.2 is not), good A, B -> P = 2/5, E = 2/4
    # c_th = 0.5:  A B E detected, good A, B                 -> P = 2/3, E = 2/4
    # c_th = 0.75: A E detected, good A                      -> P = 1/2, E = 1/4
    # c_th = 1:    nothing detected                          -> P undefined, E = 0
    assert curve["N_DETECTED"].tolist() == [6, 5, 3, 2, 0]
    assert curve["N_GOOD"].tolist() == [3, 2, 2, 1, 0]
    np.testing.assert_allclose(curve["PURITY"][:4], [0.5, 0.4, 2 / 3, 0.5])
    assert np.isnan(curve["PURITY"].iloc[4])
    np.testing.assert_allclose(curve["EFFICIENCY"], [0.75, 0.5, 0.5, 0.25, 0.0])


def test_crossing_interpolated_by_hand():
    curve = purity_efficiency_curve(C_ONE, IS_TARGET, IS_CORRECT, GRID)
    crossing = pe_crossing(curve)
    # P - E = -0.25, -0.1, +1/6, ... : the sign changes between 0.25 and 0.5.
    # t = 0.1 / (0.1 + 1/6) = 0.375 -> c_th = 0.25 + 0.375 * 0.25 = 0.34375
    # P = 0.4 + 0.375 * (2/3 - 0.4) = 0.5 ; E = 0.5 + 0.375 * 0 = 0.5
    assert crossing.threshold == pytest.approx(0.34375)
    assert crossing.score == pytest.approx(0.5)
    assert not crossing.exact and crossing.note == ""


def test_crossing_exactly_on_a_grid_point():
    # At c_th = 0.35: A B C E detected = 4 = n_targets, good A B -> P = E = 2/4.
    curve = purity_efficiency_curve(C_ONE, IS_TARGET, IS_CORRECT, np.array([0.0, 0.35, 0.5]))
    crossing = pe_crossing(curve)
    assert crossing.exact
    assert crossing.threshold == pytest.approx(0.35)
    assert crossing.score == pytest.approx(0.5)


def test_crossing_between_two_grid_points_is_found_on_the_exact_curve():
    # A well-separated model: every confidence above the last grid point below 1 (0.995).
    #            targets: 3 good + 1 bad redshift            contaminants
    c_line = np.array([[0.9999], [0.9998], [0.9990], [0.9997], [0.9996], [0.9960]])
    is_target = np.array([True, True, True, True, False, False])
    is_correct = np.array([True, True, True, False, True, True])
    catalogue = pd.DataFrame(
        {
            "Z": np.where(is_correct, 3.0, 2.0),
            "SPECTYPE": np.where(is_target, "LBG", "QSO"),
            "Z_PRED": np.full(6, 3.0),
        }
    )
    options = ScoreOptions(thresholds=tuple(np.linspace(0, 1, 201)))
    # On the grid alone, P < E at 0.995 (all 6 detected: P = 3/6, E = 3/4) and nothing is detected
    # at 1: no crossing there.
    assert np.isnan(
        pe_crossing(purity_efficiency_curve(c_line, is_target, is_correct, options.thresholds)).score
    )
    # By hand, on the exact curve: at c_th = 0.9990 four are detected (A, B, D, E), as many as
    # there are targets: good = A, B -> P = E = 2/4.
    result = evaluate(catalogue, c_line, options)
    assert result.crossing.score == pytest.approx(0.5)
    assert result.crossing.threshold == pytest.approx(0.9990)
    assert result.summary["score"] == pytest.approx(0.5)
    # The saved curve: the grid plus quantiles of the confidences, so the crossing shows on it too.
    saved = result.curve["THRESHOLD"].to_numpy()
    assert set(options.thresholds) <= set(saved) and len(saved) <= 201 + 200
    assert np.count_nonzero(saved > 0.995) >= 4


def test_confidence_equal_to_threshold_is_not_detected():
    # Three correct targets tied at 0.5: detected at c_th = 0.4 (P = E = 1), not at 0.5 (strict >).
    c_line = np.full((3, 1), 0.5)
    curve = purity_efficiency_curve(c_line, np.ones(3, bool), np.ones(3, bool), np.array([0.4, 0.5]))
    assert curve["N_DETECTED"].tolist() == [3, 0]
    crossing = pe_crossing(curve)
    assert (crossing.score, crossing.threshold, crossing.exact) == (1.0, 0.4, True)


def test_ties_across_classes_and_undefined_purity_give_nan_with_a_reason():
    # A target (correct z) and a contaminant tied at 0.6. c_th = 0: P = 1/2, E = 1;
    # c_th >= 0.6: nothing detected, P undefined. The only defined point has P < E: no crossing.
    c_line = np.array([[0.6], [0.6]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning
        curve = purity_efficiency_curve(
            c_line, np.array([True, False]), np.array([True, True]), np.array([0.0, 0.6, 1.0])
        )
    np.testing.assert_allclose(curve["PURITY"], [0.5, np.nan, np.nan])
    np.testing.assert_allclose(curve["EFFICIENCY"], [1.0, 0.0, 0.0])
    crossing = pe_crossing(curve)
    assert np.isnan(crossing.score) and "no crossing" in crossing.note


def test_crossing_ignores_undefined_points_between_defined_ones():
    curve = pd.DataFrame(
        {"THRESHOLD": [0.0, 0.5, 1.0], "PURITY": [0.2, np.nan, 0.8], "EFFICIENCY": [0.8, 0.6, 0.2]}
    )
    # Between 0 and 1: P - E goes -0.6 -> +0.6, t = 0.5 -> c_th = 0.5, P = 0.5.
    crossing = pe_crossing(curve)
    assert crossing.threshold == pytest.approx(0.5)
    assert crossing.score == pytest.approx(0.5)


def test_no_target_gives_nan_efficiency_and_a_warning():
    c_line = np.array([[0.9], [0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = purity_efficiency_curve(c_line, np.zeros(2, bool), np.ones(2, bool), GRID)
    assert curve["EFFICIENCY"].isna().all()
    np.testing.assert_allclose(curve["PURITY"][:2], [0.0, 0.0])  # 2 and 1 detected, none good
    crossing = pe_crossing(curve)
    assert np.isnan(crossing.score) and "no true target" in crossing.note

    table = pd.DataFrame({"Z": [0.1, 0.15], "SPECTYPE": ["ELG", "ELG"], "Z_PRED": [0.1, 3.0]})
    summary = evaluate(table, c_line, ScoreOptions(thresholds=tuple(GRID))).summary
    assert summary["score"] is None and summary["efficiency_at_default"] is None
    assert any("no LBG" in w for w in summary["warnings"])
    json.dumps(summary, allow_nan=False)  # standard JSON: NaN became null


def test_min_lines_counts_lines_above_threshold():
    c_line = np.array([[0.9, 0.6], [0.9, 0.1], [0.7, 0.7], [0.5, 0.55]])
    # c_th = 0.5: lines above per row = 2, 1, 2, 1 (0.5 is not above 0.5)
    np.testing.assert_array_equal(is_detected(c_line, 0.5, 1), [True, True, True, True])
    np.testing.assert_array_equal(is_detected(c_line, 0.5, 2), [True, False, True, False])
    with pytest.raises(ConfigError):
        is_detected(c_line, 0.5, 3)


def test_bal_heads_do_not_count_towards_detection():
    from lymannet.lines import QSO_BAL_LINE, QSO_LINES

    lines = QSO_LINES[:2] + (QSO_BAL_LINE,)
    c_line = np.array([[0.1, 0.2, 0.9], [0.6, 0.2, 0.9], [0.6, 0.7, 0.1]])
    np.testing.assert_array_equal(is_detected(c_line, 0.5, 1, lines), [False, True, True])
    np.testing.assert_array_equal(is_detected(c_line, 0.5, 2, lines), [False, False, True])
    np.testing.assert_array_equal(is_detected(c_line, 0.5, 1), [True, True, True])  # columns only: BAL counts


def test_correct_redshift_dz_and_velocity():
    # z = 3, z_pred = 3.004: dz = 0.004, dv = 0.004 / 4 * c = 299.79 km/s
    z_true, z_pred = np.array([3.0, 3.0, 3.0]), np.array([3.004, 3.06, np.nan])
    np.testing.assert_array_equal(correct_redshift(z_pred, z_true, dz_max=0.05), [True, False, False])
    np.testing.assert_array_equal(correct_redshift(z_pred, z_true, dv_max_kms=300.0), [True, False, False])
    np.testing.assert_array_equal(correct_redshift(z_pred, z_true, dv_max_kms=299.0), [False, False, False])


def test_binned_efficiency_by_hand():
    table = binned_efficiency(
        np.array([2.05, 2.15, 2.15, 2.25]),
        np.array([True, False, True, True]),
        np.array([2.0, 2.1, 2.2, 2.3, 2.4]),
    )
    assert table["N"].tolist() == [1, 2, 1, 0]
    np.testing.assert_allclose(table["EFFICIENCY"], [1.0, 0.5, 1.0, np.nan])
    np.testing.assert_allclose(table["ERROR"], [0.0, np.sqrt(0.25 / 2), 0.0, np.nan])


def test_best_line_counts_by_hand():
    c_line = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.1], [0.3, 0.3, 0.9]])
    counts = best_line_counts(c_line, ["LYA", "LYB", "CIV"])
    # firsts: LYA, LYB, CIV; seconds: LYB, LYA, LYA (tie 0.3/0.3 -> the line listed first)
    assert counts["N_FIRST"].tolist() == [1, 1, 1]
    assert counts["N_SECOND"].tolist() == [2, 1, 0]


def test_redshift_summary_by_hand():
    summary = redshift_summary(np.array([2.01, 3.2]), np.array([2.0, 3.0]))
    assert summary["frac_catastrophic"] == pytest.approx(0.5)
    assert summary["median_abs_dz"] == pytest.approx(0.105)
    # dz/(1+z) = 0.01/3, 0.2/4; median 0.0266667; |deviations| 0.0233333 -> 1.4826 * 0.0233333
    assert summary["sigma_nmad"] == pytest.approx(1.4826 * (0.05 - 0.01 / 3) / 2)


def test_options_from_config():
    options = ScoreOptions.from_config(
        {
            "dz_max": 0.05,
            "dv_max_kms": None,
            "target_class": "LBG",
            "threshold_grid": {"start": 0.0, "stop": 1.0, "n": 201},
            "min_lines": 1,
        }
    )
    assert len(options.thresholds) == 201 and options.thresholds[1] == pytest.approx(0.005)
    assert options.c_th == 0.5
    with pytest.raises(ConfigError):
        ScoreOptions.from_config({"min_lines": 0})


def test_redshift_hit_probability_counts_the_training_redshifts():
    from lymannet.metrics import correct_redshift, redshift_hit_probability

    z_train = np.array([2.0, 2.96, 3.0, 3.04, 3.05, 3.2])
    q = redshift_hit_probability(np.array([3.0, 2.0, 5.0]), z_train, dz_max=0.05)
    # exactly the rule of correct_redshift, rounding included: 3.05 - 3.0 is 0.04999999999999982 in
    # floating point, so 3.05 counts for 3.0 there and here
    expected = [correct_redshift(z_train, np.full(6, z0)).mean() for z0 in (3.0, 2.0, 5.0)]
    assert q.tolist() == expected == pytest.approx([4 / 6, 1 / 6, 0.0])
    loo = redshift_hit_probability(np.array([3.0, 3.01, 4.0]), np.array([3.0, 3.01, 4.0]), exclude_self=True)
    assert loo.tolist() == pytest.approx([0.5, 0.5, 0.0])
    # the velocity rule: |dz| < dv (1 + z) / c
    q_dv = redshift_hit_probability(np.array([3.0]), z_train, dv_max_kms=3000.0)  # |dz| < 0.04
    assert q_dv.tolist() == pytest.approx([3 / 6])
    assert np.isnan(redshift_hit_probability(np.array([3.0]), np.array([]))).all()


def test_skill_is_undefined_without_contaminants_or_score():
    from lymannet.metrics import chance_score, skill_score

    assert chance_score(30, 70) == pytest.approx(0.3)
    assert skill_score(0.65, 0.3) == pytest.approx(0.5)
    assert np.isnan(skill_score(0.9, chance_score(10, 0)))
    assert np.isnan(skill_score(None, 0.3)) and np.isnan(chance_score(0, 0))
