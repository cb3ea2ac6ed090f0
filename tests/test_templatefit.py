"""The classical baseline (lymannet.templatefit): redshifts, classes, confidences, bad input, and a
catalogue the score rules read unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.coadd import NativeRebinner
from lymannet.errors import InputFileError
from lymannet.grid import Grid
from lymannet.metrics import ScoreOptions, evaluate
from lymannet.predict import read_catalogue
from lymannet.simulate import RENDERERS, draw_objects, instrument, simulate_chunk
from lymannet.spectra import SpectrumSet, write_spectra
from lymannet.templatefit import (
    ZWARN_NODATA,
    TemplateFitOptions,
    build_template_set,
    chi2_scan,
    fit_spectra,
    predict_testset_templatefit,
)

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
DZ_MAX = 0.05


@pytest.fixture(scope="module")
def tset():
    return build_template_set(GRID, TemplateFitOptions())


def simulated(populations: dict, seed: int = 1, noiseless: bool = False, mag_r=(22.5, 24.5)):
    """Network-grid (flux, ivar, truth) of simulated objects, as ingestion would make them."""
    spec = {"mode": "continuous", "exptime": [7200], "mag_r": list(mag_r), "populations": populations}
    objects = draw_objects(spec, seed, "test-templatefit")
    chunk = simulate_chunk(objects, np.random.default_rng(seed))
    inst = instrument()
    weighted = np.zeros((len(objects), inst.wave.size), np.float32)
    weight = np.zeros_like(weighted)
    for arm, cut in inst.slices.items():
        flux, ivar = chunk.arms[arm]
        weighted[:, cut] += (chunk.model[:, cut] if noiseless else flux) * ivar
        weight[:, cut] += ivar
    flux, ivar = NativeRebinner(GRID).rebin_sums(weighted, weight)
    return flux, ivar, chunk.truth


def z_ok(fit: dict, truth: pd.DataFrame, spectype: str) -> np.ndarray:
    rows = truth["SPECTYPE"].to_numpy() == spectype
    return np.abs(fit[f"Z_{spectype}"][rows] - truth["Z"].to_numpy()[rows]) < DZ_MAX


def test_every_simulator_class_gets_templates(tset):
    assert set(tset.classes) == set(RENDERERS)
    assert [label.split(":")[1] for label in tset.labels["LBG"]] == [
        "0",
        "1",
        "2",
        "3",
    ]  # the four EW classes
    for spectype in tset.classes:
        models = tset.models[spectype]
        assert models.shape[0] == TemplateFitOptions().templates_per_class
        assert models.shape[2] == GRID.n_pixels and np.isfinite(models).all()
    # The IGM: an LBG template at z = 3.5 is dark blueward of the Lyman limit.
    lbg, wave = tset.models["LBG"][0], GRID.centres
    j = np.argmin(np.abs(tset.z["LBG"] - 3.5))
    continuum = lbg[j, (wave > 1300 * 4.5) & (wave < 1500 * 4.5)].mean()
    assert lbg[j, wave < 890 * 4.5].mean() < 0.1 * continuum


def test_noiseless_spectra_recover_redshift_and_class(tset):
    flux, ivar, truth = simulated(
        {
            "LBG": {"n": 40, "z": [2.0, 4.0]},
            "QSO": {"n": 20, "z": [1.8, 4.0]},
            "ELG": {"n": 20, "z": [0.05, 0.2]},
        },
        noiseless=True,
    )
    fit = fit_spectra(tset, flux, ivar)
    spectype = truth["SPECTYPE"].to_numpy()
    assert z_ok(fit, truth, "LBG").mean() >= 0.95
    assert z_ok(fit, truth, "QSO").mean() >= 0.95
    assert z_ok(fit, truth, "ELG").mean() >= 0.9
    assert (fit["spectype"][spectype == "LBG"] == "LBG").mean() >= 0.95
    assert (fit["spectype"][spectype == "QSO"] == "QSO").mean() >= 0.95
    assert (fit["confidence"][spectype == "LBG"] > 0.5).mean() >= 0.95
    assert (fit["confidence"][spectype != "LBG"] < 0.5).mean() >= 0.95
    # Z_PRED is the LBG fit's redshift, Z_FIT the best class's
    np.testing.assert_array_equal(fit["z_pred"], fit["Z_LBG"])


def test_noisy_spectra_recover_redshift_and_class(tset):
    flux, ivar, truth = simulated(
        {
            "LBG": {"n": 120, "z": [2.0, 4.0]},
            "QSO": {"n": 60, "z": [1.8, 4.0]},
            "ELG": {"n": 60, "z": [0.05, 0.2]},
        },
        seed=2,
    )
    fit = fit_spectra(tset, flux, ivar)
    spectype = truth["SPECTYPE"].to_numpy()
    assert z_ok(fit, truth, "LBG").mean() >= 0.9
    assert z_ok(fit, truth, "QSO").mean() >= 0.9
    lbg_found = (fit["confidence"] > 0.5) & (spectype == "LBG")
    assert lbg_found.sum() >= 0.85 * (spectype == "LBG").sum()
    assert (fit["confidence"][spectype != "LBG"] < 0.5).mean() >= 0.85
    for key in ("confidence", "z_pred", "z", "chi2", "deltachi2"):
        assert np.isfinite(fit[key]).all(), key
    assert ((fit["confidence"] > 0) & (fit["confidence"] < 1)).all()


def test_a_clear_qso_is_a_qso(tset):
    flux, ivar, truth = simulated({"QSO": {"n": 3, "z": [2.4, 2.6]}}, seed=3, mag_r=(20.5, 21.0))
    fit = fit_spectra(tset, flux, ivar)
    assert list(fit["spectype"]) == ["QSO"] * 3
    assert (np.abs(fit["z"] - truth["Z"].to_numpy()) < 0.01).all()
    assert (fit["confidence"] < 0.1).all() and (fit["deltachi2"] > 25).all()


def test_chi2_falls_towards_the_true_redshift(tset):
    for noiseless in (True, False):
        flux, ivar, truth = simulated({"LBG": {"n": 1, "z": [2.95, 3.05]}}, seed=4, noiseless=noiseless)
        z, chi2 = chi2_scan(tset, flux, ivar, "LBG")
        curve = chi2[0].min(axis=0)  # best template at each redshift
        z_true = float(truth["Z"].iloc[0])
        assert abs(z[np.argmin(curve)] - z_true) < 0.01
        far = curve[np.abs(z - z_true) > 0.1]
        assert far.min() > curve.min() + 25  # a deep, unambiguous minimum
        if noiseless:  # and chi2 falls steadily towards it from either side
            for side in (-1, 1):
                steps = [
                    curve[np.argmin(np.abs(z - (z_true + side * dz)))]
                    for dz in (0.03, 0.02, 0.01, 0.005, 0.0)
                ]
                assert all(a > b for a, b in zip(steps, steps[1:])), (side, steps)


def test_bad_input_gives_flagged_rows_not_a_traceback(tset):
    flux, ivar, truth = simulated({"LBG": {"n": 4, "z": [2.8, 3.2]}}, seed=5, noiseless=True)
    flux, ivar = flux.copy(), ivar.copy()
    flux[0] = np.nan  # every flux NaN
    ivar[1] = 0.0  # no valid pixel
    ivar[2, :] = np.inf  # nonsense ivar everywhere
    flux[3, :100] = np.nan  # a few NaN pixels: masked, the spectrum is still fitted
    fit = fit_spectra(tset, flux, ivar)
    for row in (0, 1, 2):
        assert (
            fit["zwarn"][row] & ZWARN_NODATA and fit["confidence"][row] == 0.0 and fit["z_pred"][row] == 0.0
        )
    assert not fit["zwarn"][3] & ZWARN_NODATA
    assert abs(fit["z_pred"][3] - truth["Z"].iloc[3]) < DZ_MAX and fit["confidence"][3] > 0.5
    for key in ("confidence", "z_pred", "z", "chi2", "deltachi2"):
        assert np.isfinite(fit[key]).all(), key
    with pytest.raises(InputFileError, match="do not match the template grid"):
        fit_spectra(tset, flux[:, :100], ivar[:, :100])


def test_catalogue_is_scored_like_a_network(tmp_path):
    flux, ivar, truth = simulated(
        {
            "LBG": {"n": 30, "z": [2.0, 4.0]},
            "QSO": {"n": 15, "z": [1.8, 4.0]},
            "ELG": {"n": 15, "z": [0.05, 0.2]},
        },
        seed=6,
    )
    flux[0], ivar[0] = np.nan, 0.0  # one dead fibre: a flagged row, not a failed job
    keep = ["TARGETID", "Z", "SPECTYPE", "TEMPLATE", "MAG_R", "EXPTIME"]
    testset = tmp_path / "testset.fits"
    write_spectra(testset, SpectrumSet(GRID.wavelength, flux, ivar, truth[keep].reset_index(drop=True), GRID))
    output = tmp_path / "predictions.fits"
    predict_testset_templatefit(testset, output, {"chunk_rows": 16}, {"target_class": "LBG"})
    catalogue = read_catalogue(output)
    assert catalogue.line_names == ["CLASS"]
    table = catalogue.table
    assert len(table) == 60 and {"Z_PRED", "C_CLASS", "IS_LBG", "ZWARN", "SPECTYPE_FIT", "CHI2_QSO"} <= set(
        table
    )
    assert table["ZWARN"].iloc[0] & ZWARN_NODATA and table["C_CLASS"].iloc[0] == 0.0
    assert catalogue.header["MODEL"].startswith("template_fit")
    evaluation = evaluate(table, catalogue.c_line, ScoreOptions())
    assert evaluation.summary["score"] > 0.8


def test_defaults_equal_the_schema():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    properties = schema["properties"]["baseline"]["properties"]["template_fit"]["properties"]
    defaults = {
        name: prop["default"] for name, prop in properties.items() if name not in ("enabled", "name", "combo")
    }
    assert {name: getattr(TemplateFitOptions(), name) for name in defaults} == defaults


def test_the_dag_predicts_and_scores_the_baseline_on_every_test_set(tmp_path):
    from conftest import copy_workflow
    from test_workflow import planned_jobs, write_config

    workdir = copy_workflow(tmp_path)
    config = yaml_config(workdir)
    testsets = {name for name, spec in config["testsets"].items() if spec.get("in_summary", True)}
    jobs = planned_jobs(workdir)
    assert {w["testset"] for rule, w in jobs if rule == "predict_templatefit"} == testsets
    scored = {w["testset"] for rule, w in jobs if rule == "score" and w["model"] == "template_fit"}
    assert scored == testsets and all(
        w["combo"] == "simulator_templates"
        for rule, w in jobs
        if rule == "score" and w["model"] == "template_fit"
    )
    edited = write_config(
        workdir, lambda c: c.setdefault("baseline", {}).setdefault("template_fit", {}).update(enabled=False)
    )
    jobs = planned_jobs(workdir, "--configfile", edited)
    assert not [w for rule, w in jobs if rule == "predict_templatefit" or w.get("model") == "template_fit"]


def yaml_config(workdir):
    import yaml

    return yaml.safe_load((workdir / "config" / "config.yaml").read_text())
