"""Prediction catalogues: a stand-in model with known outputs, then the real lymannet.modelfile model file."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pandas as pd
import pytest
import torch

from lymannet.errors import LymannetError
from lymannet.grid import Grid
from lymannet.lines import LBG_LINES, Line
from lymannet.predict import predict_file, read_catalogue
from lymannet.score import score_catalogue
from lymannet.spectra import SpectrumSet, write_spectra

GRID = Grid(kind="linear", start=3600.0, step=80.0, n_pixels=80)


def write_testset(path: Path, n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(100, 100 + n),
            "Z": np.linspace(2.0, 3.5, n),
            "SPECTYPE": (["LBG", "QSO", "LBG", "ELG", "LBG"] * n)[:n],
            "TEMPLATE": np.arange(n) % 4,
            "MAG_R": np.full(n, 23.5),
            "EXPTIME": np.full(n, 7200.0),
        }
    )
    flux = rng.normal(1, 0.1, (n, GRID.n_pixels)).astype(np.float32)
    flux[:, 0] = np.arange(n)  # row number, so the stand-in model can give row-specific outputs
    spectra = SpectrumSet(GRID.wavelength, flux, np.ones_like(flux), truth, GRID)
    write_spectra(path, spectra)
    return truth


# The stand-in mimics lymannet.modelfile.LoadedModel: c_line / z_line chosen per row (from flux[:, 0]).
# Rows (3 lines LYA, LYB, SIII1260):   confidences          -> best line, lines > 0.5
C_TABLE = np.array(
    [
        [0.9, 0.2, 0.6],  # row 0: LYA, 2 lines
        [0.1, 0.3, 0.2],  # row 1: LYB, 0 lines
        [0.4, 0.8, 0.1],  # row 2: LYB, 1 line
        [0.5, 0.5, 0.5],  # row 3: LYA (first of ties), 0 lines (0.5 is not > 0.5)
        [0.7, 0.9, 0.95],
    ]
)  # row 4: SIII1260, 3 lines


@dataclass
class StandIn:
    model: torch.nn.Module = field(default_factory=lambda: torch.nn.Linear(GRID.n_pixels, 3))
    spec: dict[str, Any] = field(
        default_factory=lambda: {"conv": {"layers": 4, "filters": 100}, "train": {"lr": 1e-3}}
    )
    grid: Grid = GRID
    lines: tuple[Line, ...] = LBG_LINES[:3]
    n_boxes: int = 10
    snr_channel: bool = False
    target_class: str = "LBG"
    provenance: dict[str, Any] = field(default_factory=lambda: {"trained": "by hand"})
    sha256: str = "f" * 64
    nan_rows: tuple[int, ...] = ()
    calls: list[tuple[int, int, bool]] = field(default_factory=list)

    def predict(self, flux, ivar, batch_size=512, bf16=False):
        self.calls.append((len(flux), batch_size, bf16))
        row = flux[:, 0].astype(int)
        c_line = C_TABLE[row].copy()
        z_line = 2.0 + 0.1 * row[:, None] + 0.01 * np.arange(3)[None, :]
        for r in self.nan_rows:
            c_line[row == r] = np.nan
        best = np.nan_to_num(c_line, nan=-1).argmax(axis=1)
        rows = np.arange(len(row))
        return {
            "c_line": c_line,
            "z_line": z_line,
            "z_pred": z_line[rows, best],
            "best_line": best,
            "confidence": c_line[rows, best],
        }


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Install the stand-in as lymannet.modelfile.load_model_file."""
    model = StandIn()
    (tmp_path / "m.pt").write_bytes(b"weights")  # provenance hashes the model file
    module = types.ModuleType("lymannet.modelfile")
    module.load_model_file = lambda path: model
    monkeypatch.setitem(sys.modules, "lymannet.modelfile", module)
    return model


def test_catalogue_columns_and_values(tmp_path, stand_in):
    truth = write_testset(tmp_path / "test.fits")
    model_path = tmp_path / "model.pt"
    model_path.write_bytes(b"weights")
    predict_file(
        str(model_path),
        str(tmp_path / "test.fits"),
        str(tmp_path / "pred.fits"),
        {"c_th": 0.5, "min_lines": 1, "batch_size": 7, "bf16": True, "dz_max": 0.05},
    )
    assert stand_in.calls == [(5, 7, True)]
    cat = read_catalogue(tmp_path / "pred.fits")
    table = cat.table
    assert cat.line_names == ["LYA", "LYB", "SIII1260"]
    for column in (
        "TARGETID",
        "Z",
        "SPECTYPE",
        "TEMPLATE",
        "MAG_R",
        "EXPTIME",
        "Z_PRED",
        "Z_QN",
        "Z_QN_CONF",
        "BEST_LINE",
        "C_BEST",
        "IS_LBG",
        "IS_LBG_QN",
        "C_LYA",
        "Z_LYA",
        "C_SIII1260",
        "Z_SIII1260",
    ):
        assert column in table, column
    assert table["TARGETID"].tolist() == truth["TARGETID"].tolist()
    assert table["SPECTYPE"].tolist() == truth["SPECTYPE"].tolist()
    assert table["BEST_LINE"].tolist() == ["LYA", "LYB", "LYB", "LYA", "SIII1260"]
    np.testing.assert_allclose(table["C_BEST"], [0.9, 0.3, 0.8, 0.5, 0.95], rtol=1e-6)
    assert table["IS_LBG"].tolist() == [True, False, True, False, True]
    assert table["IS_LBG_QN"].tolist() == [1, 0, 1, 0, 1]
    # z_line = 2 + 0.1 row + 0.01 line; Z_PRED is the best line's
    np.testing.assert_allclose(table["Z_PRED"], [2.0, 2.11, 2.21, 2.3, 2.42], rtol=1e-6)
    np.testing.assert_allclose(table["Z_QN"], table["Z_PRED"])
    np.testing.assert_allclose(table["Z_SIII1260"], [2.02, 2.12, 2.22, 2.32, 2.42], rtol=1e-6)
    np.testing.assert_allclose(cat.c_line, C_TABLE, rtol=1e-6)

    header = fitsio.read_header(str(tmp_path / "pred.fits"), "QN_RR")
    assert header["MODEL"] == str(model_path) and header["MODELSHA"] == "f" * 64
    assert header["TARGCLS"] == "LBG" and header["CTHRESH"] == 0.5 and header["MINLINES"] == 1
    assert header["LNVER"] and header["GITREV"] and len(header["CFGHASH"]) == 16
    assert cat.provenance["model_provenance"] == {"trained": "by hand"}
    assert cat.provenance["inputs"]["testset"]["path"] == str(tmp_path / "test.fits")
    lines = fitsio.read(str(tmp_path / "pred.fits"), "LINES")
    np.testing.assert_allclose(lines["WAVELENGTH"], [1215.67, 1025.72, 1260.42])


def test_min_lines_two(tmp_path, stand_in):
    write_testset(tmp_path / "test.fits")
    predict_file(
        str(tmp_path / "m.pt"),
        str(tmp_path / "test.fits"),
        str(tmp_path / "p.fits"),
        {"c_th": 0.5, "min_lines": 2},
    )
    # lines > 0.5 per row: 2, 0, 1, 0, 3
    assert read_catalogue(tmp_path / "p.fits").table["IS_LBG"].tolist() == [True, False, False, False, True]


def test_nan_outputs_name_the_model_and_count_rows(tmp_path, stand_in):
    write_testset(tmp_path / "test.fits")
    stand_in.nan_rows = (1, 3)
    with pytest.raises(LymannetError, match=r"m\.pt.*2 of 5 spectra"):
        predict_file(str(tmp_path / "m.pt"), str(tmp_path / "test.fits"), str(tmp_path / "p.fits"), {})
    assert not (tmp_path / "p.fits").exists()
    assert not list(tmp_path.glob(".p.fits*"))  # no temp file left behind


def test_chunked_prediction_matches_whole(tmp_path, stand_in):
    from lymannet.predict import PredictOptions, predict_testset

    write_testset(tmp_path / "test.fits")
    whole = predict_testset(stand_in, tmp_path / "test.fits", PredictOptions(), "m.pt")
    chunked = predict_testset(stand_in, tmp_path / "test.fits", PredictOptions(chunk_rows=2), "m.pt")
    pd.testing.assert_frame_equal(whole, chunked)


def test_read_catalogue_rejects_other_files(tmp_path):
    from lymannet.errors import InputFileError

    with pytest.raises(InputFileError, match="does not exist"):
        read_catalogue(tmp_path / "missing.fits")
    write_testset(tmp_path / "spectra.fits")
    with pytest.raises(InputFileError, match="QN_RR"):
        read_catalogue(tmp_path / "spectra.fits")


# --- the real model file of lymannet.modelfile --------------------------------------------------------


def real_model_file(tmp_path: Path, family: str = "quasarnet") -> Path:
    modelfile = pytest.importorskip("lymannet.modelfile")
    models = pytest.importorskip("lymannet.models")
    spec = {
        "family": family,
        "lines": "lbg",
        "n_boxes": 8,
        "dense_units": 8,
        "snr_channel": False,
        "conv": {"layers": 2, "filters": 4, "kernel": 5, "stride": 2, "padding": "same", "dropout": 0.0},
        "train": {"lr": 1e-3, "epochs": 1, "batch_size": 4},
    }
    torch.manual_seed(0)
    model = models.build_model(spec, GRID.n_pixels)
    path = tmp_path / "model.pt"
    modelfile.write_model_file(path, model, spec, GRID, "LBG", {}, {"note": "test"}, {})
    return path


@pytest.mark.parametrize("family", ["quasarnet", "end_to_end"])
def test_real_model_file_end_to_end(tmp_path, family):
    path = real_model_file(tmp_path, family)
    write_testset(tmp_path / "test.fits", n=6)
    predict_file(
        str(path),
        str(tmp_path / "test.fits"),
        str(tmp_path / "pred.fits"),
        {"c_th": 0.5, "min_lines": 1, "batch_size": 4},
    )
    cat = read_catalogue(tmp_path / "pred.fits")
    expected = [line.name for line in LBG_LINES] if family == "quasarnet" else ["CLASS"]
    assert cat.line_names == expected
    assert np.isfinite(cat.c_line).all() and ((cat.c_line >= 0) & (cat.c_line <= 1)).all()
    best = cat.c_line.argmax(axis=1)
    assert cat.table["BEST_LINE"].tolist() == [expected[i] for i in best]
    np.testing.assert_allclose(cat.table["C_BEST"], cat.c_line.max(axis=1), rtol=1e-6)
    if family == "quasarnet":  # the redshift is the best line's
        np.testing.assert_allclose(cat.table["Z_PRED"], cat.z_line[np.arange(6), best], rtol=1e-6)

    # and the score script runs on it
    summary = score_catalogue(
        str(tmp_path / "pred.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 11}},
        "tiny",
        "combo",
        "test",
        str(tmp_path / "s.json"),
        str(tmp_path / "c.csv"),
        str(tmp_path / "f.png"),
    )
    assert summary["n_targets"] == 4 and summary["n_contaminants"] == 2  # LBG QSO LBG ELG LBG LBG


def test_calibrated_model_file_gives_prob_zerr_and_the_working_point(tmp_path):
    """A model file with a calibration (as rule calibrate writes it) adds PROB and ZERR, and the
    header records the working point and the class mix PROB refers to."""
    from conftest import synthetic_calibration
    from lymannet.modelfile import load_model_file, write_calibrated_model_file

    calibration, _ = synthetic_calibration(n=400, seed=0)
    path = real_model_file(tmp_path)
    write_calibrated_model_file(path, tmp_path / "calibrated.pt", calibration.to_dict())
    assert load_model_file(tmp_path / "calibrated.pt").calibration["threshold"] == calibration.threshold
    write_testset(tmp_path / "test.fits", n=6)
    predict_file(
        str(tmp_path / "calibrated.pt"), str(tmp_path / "test.fits"), str(tmp_path / "pred.fits"), {}
    )
    cat = read_catalogue(tmp_path / "pred.fits")
    c_detect = cat.c_line.max(axis=1)
    np.testing.assert_allclose(cat.table["PROB"], calibration.probability(c_detect), rtol=1e-5)
    expected_zerr = (1 + cat.table["Z_PRED"].to_numpy(float)) * calibration.zerr[
        1
    ]  # one line: no spread term
    assert (cat.table["ZERR"] >= expected_zerr * (1 - 1e-5)).all()
    assert cat.header["CALIB"] is True and cat.header["WPCTH"] == pytest.approx(calibration.threshold)
    assert cat.header["PRIORVAL"] == pytest.approx(calibration.target_fraction)
    # an uncalibrated model file says so and has no PROB column
    predict_file(str(path), str(tmp_path / "test.fits"), str(tmp_path / "raw.fits"), {})
    raw = read_catalogue(tmp_path / "raw.fits")
    assert raw.header["CALIB"] is False and "PROB" not in raw.table
