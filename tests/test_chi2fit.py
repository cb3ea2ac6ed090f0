"""The chi-square fit (lymannet.chi2fit) with the simulator's templates: redshifts, classes,
confidences, bad input, and a catalogue the score rules read unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet.chi2fit import ZWARN_NODATA, chi2_scan, fit_spectra, predict_testset_templatefit
from lymannet.errors import InputFileError
from lymannet.evaluation import evaluate
from lymannet.metrics import ScoreOptions
from lymannet.predict import read_catalogue
from lymannet.spectra import SpectrumSet, write_spectra
from conftest import DZ_MAX, GRID, simulated


def z_ok(fit: dict, truth: pd.DataFrame, spectype: str) -> np.ndarray:
    rows = truth["SPECTYPE"].to_numpy() == spectype
    return np.abs(fit[f"Z_{spectype}"][rows] - truth["Z"].to_numpy()[rows]) < DZ_MAX


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
