"""4MOST files: the truth-list layout, per-spectrum files, reader errors naming the file."""

import numpy as np
import pytest

from lymannet.errors import InputFileError
from lymannet.fourmost import ingest, io

SLIDES_LINES = """FILE	Z_QSO	N_ABS	N_DLA
output/abs_templates/PAQS_absorber_000001.fits	2.2085301947956900	2	0
output/abs_templates/PAQS_absorber_000002.fits	3.486421113996830	14	1
"""


def test_reads_the_slides_layout(tmp_path):
    path = tmp_path / "list_templates_10000"
    path.write_text(SLIDES_LINES)
    truth = io.read_truth_list(path)
    assert list(truth.columns) == ["FILE", "Z_QSO", "N_ABS", "N_DLA"]
    assert truth["Z_QSO"][0] == pytest.approx(2.20853019479569) and truth["N_ABS"].tolist() == [2, 14]


def test_truth_list_round_trip(tmp_path):
    files = [f"spectra/PAQS_absorber_{i:06d}.fits" for i in (1, 2, 3)]
    z = np.array([2.2085301947956900, 3.1, 3.9999])
    io.write_truth_list(tmp_path / "truth.txt", files, z, [2, 5, 1], [0, 2, 1])
    text = (tmp_path / "truth.txt").read_text().splitlines()
    assert text[0] == "FILE\tZ_QSO\tN_ABS\tN_DLA" and text[1].split("\t")[0] == files[0]
    truth = io.read_truth_list(tmp_path / "truth.txt")
    assert truth["FILE"].tolist() == files and np.array_equal(truth["Z_QSO"], z)
    assert truth["N_DLA"].tolist() == [0, 2, 1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("FILE Z_QSO N_ABS\na.fits 2.1 3\n", "lacks column"),
        ("FILE Z_QSO N_ABS N_DLA\na.fits two 3 0\n", "not a number"),
        ("FILE Z_QSO N_ABS N_DLA\na.fits 2.0 1 2\n", "N_DLA must be"),
    ],
)
def test_bad_truth_lists(tmp_path, content, message):
    (tmp_path / "t.txt").write_text(content)
    with pytest.raises(InputFileError, match=message) as error:
        io.read_truth_list(tmp_path / "t.txt")
    assert "t.txt" in str(error.value)


def _spectra(tmp_path, flux=None, n_pixels=50):
    wave = 3671.5 + 0.25 * np.arange(n_pixels)
    io.write_spectrum(
        tmp_path / "a.fits", wave, np.ones(n_pixels) if flux is None else flux, np.ones(n_pixels)
    )
    return wave


def test_spectrum_round_trip_and_errors(tmp_path):
    wave = _spectra(tmp_path)
    w, f, iv, _ = io.read_spectrum(tmp_path / "a.fits")
    assert np.array_equal(w, wave) and f.dtype == np.float32
    with pytest.raises(InputFileError, match="not found") as error:
        io.read_spectrum(tmp_path / "missing.fits")
    assert "missing.fits" in str(error.value)
    with pytest.raises(InputFileError, match="pixels"):
        io.read_spectrum(tmp_path / "a.fits", expected_pixels=60)
    flux = np.ones(50)
    flux[3] = np.nan
    _spectra(tmp_path, flux)
    with pytest.raises(InputFileError, match="NaN") as error:
        io.read_spectrum(tmp_path / "a.fits")
    assert "a.fits" in str(error.value)


def test_chunked_reader_names_the_bad_file(tmp_path):
    wave = 3671.5 + 0.25 * np.arange(40)
    for name, n in (("s1.fits", 40), ("s2.fits", 40), ("s3.fits", 39)):
        io.write_spectrum(tmp_path / name, wave[:n], np.ones(n), np.ones(n))
    io.write_truth_list(
        tmp_path / "t.txt", ["s1.fits", "s2.fits", "s3.fits"], np.array([2.5, 3, 3.5]), [0, 0, 0], [0, 0, 0]
    )
    truth = io.read_truth_list(tmp_path / "t.txt")
    chunks = io.iter_spectra(tmp_path / "t.txt", truth, chunk=2)
    rows, _, flux, _, _ = next(chunks)
    assert flux.shape == (2, 40) and rows.tolist() == [0, 1]
    with pytest.raises(InputFileError, match="39 pixels") as error:
        next(chunks)
    assert "s3.fits" in str(error.value)


def test_write_simulation_files_and_examples(tmp_path):
    boost = {"train": 40.0, "val": 40.0, "test": 40.0}
    spec = {
        "n_spectra": 6,
        "chunk": 4,
        "absorbers": {"dla_boost": boost},
        "z": [3.0, 3.5],
        "bal": {"fraction": 0.5},
    }
    examples = io.write_simulation(
        spec, 3, tmp_path / "spectra", tmp_path / "list.txt", tmp_path / "dlas.fits"
    )
    truth = io.read_truth_list(tmp_path / "list.txt")
    assert truth["FILE"].tolist()[0] == "spectra/PAQS_absorber_000001.fits" and (truth["N_DLA"] >= 1).all()
    assert list(truth.columns) == ["FILE", "Z_QSO", "N_ABS", "N_DLA", "BAL", "SPLIT"]
    assert len(io.read_dla_table(tmp_path / "dlas.fits")) == truth["N_DLA"].sum()
    assert len(list((tmp_path / "spectra").iterdir())) == 6
    absorbers, bals = io.read_confusers(tmp_path / "dlas.fits")
    assert len(absorbers) >= truth["N_DLA"].sum() and (absorbers["LOG_NHI"] >= 17).all()
    assert len(bals) == truth["BAL"].sum() and (bals["V_MAX"] > bals["V_MIN"]).all()
    assert len(examples) == 4 and all(len(dlas) >= 1 for _, _, dlas in examples)
    # the simulator's split is the ingestion's
    assert (
        truth["SPLIT"].tolist()
        == ingest.assign_splits(truth["FILE"].tolist(), 3, {"train": 0.8, "val": 0.1, "test": 0.1}).tolist()
    )
