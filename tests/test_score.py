"""lymannet.score: the score rule on hand-made prediction catalogues (P = E score, curve, figures,
chance level, false positives) and the compare rule over their score files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lymannet.calibration import Calibration, fit_calibration
from lymannet.errors import InputFileError, LymannetError
from lymannet.grid import Grid
from lymannet.lines import LBG_LINES, QSO_BAL_LINE, QSO_LINES
from lymannet.predict import read_catalogue, write_catalogue
from lymannet.score import chance_nz_of, compare_scores, model_calibration_of, read_score, score_catalogue
from lymannet.spectra import SpectrumSet, write_spectra
from lymannet.summary import markdown as summary_markdown, summary_table

# The six spectra of test_metrics' hand case, one line each: targets A, B, C, D (C with a wrong
# redshift), contaminants E, F.
#                            A      B      C      D      E      F
HAND_CONFIDENCES = np.array([[0.9], [0.7], [0.4], [0.2], [0.8], [0.3]])


def write_hand_catalogue(path: Path, confidences: np.ndarray = HAND_CONFIDENCES, model: str = "m.pt") -> None:
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
    confidences = HAND_CONFIDENCES.copy()
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


def test_score_script_on_a_test_set_without_targets(tmp_path):
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


def test_score_ignores_a_bal_head_like_predict_and_classify(tmp_path):
    """A QSO model with QuasarNET's BAL head: a confident CIV_BAL trough on a contaminant does not
    make it a detection (BAL heads do not vote), so the score is that of the line heads alone."""
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


def test_score_takes_the_chance_nz_from_the_training_split(tmp_path):
    """With the training split (the score rule's input.train), the random guess draws its redshifts
    from the split's targets; a summary of score files from before the chance had a redshift rule
    (no chance_classification) falls back to the classification-only chance of their counts."""
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


def test_false_positives_are_counted_by_population_and_drawn(tmp_path):
    """The score names where its false positives come from (at the P = E threshold) and draws the
    most confident of them from the test set's own spectra; a test set of another length is refused."""
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


def test_score_of_a_catalogue_of_known_purity_and_efficiency(tmp_path):
    """Ten targets, seven found confidently with a good redshift, one confidently with a wrong one,
    two missed; ten contaminants, two of them confident: at c_th = 0.5 (and on the whole plateau
    from 0.2 to 0.8) 10 are detected, 7 of them good, so P = E = 0.7."""
    n = 20
    is_target = np.arange(n) < 10
    confidence = np.r_[[0.9] * 8, [0.2] * 2, [0.8] * 2, [0.1] * 8]
    z_true = np.r_[np.linspace(2.8, 3.6, 10), np.linspace(0.1, 1.0, 10)]
    z_pred = z_true.copy()
    z_pred[7] += 0.4  # a confident target at a wrong redshift: detected, not good
    table = pd.DataFrame(
        {
            "TARGETID": np.arange(n),
            "Z": z_true,
            "SPECTYPE": np.where(is_target, "LBG", "ELG"),
            "Z_PRED": z_pred,
            "BEST_LINE": "LYA",
            "C_BEST": confidence,
            "IS_LBG": confidence > 0.5,
            "C_LYA": confidence,
            "Z_LYA": z_pred,
        }
    )
    write_catalogue(tmp_path / "pred.fits", table, LBG_LINES[:1], [{"name": "MODEL", "value": "m.pt"}], {})
    outputs = [str(tmp_path / f"o.{ext}") for ext in ("json", "csv", "png")]
    options = {"threshold_grid": {"start": 0, "stop": 1, "n": 11}, "bootstrap": {"n_resamples": 0}}
    summary = score_catalogue(str(tmp_path / "pred.fits"), options, "m", "c", "t", *outputs)
    assert (summary["n_targets"], summary["n_contaminants"]) == (10, 10)
    assert summary["score"] == pytest.approx(0.7)
    assert 0.2 <= summary["threshold_at_crossing"] < 0.8
    assert summary["purity_at_default"] == pytest.approx(0.7) and summary[
        "efficiency_at_default"
    ] == pytest.approx(0.7)
    assert summary["frac_catastrophic"] == pytest.approx(0.1)
    curve = pd.read_csv(outputs[1]).set_index("THRESHOLD")
    assert curve.loc[0.5, ["PURITY", "EFFICIENCY"]].tolist() == pytest.approx([0.7, 0.7])
    assert curve.loc[0.9, "N_DETECTED"] == 0 and curve.loc[0.0, "N_DETECTED"] == n


def test_read_score_gives_back_what_the_score_rule_wrote(tmp_path):
    write_hand_catalogue(tmp_path / "pred.fits")
    outputs = [str(tmp_path / f"o.{ext}") for ext in ("json", "csv", "png")]
    summary = score_catalogue(
        str(tmp_path / "pred.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 5}},
        "m",
        "c",
        "t",
        *outputs,
    )
    record = read_score(outputs[0])
    assert record == json.loads(Path(outputs[0]).read_text())
    assert (record["model"], record["combo"], record["testset"]) == ("m", "c", "t")
    assert record["score"] == pytest.approx(summary["score"]) == pytest.approx(0.5)
    assert record["score_interval"]["lo68"] <= record["score"] <= record["score_interval"]["hi68"]
    (tmp_path / "bad.json").write_text("{not json")
    for path in (tmp_path / "bad.json", tmp_path / "missing.json"):
        with pytest.raises(InputFileError, match="unreadable score JSON") as error:
            read_score(str(path))
        assert path.name in str(error.value)


def test_the_chance_nz_comes_from_the_training_split_targets(tmp_path):
    grid = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 9800.0, "step": 8.0})
    truth = pd.DataFrame(
        {"TARGETID": np.arange(4), "Z": [3.0, 0.2, 3.3, 0.4], "SPECTYPE": ["LBG", "ELG", " lbg ", "QSO"]}
    )
    flux = np.ones((4, grid.n_pixels), np.float32)
    (tmp_path / "split").mkdir()
    train = tmp_path / "split" / "train.fits"
    write_spectra(train, SpectrumSet(grid.wavelength, flux, flux, truth, grid))
    assert chance_nz_of(None, "LBG") == {}
    chance = chance_nz_of(str(train), "LBG")
    assert chance["chance_redshifts"].tolist() == [3.0, 3.3]  # class names trimmed, any case
    assert chance["chance_nz"] == "the training split's 2 LBG (split)"
    with pytest.raises(InputFileError, match="holds no DLA"):
        chance_nz_of(str(train), "DLA")


def test_model_calibration_of_reads_the_catalogues_provenance():
    score = np.linspace(0, 1, 200)
    is_target = (score > 0.6) | (np.arange(200) % 5 == 0)  # mostly the confident ones
    z = np.full(200, 3.0)
    calibration = fit_calibration(score, is_target, is_target, z, z, np.zeros(200), {"purity": 0.9}, 1, 0.05)
    assert model_calibration_of(SimpleNamespace(provenance={})) is None  # uncalibrated
    back = model_calibration_of(SimpleNamespace(provenance={"calibration": calibration.to_dict()}))
    assert isinstance(back, Calibration)
    assert back.beta == calibration.beta and back.threshold == calibration.threshold
