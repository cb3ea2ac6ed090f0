"""lymannet.ingest: coadd files to a spectra file: selection, truth join, chunking, bad input (each
failure names its file and writes nothing), the ingest script. (Reading and rebinning the coadds
themselves: tests/test_coadd.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd
import pytest

from conftest import EDR_HEALPIX, EDR_TILE, QUASARNP, REPO, make_coadd, need, spoil_pixels
from lymannet.desi import ARMS
from lymannet.errors import ConfigError, InputFileError
from lymannet.grid import Grid
from lymannet.ingest import ingest
from lymannet.preprocess import network_input, rebin
from lymannet.spectra import SpectraFile, read_spectra

SCRIPT = REPO / "workflow" / "scripts" / "ingest.py"

LINEAR_GRID = Grid.from_config({"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0})
OPTIONS = {"fiberstatus": "zero_only", "missing_truth": "error", "chunk_rows": 4096}


def write_truth_csv(path: Path, targetids, z=None, **extra) -> Path:
    table = pd.DataFrame(
        {
            "TARGETID": [str(t) for t in targetids],
            "Z": np.linspace(2.0, 3.0, len(targetids)) if z is None else z,
            "SPECTYPE": "LBG",
            **extra,
        }
    )
    table.to_csv(path, index=False)
    return path


def assert_nothing_written(folder: Path, output: Path) -> None:
    assert not output.exists()
    leftovers = [p.name for p in folder.rglob("*.part")]
    assert not leftovers, leftovers


def bad_input(
    tmp_path: Path,
    match: str,
    coadds: list[Path],
    truth: Path | None = None,
    grid: Grid = LINEAR_GRID,
    **options,
) -> InputFileError:
    """Ingest must fail with InputFileError matching `match`, naming a file, writing nothing."""
    output = tmp_path / "out" / "ingested.fits"
    with pytest.raises(InputFileError, match=match) as caught:
        ingest(
            [str(p) for p in coadds],
            None if truth is None else str(truth),
            grid,
            str(output),
            "demo",
            {**OPTIONS, **options},
        )
    assert caught.value.path, "the error must name the file"
    assert "\n" not in str(caught.value)
    assert_nothing_written(tmp_path, output)
    return caught.value


# --------------------------------------------------------------------------- the QuasarNP file


def test_ingest_quasarnp_file_writes_both_layers(tmp_path):
    expected = np.load(need(QUASARNP / "coadd_x.npy"))
    output = tmp_path / "ingested.fits"
    counts = ingest([str(QUASARNP / "test_coadd.fits")], None, Grid.quasarnet(), str(output), "qnp", OPTIONS)
    assert counts["read"] == 25 and counts["kept"] == 24
    assert counts["dropped_no_valid_pixel"] == 1 and counts["dropped_not_target"] == 0
    with SpectraFile(output) as spectra:
        network, native = spectra.read("network"), spectra.read("native")
        record = spectra.provenance
    assert network.truth["TARGETID"].tolist() == [i for i in range(25) if i != 11]
    assert (network.truth["PARENT_TARGETID"] == network.truth["TARGETID"]).all()
    assert (network.truth["SOURCE"] == "qnp").all() and network.truth["Z"].isna().all()
    # (the FITS header keeps GRIDSTRT to ~15 digits, so compare the grid approximately)
    assert np.allclose(network.grid.wavelength, Grid.quasarnet().wavelength, rtol=1e-12)
    assert native.flux.shape == (24, 7781)
    assert np.abs(network_input(network.flux, network.ivar)[:, 0] - expected).max() < 1e-4
    assert set(record["inputs"]) == {"coadd0"} and record["config"]["dataset"] == "qnp"
    assert_nothing_written(tmp_path, tmp_path / "nothing")


# --------------------------------------------------------------------------- DESI EDR files


EDR_TRUTH_IDS = [39633297352951412, 39633300968442591, 39627866878511337, 39627866878514741]


def test_edr_files_ingest_with_csv_truth(tmp_path):
    need(EDR_TILE), need(EDR_HEALPIX)
    truth = write_truth_csv(tmp_path / "vi.csv", EDR_TRUTH_IDS, VI_QUALITY=[4, 3, 2, 1])
    output = tmp_path / "edr.fits"
    counts = ingest([str(EDR_TILE), str(EDR_HEALPIX)], str(truth), LINEAR_GRID, str(output), "edr", OPTIONS)
    # Tile file: 3 empty/negative-TARGETID fibres, 1 target with COADD_FIBERSTATUS 512, 1 good target.
    # Healpix file: 2 negative TARGETIDs, 1 sky fibre, 2 good targets.
    assert counts["read"] == 10 and counts["dropped_not_target"] == 7
    assert counts["kept"] == 3 and counts["dropped_no_valid_pixel"] == 0
    spectra = read_spectra(output)
    assert spectra.truth["TARGETID"].tolist() == [39633300968442591, 39627866878511337, 39627866878514741]
    assert spectra.truth["VI_QUALITY"].tolist() == [3, 2, 1]
    assert np.allclose(spectra.truth["Z"], [2 + 1 / 3, 2 + 2 / 3, 3.0])
    assert (spectra.truth["EXPTIME"] > 0).all()  # from FIBERMAP COADD_EXPTIME: the CSV has none
    assert (spectra.ivar.sum(axis=1) > 0).all() and spectra.flux.shape == (3, LINEAR_GRID.n_pixels)
    native = read_spectra(output, "native")
    # The network layer is the QuasarNET rebinning of the native layer.
    flux, ivar = rebin(native.wavelength, native.flux, native.ivar, LINEAR_GRID)
    np.testing.assert_allclose(spectra.ivar, ivar, rtol=1e-5, atol=0)
    np.testing.assert_allclose(spectra.flux, flux, rtol=1e-4, atol=1e-6 * np.abs(flux).max())


def test_edr_fiberstatus_any_keeps_flagged_target_then_drops_it_empty(tmp_path):
    truth = write_truth_csv(tmp_path / "vi.csv", EDR_TRUTH_IDS)
    output = tmp_path / "edr.fits"
    counts = ingest(
        [str(need(EDR_TILE))], str(truth), LINEAR_GRID, str(output), "edr", {**OPTIONS, "fiberstatus": "any"}
    )
    # The COADD_FIBERSTATUS=512 target is now selected, but has no valid pixel.
    assert counts["dropped_not_target"] == 3 and counts["dropped_no_valid_pixel"] == 1 and counts["kept"] == 1
    assert read_spectra(output).truth["TARGETID"].tolist() == [39633300968442591]
    assert_nothing_written(tmp_path, tmp_path / "nothing")


# --------------------------------------------------------------------------- pixel cleaning, chunks


def test_empty_spectra_are_dropped_and_bad_pixels_stay_zero(tmp_path):
    coadd_path = make_coadd(tmp_path, n=8, edit=spoil_pixels)
    output = tmp_path / "out.fits"
    counts = ingest([str(coadd_path)], None, LINEAR_GRID, str(output), "demo", OPTIONS)
    assert counts["dropped_not_target"] == 2 and counts["dropped_no_valid_pixel"] == 1 and counts["kept"] == 5
    native = read_spectra(output, "native")
    assert native.truth["TARGETID"].tolist() == [1001, 1002, 1003, 1007, 1008]
    b_start = 0  # B starts the native grid
    assert (native.ivar[0, b_start + 100 : b_start + 110] == 0).all()
    assert np.isfinite(native.flux).all() and (native.flux[native.ivar == 0] == 0).all()
    assert_nothing_written(tmp_path, tmp_path / "nothing")


def test_chunking_does_not_change_the_output(tmp_path):
    coadd_path = make_coadd(tmp_path, n=9, edit=spoil_pixels)
    outputs = []
    for chunk_rows in (2, 4096):
        output = tmp_path / f"out{chunk_rows}.fits"
        ingest(
            [str(coadd_path)],
            None,
            Grid.quasarnet(),
            str(output),
            "demo",
            {**OPTIONS, "chunk_rows": chunk_rows},
        )
        outputs.append((read_spectra(output), read_spectra(output, "native")))
    for small, large in zip(*outputs):
        np.testing.assert_array_equal(small.flux, large.flux)
        np.testing.assert_array_equal(small.ivar, large.ivar)
        assert small.truth["TARGETID"].tolist() == large.truth["TARGETID"].tolist()


# --------------------------------------------------------------------------- truth catalogues


def test_fits_truth_with_truth_extension_and_missing_truth_drop(tmp_path):
    coadd_path = make_coadd(tmp_path, n=5)
    other = np.zeros(2, dtype=[("A", "i4")])
    truth = np.zeros(
        4,
        dtype=[
            ("TARGETID", ">i8"),
            ("Z", ">f8"),
            ("SPECTYPE", "S6"),
            ("TEMPLATE", "i2"),
            ("COEFF", "f4", (3,)),
            ("RANK", "i4"),
        ],
    )
    truth["TARGETID"] = [1001, 1002, 1003, 1005]
    truth["Z"] = [2.1, 2.2, 2.3, 2.5]
    truth["SPECTYPE"] = [b"LBG", b"QSO", b"ELG", b"LBG"]
    truth["RANK"] = [1, 2, 3, 4]
    truth_path = tmp_path / "truth.fits"
    with fitsio.FITS(str(truth_path), "rw", clobber=True) as fits:
        fits.write(other, extname="OTHER")  # the TRUTH extension wins over the first table
        fits.write(truth, extname="TRUTH")
    output = tmp_path / "out.fits"
    counts = ingest(
        [str(coadd_path)],
        str(truth_path),
        LINEAR_GRID,
        str(output),
        "demo",
        {**OPTIONS, "missing_truth": "drop"},
    )
    assert counts["dropped_missing_truth"] == 1 and counts["kept"] == 4
    result = read_spectra(output).truth
    assert result["TARGETID"].tolist() == [1001, 1002, 1003, 1005]
    assert result["SPECTYPE"].tolist() == ["LBG", "QSO", "ELG", "LBG"]
    assert result["RANK"].tolist() == [1, 2, 3, 4] and "COEFF" not in result
    assert np.allclose(result["MAG_R"], 22.5) and np.allclose(result["EXPTIME"], 7200)


def test_missing_truth_error(tmp_path):
    coadd_path = make_coadd(tmp_path, n=3)
    truth = write_truth_csv(tmp_path / "vi.csv", [1001, 1003])
    error = bad_input(
        tmp_path, r"1 of 3 targets have no row in the truth catalogue .*TARGETID 1002", [coadd_path], truth
    )
    assert error.path == str(coadd_path)


def test_non_numeric_redshift(tmp_path):
    coadd_path = make_coadd(tmp_path, n=2)
    truth = write_truth_csv(tmp_path / "vi.csv", [1001, 1002], z=["2.5", "high"])
    error = bad_input(
        tmp_path, r"column Z has non-numeric value 'high' \(TARGETID 1002\)", [coadd_path], truth
    )
    assert error.path == str(truth)


def test_nan_redshift(tmp_path):
    coadd_path = make_coadd(tmp_path, n=2)
    truth = write_truth_csv(tmp_path / "vi.csv", [1001, 1002], z=[2.5, np.nan])
    bad_input(tmp_path, r"Z is NaN for 1 targets \(first TARGETID 1002\)", [coadd_path], truth)


def test_duplicate_targetid_in_truth(tmp_path):
    coadd_path = make_coadd(tmp_path, n=2)
    truth = write_truth_csv(tmp_path / "vi.csv", [1001, 1002, 1002])
    bad_input(tmp_path, "duplicate TARGETID 1002 in the truth catalogue", [coadd_path], truth)


# --------------------------------------------------------------------------- bad coadd files


def test_missing_file(tmp_path):
    bad_input(tmp_path, "file does not exist", [tmp_path / "nope.fits"])


def test_missing_hdu(tmp_path):
    coadd_path = make_coadd(tmp_path, edit=lambda h: h.pop("R_IVAR"))
    error = bad_input(tmp_path, "missing HDU R_IVAR", [coadd_path])
    assert error.path == str(coadd_path)


def test_wavelength_and_flux_columns_disagree(tmp_path):
    def shorten(hdus):
        hdus["Z_FLUX"] = hdus["Z_FLUX"][:, :-10].copy()

    bad_input(
        tmp_path,
        r"Z_FLUX has shape \(6, 2871\), but Z_WAVELENGTH has 2881 pixels",
        [make_coadd(tmp_path, edit=shorten)],
    )


def test_flux_and_ivar_rows_disagree(tmp_path):
    def drop_row(hdus):
        hdus["B_IVAR"] = hdus["B_IVAR"][:-1].copy()

    bad_input(
        tmp_path,
        r"arms have different numbers of spectra \(.*B_IVAR 5",
        [make_coadd(tmp_path, edit=drop_row)],
    )


def test_fibermap_rows_disagree(tmp_path):
    def drop_row(hdus):
        hdus["FIBERMAP"] = hdus["FIBERMAP"][:-1].copy()

    bad_input(
        tmp_path, "FIBERMAP has 5 rows but the spectra HDUs have 6", [make_coadd(tmp_path, edit=drop_row)]
    )


def test_wavelength_off_the_native_grid(tmp_path):
    def shift(hdus):
        hdus["R_WAVELENGTH"] = hdus["R_WAVELENGTH"] + 0.3

    bad_input(tmp_path, "R_WAVELENGTH .* is not on the DESI native grid", [make_coadd(tmp_path, edit=shift)])


def test_truncated_file(tmp_path):
    data = need(EDR_HEALPIX).read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[: len(data) // 2])
    error = bad_input(tmp_path, "truncated file", [cut])
    assert error.path == str(cut)
    odd = tmp_path / "odd.fits"
    odd.write_bytes(data[: len(data) - 1000])
    bad_input(tmp_path, "truncated file", [odd])


def test_not_a_fits_file(tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_text("this is not FITS\n")
    bad_input(tmp_path, "not a readable FITS file", [junk])


def test_duplicate_targetid_within_a_file(tmp_path):
    def duplicate(hdus):
        hdus["FIBERMAP"]["TARGETID"][3] = 1001

    bad_input(
        tmp_path, r"duplicate TARGETID 1001 \(1 duplicated targets\)", [make_coadd(tmp_path, edit=duplicate)]
    )


def test_duplicate_targetid_across_files(tmp_path):
    first = make_coadd(tmp_path, "a.fits", n=3)
    second = make_coadd(tmp_path, "b.fits", n=3, seed=1)
    error = bad_input(tmp_path, f"TARGETID 1001 also appears in {first}", [first, second])
    assert error.path == str(second)


def test_grid_outside_the_data(tmp_path):
    grid = Grid.from_config({"kind": "linear", "wave_min": 10000.0, "wave_max": 12000.0, "step": 8.0})
    bad_input(
        tmp_path,
        r"network grid \(linear, 10000.0-12000.0 A\) does not cover the data " r"\(3600.0-9824.0 A\)",
        [make_coadd(tmp_path)],
        grid=grid,
    )
    mostly_outside = Grid.from_config({"kind": "log", "wave_min": 8000.0, "wave_max": 20000.0, "step": 0.001})
    bad_input(tmp_path, "only 22% of the grid overlaps", [make_coadd(tmp_path)], grid=mostly_outside)


# --------------------------------------------------------------------------- the script


def run_script(
    tmp_path: Path, coadds: list[Path], truth: Path | None, output: Path
) -> subprocess.CompletedProcess:
    """Run workflow/scripts/ingest.py as Snakemake would: a `snakemake` object in its globals."""
    spec = {
        "coadds": [str(p) for p in coadds],
        "truth": None if truth is None else str(truth),
        "output": str(output),
        "log": str(tmp_path / "ingest.log"),
        "script": str(SCRIPT),
        "grid": {"kind": "linear", "wave_min": 3600.0, "wave_max": 10000.0, "step": 8.0},
        "options": OPTIONS,
    }
    driver = textwrap.dedent("""
        import json, runpy, sys
        from types import SimpleNamespace
        spec = json.loads(sys.argv[1])
        inputs = {"coadds": spec["coadds"]}
        if spec["truth"]:
            inputs["truth"] = spec["truth"]
        class Input(SimpleNamespace):
            def get(self, key, default=None):
                return getattr(self, key, default)
        snakemake = SimpleNamespace(input=Input(**inputs), output=[spec["output"]], log=[spec["log"]],
                                    params=SimpleNamespace(grid=spec["grid"], options=spec["options"]),
                                    wildcards=SimpleNamespace(dataset="demo"))
        runpy.run_path(spec["script"], init_globals={"snakemake": snakemake}, run_name="__snakemake__")
    """)
    return subprocess.run(
        [sys.executable, "-c", driver, json.dumps(spec)], capture_output=True, text=True, timeout=120
    )


def test_script_end_to_end(tmp_path):
    coadd_path = make_coadd(tmp_path, n=4)
    truth = write_truth_csv(tmp_path / "vi.csv", [1001, 1002, 1003, 1004])
    output = tmp_path / "results" / "ingested" / "demo.fits"
    result = run_script(tmp_path, [coadd_path], truth, output)
    assert result.returncode == 0, result.stderr
    spectra = read_spectra(output)
    assert len(spectra) == 4 and (spectra.truth["SOURCE"] == "demo").all()
    assert "kept 4 of 4 spectra read" in (tmp_path / "ingest.log").read_text()


def test_script_bad_input_exits_1_with_one_line(tmp_path):
    coadd_path = make_coadd(tmp_path, edit=lambda h: h.pop("B_FLUX"))
    output = tmp_path / "results" / "ingested" / "demo.fits"
    result = run_script(tmp_path, [coadd_path], None, output)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"lymannet: error: {coadd_path}: missing HDU B_FLUX; is this a DESI coadd file?"
    assert_nothing_written(tmp_path, output)


def test_no_spectrum_with_data_fails_after_writing_and_cleans_up(tmp_path):
    def no_data(hdus):
        for arm in ARMS:
            hdus[f"{arm}_IVAR"][:] = 0

    bad_input(
        tmp_path, "none of the 3 target spectra has a valid pixel", [make_coadd(tmp_path, n=3, edit=no_data)]
    )


def test_no_target_at_all(tmp_path):
    def all_sky(hdus):
        hdus["FIBERMAP"]["OBJTYPE"] = b"SKY"

    bad_input(tmp_path, "no target spectra left to ingest", [make_coadd(tmp_path, n=3, edit=all_sky)])


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="fiberstatus"):
        ingest(
            [str(make_coadd(tmp_path))],
            None,
            LINEAR_GRID,
            str(tmp_path / "o.fits"),
            "demo",
            {"fiberstatus": "some"},
        )
