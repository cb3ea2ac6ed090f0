"""The DESI-style DLA catalogue (lymannet.fourmost.dla_catalogue): the file's columns and header,
and the summary rows of a calibrated location score."""

import fitsio
import numpy as np
import pytest

from conftest import dla_calibration_record as _record
from conftest import dla_candidates as _candidates
from lymannet import calibration
from lymannet.fourmost import dla_catalogue as dcat
from lymannet.fourmost import features as ft
from lymannet.fourmost import summary
from lymannet.lines import LYA


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


def test_neutral_rung_counts_no_neutral_candidate_as_a_false_one_on_a_bal():
    data, truth, cat = _candidates()  # candidate 1 sits on the 20.1 absorber (neutral), 3 is false
    cat = cat.assign(BAL=[0, 1, 0, 1])  # both on BAL quasars
    everything = np.ones(4, bool)
    strict = dcat.rung_scores(data, truth, cat, everything, np.arange(3), False, 20.0)
    neutral = dcat.rung_scores(data, truth, cat, everything, np.arange(3), True, 20.0)
    assert strict["false_on_bal"]["on_bal_quasars"] == 2 and strict["n_false"] == 3
    assert neutral["false_on_bal"]["on_bal_quasars"] == 1 and neutral["n_false"] == 2
