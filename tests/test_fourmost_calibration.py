"""The DLA catalogue at nature's incidence (issue 25): reweighting to nature's DLA incidence, the
prior correction and calibration, the working point, BAL masking, the sub-DLA-neutral scores,
NHI_ERR, the DESI-style catalogue file and the summary rows."""

import fitsio
import numpy as np
import pandas as pd
import pytest

from lymannet import calibration
from lymannet.fourmost import bal as balmod
from lymannet.fourmost import dla_calibration as dc
from lymannet.fourmost import dla_catalogue as dcat
from lymannet.fourmost import dla_probability as dp
from lymannet.fourmost import dla_rates
from lymannet.fourmost import features as ft
from lymannet.fourmost import localisation, metrics, summary
from lymannet.fourmost.ingest import Ingested
from lymannet.physics import C_KMS
from lymannet.lines import LYA

# --- nature's incidence --------------------------------------------------------------------------


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


# --- prior correction and calibration on synthetic data -----------------------------------------


def _synthetic(rng, n, prior):
    """Labels at `prior` and a score that is the exact posterior at a balanced (0.5) prior."""
    y = rng.uniform(size=n) < prior
    x = rng.normal(np.where(y, 1.5, -1.5), 1.0)
    p_balanced = 1.0 / (1.0 + np.exp(-3.0 * x))  # log-likelihood ratio 3x: posterior at prior 0.5
    return y, p_balanced


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


def test_weighted_fit_beta_equals_replication_and_reliability_reduces_to_unweighted():
    rng = np.random.default_rng(3)
    y, p = _synthetic(rng, 600, 0.3)
    w = np.where(y, 1, 3)
    replicated = calibration.fit_beta(np.repeat(p, w), np.repeat(y, w))
    assert calibration.fit_beta(p, y, sample_weight=w) == pytest.approx(replicated, rel=1e-6, abs=1e-8)
    plain, ones = calibration.reliability(p, y), calibration.reliability(p, y, sample_weight=np.ones(len(p)))
    assert ones["ece"] == pytest.approx(plain["ece"])
    assert ones["count"] == plain["count"]


def test_safe_fit_beta_falls_back_to_the_identity():
    assert dp.safe_fit_beta(np.array([0.2, 0.9]), np.array([1, 1]), np.ones(2), "x") == dp.IDENTITY_BETA


# --- the working point ---------------------------------------------------------------------------


def test_working_point_is_the_lowest_threshold_that_keeps_the_purity():
    score_ = np.linspace(0.01, 0.99, 99)
    correct = score_ > 0.4  # below 0.4 all false, above all true
    correct[[50, 60]] = False  # two false ones high up
    w = np.ones(99)
    point = dp.choose_working_point(score_, correct, w, n_true=float(correct.sum()), purity=0.9)
    selected = score_ > point["threshold"]
    assert correct[selected].mean() >= 0.9
    assert point["validation_purity"] == pytest.approx(correct[selected].mean())
    assert point["validation_completeness"] == pytest.approx(correct[selected].sum() / correct.sum())
    lower = score_ > point["threshold"] - 0.011  # one more candidate: below the goal
    assert correct[lower].mean() < 0.9
    # weights count: false ones weighted up push the threshold up
    heavier = dp.choose_working_point(score_, correct, np.where(correct, 1.0, 3.0), float(correct.sum()), 0.9)
    assert heavier["threshold"] >= point["threshold"]


# --- a small ingested set ------------------------------------------------------------------------


def _data(n_rows=3, bal_rows=(1,), bals_table=True):
    wave = 3600.0 + 0.5 * np.arange(6000)
    sightlines = pd.DataFrame(
        {
            "FILE": [f"q{i}.fits" for i in range(n_rows)],
            "Z_QSO": np.full(n_rows, 3.0),
            "SNR": np.linspace(1.0, 9.0, n_rows),
            "BAL": [int(i in bal_rows) for i in range(n_rows)],
            "SPLIT": ["test"] * n_rows,
        }
    )
    bals = pd.DataFrame(
        {"FILE": ["q1.fits"], "ROW": [1], "V_MIN": [5000.0], "V_MAX": [15000.0], "TAU_MAX": [2.0]}
    )
    z_dla = ft.wavelength_of(wave, np.array([1500.0])) / LYA - 1
    dlas = pd.DataFrame({"FILE": ["q0.fits"], "ROW": [0], "Z_ABS": z_dla, "LOG_NHI": [20.8]})
    z_sub = ft.wavelength_of(wave, np.array([2000.0])) / LYA - 1
    absorbers = pd.DataFrame(
        {
            "FILE": ["q0.fits", "q0.fits"],
            "ROW": [0, 0],
            "Z_ABS": [z_dla[0], z_sub[0]],
            "LOG_NHI": [20.8, 20.1],
        }
    )
    empty = np.zeros((0, 0), np.float32)
    return Ingested(
        np.zeros(0),
        empty,
        empty,
        wave,
        empty,
        empty,
        sightlines,
        dlas,
        absorbers,
        bals if bals_table else None,
    )


def test_trough_ranges_and_the_vote_mask():
    data = _data()
    ranges = balmod.trough_pixel_ranges(data)
    assert set(ranges) == {1}  # only the flagged sightline
    lo, hi = ranges[1][3]  # Ly-alpha trough: 15000 .. 5000 km/s blueward of 1215.67 (1 + z)
    assert ft.wavelength_of(data.dla_wave, lo) == pytest.approx(LYA * (1 - 15000 / C_KMS) * 4.0)
    assert ft.wavelength_of(data.dla_wave, hi) == pytest.approx(LYA * (1 - 5000 / C_KMS) * 4.0)
    # a flagged sightline without trough velocities gets the default outflow range
    no_table = balmod.trough_pixel_ranges(_data(bals_table=False))
    assert ft.wavelength_of(data.dla_wave, no_table[1][3][0]) == pytest.approx(
        LYA * (1 - 25000 / C_KMS) * 4.0
    )
    windows = ft.Windows(np.array([1, 1, 0]), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    inside = 0.5 * (lo + hi)
    votes = ft.WindowVotes(np.ones(3), np.array([inside, lo - 200.0, inside]), np.full(3, 21.0))
    keep = balmod.vote_mask(data, margin_angstrom=10.0)(windows, votes)
    assert keep.tolist() == [False, True, True]  # the BAL sightline's trough vote only
    just_outside = ft.WindowVotes(
        np.ones(1), np.array([lo - 10.0]), np.full(1, 21.0)
    )  # 5 A outside: in the margin
    assert not balmod.vote_mask(data, 10.0)(ft.Windows(np.array([1]), *np.zeros((4, 1))), just_outside)[0]


def test_trough_window_centres_fall_inside_the_forest_part_of_the_troughs():
    data = _data()
    rows, centres = balmod.trough_window_centres(data, np.arange(3), 5, np.random.default_rng(0))
    assert rows.tolist() == [1] * 5
    ranges = balmod.trough_pixel_ranges(data)[1]
    lo_f, hi_f = ft.forest_pixels(data.dla_wave, data.sightlines["Z_QSO"].to_numpy())
    for c in centres:
        assert lo_f[1] - 1 <= c <= hi_f[1] + 1
        assert any(lo - 1 <= c <= hi + 1 for lo, hi in ranges)


def test_absorber_window_centres_pick_sub_dlas():
    data = _data()
    rows, centres = ft.absorber_window_centres(
        data, np.arange(3), (19.0, 20.3), 2, 800, np.random.default_rng(0)
    )
    assert rows.tolist() == [0, 0]
    assert np.all(np.abs(centres - 2000.0) <= 200.0)


# --- candidates, merging, the sub-DLA boundary ---------------------------------------------------


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


def _candidates():
    """Sightline 0: a true DLA at 1500 (found), a candidate on the 20.1 absorber at 2000 (neutral),
    a false one at 3000; sightline 1: a false one on the BAL; sightline 2: none."""
    data = _data()
    cat = pd.DataFrame(
        {
            "ROW": [0, 0, 0, 1],
            "POSITION": [1502.0, 2003.0, 3000.0, 2500.0],
            "LOG_NHI": [20.9, 20.4, 20.6, 21.0],
            "CONFIDENCE": [0.99, 0.9, 0.8, 0.95],
            "N_WINDOWS": [19, 8, 3, 10],
            "LOG_NHI_SPREAD": [0.1, 0.1, 0.2, 0.1],
            "VOTE_SUM": [18.0, 4.0, 1.0, 6.0],
        }
    )
    truth, cat = localisation.match_truth(data, cat, 10.0, rows=np.arange(3))
    cat["NEUTRAL"] = dc.neutral_candidates(data, cat, 20.0)
    cat["SNR"] = data.sightlines["SNR"].to_numpy()[cat["ROW"]]
    return data, truth, cat


def test_sub_dla_neutral_scoring():
    data, truth, cat = _candidates()
    assert cat["TRUE_MATCH"].tolist() == [0, -1, -1, -1]
    assert cat["NEUTRAL"].tolist() == [False, True, False, False]
    everything = np.ones(4, bool)
    strict = dla_rates.catalogue_rates(truth, cat, everything, np.arange(3))
    neutral = dla_rates.catalogue_rates(truth, cat, everything, np.arange(3), neutral=True)
    assert strict["purity"] == pytest.approx(1 / 4) and strict["n_false"] == 3
    assert neutral["purity"] == pytest.approx(1 / 3) and neutral["n_false"] == 2 and neutral["n_neutral"] == 1
    assert strict["completeness"] == neutral["completeness"] == 1.0
    assert strict["sightline_purity"] == pytest.approx(1 / 2)  # sightlines 0 (a true one) and 1 (false only)
    cut = dla_rates.catalogue_rates(
        truth, cat, np.array([False, True, True, True]), np.arange(3), intervals=True
    )
    assert cut["completeness"] == 0.0 and cut["purity"] == 0.0  # the true DLA's candidate not selected
    assert cut["completeness_interval"]["value"] == 0.0
    by_snr = dla_rates.rates_by_bin(truth, cat, everything, np.arange(3), False, "SNR", (0.0, 2.0, 8.0, 99.0))
    assert (
        by_snr["0-2"]["n_true"] == 1
        and by_snr["0-2"]["completeness"] == 1.0
        and by_snr["0-2"]["n_selected"] == 3
    )
    assert by_snr["2-8"]["n_selected"] == 1 and by_snr["2-8"]["purity"] == 0.0


def test_footprint_keeps_the_sightlines_of_high_snr_and_scores_only_them():
    data, truth, cat = _candidates()  # sightline S/N 1, 5, 9; the DLA on sightline 0
    assert dc.in_footprint(data, np.arange(3), 2.0).tolist() == [1, 2]
    assert dc.in_footprint(data, np.array([0, 2]), 0.0).tolist() == [0, 2]
    inside = dc.in_footprint(data, np.arange(3), 2.0)
    in_cat = np.isin(cat["ROW"].to_numpy(), inside)
    in_truth = truth[np.isin(truth["ROW"].to_numpy(), inside)]
    rates = dla_rates.catalogue_rates(in_truth, cat, in_cat, inside)
    # the footprint holds one candidate (the false one on the BAL sightline) and no DLA
    assert rates["n_true"] == 0 and rates["n_selected"] == 1 and rates["purity"] == 0.0
    assert np.isnan(rates["completeness"])
    record = _record() | {"footprint_snr_min": 2.0}
    header = {card["name"]: card["value"] for card in dcat.catalogue_header(record, "test")}
    assert header["SNRMIN"] == 2.0


def test_weighted_rates_count_each_sightline_by_its_weight():
    data, truth, cat = _candidates()
    weights = np.array([2.0, 1.0, 1.0])
    rates = dla_rates.catalogue_rates(truth, cat, np.ones(4, bool), np.arange(3), weights=weights)
    assert rates["purity"] == pytest.approx(2.0 / (3 * 2.0 + 1.0))


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


def test_fit_nhi_err_reaches_68_percent_on_validation():
    rng = np.random.default_rng(4)
    n = 400
    spread = rng.uniform(0.02, 0.3, n)
    sigma = np.hypot(0.1, 1.5 * spread)
    cat = pd.DataFrame(
        {"LOG_NHI_SPREAD": spread, "LOG_NHI": 20.8 + rng.normal(0, sigma), "TRUE_LOG_NHI": 20.8}
    )
    a, b = dc.fit_nhi_err(cat, np.ones(n, bool))
    cat["NHI_ERR"] = dc.nhi_err(cat, (a, b))
    coverage = dc.nhi_err_coverage(cat, np.ones(n, bool))
    assert coverage["within_1"] == pytest.approx(0.68, abs=0.03)
    assert coverage["within_2"] == pytest.approx(0.95, abs=0.04)
    assert dc.fit_nhi_err(cat.iloc[:3], np.ones(3, bool)) == dp.DEFAULT_NHI_ERR  # too few: the default


# --- the catalogue file --------------------------------------------------------------------------


def _record():
    point = {
        "purity_goal": 0.9,
        "threshold": 0.42,
        "validation_purity": 0.91,
        "validation_completeness": 0.88,
    }
    variant = {
        "model": "location",
        "prior_train": 0.5,
        "prior_natural": 0.03,
        "nhi_err": [1.2, 0.08],
        "working_point": point,
    }
    return {
        "variants": {"none": variant, "mask": variant},
        "bal_method": "mask",
        "bal_mask_margin_angstrom": 10.0,
        "model_sha256": {"location": "0123456789abcdef", "presence": "fedcba9876543210"},
    }


def test_catalogue_columns_and_header(tmp_path):
    data, truth, cat = _candidates()
    cat["NHI_ERR"] = 0.1
    cat["DLA_PROB"] = [0.99, 0.3, 0.1, 0.5]
    cat["SELECTED"] = cat["DLA_PROB"] > 0.42
    cat["Z_ABS"] = ft.wavelength_of(data.dla_wave, cat["POSITION"]) / LYA - 1
    path = tmp_path / "dla_catalogue.fits"
    dcat.write_catalogue(path, dcat.catalogue_table(data, cat), dcat.catalogue_header(_record(), "test"))
    with fitsio.FITS(str(path)) as fits:
        table, header = fits["DLACAT"].read(), fits["DLACAT"].read_header()
    assert list(table.dtype.names) == [
        "FILE",
        "Z_QSO",
        "Z_DLA",
        "NHI",
        "NHI_ERR",
        "DLA_PROB",
        "SNR",
        "BAL_FLAG",
        "SELECTED",
        "CONFIDENCE",
        "N_WINDOWS",
    ]
    assert (
        len(table) == 4
        and str(table["FILE"][3]).strip() == "q1.fits"
        and table["BAL_FLAG"].tolist() == [0, 0, 0, 1]
    )
    assert table["SELECTED"].tolist() == [True, False, False, True]
    assert table["Z_DLA"][0] == pytest.approx(cat["Z_ABS"].iloc[0])
    assert header["WPPROB"] == pytest.approx(0.42) and header["WPGOAL"] == pytest.approx(0.9)
    assert header["PROBFOR"].strip() == "nature" and header["BALMETH"].strip() == "mask"
    assert header["LOCHASH"].strip() == "0123456789abcdef" and header["PREHASH"].strip() == "fedcba9876543210"
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no leftovers
    # with TARGETID in the sightlines, it comes first
    data.sightlines["TARGETID"] = [11, 12, 13]
    assert dcat.catalogue_table(data, cat).dtype.names[0] == "TARGETID"


def test_summary_rows_of_a_calibrated_location_score():
    data, truth, cat = _candidates()
    selected = np.ones(4, bool)
    ladder = {
        key: dcat.rung_scores(
            data,
            truth,
            cat.assign(BAL=data.sightlines["BAL"].to_numpy()[cat["ROW"]]),
            selected,
            np.arange(3),
            key == "neutral",
            20.0,
        )
        for key, _ in dcat.RUNGS
    }
    rel = {
        k: calibration.reliability(np.array([0.1, 0.9]), np.array([0, 1]))
        for k in ("raw", "prior_corrected", "calibrated")
    }
    m = {
        "parameters": 1,
        "train_seconds": 1.0,
        "epochs": 1,
        "tolerance_angstrom": 10.0,
        "snr_min": 5.0,
        "fraction_found_within_tolerance": 1.0,
        "purity": 0.25,
        "fraction_found_within_tolerance_snr_gt_min": 1.0,
        "position_rms_angstrom": 2.0,
        "log_nhi_rms_dex": 0.1,
        "calibrated": {
            "reliability": rel,
            "rungs": dict(dcat.RUNGS),
            "ladder": ladder,
            "bal_method": "mask",
            "nhi_err": [1.0, 0.1],
            "nhi_err_coverage": {"n": 1, "within_1": 1.0, "within_2": 1.0},
            "validation": {
                "mask": {"purity": 0.9, "completeness": 0.86, "threshold": 0.4, "false_on_bal_quasars": 0}
            },
        },
    }
    table = summary.summary_table([], None, m, dcat.summary_rows(m))
    figures = table["figure"].tolist()
    assert any(f.startswith("ECE of DLA_PROB") for f in figures)
    assert sum(f.startswith("per DLA purity, ") for f in figures) == len(dcat.RUNGS)
    neutral = table[table["figure"] == f"per DLA purity, {dict(dcat.RUNGS)['neutral']}"].iloc[0]
    assert neutral["value"] == pytest.approx(1 / 3) and "1 neutral" in neutral["detail"]
    assert np.isfinite(neutral["lo68"])
    assert any("S/N 0-2" in f for f in figures) and any("log N_HI 20.5-21" in f for f in figures)
    assert "(chosen)" in figures[-1]
    summary.summary_markdown(table, "demo")


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


def test_window_augmentation_mirrors_with_the_offset_and_adds_noise_with_its_sigma():
    import torch

    from lymannet.fourmost.tasks import augment_windows

    x = torch.stack([torch.linspace(0, 1, 8).repeat(4, 1), torch.full((4, 8), 0.5)], dim=1)
    offset = torch.tensor([0.5, -0.2, 0.1, 0.9])
    torch.manual_seed(0)
    y, off = augment_windows(x, offset, flip=True, noise=0.0)
    mirrored = off != offset
    assert torch.equal(y[mirrored], x[mirrored].flip(-1)) and torch.equal(off[mirrored], -offset[mirrored])
    assert torch.equal(y[~mirrored], x[~mirrored])
    torch.manual_seed(1)
    z, _ = augment_windows(x, None, flip=False, noise=1.0)
    assert torch.all(z[:, 1] >= x[:, 1]) and not torch.equal(z[:, 0], x[:, 0])
    torch.manual_seed(1)
    assert torch.equal(augment_windows(x, None, flip=False, noise=1.0)[0], z)  # seeded: reproducible
