"""Purity / efficiency / P=E score against small cases computed by hand (never against the code)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lymannet.errors import ConfigError, LymannetError
from lymannet.lines import LBG_LINES
from lymannet.metrics import (
    ScoreOptions,
    best_line_counts,
    binned_efficiency,
    correct_redshift,
    evaluate,
    is_detected,
    pe_crossing,
    purity_efficiency_curve,
    redshift_summary,
)
from lymannet.score import compare_scores, score_catalogue

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


# --- the score and compare scripts on a hand-made catalogue ---------------------------------------


def write_hand_catalogue(path: Path, confidences: np.ndarray = C_ONE, model: str = "m.pt") -> None:
    from lymannet.predict import write_catalogue

    n = len(confidences)
    z_true = np.array([3.0, 2.5, 3.0, 3.5, 0.1, 2.2])[:n]
    z_pred = z_true.copy()
    z_pred[2] = 3.5  # C: |dz| = 0.5, catastrophic
    lines = LBG_LINES[:1]
    table = pd.DataFrame(
        {
            "TARGETID": np.arange(n),
            "Z": z_true,
            "SPECTYPE": ["LBG"] * 4 + ["ELG", "QSO"],
            "TEMPLATE": np.array([0, 1, 0, 1, -1, -1], np.int16),
            "MAG_R": np.array([23, 24, 23, 24, np.nan, np.nan]),
            "Z_PRED": z_pred,
            "BEST_LINE": ["LYA"] * n,
            "C_BEST": confidences[:, 0],
            "IS_LBG": confidences[:, 0] > 0.5,
            "C_LYA": confidences[:, 0],
            "Z_LYA": z_pred,
        }
    )
    header = [{"name": "MODEL", "value": model}, {"name": "MODELSHA", "value": "abc"}]
    write_catalogue(path, table, lines, header, {"note": "hand-made"})


def test_score_script_writes_json_curve_and_figures(tmp_path):
    write_hand_catalogue(tmp_path / "pred.fits")
    options = {
        "dz_max": 0.05,
        "threshold_grid": {"start": 0.0, "stop": 1.0, "n": 5},
        "min_lines": 1,
        "target_class": "LBG",
    }
    out = {k: tmp_path / f"out.{k}" for k in ("json", "csv", "png", "pe.png")}
    score_catalogue(
        str(tmp_path / "pred.fits"),
        options,
        "initial",
        "initial",
        "test_z3",
        str(out["json"]),
        str(out["csv"]),
        str(out["png"]),
        str(out["pe.png"]),
    )
    summary = json.loads(out["json"].read_text())
    # the hand case above: P = E = 0.5 on [0.3, 0.4) (A B C E detected: as many as the targets;
    # F's 0.3 is where that plateau starts on the exact curve); at c_th = 0.5, P = 2/3 and E = 1/2
    assert summary["score"] == pytest.approx(0.5)
    assert summary["threshold_at_crossing"] == pytest.approx(0.3)
    assert summary["crossing_on_grid_point"] is True
    assert summary["purity_at_default"] == pytest.approx(2 / 3)
    assert summary["efficiency_at_default"] == pytest.approx(0.5)
    assert (summary["n_targets"], summary["n_contaminants"]) == (4, 2)
    assert summary["frac_catastrophic"] == pytest.approx(0.25)  # C of A B C D
    assert summary["model"] == "initial" and summary["model_file"] == "m.pt"
    curve = pd.read_csv(out["csv"]).set_index("THRESHOLD")
    assert curve.loc[[0.0, 0.25, 0.5, 0.75, 1.0], "N_DETECTED"].tolist() == [
        6,
        5,
        3,
        2,
        0,
    ]  # the grid, by hand
    # ... plus the six confidences (fewer than the saved quantiles, so all of them; none on the grid)
    assert len(curve) == 5 + 6 and curve.loc[0.3, "N_DETECTED"] == 4 and curve.loc[0.9, "N_DETECTED"] == 0
    for key in ("png", "pe.png"):
        assert out[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_script_rejects_nan_naming_the_model(tmp_path):
    confidences = C_ONE.copy()
    confidences[[1, 3]] = np.nan
    write_hand_catalogue(tmp_path / "pred.fits", confidences, model="results/models/x/y/model.pt")
    with pytest.raises(LymannetError, match=r"2 rows with NaN.*results/models/x/y/model.pt"):
        score_catalogue(
            str(tmp_path / "pred.fits"),
            {},
            "x",
            "y",
            "t",
            str(tmp_path / "s.json"),
            str(tmp_path / "c.csv"),
            str(tmp_path / "f.png"),
        )
    assert not (tmp_path / "s.json").exists()


def test_compare_script_tables_and_figures(tmp_path):
    write_hand_catalogue(tmp_path / "pred.fits")
    scores, curves = [], []
    for model, testset in (("initial", "test_z3"), ("initial", "test_lowz"), ("classic", "test_z3")):
        paths = [tmp_path / f"{model}_{testset}.{ext}" for ext in ("json", "csv", "png")]
        score_catalogue(
            str(tmp_path / "pred.fits"),
            {"threshold_grid": {"start": 0, "stop": 1, "n": 5}},
            model,
            "combo_a",
            testset,
            *map(str, paths),
        )
        scores.append(str(paths[0]))
        curves.append(str(paths[1]))
    figures = [str(tmp_path / "cmp_test_z3.png"), str(tmp_path / "cmp_test_lowz.png")]
    table = compare_scores(
        scores,
        curves,
        [],
        ["test_z3", "test_lowz"],
        str(tmp_path / "summary.csv"),
        str(tmp_path / "summary.md"),
        figures,
        str(tmp_path / "combos.png"),
    )
    assert table[["model", "combo"]].values.tolist() == [["initial", "combo_a"], ["classic", "combo_a"]]
    assert table["score_test_z3"].tolist() == pytest.approx([0.5, 0.5])
    assert table["score_test_lowz"].iloc[0] == pytest.approx(0.5) and np.isnan(
        table["score_test_lowz"].iloc[1]
    )
    markdown = (tmp_path / "summary.md").read_text()
    # 4 targets of 6 at z 3.0, 2.5, 3.0, 3.5 and no training split: a random guess draws its redshift
    # from the other targets' (leave-one-out), right for each z = 3.0 target with probability 1/3, so
    # q = 1/6 and the chance level is 4/6 * 1/6 = 0.111 (the classification-only chance is 4/6)
    assert "| test_z3 (chance 0.111) | test_lowz (chance 0.111) |" in markdown
    assert (
        "| classic | combo_a | n/a | n/a | n/a | n/a | n/a | n/a | 0.500 ± 0.250 (skill 0.44 ± 0.27) | "
        "n/a (skill n/a) |"
    ) in markdown
    assert "1000 resamples" in markdown
    assert table["chance_test_z3"].tolist() == pytest.approx([1 / 9, 1 / 9])
    assert table["chance_classification_test_z3"].tolist() == pytest.approx([4 / 6, 4 / 6])
    # 68% bounds of the score: two targets more or fewer detected with a good redshift (of 4)
    assert table[["score_test_z3_lo", "score_test_z3_hi"]].iloc[0].tolist() == pytest.approx([0.25, 0.75])
    assert {"skill_test_z3_lo95", "skill_test_z3_hi95", "score_test_lowz_hi95"} <= set(table.columns)
    from lymannet.score import markdown as summary_markdown

    # counts stay integers when another row (the template fit) has none and makes the column float
    table.loc[0, ["layers", "filters", "epochs"]] = [4.0, 100.0, 9.0]
    assert "| initial | combo_a | 4 | 100 | n/a | n/a | 9 |" in summary_markdown(
        table, ["test_z3", "test_lowz"]
    )
    assert table["skill_test_z3"].tolist() == pytest.approx([(0.5 - 1 / 9) / (1 - 1 / 9)] * 2)
    # E (an ELG at 0.4) is detected at the crossing threshold 0.3, F (a QSO at exactly 0.3) is not
    assert "| initial | combo_a | 1 / 1 (100%) | 0 / 1 (0%) |" in markdown
    for figure in figures + [str(tmp_path / "combos.png")]:
        assert Path(figure).read_bytes()[:4] == b"\x89PNG"


def test_training_facts_say_why_training_ended():
    from lymannet.score import training_facts

    early = {
        "epochs_run": 14,
        "stopped_by": "early stopping",
        "best_epoch": 9,
        "val_loss_spread_last3": 0.004,
    }
    assert training_facts(early) == {"epochs": 14, "stopped": "early stopping (best epoch 9)"}
    flat = {"epochs_run": 12, "stopped_by": "epoch limit", "val_loss_spread_last3": 0.012}
    assert training_facts(flat)["stopped"] == "epoch limit, flat (1.2% over 3 epochs)"
    falling = {"epochs_run": 2, "stopped_by": "epoch limit", "val_loss_spread_last3": float("nan")}
    assert training_facts(falling)["stopped"] == "epoch limit, under 3 epochs"
    still = {"epochs_run": 4, "stopped_by": "epoch limit", "val_loss_spread_last3": 0.083}
    assert training_facts(still)["stopped"] == "epoch limit, NOT flat (8.3% over 3 epochs)"
    assert training_facts({}) == {"epochs": None, "stopped": None}  # model files of older versions


def test_score_ignores_a_bal_head_like_predict_and_classify(tmp_path):
    """A QSO model with QuasarNET's BAL head: a confident CIV_BAL trough on a contaminant does not
    make it a detection (BAL heads do not vote), so the score is that of the line heads alone."""
    from lymannet.lines import QSO_BAL_LINE, QSO_LINES
    from lymannet.predict import write_catalogue

    lines = (QSO_LINES[0], QSO_BAL_LINE)
    targets = np.array([True, True, True, False, False, False])
    table = pd.DataFrame(
        {
            "TARGETID": np.arange(6),
            "Z": [2.5, 2.6, 2.7, 0.5, 0.6, 0.7],
            "SPECTYPE": np.where(targets, "QSO", "GALAXY"),
            "Z_PRED": [2.5, 2.6, 2.7, 0.5, 0.6, 0.7],
            "BEST_LINE": lines[0].name,
            "C_BEST": np.where(targets, 0.9, 0.1),
            "IS_QSO": targets,
            f"C_{lines[0].name}": np.where(targets, 0.9, 0.1),
            f"Z_{lines[0].name}": [2.5, 2.6, 2.7, 0.5, 0.6, 0.7],
            f"C_{QSO_BAL_LINE.name}": np.where(targets, 0.2, 0.99),
            f"Z_{QSO_BAL_LINE.name}": [2.0] * 6,
        }
    )
    write_catalogue(tmp_path / "pred.fits", table, lines, [{"name": "MODEL", "value": "m.pt"}], {})
    options = {"target_class": "QSO", "threshold_grid": {"start": 0, "stop": 1, "n": 11}}
    summary = score_catalogue(
        str(tmp_path / "pred.fits"),
        options,
        "m",
        "c",
        "t",
        *(str(tmp_path / f"o.{e}") for e in ("json", "csv", "png")),
    )
    assert summary["score"] == pytest.approx(1.0)
    assert summary["purity_at_default"] == pytest.approx(1.0)  # BAL at 0.99 on contaminants: not detected


def test_score_script_on_a_test_set_without_targets(tmp_path):
    from lymannet.predict import read_catalogue, write_catalogue

    write_hand_catalogue(tmp_path / "pred.fits")
    table = read_catalogue(tmp_path / "pred.fits").table
    table["SPECTYPE"] = "QSO"
    write_catalogue(tmp_path / "qso.fits", table, LBG_LINES[:1], [{"name": "MODEL", "value": "m.pt"}], {})
    summary = score_catalogue(
        str(tmp_path / "qso.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 5}},
        "m",
        "c",
        "t",
        str(tmp_path / "s.json"),
        str(tmp_path / "c.csv"),
        str(tmp_path / "f.png"),
    )
    on_disk = json.loads((tmp_path / "s.json").read_text())
    assert on_disk["score"] is None and on_disk["n_targets"] == 0
    assert (
        any("no true target" in w for w in on_disk["warnings"]) and summary["warnings"] == on_disk["warnings"]
    )
    assert (tmp_path / "f.png").stat().st_size > 0


@pytest.mark.parametrize("target_fraction", [0.3, 0.55])
def test_a_random_guess_scores_the_chance_level_and_no_skill(target_fraction):
    """The chance level is what a classifier without information scores under the same rules:
    confidences drawn at random whatever the class and redshifts drawn from the training N(z)
    cross P = E at f q (f the target fraction, q the chance that a drawn redshift is correct);
    credited with every target's true redshift, the same guess scores the classification-only
    chance f."""
    from lymannet.metrics import ScoreOptions, evaluate

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


def test_evaluate_gives_bootstrap_intervals_on_score_skill_and_working_point():
    from lymannet.bootstrap import Interval
    from lymannet.metrics import ScoreOptions, evaluate

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


def test_score_takes_the_chance_nz_from_the_training_split(tmp_path):
    """With the training split (the score rule's input.train), the random guess draws its redshifts
    from the split's targets; a summary of score files from before the chance had a redshift rule
    (no chance_classification) falls back to the classification-only chance of their counts."""
    from lymannet.grid import Grid
    from lymannet.score import summary_table
    from lymannet.spectra import SpectrumSet, write_spectra

    write_hand_catalogue(tmp_path / "pred.fits")  # targets at z 3.0, 2.5, 3.0, 3.5; 2 contaminants
    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 9800.0, "step": 8.0})
    truth = pd.DataFrame(
        {"TARGETID": np.arange(5), "Z": [3.0, 3.01, 2.98, 3.3, 0.1], "SPECTYPE": ["LBG"] * 4 + ["ELG"]}
    )
    flux = np.ones((5, grid.n_pixels), np.float32)
    write_spectra(tmp_path / "train.fits", SpectrumSet(grid.wavelength, flux, flux, truth, grid))
    outputs = [str(tmp_path / f"o.{ext}") for ext in ("json", "csv", "png")]
    summary = score_catalogue(
        str(tmp_path / "pred.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 5}},
        "m",
        "c",
        "t",
        *outputs,
        train_file=str(tmp_path / "train.fits"),
    )
    # q: 3 of the 4 training LBGs within 0.05 of each z = 3.0 target, none for 2.5 and 3.5
    assert summary["chance_redshift_hit"] == pytest.approx((0.75 + 0 + 0.75 + 0) / 4)
    assert summary["chance"] == pytest.approx(4 / 6 * 0.375)
    assert "training split's 4 LBG" in summary["chance_nz"]
    old = {k: v for k, v in summary.items() if not k.startswith("chance") and not k.endswith("_interval")}
    table = summary_table([old], {}, ["t"])
    assert table["chance_t"].iloc[0] == pytest.approx(4 / 6) and np.isnan(table["score_t_lo"].iloc[0])


def test_skill_is_undefined_without_contaminants_or_score():
    from lymannet.metrics import chance_score, skill_score

    assert chance_score(30, 70) == pytest.approx(0.3)
    assert skill_score(0.65, 0.3) == pytest.approx(0.5)
    assert np.isnan(skill_score(0.9, chance_score(10, 0)))
    assert np.isnan(skill_score(None, 0.3)) and np.isnan(chance_score(0, 0))


def test_false_positives_are_counted_by_population_and_drawn(tmp_path):
    """The score names where its false positives come from (at the P = E threshold) and draws the
    most confident of them from the test set's own spectra; a test set of another length is refused."""
    from lymannet.grid import Grid
    from lymannet.spectra import SpectrumSet, write_spectra

    write_hand_catalogue(tmp_path / "pred.fits")
    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 9800.0, "step": 8.0})
    rng = np.random.default_rng(1)
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(6),
            "Z": [3.0, 2.5, 3.0, 3.5, 0.1, 2.2],
            "SPECTYPE": ["LBG"] * 4 + ["ELG", "QSO"],
        }
    )
    flux = rng.normal(1.0, 0.1, (6, grid.n_pixels)).astype(np.float32)
    write_spectra(
        tmp_path / "test.fits", SpectrumSet(grid.wavelength, flux, np.full_like(flux, 100.0), truth, grid)
    )
    outputs = [str(tmp_path / f"o.{ext}") for ext in ("json", "csv", "png")]
    summary = score_catalogue(
        str(tmp_path / "pred.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 5}},
        "m",
        "c",
        "t",
        *outputs,
        testset_file=str(tmp_path / "test.fits"),
        fp_figure=str(tmp_path / "fp.png"),
    )
    assert summary["false_positives_at_crossing"] == {
        "ELG": {"n": 1, "detected": 1, "rate": 1.0},
        "QSO": {"n": 1, "detected": 0, "rate": 0.0},
    }
    assert (tmp_path / "fp.png").read_bytes()[:4] == b"\x89PNG"

    write_spectra(tmp_path / "short.fits", SpectrumSet(grid.wavelength, flux[:5], flux[:5], truth[:5], grid))
    with pytest.raises(LymannetError, match="5 spectra but the catalogue has 6 rows") as error:
        score_catalogue(
            str(tmp_path / "pred.fits"),
            {},
            "m",
            "c",
            "t",
            *outputs,
            testset_file=str(tmp_path / "short.fits"),
            fp_figure=str(tmp_path / "fp2.png"),
        )
    assert "short.fits" in str(error.value) and not (tmp_path / "fp2.png").exists()
