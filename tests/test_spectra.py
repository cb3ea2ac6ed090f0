"""The spectra-file format: round trip, streaming, atomicity and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from lymannet.errors import InputFileError
from lymannet.grid import Grid
from lymannet.spectra import SpectraFile, SpectraWriter, SpectrumSet, read_spectra, write_spectra

GRID = Grid.from_config({"kind": "linear", "wave_min": 3600, "wave_max": 10000, "step": 8})


def make_set(n: int, seed: int = 0) -> SpectrumSet:
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame(
        {
            "TARGETID": np.arange(n) + 100,
            "Z": rng.uniform(2, 4, n),
            "SPECTYPE": rng.choice(["LBG", "QSO", "ELG"], n),
        }
    )
    flux = rng.normal(size=(n, GRID.n_pixels)).astype("f4")
    ivar = rng.uniform(0, 2, size=(n, GRID.n_pixels)).astype("f4")
    return SpectrumSet(GRID.wavelength, flux, ivar, truth, GRID)


def test_round_trip_keeps_arrays_truth_grid_and_provenance(tmp_path):
    spectra = make_set(7)
    path = tmp_path / "set.fits"
    write_spectra(path, spectra, provenance={"config": {"a": 1}})
    with SpectraFile(path) as loaded:
        back = loaded.read()
        assert loaded.provenance == {"config": {"a": 1}}
    np.testing.assert_array_equal(back.flux, spectra.flux)
    np.testing.assert_array_equal(back.ivar, spectra.ivar)
    assert back.grid == GRID
    assert list(back.truth["TARGETID"]) == list(spectra.truth["TARGETID"])
    assert list(back.truth["SPECTYPE"]) == list(spectra.truth["SPECTYPE"])
    assert (
        back.truth["PARENT_TARGETID"] == back.truth["TARGETID"]
    ).all()  # observed objects are their own parent
    assert (back.truth["TEMPLATE"] == -1).all()
    # astronomers can open it with astropy
    with fits.open(path) as hdus:
        assert hdus["FLUX"].data.shape == (7, GRID.n_pixels)
        assert hdus["WAVELENGTH"].header["GRIDKIND"] == "linear"
        assert hdus["FLUX"].header["BUNIT"].startswith("1e-17")


def test_streaming_writer_in_chunks_equals_whole_write(tmp_path):
    spectra = make_set(10)
    with SpectraWriter(tmp_path / "chunks.fits", 10, GRID.wavelength, GRID) as writer:
        for start in range(0, 10, 3):
            part = spectra.take(slice(start, start + 3))
            writer.write(part.flux, part.ivar, part.truth)
    back = read_spectra(tmp_path / "chunks.fits")
    np.testing.assert_array_equal(back.flux, spectra.flux)
    with SpectraFile(tmp_path / "chunks.fits") as loaded:
        chunks = list(loaded.iter_chunks(chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 2]


def test_failed_write_leaves_nothing_behind(tmp_path):
    spectra = make_set(5)
    with pytest.raises(ValueError, match="rows written"):
        with SpectraWriter(tmp_path / "short.fits", 6, GRID.wavelength, GRID) as writer:
            writer.write(spectra.flux, spectra.ivar, spectra.truth)
    assert list(tmp_path.iterdir()) == []


def test_native_layer_round_trip(tmp_path):
    spectra = make_set(3)
    native_wave = np.arange(3600, 9824.1, 0.8)
    native = SpectrumSet(
        native_wave, np.ones((3, native_wave.size), "f4"), np.ones((3, native_wave.size), "f4"), spectra.truth
    )
    write_spectra(tmp_path / "both.fits", spectra, native)
    with SpectraFile(tmp_path / "both.fits") as loaded:
        assert loaded.has_native
        assert loaded.read("native", 1, 3).flux.shape == (2, native_wave.size)


def test_missing_hdu_truncated_and_foreign_files_are_named(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        SpectraFile(tmp_path / "absent.fits")
    foreign = tmp_path / "foreign.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(3), name="FLUX")]).writeto(foreign)
    with pytest.raises(InputFileError, match=r"foreign\.fits: missing HDU 'WAVELENGTH'"):
        SpectraFile(foreign)
    good = tmp_path / "good.fits"
    write_spectra(good, make_set(50))
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(InputFileError, match="truncated"):
        SpectraFile(truncated).read()


def test_shape_mismatch_is_refused():
    spectra = make_set(4)
    with pytest.raises(ValueError, match="expected"):
        SpectrumSet(GRID.wavelength, spectra.flux[:3], spectra.ivar, spectra.truth)


def test_log_grid_round_trips_exactly(tmp_path):
    from lymannet.grid import Grid as _Grid

    qnet = _Grid.quasarnet()
    spectra = make_set(2)
    log_set = SpectrumSet(
        qnet.wavelength,
        spectra.flux[:, : qnet.n_pixels],
        spectra.ivar[:, : qnet.n_pixels],
        spectra.truth,
        qnet,
    )
    write_spectra(tmp_path / "log.fits", log_set)
    assert read_spectra(tmp_path / "log.fits").grid == qnet
