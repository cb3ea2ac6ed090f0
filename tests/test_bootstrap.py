"""lymannet.bootstrap: percentile intervals, stratification, determinism, NaN handling, and the
vectorised P = E score of resamples against metrics.pe_crossing."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from lymannet import metrics
from lymannet.bootstrap import (
    Interval,
    PEResampler,
    bootstrap_interval,
    bootstrap_samples,
    decimals_for,
    interval_from,
    pe_crossings,
    percentile_mc_error,
    resample_indices,
)


def _mean_of(x):
    return lambda rows: x[rows].mean(axis=-1)


def test_coverage_of_the_mean_of_a_normal_sample():
    """Over repeated test sets, the 68% / 95% intervals hold the true mean about 68% / 95% of the time."""
    rng = np.random.default_rng(1)
    n, draws = 200, 300
    hit68 = hit95 = 0
    for k in range(draws):
        x = rng.normal(0.0, 1.0, n)
        interval = bootstrap_interval(_mean_of(x), n, n_resamples=400, seed=k, batched=True)
        hit68 += interval.lo68 <= 0.0 <= interval.hi68
        hit95 += interval.lo95 <= 0.0 <= interval.hi95
    # binomial sigma of the coverage over 300 draws: 0.027 (68%), 0.013 (95%)
    assert 0.60 <= hit68 / draws <= 0.76
    assert 0.90 <= hit95 / draws <= 0.99


def test_width_matches_the_standard_error():
    x = np.random.default_rng(2).exponential(1.0, 500)
    interval = bootstrap_interval(_mean_of(x), len(x), n_resamples=2000, batched=True)
    assert interval.value == pytest.approx(x.mean())
    assert interval.half_width == pytest.approx(x.std() / math.sqrt(len(x)), rel=0.1)
    assert interval.lo95 < interval.lo68 < interval.value < interval.hi68 < interval.hi95


def test_batched_and_per_resample_statistics_agree():
    x = np.random.default_rng(3).normal(size=50)
    one = bootstrap_interval(lambda idx: x[idx].mean(), len(x), n_resamples=100, seed=5)
    many = bootstrap_interval(_mean_of(x), len(x), n_resamples=100, seed=5, batched=True)
    assert one == many


def test_deterministic_for_a_seed():
    x = np.random.default_rng(4).normal(size=80)
    strata = np.arange(80) % 3 == 0
    a = bootstrap_interval(_mean_of(x), 80, n_resamples=300, seed=7, strata=strata, batched=True)
    b = bootstrap_interval(_mean_of(x), 80, n_resamples=300, seed=7, strata=strata, batched=True)
    c = bootstrap_interval(_mean_of(x), 80, n_resamples=300, seed=8, strata=strata, batched=True)
    assert a == b
    assert a != c


def test_stratification_keeps_the_class_counts(monkeypatch):
    strata = np.array(["LBG"] * 7 + ["QSO"] * 20 + ["STAR"] * 3)
    np.random.default_rng(0).shuffle(strata)
    monkeypatch.setattr("lymannet.bootstrap.MAX_CELLS", 60)  # several chunks of 2 resamples
    n_rows = 0
    for rows in resample_indices(len(strata), n_resamples=11, seed=1, strata=strata):
        assert rows.shape[1] == len(strata)
        assert (strata[rows] == strata).all()  # each column keeps its stratum
        n_rows += len(rows)
    assert n_rows == 11
    # without strata the counts move
    counts = [
        np.count_nonzero(strata[rows] == "LBG", axis=1)
        for rows in resample_indices(len(strata), n_resamples=50, seed=1)
    ]
    assert np.unique(np.concatenate(counts)).size > 1


def test_strata_must_match_the_objects():
    with pytest.raises(ValueError):
        next(resample_indices(5, strata=np.zeros(4)))
    with pytest.raises(ValueError):
        next(resample_indices(5, n_resamples=0))


def test_nan_resamples_are_dropped_and_counted():
    x = np.array([0.0] * 3 + [1.0] * 3)

    def ratio(rows):  # undefined where the resample drew no 1
        ones = x[rows].sum(axis=-1)
        return np.where(ones > 0, ones / rows.shape[-1], np.nan)

    interval = bootstrap_interval(ratio, len(x), n_resamples=500, seed=0, batched=True)
    # P(no 1 in 6 draws) = 2^-6: about 8 of 500
    assert 1 <= interval.n_dropped <= 25
    assert np.isfinite([interval.lo68, interval.hi68, interval.lo95, interval.hi95]).all()
    everything_nan = interval_from(0.5, np.full(10, np.nan), 10)
    assert everything_nan.n_dropped == 10 and math.isnan(everything_nan.lo68)
    assert everything_nan.text() == "0.500"


def test_interval_json_and_text():
    interval = Interval(0.9431, 0.931, 0.955, 0.92, 0.96, 1000, 2, 0)
    data = json.loads(json.dumps(interval.to_dict()))
    assert Interval.from_dict(data) == interval
    assert interval.text() == "0.943 ± 0.012"
    assert interval.text("range68") == "0.943 [0.931, 0.955]"
    assert interval.text("range95") == "0.943 [0.920, 0.960]"
    assert interval.text(digits=2) == "0.94 ± 0.01"
    assert interval.excludes(0.9) and not interval.excludes(0.93)
    assert interval.excludes(0.925, level=68) and not interval.excludes(0.925)
    undefined = Interval(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 10, 10)
    assert undefined.text() == "n/a"
    assert undefined.to_dict()["value"] is None
    assert Interval.from_dict(None) is None
    assert decimals_for(0.012) == 3 and decimals_for(0.12) == 2 and decimals_for(0.0004) == 4


def test_monte_carlo_error_of_the_percentiles():
    # the docstring's table: B = 1000 puts a 2.5% bound within 0.084 sigma, a 16% one within 0.048
    assert percentile_mc_error(0.025, 1000) == pytest.approx(0.084, abs=0.001)
    assert percentile_mc_error(0.15865525393145708, 1000) == pytest.approx(0.048, abs=0.001)


def _toy_scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    is_target = rng.random(n) < 0.3
    confidence = np.clip(np.where(is_target, rng.normal(0.7, 0.2, n), rng.normal(0.35, 0.2, n)), 0, 1)
    confidence = np.round(confidence, 2)  # ties, as in real confidences near 1
    is_correct = rng.random(n) < 0.9
    return confidence, is_target, is_correct


def _reference_score(confidence, is_target, is_correct, thresholds):
    c_line = confidence[:, None]
    curve = metrics.purity_efficiency_curve(
        c_line, is_target, is_correct, metrics.exact_thresholds(c_line, thresholds)
    )
    return metrics.pe_crossing(curve).score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_pe_score_matches_pe_crossing_on_every_resample(seed):
    confidence, is_target, is_correct = _toy_scores(seed=seed)
    grid = np.linspace(0, 1, 201)
    resampler = PEResampler(
        confidence, is_target, is_correct, metrics.exact_thresholds(confidence[:, None], grid)
    )
    assert resampler.scores(np.arange(len(confidence))[None, :])[0] == pytest.approx(
        _reference_score(confidence, is_target, is_correct, grid), abs=1e-12
    )
    rows = next(resample_indices(len(confidence), n_resamples=40, seed=seed, strata=is_target))
    fast = resampler.scores(rows)
    slow = [_reference_score(confidence[r], is_target[r], is_correct[r], grid) for r in rows]
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    at = resampler.at_threshold(rows, 0.5)
    for r, (purity, efficiency) in zip(rows, at):
        assert (purity, efficiency) == pytest.approx(
            metrics.purity_efficiency_at(confidence[r][:, None], is_target[r], is_correct[r], 0.5),
            nan_ok=True,
        )


def test_pe_crossings_edge_cases():
    # nothing detected anywhere -> NaN; exact P == E on a point; no sign change -> NaN
    n_det = np.array([[0, 0, 0], [10, 5, 2], [10, 9, 8]], float)
    n_good = np.array([[0, 0, 0], [4, 4, 2], [4, 4, 4]], float)
    scores = pe_crossings(n_det, n_good, np.array([5, 5, 5]))
    assert math.isnan(scores[0])
    assert scores[1] == pytest.approx(0.8)
    assert math.isnan(scores[2])
    # an undefined point inside a curve is skipped, like pe_crossing's dropna: the sign change
    # between its neighbours is interpolated
    gap = pe_crossings(np.array([[10.0, 0.0, 2.0]]), np.array([[4.0, 0.0, 2.0]]), np.array([5.0]))
    curve = pd.DataFrame(
        {"THRESHOLD": [0.0, 0.5, 1.0], "PURITY": [0.4, np.nan, 1.0], "EFFICIENCY": [0.8, 0.0, 0.4]}
    )
    assert gap[0] == pytest.approx(metrics.pe_crossing(curve).score) == pytest.approx(0.64)


def test_bootstrap_of_the_pe_score_is_fast_and_stratified():
    confidence, is_target, is_correct = _toy_scores(n=20000, seed=4)
    thresholds = metrics.exact_thresholds(confidence[:, None], np.linspace(0, 1, 201))
    resampler = PEResampler(confidence, is_target, is_correct, thresholds)
    samples = bootstrap_samples(
        resampler.scores, len(confidence), n_resamples=200, strata=is_target, batched=True
    )
    assert samples.shape == (200,) and np.isfinite(samples).all()
    assert 0.002 < samples.std() < 0.02
