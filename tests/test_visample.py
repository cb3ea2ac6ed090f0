"""Visual-inspection samples (lymannet.visample, `lymannet vi-sample`, rule vi_sample): the spectra
copied bit for bit into a DESI coadd that lymannet reads back, the stratified design and its
weights, reproducible seeds, and errors that name the file."""

from __future__ import annotations

import inspect
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lymannet.survey import classify_survey
from lymannet.coadd import CoaddFile
from lymannet.errors import ConfigError, InputFileError
from lymannet.visample import allocate, draw_vi_sample, stratum_weights
from conftest import QUASARNP_WEIGHTS as WEIGHTS
from conftest import without_hdu

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
ARMS = ("B", "R", "Z")
# Short arms on the DESI native grid (3600 A + k * 0.8 A), as lymannet.coadd requires.
SYNTHETIC_ARMS = {"B": (3600.0, 60), "R": (5760.0, 50), "Z": (7520.0, 40)}


# --- helpers ---------------------------------------------------------------------------------


def read_sample(folder: Path) -> tuple[pd.DataFrame, fitsio.FITS]:
    return pd.read_csv(folder / "vi_sample.csv"), fitsio.FITS(str(folder / "coadd-vi.fits"))


def assert_rows_copied(sample: pd.DataFrame, out: fitsio.FITS, root: Path) -> None:
    """Every HDU row of the VI coadd is the source coadd's row, bit for bit; the grids are the source's."""
    names = {hdu.get_extname() for hdu in out}
    for i, (coadd, row) in enumerate(zip(sample["COADD"], sample["ROW"])):
        with fitsio.FITS(str(root / coadd)) as source:
            for name in names - {"", "FIBERMAP"}:
                ours, theirs = out[name].read(), source[name].read()
                if name.endswith("_WAVELENGTH"):
                    np.testing.assert_array_equal(ours, theirs)
                else:
                    assert ours.dtype.newbyteorder("=") == theirs.dtype.newbyteorder("=")
                    native = ours.dtype.newbyteorder("=")
                    assert ours[i].astype(native).tobytes() == theirs[row].astype(native).tobytes(), (name, i)


def eligible_count(catalogue: Path) -> int:
    table = fitsio.read(str(catalogue), ext="QN_RR")
    ok = np.isfinite(table["CONFIDENCE"]) & np.isfinite(table["Z"])
    return int(ok.sum() if "ZWARN" not in table.dtype.names else (ok & (table["ZWARN"] == 0)).sum())


def write_synthetic_coadd(path: Path, targetids: np.ndarray, seed: int, shift_pixels: int = 0) -> None:
    """A DESI-like coadd: FIBERMAP, and per arm WAVELENGTH, FLUX, IVAR, MASK (uint32, high bits set
    too) and RESOLUTION (n, 11, pixels)."""
    rng = np.random.default_rng(seed)
    n = len(targetids)
    fibermap = np.zeros(
        n,
        [
            ("TARGETID", "i8"),
            ("TARGET_RA", "f8"),
            ("TARGET_DEC", "f8"),
            ("OBJTYPE", "U3"),
            ("COADD_FIBERSTATUS", "i4"),
        ],
    )
    fibermap["TARGETID"], fibermap["OBJTYPE"] = targetids, "TGT"
    fibermap["TARGET_RA"], fibermap["TARGET_DEC"] = rng.uniform(0, 360, n), rng.uniform(-10, 30, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(None, header=[{"name": "SURVEY", "value": "main"}])
        fits.write(fibermap, extname="FIBERMAP", units=["", "deg", "deg", "", ""])
        for arm, (start, n_pixels) in SYNTHETIC_ARMS.items():
            wave = start + 0.8 * (shift_pixels + np.arange(n_pixels))
            fits.write(wave, extname=f"{arm}_WAVELENGTH", header=[{"name": "BUNIT", "value": "Angstrom"}])
            fits.write(
                rng.normal(size=(n, n_pixels)).astype("f4"),
                extname=f"{arm}_FLUX",
                header=[{"name": "BUNIT", "value": "10**-17 erg/(s cm2 Angstrom)"}],
            )
            fits.write(rng.uniform(0.5, 2.0, (n, n_pixels)).astype("f4"), extname=f"{arm}_IVAR")
            mask = np.where(rng.random((n, n_pixels)) < 0.05, np.uint32(2**31 + 5), np.uint32(0))
            fits.write(mask, extname=f"{arm}_MASK")
            fits.write(rng.random((n, 11, n_pixels)).astype("f4"), extname=f"{arm}_RESOLUTION")


CATALOGUE_DTYPE = [
    ("TARGETID", "i8"),
    ("TARGET_RA", "f8"),
    ("TARGET_DEC", "f8"),
    ("COADD", "U48"),
    ("ROW", "i4"),
    ("Z", "f8"),
    ("ZERR", "f4"),
    ("CONFIDENCE", "f4"),
    ("PROB", "f4"),
    ("ZWARN", "i8"),
    ("IS_QSO_QN", "i2"),
]


def write_catalogue(path: Path, table: dict[str, np.ndarray], header: dict) -> Path:
    n = len(table["TARGETID"])
    records = np.zeros(n, [(name, dtype) for name, dtype in CATALOGUE_DTYPE if name in table])
    for name in records.dtype.names:
        records[name] = table[name]
    fitsio.write(
        str(path),
        records,
        extname="QN_RR",
        header=[{"name": k, "value": v} for k, v in header.items()],
        clobber=True,
    )
    return path


@pytest.fixture(scope="module")
def synthetic_survey(tmp_path_factory) -> dict:
    """Two coadds of 1500 objects; a calibrated catalogue of them (PROB, ZWARN, ZERR; WPPROB 0.8 and
    SRCROOT in the header) and the truth (a target with probability PROB, as calibration means)."""
    root = tmp_path_factory.mktemp("healpix")
    rng = np.random.default_rng(7)
    names = ["main/dark/1/100/coadd-main-dark-100.fits", "main/dark/1/101/coadd-main-dark-101.fits"]
    n_per_file = 1500
    targetids = 39_000_000 + np.arange(2 * n_per_file)
    for k, name in enumerate(names):
        write_synthetic_coadd(root / name, targetids[k * n_per_file : (k + 1) * n_per_file], seed=k)
    n = len(targetids)
    # Most of a survey at low probability, some confident targets, and every stratum populated.
    prob = np.where(
        rng.random(n) < 0.3,
        rng.random(n),
        np.where(rng.random(n) < 0.75, rng.beta(0.4, 4, n), rng.beta(6, 1, n)),
    )
    zwarn = np.where(rng.random(n) < 0.05, 4, 0)  # NODATA: not classified, NaN values
    zwarn[rng.random(n) < 0.02] |= 1  # flagged rows that still have values: never drawn either
    nodata = (zwarn & 4) > 0
    table = {
        "TARGETID": targetids,
        "TARGET_RA": rng.uniform(0, 360, n),
        "TARGET_DEC": rng.uniform(-10, 30, n),
        "COADD": np.repeat(names, n_per_file),
        "ROW": np.tile(np.arange(n_per_file), 2),
        "Z": np.where(nodata, np.nan, rng.uniform(0.5, 4, n)),
        "ZERR": np.where(nodata, np.nan, 0.001),
        "CONFIDENCE": np.where(nodata, np.nan, rng.random(n)),
        "PROB": np.where(nodata, np.nan, prob),
        "ZWARN": zwarn,
        "IS_QSO_QN": (prob > 0.8).astype(int),
    }
    catalogue = write_catalogue(
        root.parent / "catalogue.fits",
        table,
        {"WPPROB": 0.8, "SRCROOT": str(root), "CTHRESH": 0.5, "TARGCLS": "QSO"},
    )
    truth = pd.DataFrame({"TARGETID": targetids, "TRUE": rng.random(n) < prob, "PROB": prob, "ZWARN": zwarn})
    return {"root": root, "catalogue": catalogue, "truth": truth, "table": table}


# --- the design ------------------------------------------------------------------------------


def test_allocation_favours_weights_caps_full_strata_and_keeps_every_stratum():
    np.testing.assert_array_equal(allocate(np.array([100, 2, 100]), np.array([1.0, 4.0, 1.0]), 20), [9, 2, 9])
    np.testing.assert_array_equal(
        allocate(np.array([100, 0, 100, 50]), np.array([1.0, 1.0, 4.0, 1.0]), 12), [2, 0, 8, 2]
    )
    assert allocate(np.array([5, 5, 5]), np.ones(3), 2).sum() == 2  # fewer draws than strata
    np.testing.assert_array_equal(allocate(np.array([3, 0, 4]), np.ones(3), 50), [3, 0, 4])  # all of them
    # One per non-empty stratum first: a stratum of weight 1 beside a heavy one still gets a draw.
    assert allocate(np.array([1000, 1000]), np.array([1.0, 100.0]), 5)[0] == 1
    edges = np.arange(11) / 10
    np.testing.assert_allclose(stratum_weights(edges, 0.75), [1, 1, 1, 1, 1, 1, 2, 4, 2, 1])
    np.testing.assert_allclose(stratum_weights(edges, 0.8), [1, 1, 1, 1, 1, 1, 1, 3, 3, 1])


def test_working_point_strata_are_over_represented(synthetic_survey, tmp_path, caplog):
    survey = synthetic_survey
    with caplog.at_level(logging.INFO, logger="lymannet.visample"):
        sample = draw_vi_sample(survey["catalogue"], tmp_path, n=200, seed=3)  # root: the SRCROOT header
    assert "stratified in PROB, working point 0.800" in caplog.text
    design = sample.design
    assert design.score == "PROB" and design.working_point == 0.8 and sample.n_drawn == 200
    # WPPROB 0.8 is the edge between strata 7 and 8: both weigh 3, the others 1.
    assert design.n_drawn[7:9].min() >= 2.5 * np.delete(design.n_drawn, [7, 8]).max()
    table, out = read_sample(tmp_path)
    p_by_stratum = table.groupby("STRATUM")["P_INCLUSION"].first()
    assert p_by_stratum[[7, 8]].min() > p_by_stratum.drop([7, 8]).max()
    # Flagged rows (ZWARN != 0), with or without values, are never drawn.
    truth = survey["truth"].set_index("TARGETID")
    assert (truth.loc[table["TARGETID"], "ZWARN"] == 0).all()
    # The weights: a stratum's sum to its eligible objects, the sample's to all eligible rows.
    n_eligible = int((truth["ZWARN"] == 0).sum())
    assert design.n_eligible.sum() == n_eligible and table["WEIGHT"].sum() == pytest.approx(n_eligible)
    np.testing.assert_allclose(table.groupby("STRATUM")["WEIGHT"].sum(), design.n_eligible)
    np.testing.assert_allclose(table["WEIGHT"], 1 / table["P_INCLUSION"])
    # ... so the weighted VI verdicts give the purity of the selection PROB > WPPROB.
    selected = table[table["PROB"] > 0.8]
    verdict = truth.loc[selected["TARGETID"], "TRUE"].to_numpy()
    estimate = np.sum(selected["WEIGHT"] * verdict) / selected["WEIGHT"].sum()
    eligible = truth[(truth["ZWARN"] == 0) & (truth["PROB"] > 0.8)]
    assert abs(estimate - eligible["TRUE"].mean()) < 0.08
    # Columns: the score, ZERR; the VI coadd's primary header says how the sample was drawn.
    assert {"PROB", "ZERR", "STRATUM", "STRATUM_LO", "STRATUM_HI", "P_INCLUSION", "WEIGHT"} <= set(table)
    assert "CONFIDENCE" not in table and np.allclose(table["ZERR"], 0.001)
    header = out[0].read_header()
    assert header["VISCORE"] == "PROB" and header["VIWP"] == 0.8 and header["VINDRAW"] == 200
    assert header["VINELIG"] == n_eligible and header["VISEED"] == 3 and header["WPPROB"] == 0.8
    # Spectra: FIBERMAP rows and every arm HDU (MASK and RESOLUTION too) as in the source coadds.
    assert [hdu.get_extname() for hdu in out][1:] == ["FIBERMAP"] + [
        f"{arm}_{kind}" for arm in ARMS for kind in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")
    ]
    np.testing.assert_array_equal(out["FIBERMAP"].read()["TARGETID"], table["TARGETID"])
    assert out["B_MASK"].read().dtype == np.uint32 and out["B_RESOLUTION"].get_dims() == [200, 11, 60]
    assert out["B_FLUX"].read_header()["BUNIT"] == "10**-17 erg/(s cm2 Angstrom)"
    assert out["FIBERMAP"].read_header()["TUNIT2"] == "deg"  # TARGET_RA's unit, as in the source
    assert_rows_copied(table, out, survey["root"])
    assert (
        table["COADD"].nunique() == 2 and table["COADD"].is_monotonic_increasing
    )  # in file order, not by PROB
    coadd = CoaddFile(tmp_path / "coadd-vi.fits")
    assert coadd.n_rows == 200 and coadd.is_target.all() and coadd.read().flux["Z"].shape == (200, 40)


def test_working_point_argument_and_uncalibrated_catalogues(synthetic_survey, tmp_path, caplog):
    survey = synthetic_survey
    sample = draw_vi_sample(survey["catalogue"], tmp_path / "wp", n=100, working_point=0.35)
    assert sample.design.working_point == 0.35 and sample.design.n_drawn.argmax() == 3
    # PROB NaN everywhere (QuasarNET's uncalibrated weights): strata of CONFIDENCE around CTHRESH.
    table = dict(survey["table"], PROB=np.full(len(survey["table"]["TARGETID"]), np.nan))
    catalogue = write_catalogue(tmp_path / "uncalibrated.fits", table, {"WPPROB": 0.9, "CTHRESH": 0.3})
    with caplog.at_level(logging.INFO, logger="lymannet.visample"):
        sample = draw_vi_sample(catalogue, tmp_path / "conf", n=50, coadd_root=survey["root"])
    assert sample.design.score == "CONFIDENCE" and sample.design.working_point == 0.3
    assert "stratified in CONFIDENCE (the catalogue has no calibrated PROB)" in caplog.text
    drawn = pd.read_csv(tmp_path / "conf" / "vi_sample.csv")
    assert "CONFIDENCE" in drawn and "PROB" not in drawn
    assert (survey["truth"].set_index("TARGETID").loc[drawn["TARGETID"], "ZWARN"] == 0).all()


# --- on real DESI spectra: QuasarNP's test coadd ---------------------------------------------


@pytest.fixture(scope="module")
def qnp_catalogue(tmp_path_factory, fixtures_dir) -> tuple[Path, Path]:
    """(catalogue.fits of QuasarNP's test coadd classified by its Keras weights, the coadd's folder)."""
    quasarnp = fixtures_dir / "quasarnp"
    out = tmp_path_factory.mktemp("qn")
    classify_survey(WEIGHTS, [str(quasarnp / "test_coadd.fits")], out, {"device": "cpu"})
    return out / "catalogue.fits", quasarnp


def test_fixture_sample_copies_the_spectra_and_repeats_with_its_seed(qnp_catalogue, tmp_path):
    catalogue, root = qnp_catalogue
    sample = draw_vi_sample(catalogue, tmp_path / "a", n=10, coadd_root=root, seed=0)
    table, out = read_sample(tmp_path / "a")
    assert len(table) == sample.n_drawn == 10 and "CONFIDENCE" in table  # Keras weights: uncalibrated
    assert 11 not in table["ROW"].to_numpy()  # no valid pixel: never classified, never drawn
    np.testing.assert_array_equal(out["FIBERMAP"].read()["TARGETID"], table["TARGETID"])
    assert [hdu.get_extname() for hdu in out][1:] == ["FIBERMAP"] + [
        f"{arm}_{kind}" for arm in ARMS for kind in ("WAVELENGTH", "FLUX", "IVAR")
    ]  # the source has no MASK
    assert out["B_FLUX"].read().dtype.kind == "f" and out["B_FLUX"].read().dtype.itemsize == 4
    assert out["B_WAVELENGTH"].read().dtype.itemsize == 8
    assert_rows_copied(table, out, root)
    coadd = CoaddFile(tmp_path / "a" / "coadd-vi.fits")
    assert coadd.n_rows == 10 and list(coadd.fibermap["TARGETID"]) == list(table["TARGETID"])
    assert coadd.read().flux["R"].shape == (10, 2326)
    # 6 non-empty strata for 10 draws: every one drawn from, so the weights cover the catalogue.
    assert table["WEIGHT"].sum() == pytest.approx(eligible_count(catalogue))
    # The same seed draws the same sample and writes the same files; another seed another sample.
    draw_vi_sample(catalogue, tmp_path / "b", n=10, coadd_root=root, seed=0)
    assert (tmp_path / "a" / "vi_sample.csv").read_bytes() == (tmp_path / "b" / "vi_sample.csv").read_bytes()
    np.testing.assert_array_equal(
        fitsio.read(str(tmp_path / "b" / "coadd-vi.fits"), ext="Z_FLUX"), out["Z_FLUX"].read()
    )
    draw_vi_sample(catalogue, tmp_path / "c", n=10, coadd_root=root, seed=1)
    assert set(pd.read_csv(tmp_path / "c" / "vi_sample.csv")["TARGETID"]) != set(table["TARGETID"])
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


def test_coadd_root_defaults_to_the_srcroot_header(qnp_catalogue, tmp_path):
    catalogue, root = qnp_catalogue
    copy = tmp_path / "catalogue.fits"
    shutil.copy(catalogue, copy)
    with fitsio.FITS(str(copy), "rw") as fits:
        fits["QN_RR"].write_key("SRCROOT", str(root))
    assert draw_vi_sample(copy, tmp_path / "out", n=3).n_drawn == 3


def test_several_coadds_of_a_survey(survey_folder, tmp_path, caplog):
    """QuasarNP's coadd (no FIBERMAP, MASK or RESOLUTION) beside DESI EDR coadds (full format); the
    survey's unreadable coadds are in failures.tsv, not in the catalogue."""
    root = survey_folder
    out = tmp_path / "qn"
    classify_survey(WEIGHTS, [str(root / "*/*/*/*/coadd-*.fits")], out, {"device": "cpu"})
    n_eligible = eligible_count(out / "catalogue.fits")
    with caplog.at_level(logging.WARNING, logger="lymannet.visample"):
        sample = draw_vi_sample(out / "catalogue.fits", tmp_path / "vi", n=100, coadd_root=root)
    assert (
        sample.n_drawn == n_eligible
        and f"{n_eligible} eligible rows, fewer than the 100 asked" in caplog.text
    )
    assert "coadd-main-dark-10016.fits has no B_MASK HDU" in caplog.text
    table, vi = read_sample(tmp_path / "vi")
    assert table["COADD"].nunique() == 3 and (table["WEIGHT"] == 1).all()
    fibermap = vi["FIBERMAP"].read()
    np.testing.assert_array_equal(fibermap["TARGETID"], table["TARGETID"])
    assert {"OBJTYPE", "TARGET_RA", "COADD_FIBERSTATUS"} <= set(fibermap.dtype.names)  # the union of columns
    assert "B_MASK" not in {hdu.get_extname() for hdu in vi}
    assert_rows_copied(table, vi, root)
    assert CoaddFile(tmp_path / "vi" / "coadd-vi.fits").n_rows == n_eligible
    # A per-file catalogue of a full-format coadd keeps MASK (uint32) and RESOLUTION, bit for bit.
    draw_vi_sample(
        out / "sv3/dark/260/26065/coadd-sv3-dark-26065.fits", tmp_path / "edr", n=5, coadd_root=root
    )
    table, edr = read_sample(tmp_path / "edr")
    assert edr["R_MASK"].read().dtype == np.uint32 and len(edr["R_RESOLUTION"].get_dims()) == 3
    assert_rows_copied(table, edr, root)
    from astropy.io import fits as astropy_fits  # another FITS reader opens it without complaint

    with astropy_fits.open(tmp_path / "edr" / "coadd-vi.fits") as hdus:
        hdus.verify("exception")


# --- errors ----------------------------------------------------------------------------------


def test_errors_name_the_file(qnp_catalogue, tmp_path, caplog):
    catalogue, root = qnp_catalogue
    with pytest.raises(InputFileError, match=r"nowhere\.fits: catalogue does not exist"):
        draw_vi_sample(tmp_path / "nowhere.fits", tmp_path / "out", coadd_root=root)
    other = tmp_path / "other.fits"
    fitsio.write(str(other), np.zeros(3, [("A", "f4")]), extname="OTHER")
    with pytest.raises(InputFileError, match=r"other\.fits: no QN_RR extension"):
        draw_vi_sample(other, tmp_path / "out", coadd_root=root)
    with pytest.raises(ConfigError, match="n >= 1"):
        draw_vi_sample(catalogue, tmp_path / "out", n=0, coadd_root=root)
    old = write_catalogue(
        tmp_path / "old.fits",
        {"TARGETID": [1], "COADD": ["test_coadd.fits"], "ROW": [1], "Z": [2.0], "CONFIDENCE": [0.5]},
        {"CTHRESH": 0.5},
    )
    with pytest.raises(InputFileError, match=r"old\.fits: no SRCROOT header"):  # per-file or older catalogues
        draw_vi_sample(old, tmp_path / "out", n=3)
    with pytest.raises(
        InputFileError, match=r"empty/test_coadd\.fits: coadd of catalogue rows .* does not exist"
    ):
        draw_vi_sample(catalogue, tmp_path / "out", coadd_root=tmp_path / "empty")
    (tmp_path / "cut").mkdir()
    without_hdu(root / "test_coadd.fits", tmp_path / "cut" / "test_coadd.fits", "R_IVAR")
    with pytest.raises(InputFileError, match=r"cut/test_coadd\.fits: missing HDU R_IVAR"):
        draw_vi_sample(catalogue, tmp_path / "out", coadd_root=tmp_path / "cut")
    # Fewer eligible rows than asked: all of them, with a warning.
    with caplog.at_level(logging.WARNING, logger="lymannet.visample"):
        assert draw_vi_sample(catalogue, tmp_path / "all", n=1000, coadd_root=root).n_drawn == eligible_count(
            catalogue
        )
    assert "fewer than the 1000 asked for: drawing them all" in caplog.text
    assert not (tmp_path / "out").exists()  # nothing written by a failed draw


def test_coadds_of_other_grids_or_targets_are_refused(tmp_path):
    root = tmp_path / "root"
    write_synthetic_coadd(root / "a.fits", np.arange(1, 4), seed=1)
    write_synthetic_coadd(root / "b.fits", np.arange(11, 14), seed=2, shift_pixels=1)
    table = {
        "TARGETID": [1, 2, 11],
        "COADD": ["a.fits", "a.fits", "b.fits"],
        "ROW": [0, 1, 0],
        "Z": [2.0] * 3,
        "CONFIDENCE": [0.1, 0.5, 0.9],
        "ZWARN": [0, 0, 0],
    }
    catalogue = write_catalogue(tmp_path / "cat.fits", table, {"SRCROOT": str(root)})
    with pytest.raises(
        InputFileError,
        match=r"b\.fits: B_WAVELENGTH \(60 pixels, 3600\.8000-.*differs from that of " r".*a\.fits",
    ):
        draw_vi_sample(catalogue, tmp_path / "out", n=3)
    table["TARGETID"] = [1, 5, 11]
    table["COADD"] = ["a.fits"] * 3
    table["ROW"] = [0, 1, 2]
    catalogue = write_catalogue(tmp_path / "cat.fits", table, {"SRCROOT": str(root)})
    with pytest.raises(InputFileError, match=r"a\.fits: FIBERMAP row 1 has TARGETID 2, the catalogue says 5"):
        draw_vi_sample(catalogue, tmp_path / "out", n=3)
    table["TARGETID"], table["ROW"] = [1, 2, 3], [0, 1, 7]
    catalogue = write_catalogue(tmp_path / "cat.fits", table, {"SRCROOT": str(root)})
    with pytest.raises(InputFileError, match=r"a\.fits: catalogue row 7 is beyond the 3 rows"):
        draw_vi_sample(catalogue, tmp_path / "out", n=3)


# --- the command and the workflow ------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("lymannet")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)


def test_command_line(qnp_catalogue, tmp_path):
    catalogue, root = qnp_catalogue
    result = run_cli("vi-sample", "--help")
    for flag in ("--output", "--n", "--coadd-root", "--seed", "--working-point"):
        assert flag in result.stdout
    result = run_cli(
        "vi-sample",
        str(catalogue),
        "--output",
        str(tmp_path / "vi"),
        "--n",
        "4",
        "--coadd-root",
        str(root),
        "--seed",
        "2",
        "--working-point",
        "0.9",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "4 of 24 eligible objects drawn, stratified in CONFIDENCE (working point 0.9, seed 2)"
        in result.stdout
    )
    assert len(pd.read_csv(tmp_path / "vi" / "vi_sample.csv")) == 4
    result = run_cli("vi-sample", str(tmp_path / "missing.fits"), "--output", str(tmp_path / "x"))
    assert result.returncode == 1 and "lymannet: error: " in result.stderr
    assert "missing.fits: catalogue does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_defaults_are_the_functions():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["classify"]["additionalProperties"]["properties"]["vi_sample"]
    parameters = inspect.signature(draw_vi_sample).parameters
    for name, prop in entry["properties"].items():
        assert parameters[name].default == prop["default"]
    assert entry["default"] == {"n": 100, "seed": 0}


def test_workflow_rule_draws_from_the_merged_catalogue(fixtures_dir, tmp_path):
    from conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path / "workflow")
    coadds = tmp_path / "coadds" / "main"
    coadds.mkdir(parents=True)
    shutil.copy(fixtures_dir / "quasarnp" / "test_coadd.fits", coadds / "coadd-main-dark-10016.fits")
    extra = {
        "classify": {
            "qn": {
                "model": str(WEIGHTS),
                "files": str(tmp_path / "coadds" / "*" / "coadd-*.fits"),
                "device": "cpu",
                "vi_sample": {"n": 5, "seed": 4},
            }
        }
    }
    (workdir / "extra.yaml").write_text(yaml.safe_dump(extra))
    snakemake(
        workdir,
        "--configfile",
        "config/config.yaml",
        "extra.yaml",
        "--cores",
        "2",
        "results/classify/qn/vi_sample/coadd-vi.fits",
        timeout=600,
    )
    out = workdir / "results" / "classify" / "qn" / "vi_sample"
    table = pd.read_csv(out / "vi_sample.csv")
    assert len(table) == 5 and set(table["COADD"]) == {"main/coadd-main-dark-10016.fits"}
    assert fitsio.read_header(str(out / "coadd-vi.fits"), 0)["VISEED"] == 4
    assert (
        "5 of 24 eligible rows drawn" in (workdir / "logs" / "classify" / "qn" / "vi_sample.log").read_text()
    )
