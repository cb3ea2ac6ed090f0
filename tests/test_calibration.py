"""lymannet.calibration: beta calibration, prior correction, working point, ZERR (synthetic data
whose true probabilities and errors are known), and the record's round trip through a model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lymannet import calibration
from lymannet.calibration import (
    Calibration,
    ValidationCounts,
    apply_beta,
    choose_threshold,
    fit_beta,
    fit_calibration,
    fit_redshift_error,
    line_spread,
    prior_shift,
    redshift_error,
    reliability,
    zerr_coverage,
)
from lymannet.errors import ConfigError
from conftest import balanced_posterior_scores as _synthetic
from conftest import synthetic_calibration


def overconfident_scores(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, outcome, true probability): outcomes drawn from a known probability p at a
    given positive fraction; the network's confidence is p pushed towards 0 and 1 (logit x 4), as
    the line finder's sigmoids do."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < fraction
    # class-conditional logits: the likelihood ratio does not depend on the class mix
    logit_lr = np.where(positive, rng.normal(2.0, 1.5, n), rng.normal(-2.0, 1.5, n))
    logit_lr = np.clip(logit_lr, -12, 12)
    prior = np.log(fraction / (1 - fraction))
    p_true = 1 / (1 + np.exp(-(logit_lr * (4 / 1.5**2) / (4 / 1.5**2)) - prior))
    confidence = 1 / (1 + np.exp(-4 * logit_lr))
    return confidence, positive.astype(float), p_true


def test_beta_calibration_turns_an_overconfident_score_into_a_probability():
    confidence, outcome, _ = overconfident_scores(4000, 0.3, seed=1)
    coefficients = fit_beta(confidence, outcome)
    test_c, test_y, _ = overconfident_scores(4000, 0.3, seed=2)
    before = reliability(test_c, test_y)["ece"]
    after = reliability(apply_beta(test_c, coefficients), test_y)["ece"]
    assert before > 0.05
    assert after < 0.025
    assert coefficients[0] >= 0 and coefficients[1] >= 0
    grid = np.linspace(0, 1, 1001)
    assert np.all(np.diff(apply_beta(grid, coefficients)) >= 0)  # a cut on PROB is a cut on c


def test_beta_calibration_needs_both_outcomes():
    with pytest.raises(ConfigError, match="both outcomes"):
        fit_beta(np.linspace(0, 1, 10), np.ones(10))


def test_weighted_fit_beta_equals_replication_and_reliability_reduces_to_unweighted():
    rng = np.random.default_rng(3)
    y, p = _synthetic(rng, 600, 0.3)
    w = np.where(y, 1, 3)
    replicated = calibration.fit_beta(np.repeat(p, w), np.repeat(y, w))
    assert calibration.fit_beta(p, y, sample_weight=w) == pytest.approx(replicated, rel=1e-6, abs=1e-8)
    plain, ones = calibration.reliability(p, y), calibration.reliability(p, y, sample_weight=np.ones(len(p)))
    assert ones["ece"] == pytest.approx(plain["ece"])
    assert ones["count"] == plain["count"]


def test_prior_correction_calibrates_a_sample_with_another_target_fraction():
    confidence, outcome, _ = overconfident_scores(6000, 0.3, seed=3)
    coefficients = fit_beta(confidence, outcome)
    other_c, other_y, _ = overconfident_scores(6000, 0.6, seed=4)
    plain = apply_beta(other_c, coefficients)
    corrected = prior_shift(plain, 0.3, 0.6)
    assert reliability(corrected, other_y)["ece"] < 0.03
    assert reliability(plain, other_y)["ece"] > reliability(corrected, other_y)["ece"] + 0.02
    assert prior_shift(np.array([0.5]), 0.3, 0.3)[0] == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        prior_shift(plain, 0.0, 0.5)


def test_ece_of_equal_count_bins():
    probability = np.array([0.1] * 5 + [0.9] * 5)
    outcome = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0], float)
    result = reliability(probability, outcome, n_bins=2)
    assert result["count"] == [5, 5]
    assert result["ece"] == pytest.approx(0.5 * abs(0.2 - 0.1) + 0.5 * abs(0.8 - 0.9))


def test_working_point_reaches_its_purity_and_follows_the_class_mix():
    rng = np.random.default_rng(5)
    is_target = rng.random(3000) < 0.4
    score = np.clip(np.where(is_target, rng.normal(0.8, 0.15, 3000), rng.normal(0.4, 0.2, 3000)), 0, 1)
    is_good = is_target & (rng.random(3000) < 0.99)
    counts = ValidationCounts.measure(score, is_target, is_good)
    threshold = choose_threshold(counts, {"purity": 0.95})
    selected = score > threshold
    assert (selected & is_good).sum() / selected.sum() >= 0.95
    # a cut 0.02 lower no longer reaches it: the cut is the most efficient one
    looser = score > threshold - 0.02
    assert (looser & is_good).sum() / looser.sum() < 0.95 + 0.01
    # fewer targets in the survey: the same purity needs a stricter cut
    assert choose_threshold(counts, {"purity": 0.95}, target_fraction=0.1) > threshold
    efficiency_cut = choose_threshold(counts, {"efficiency": 0.5})
    assert (is_good & (score > efficiency_cut)).sum() / is_target.sum() >= 0.5
    with pytest.raises(ConfigError, match="working_point"):
        choose_threshold(counts, {"completeness": 0.9})


def test_zerr_covers_68_and_95_percent_of_independent_errors():
    def draw(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        z = rng.uniform(2, 4, n)
        spread = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.001, 0.01, n))
        sigma = (1 + z) * np.sqrt(0.001**2 + (1.5 * spread) ** 2)
        return z, rng.normal(0, sigma), spread

    z, dz, spread = draw(4000, 6)
    a, b = fit_redshift_error(z, dz, spread)
    assert a == pytest.approx(1.5, rel=0.15) and b == pytest.approx(0.001, rel=0.15)
    z, dz, spread = draw(4000, 7)
    coverage = zerr_coverage(dz, redshift_error(z, spread, (a, b)))
    assert coverage["within_1"] == pytest.approx(0.68, abs=0.03)
    assert coverage["within_2"] == pytest.approx(0.95, abs=0.02)


def test_line_spread_ignores_unconfident_lines_and_the_best_line():
    c_line = np.array([[0.9, 0.8, 0.1], [0.9, 0.2, 0.1]])
    z_line = np.array([[3.0, 3.02, 1.0], [3.0, 5.0, 1.0]])
    spread = line_spread(c_line, z_line, np.array([0, 0]))
    assert spread == pytest.approx([0.02, 0.0])


def test_calibration_record_round_trips_through_a_torch_file(tmp_path):
    calibration, score = synthetic_calibration()
    path = tmp_path / "record.pt"
    torch.save({"calibration": calibration.to_dict()}, path)
    loaded = Calibration.from_dict(torch.load(path, weights_only=True)["calibration"])
    assert loaded.beta == calibration.beta and loaded.zerr == calibration.zerr
    assert loaded.threshold == calibration.threshold
    np.testing.assert_allclose(loaded.probability(score), calibration.probability(score))
    assert loaded.threshold_for() == calibration.threshold
    assert loaded.threshold_for(target_fraction=0.1) >= calibration.threshold
    assert calibration.validation["ece_after"] < calibration.validation["ece_before"]
    with pytest.raises(ConfigError, match="format"):
        Calibration.from_dict({**calibration.to_dict(), "format": "other"})


def test_a_barely_trained_network_still_gets_a_calibration_record():
    """The Slurm test's tiny networks may find almost no LBG at the right redshift: calibrate
    must not fail, and must say what it could not fit."""
    rng = np.random.default_rng(9)
    n = 200
    is_target = rng.random(n) < 0.4
    score = rng.random(n)
    z_true = rng.uniform(2.5, 3.5, n)
    z_pred = z_true + 1.0  # every redshift wrong
    calibration = fit_calibration(
        score, is_target, np.zeros(n, bool), z_pred, z_true, np.zeros(n), {"purity": 0.95}, 1, 0.05
    )
    assert calibration.beta == (1.0, 1.0, 0.0) and calibration.zerr[0] == 0.0 and calibration.zerr[1] > 0
    assert len(calibration.validation["warnings"]) == 2
    few = np.zeros(n, bool)
    few[np.flatnonzero(is_target)[:2]] = True  # two correct: beta fits, ZERR does not
    z_pred[few] = z_true[few]
    calibration = fit_calibration(
        score, is_target, few, z_pred, z_true, np.zeros(n), {"purity": 0.95}, 1, 0.05
    )
    assert any("ZERR not fitted" in w for w in calibration.validation["warnings"])


def test_calibration_table_without_a_box_grid():
    """A catalogue without the line finder's box edges (a refined or foreign one) still gets its
    row: the N(z) excess without the nearest box edge."""
    from lymannet.calibrate import calibration_markdown, nz_excess

    nz = nz_excess(np.array([2.9, 3.0, 3.0, 3.0]), np.array([2.9, 3.0]), [])
    assert nz["largest_excess"]["nearest_lya_box_edge_z"] is None
    record = {
        "model": "classic.refined",
        "combo": "c",
        "testset": "t",
        "calibration": {
            "working_point": {"purity": 0.95},
            "ece_before": 0.3,
            "ece_after": 0.02,
            "ece_after_prior_correction": 0.03,
            "purity_at_working_point": 0.97,
            "efficiency_at_working_point": 0.8,
            "zerr_coverage": {"within_1": 0.7, "within_2": 0.95},
            "nz": nz,
        },
    }
    row = [line for line in calibration_markdown([record], ["t"]) if line.startswith("| classic.refined")]
    assert row and "+2 at z 3.01 |" in row[0] and "edge" not in row[0]
