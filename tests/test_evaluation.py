"""lymannet.evaluation: a catalogue's score against the chance level of a random guess under the
same rules, and its bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.bootstrap import Interval
from lymannet.evaluation import evaluate
from lymannet.metrics import ScoreOptions


@pytest.mark.parametrize("target_fraction", [0.3, 0.55])
def test_a_random_guess_scores_the_chance_level_and_no_skill(target_fraction):
    """The chance level is what a classifier without information scores under the same rules:
    confidences drawn at random whatever the class and redshifts drawn from the training N(z)
    cross P = E at f q (f the target fraction, q the chance that a drawn redshift is correct);
    credited with every target's true redshift, the same guess scores the classification-only
    chance f."""
    rng = np.random.default_rng(7)
    n = 40_000
    is_target = rng.random(n) < target_fraction
    z = rng.uniform(2.5, 3.5, n)
    z_train = rng.uniform(2.5, 3.5, 5000)
    guess = z_train[rng.integers(0, len(z_train), n)]
    catalogue = pd.DataFrame({"Z": z, "Z_PRED": guess, "SPECTYPE": np.where(is_target, "LBG", "QSO")})
    options = ScoreOptions.from_config({"threshold_grid": {"start": 0, "stop": 1, "n": 101}})
    random_guess = evaluate(catalogue, rng.random((n, 1)), options, chance_redshifts=z_train).summary
    # q: 0.1 wide window on a 1-wide N(z), less at the edges (0.1 - 0.05^2 / 1 * 2 / 2)
    assert random_guess["chance_redshift_hit"] == pytest.approx(0.0975, abs=0.002)
    assert random_guess["chance"] == pytest.approx(is_target.mean() * random_guess["chance_redshift_hit"])
    assert random_guess["chance_classification"] == pytest.approx(is_target.mean())
    assert random_guess["score"] == pytest.approx(random_guess["chance"], rel=0.1)
    assert abs(random_guess["skill"]) < 0.01
    assert "training split" in random_guess["chance_rule"]
    classification_only = evaluate(catalogue.assign(Z_PRED=z), rng.random((n, 1)), options).summary
    assert classification_only["score"] == pytest.approx(
        classification_only["chance_classification"], abs=0.01
    )
    perfect = evaluate(catalogue.assign(Z_PRED=z), is_target[:, None].astype(float), options).summary
    assert perfect["score"] == pytest.approx(1.0) and perfect["skill"] == pytest.approx(1.0)
    # no training split: the test set's own targets, each one's own redshift left out
    assert "test set's own targets" in perfect["chance_nz"]
    assert perfect["chance_redshift_hit"] == pytest.approx(0.0975, abs=0.003)


def test_evaluate_gives_bootstrap_intervals_on_score_skill_and_working_point():
    rng = np.random.default_rng(3)
    n = 1500
    is_target = rng.random(n) < 0.3
    z = rng.uniform(2.5, 3.5, n)
    z_pred = np.where(rng.random(n) < 0.9, z, z + 0.5)
    confidence = np.clip(np.where(is_target, rng.normal(0.8, 0.15, n), rng.normal(0.3, 0.2, n)), 0, 1)
    catalogue = pd.DataFrame({"Z": z, "Z_PRED": z_pred, "SPECTYPE": np.where(is_target, "LBG", "QSO")})
    options = ScoreOptions.from_config({"bootstrap": {"n_resamples": 300, "seed": 1}})
    summary = evaluate(catalogue, confidence[:, None], options, chance_redshifts=z, intervals=True).summary
    assert summary["bootstrap"]["n_resamples"] == 300
    for name in ("score", "skill", "chance", "purity_at_default", "efficiency_at_default"):
        interval = Interval.from_dict(summary[f"{name}_interval"])
        assert interval.n_resamples == 300 and interval.n_dropped == 0
        assert interval.lo95 <= interval.lo68 <= interval.hi68 <= interval.hi95
    score = Interval.from_dict(summary["score_interval"])
    assert score.value == pytest.approx(summary["score"]) and score.lo68 < score.value < score.hi68
    # binomial-like width: sqrt(s (1 - s) / n_targets) within a factor of two
    assert 0.5 < score.half_width / np.sqrt(score.value * (1 - score.value) / is_target.sum()) < 2
    assert Interval.from_dict(summary["skill_interval"]).value == pytest.approx(summary["skill"])
    assert (
        evaluate(catalogue, confidence[:, None], options, intervals=True).summary["score_interval"]
        == summary["score_interval"]
    )  # deterministic for the seed
    assert "score_interval" not in evaluate(catalogue, confidence[:, None], options).summary


def _paired_catalogues(n: int = 800, seed: int = 5):
    """Two catalogues of one test set: B is A with 60% of A's wrong target redshifts corrected."""
    rng = np.random.default_rng(seed)
    is_target = rng.random(n) < 0.4
    z = rng.uniform(2.5, 3.5, n)
    confidence = np.clip(np.where(is_target, 0.7, 0.3) + 0.25 * rng.standard_normal(n), 0, 1)
    wrong = is_target & (rng.random(n) < 0.15)
    z_pred = np.where(wrong, z + 0.3, z + 0.01)
    fixed = wrong & (rng.random(n) < 0.6)
    a = pd.DataFrame(
        {"TARGETID": np.arange(n), "Z": z, "Z_PRED": z_pred, "SPECTYPE": np.where(is_target, "LBG", "QSO")}
    )
    b = a.assign(Z_PRED=np.where(fixed, z + 0.01, z_pred))
    return a, b, confidence[:, None]


def test_a_paired_difference_is_narrower_than_either_interval():
    """B corrects redshifts A got wrong and nothing else: the paired difference is positive, its
    68% interval narrower than either score's own (what they share cancels), B above A in nearly
    every resample; a catalogue against itself differs by exactly 0; two test sets are refused."""
    from lymannet.evaluation import paired_score_difference

    a, b, confidence = _paired_catalogues()
    options = ScoreOptions.from_config({})
    result = paired_score_difference(a, confidence, b, confidence, options)
    alone = evaluate(a, confidence, options, intervals=True).summary["score_interval"]
    d = result["difference"]
    assert result["score_b"] > result["score_a"] and d["value"] == pytest.approx(
        result["score_b"] - result["score_a"]
    )
    assert d["lo95"] > 0 and result["p_b_above_a"] > 0.99
    assert d["hi68"] - d["lo68"] < 0.8 * (alone["hi68"] - alone["lo68"])
    same = paired_score_difference(a, confidence, a, confidence, options)["difference"]
    assert same["value"] == same["lo95"] == same["hi95"] == 0.0
    with pytest.raises(ValueError, match="TARGETID"):
        paired_score_difference(a, confidence, b.iloc[::-1].reset_index(drop=True), confidence, options)


def test_paired_command_prints_the_difference(tmp_path, capsys):
    from lymannet.cli import main
    from lymannet.predict import CLASS_LINE, write_catalogue

    a, b, confidence = _paired_catalogues()
    paths = []
    for name, table in (("a", a), ("b", b)):
        path = tmp_path / f"{name}.fits"
        table = table.assign(
            C_CLASS=confidence[:, 0].astype(np.float32), Z_CLASS=table["Z_PRED"].astype(np.float32)
        )
        write_catalogue(path, table, (CLASS_LINE,), [{"name": "MINLINES", "value": 1, "comment": ""}], {})
        paths.append(str(path))
    assert main(["paired", *paths]) == 0
    out = capsys.readouterr().out
    assert "B - A = +0.0" in out and "paired resamples of 800 spectra" in out
    assert main(["paired", paths[0], str(tmp_path / "missing.fits")]) == 1
    assert "missing.fits" in capsys.readouterr().err
