"""Survey classification (lymannet.classify, `lymannet classify`): BAL semantics against QuasarNP's
process_preds, the real DESI fixture quasars, bad files, incremental reruns and the workflow rule
(a survey run's bad-file list and counts: test_survey.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import QUASARNP_WEIGHTS as WEIGHTS
from conftest import needs_quasarnp
from conftest import read_qn_catalogue as read_catalogue
from lymannet.classify import ClassifyOptions, classify_files, load_classifier
from lymannet.coadd import ZWARN_BITS
from lymannet.errors import ConfigError
from lymannet.grid import Grid
from lymannet.keras_import import load_keras_quasarnet
from lymannet.lines import QSO_BAL_LINE, QSO_LINES
from lymannet.metrics import is_detected
from lymannet.models import decode
from lymannet.plan import SELECTED_MODEL, classify_plan, expand_files, plan_batches

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
QNP_FIXTURES = SHARED / "fixtures" / "quasarnp"
QUASARNP = SHARED / "peers" / "quasarnp"
QNP_LINES = ["LYA", "CIV(1548)", "CIII(1909)", "MgII(2796)", "Hbeta", "Halpha"]
QNP_BAL = ["CIV(1548)"]


def process_preds(outputs: np.ndarray):
    """QuasarNP's own decoding of (heads, N, 2 * boxes) network outputs."""
    if str(QUASARNP) not in sys.path:
        sys.path.insert(0, str(QUASARNP))
    from quasarnp.utils import process_preds as reference

    return reference(list(outputs), QNP_LINES, QNP_BAL, verbose=False)


def as_outputs(heads: np.ndarray) -> dict[str, torch.Tensor]:
    """QuasarNP's (heads, N, 13 boxes + 13 offsets) layout -> our decode's {'box', 'offset'}."""
    return {
        "box": torch.tensor(heads[..., :13].transpose(1, 0, 2)),
        "offset": torch.tensor(heads[..., 13:].transpose(1, 0, 2)),
    }


def inside_grid(heads: np.ndarray, grid: Grid) -> np.ndarray:
    """(N, heads) True where the decoded position lies within QuasarNP's interpolation range:
    beyond the last pixel QuasarNP clamps to its wavelength, we extrapolate along the grid."""
    box = heads[..., :13].argmax(-1)
    offset = np.take_along_axis(heads[..., 13:], box[..., None], -1)[..., 0]
    position = (box + offset) * grid.n_pixels / 13
    return ((position >= 0) & (position <= grid.n_pixels - 1)).T


@needs_quasarnp
def test_decode_matches_process_preds_and_bal_never_chooses_z():
    heads = np.load(QNP_FIXTURES / "qnet_output_6_layer.npy").astype(np.float64)  # TF outputs
    lines = QSO_LINES + (QSO_BAL_LINE,)
    grid = Grid.quasarnet()
    c_line, z_line, zbest, c_bal, z_bal = process_preds(heads)
    ours = decode(as_outputs(heads), lines, grid)
    inside = inside_grid(heads, grid)
    np.testing.assert_allclose(ours["c_line"][:, :6], c_line.T, atol=1e-7)
    np.testing.assert_allclose(ours["c_line"][:, 6], c_bal[0], atol=1e-7)
    np.testing.assert_allclose(ours["z_line"][:, :6][inside[:, :6]], z_line.T[inside[:, :6]], atol=2e-5)
    np.testing.assert_allclose(ours["z_line"][:, 6][inside[:, 6]], z_bal[0][inside[:, 6]], atol=2e-5)
    # In one real spectrum the BAL head is more confident than every line: Z must still come
    # from a line (before the fix, decode took it from the BAL head).
    bal_wins = ours["c_line"][:, 6] > ours["c_line"][:, :6].max(axis=1)
    assert bal_wins.sum() == 1
    best_inside = inside[np.arange(len(zbest)), ours["best_line"]]
    np.testing.assert_allclose(ours["z_pred"][best_inside], zbest[best_inside], atol=2e-5)
    assert np.all(ours["best_line"] < 6)

    # Make the BAL head the most confident everywhere: Z and the class decision must not move.
    boosted = heads.copy()
    boosted[6, :, :13] = np.where(
        boosted[6, :, :13] == boosted[6, :, :13].max(-1, keepdims=True), 0.9999, boosted[6, :, :13]
    )
    _, _, zbest_boosted, c_bal_boosted, _ = process_preds(boosted)
    again = decode(as_outputs(boosted), lines, grid)
    assert np.all(c_bal_boosted[0] > 0.999)
    np.testing.assert_array_equal(again["best_line"], ours["best_line"])
    np.testing.assert_allclose(again["z_pred"], ours["z_pred"])
    np.testing.assert_allclose(zbest_boosted, zbest)
    # DESI's afterburner: IS_QSO_QN counts process_preds' c_line (no BAL head) above c_th.
    expected = (c_line > 0.5).sum(axis=0) >= 1
    np.testing.assert_array_equal(is_detected(again["c_line"], 0.5, 1, lines), expected)
    assert not np.array_equal(is_detected(again["c_line"], 0.5, 1), expected)  # BAL counted: wrong


# --- the command on real DESI spectra ---------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`lymannet ...` as a user runs it: the console script installed with the package."""
    script = Path(sys.executable).with_name("lymannet")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)


@needs_quasarnp
def test_cli_finds_the_fixture_quasars_and_agrees_with_process_preds(tmp_path):
    coadd, weights = QNP_FIXTURES / "test_coadd.fits", QNP_FIXTURES / "test_weights_6_layer.h5"
    result = run_cli(
        "classify", "--model", str(weights), str(coadd), "--output", str(tmp_path / "out"), "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "spectra classified: 24" in result.stdout
    catalogue, header = read_catalogue(tmp_path / "out" / "catalogue.fits")
    per_file, _ = read_catalogue(tmp_path / "out" / "test_coadd.fits")
    for column in catalogue.dtype.names:  # column by column: NaN RA/DEC (no FIBERMAP) compare equal
        np.testing.assert_array_equal(per_file[column], catalogue[column])
    assert np.isnan(catalogue["TARGET_RA"]).all()
    # One row per coadd row, in order; row 11 has no valid pixel: not classified (QuasarNET's
    # preprocessing drops it), flagged NODATA with NaN results.
    assert len(catalogue) == 25 and list(catalogue["ROW"]) == list(range(25))
    assert catalogue["ZWARN"][11] == ZWARN_BITS["NODATA"] and np.isnan(catalogue["Z"][11])
    assert catalogue["IS_QSO_QN"][11] == 0 and (np.delete(catalogue["ZWARN"], 11) == 0).all()
    # Keras weights have no validation split: no PROB or ZERR, and the header says so.
    assert (
        np.isnan(catalogue["PROB"]).all() and np.isnan(catalogue["ZERR"]).all() and header["CALIB"] is False
    )
    catalogue = catalogue[catalogue["ZWARN"] == 0]
    assert header["CTHRESH"] == 0.5 and header["MINLINES"] == 1 and header["TARGCLS"] == "QSO"
    assert header["MODELSHA"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "QuasarNET Keras weights" in header["WORIGIN"] and header["LNVER"] and header["GITREV"]
    by_row = {int(r["ROW"]): r for r in catalogue}
    for row, z in ((4, 3.92), (23, 2.88)):  # the two obvious quasars
        assert abs(by_row[row]["Z"] - z) < 0.01 and by_row[row]["CONFIDENCE"] > 0.95
        assert by_row[row]["BEST_LINE"].strip() == "LYA" and by_row[row]["IS_QSO_QN"] == 1
    assert set(np.char.strip(catalogue["COADD"].astype(str))) == {"test_coadd.fits"}

    # QuasarNP's decoding of the same network's outputs on QuasarNP's input for these spectra.
    model, _ = load_keras_quasarnet(weights)
    with torch.no_grad():
        out = model(torch.tensor(np.load(QNP_FIXTURES / "coadd_x.npy"), dtype=torch.float32)[:, None, :])
    heads = np.concatenate([out["box"].numpy(), out["offset"].numpy()], axis=-1).transpose(1, 0, 2)
    c_line, z_line, zbest, c_bal, z_bal = process_preds(heads.astype(np.float64))
    ours_c = np.stack([catalogue[f"C_{n}"] for n in ("LYA", "CIV", "CIII", "MGII", "HBETA", "HALPHA")])
    ours_z = np.stack([catalogue[f"Z_{n}"] for n in ("LYA", "CIV", "CIII", "MGII", "HBETA", "HALPHA")])
    np.testing.assert_allclose(ours_c, c_line, atol=2e-3)  # our rebinning vs QuasarNP's input: float32
    np.testing.assert_allclose(catalogue["C_CIV_BAL"], c_bal[0], atol=2e-3)
    clear = (np.sort(heads[..., :13], -1)[..., -1] - np.sort(heads[..., :13], -1)[..., -2]) > 0.05
    inside = inside_grid(heads, Grid.quasarnet()).T
    ok = clear[:6] & inside[:6]
    np.testing.assert_allclose(ours_z[ok], z_line[ok], atol=1e-3)
    confident = catalogue["CONFIDENCE"] > 0.9
    np.testing.assert_allclose(catalogue["Z"][confident], zbest[confident], atol=1e-3)
    np.testing.assert_array_equal(catalogue["IS_QSO_QN"] == 1, (c_line > 0.5).sum(axis=0) >= 1)


def test_help_lists_both_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and "where" in result.stdout and "classify" in result.stdout
    result = run_cli("classify", "--help")
    for flag in ("--model", "--output", "--c-th", "--min-lines", "--batch-size", "--device", "--bf16"):
        assert flag in result.stdout


# --- bad files, reruns ------------------------------------------------------------------------


@needs_quasarnp
def test_strict_makes_a_bad_file_fail_naming_it(survey_folder, tmp_path):
    result = run_cli(
        "classify",
        "--model",
        str(WEIGHTS),
        str(survey_folder / "**" / "*.fits"),
        "--output",
        str(tmp_path / "out"),
        "--strict",
        "--device",
        "cpu",
    )
    assert result.returncode == 1
    assert "coadd-main-dark-10017.fits: truncated file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "catalogue.fits").exists()


@needs_quasarnp
def test_rerun_classifies_only_new_files(survey_folder, tmp_path):
    classifier = load_classifier(WEIGHTS, "cpu")
    options = ClassifyOptions(device="cpu")
    root = str(survey_folder)
    first = expand_files([str(survey_folder / "s*/**/*.fits")])
    assert len(first) == 2
    outcomes = classify_files(classifier, first, root, tmp_path, options)
    assert [o.status for o in outcomes] == ["classified", "classified"]
    everything = expand_files([str(survey_folder / "**/coadd-main-dark-10016.fits"), *first])
    again = classify_files(classifier, everything, root, tmp_path, options)
    assert {Path(o.file).name: o.status for o in again} == {
        "coadd-main-dark-10016.fits": "classified",
        "coadd-sv1-dark-5169.fits": "up to date",
        "coadd-sv3-dark-26065.fits": "up to date",
    }
    assert [o.n_classified for o in again] == [
        o.n_classified for o in classify_files(classifier, everything, root, tmp_path / "fresh", options)
    ]
    # Another detection rule, or a changed coadd, is not up to date.
    stricter = classify_files(classifier, first, root, tmp_path, ClassifyOptions(device="cpu", c_th=0.9))
    assert {o.status for o in stricter} == {"classified"}
    os.utime(first[0], ns=(1, 1))
    touched = classify_files(classifier, first, root, tmp_path, ClassifyOptions(device="cpu", c_th=0.9))
    assert [o.status for o in touched] == ["classified", "up to date"]


def test_batches_are_stable_when_files_are_added():
    files = [f"/data/healpix/main/dark/{g}/{g * 100 + p}/coadd.fits" for g in range(10) for p in range(30)]
    before = plan_batches(files, 20)
    assert sorted(f for batch in before.values() for f in batch) == sorted(files)
    assert 5 <= len(before) <= 60 and max(map(len, before.values())) <= 40
    new = "/data/healpix/main/dark/4/455/coadd.fits"
    after = plan_batches(files + [new], 20)
    changed = {name for name, batch in after.items() if before.get(name) != batch}
    assert len(changed) <= 2 and any(new in after[name] for name in changed)


# --- the workflow stage -----------------------------------------------------------------------


def test_plan_names_the_entry_for_bad_models_and_empty_globs(tmp_path):
    base = {"runs": [{"model": "initial", "combo": "initial"}], "score": {"c_th": 0.7, "min_lines": 2}}
    config = dict(
        base,
        classify={
            "sky": {
                "model": {"model": "initial", "combo": "initial"},
                "files": [str(tmp_path / "coadd.fits")],
            }
        },
    )
    plan = classify_plan(config)["sky"]
    assert plan.model == "results/models/initial/initial/calibrated.pt"
    # no c_th: the model's working point, or score's default for uncalibrated weights
    assert (
        plan.options["c_th"] is None
        and plan.options["default_c_th"] == 0.7
        and plan.options["min_lines"] == 2
    )
    best = classify_plan(
        dict(
            base,
            classify={
                "sky": {
                    "model": {"best_by": "val_loss"},
                    "files": "x.fits",
                    "truth": "t.fits",
                    "target_fraction": 0.2,
                }
            },
        )
    )["sky"]
    assert best.model == SELECTED_MODEL and best.truth == "t.fits" and best.options["target_fraction"] == 0.2
    assert [f for batch in plan.batches.values() for f in batch] == [str(tmp_path / "coadd.fits")]
    with pytest.raises(ConfigError, match=r"classify.sky: model \{model: classic"):
        classify_plan(
            dict(
                base, classify={"sky": {"model": {"model": "classic", "combo": "initial"}, "files": "x.fits"}}
            )
        )
    with pytest.raises(ConfigError, match="classify.sky: no file matches"):
        classify_plan(dict(base, classify={"sky": {"model": "m.pt", "files": [str(tmp_path / "*.fits")]}}))


@needs_quasarnp
def test_workflow_stage_classifies_a_healpix_glob_and_then_only_new_files(survey_folder, tmp_path):
    from conftest import copy_workflow, snakemake
    from test_workflow import planned_jobs

    workdir = copy_workflow(tmp_path / "workflow")
    new_pixel = survey_folder / "main" / "dark" / "100" / "10016" / "coadd-main-dark-10016.fits"
    for bad in ("10017", "10018", "10019"):  # the bad files have their own test
        shutil.rmtree(survey_folder / "main" / "dark" / "100" / bad)
    shutil.move(new_pixel, tmp_path / "later.fits")
    extra = {
        "classify": {
            "qn": {
                "model": str(WEIGHTS),
                "files": str(survey_folder / "*/*/*/*/coadd-*.fits"),
                "files_per_job": 1,
                "device": "cpu",
            }
        }
    }
    (workdir / "extra.yaml").write_text(yaml.safe_dump(extra))
    target = (
        "--configfile",
        "config/config.yaml",
        "extra.yaml",
        "--cores",
        "2",
        "results/classify/qn/catalogue.fits",
    )
    snakemake(workdir, *target, timeout=600)
    out = workdir / "results" / "classify" / "qn"
    assert (out / "sv3/dark/260/26065/coadd-sv3-dark-26065.fits").is_file()
    assert read_catalogue(out / "catalogue.fits")[1]["NFILES"] == 2
    shutil.move(tmp_path / "later.fits", new_pixel)  # a new healpix pixel appears
    jobs = planned_jobs(workdir, *target)
    assert [rule for rule, _ in jobs].count("classify") == 1 and {rule for rule, _ in jobs} == {
        "classify",
        "classify_merge",
    }
    new_batch = next(w["batch"] for rule, w in jobs if rule == "classify")
    assert not (out / "batches" / f"{new_batch}.tsv").exists()  # a new job for the new file alone


def test_test_set_catalogues_do_not_count_a_bal_head_either():
    import pandas as pd

    from lymannet.predict import PredictOptions, catalogue_rows

    names = [line.name for line in QSO_LINES + (QSO_BAL_LINE,)]
    c_line = np.full((2, 7), 0.1)
    c_line[0, 6] = 0.99  # only the BAL head is confident
    c_line[1, 2] = 0.99  # CIII is
    outputs = {
        "c_line": c_line,
        "z_line": np.full((2, 7), 2.0),
        "z_pred": np.full(2, 2.0),
        "best_line": np.array([0, 2]),
        "confidence": np.array([0.1, 0.99]),
    }
    table = catalogue_rows(pd.DataFrame({"TARGETID": [1, 2]}), outputs, names, "QSO", PredictOptions())
    assert table["IS_QSO"].tolist() == [False, True]
    np.testing.assert_allclose(table["C_CIV_BAL"], [0.99, 0.1], rtol=1e-6)  # the column is kept (float32)


def test_detection_rule_uses_the_working_point_unless_c_th_is_given():
    from lymannet.calibration import fit_calibration
    from lymannet.classify import DetectionRule

    rng = np.random.default_rng(1)
    n = 2000
    is_target = rng.random(n) < 0.4
    score = np.clip(np.where(is_target, rng.normal(0.8, 0.12, n), rng.normal(0.4, 0.2, n)), 0, 1)
    z = rng.uniform(2.5, 3.5, n)
    calibration = fit_calibration(score, is_target, is_target, z, z, np.zeros(n), {"purity": 0.95}, 1, 0.05)
    rule = DetectionRule.resolve(calibration, ClassifyOptions())
    assert rule.c_th == calibration.threshold and "working point" in rule.source
    assert rule.target_fraction == pytest.approx(calibration.target_fraction)
    rarer = DetectionRule.resolve(calibration, ClassifyOptions(target_fraction=0.1))
    assert rarer.c_th > rule.c_th and rarer.target_fraction == 0.1  # fewer targets: a stricter cut
    looser = DetectionRule.resolve(calibration, ClassifyOptions(working_point={"purity": 0.8}))
    assert looser.c_th < rule.c_th
    assert DetectionRule.resolve(calibration, ClassifyOptions(c_th=0.3)).c_th == 0.3  # c_th wins
    assert DetectionRule.resolve(None, ClassifyOptions(default_c_th=0.7)).c_th == 0.7
    with pytest.raises(ConfigError, match="calibrated"):
        DetectionRule.resolve(None, ClassifyOptions(target_fraction=0.2))
    with pytest.raises(ConfigError, match="target_fraction"):
        ClassifyOptions.from_dict({"target_fraction": 1.5})
