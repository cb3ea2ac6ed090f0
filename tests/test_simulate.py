"""lymannet.simulate: DESI coadd format, determinism, noise model, physics of the populations."""

from __future__ import annotations

import re
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd
import pytest

from lymannet import desi, simulate
from lymannet.physics import C_KMS
from lymannet.errors import ConfigError
from lymannet.lines import LYA
from lymannet.spectra import records_to_truth

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SMALL = {
    "mode": "continuous",
    "exptime": [1800, 7200],
    "mag_r": [22.5, 24.5],
    "populations": {
        "LBG": {"n": 30, "z": [2.2, 3.8], "z_mean": 3.0, "z_sigma": 0.22},
        "QSO": {"n": 10, "z": [1.8, 4.0]},
        "ELG": {"n": 10, "z": [0.05, 0.2]},
    },
}
TEMPLATES = {
    "mode": "templates",
    "exptime": [7200, 1800],
    "z_grid": {"start": 2.0, "stop": 4.0, "step": 0.1},
    "templates": [0, 1, 2, 3],
    "mag_levels": [22.5, 23.0, 23.5, 24.0, 24.5, 25.0],
    "copies": 2,
}


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    summary = simulate.simulate_dataset(
        SMALL, 7, "small", folder / "coadd.fits", folder / "truth.fits", chunk_rows=16
    )
    return folder / "coadd.fits", folder / "truth.fits", summary


def _objects(rows: list[dict]) -> pd.DataFrame:
    """A hand-made object table: draw parameters for a templates-mode set, then override."""
    base = (
        simulate.draw_objects(dict(TEMPLATES, copies=1, exptime=[7200]), 1, "hand").iloc[: len(rows)].copy()
    )
    for index, row in enumerate(rows):
        for key, value in row.items():
            base.iloc[index, base.columns.get_loc(key)] = value
    return base.reset_index(drop=True)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with fitsio.FITS(str(path)) as fits:
        return {
            f"{arm}_{kind}": fits[f"{arm}_{kind}"].read() for arm in desi.ARMS for kind in ("FLUX", "IVAR")
        }


def test_coadd_has_desi_hdus_dtypes_and_shapes(small_files):
    coadd, truth_path, summary = small_files
    assert summary["n_spectra"] == 50 and summary["n_by_spectype"] == {"ELG": 10, "LBG": 30, "QSO": 10}
    with fitsio.FITS(str(coadd)) as fits:
        names = [hdu.get_extname() for hdu in fits]
        expected = ["", "FIBERMAP"] + [
            f"{arm}_{k}" for arm in desi.ARMS for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK")
        ]
        assert names == expected
        for arm in desi.ARMS:
            wave = fits[f"{arm}_WAVELENGTH"].read()
            np.testing.assert_array_equal(wave, desi.arm_wavelength(arm))
            assert wave.dtype == np.float64
            for kind, dtype in (("FLUX", np.float32), ("IVAR", np.float32), ("MASK", np.int32)):
                data = fits[f"{arm}_{kind}"].read()
                assert data.dtype == dtype and data.shape == (50, wave.size)
            assert fits[f"{arm}_FLUX"].read_header()["BUNIT"] == "10**-17 erg/(s cm2 Angstrom)"
            assert not fits[f"{arm}_MASK"].read().any()
            assert np.all(fits[f"{arm}_IVAR"].read() > 0)
        fibermap = fits["FIBERMAP"].read()
    assert fibermap["TARGETID"].dtype.kind == "i" and fibermap["TARGETID"].dtype.itemsize == 8
    assert fibermap["COADD_FIBERSTATUS"].dtype.itemsize == 4 and not fibermap["COADD_FIBERSTATUS"].any()
    assert set(np.char.strip(fibermap["OBJTYPE"].astype(str))) == {"TGT"}
    for column, kind in (
        ("TARGET_RA", "f8"),
        ("TARGET_DEC", "f8"),
        ("FLUX_G", "f4"),
        ("FLUX_R", "f4"),
        ("FLUX_Z", "f4"),
    ):
        assert fibermap[column].dtype.newbyteorder("=") == np.dtype(kind)
    truth = records_to_truth(fitsio.read(str(truth_path), ext="TRUTH"))
    np.testing.assert_array_equal(truth["TARGETID"], fibermap["TARGETID"])
    assert truth["TARGETID"].is_unique and (truth["TARGETID"] > 0).all()
    # FLUX_R in nanomaggies matches the drawn r magnitude.
    np.testing.assert_allclose(fibermap["FLUX_R"], 10 ** (-0.4 * (truth["MAG_R"] - 22.5)), rtol=1e-4)
    for column in ("Z", "SPECTYPE", "TEMPLATE", "MAG_R", "EXPTIME", "LYA_EW", "Z_GRID", "BETA"):
        assert column in truth
    lbg = truth["SPECTYPE"] == "LBG"
    assert truth.loc[lbg, "TEMPLATE"].between(0, 3).all() and (truth.loc[~lbg, "TEMPLATE"] == -1).all()
    assert truth["Z_GRID"].isna().all()


def test_astropy_opens_both_files(small_files):
    from astropy.io import fits as afits
    from astropy.table import Table

    coadd, truth_path, _ = small_files
    with afits.open(coadd) as hdus:
        assert hdus["B_FLUX"].data.shape == (50, 2751)
    assert len(Table.read(truth_path, hdu="TRUTH")) == 50


@pytest.mark.skipif(not (FIXTURES / "desi-edr").is_dir(), reason="../shared/fixtures/desi-edr not available")
def test_hdu_layout_and_units_match_a_real_desi_coadd(small_files):
    real_path = FIXTURES / "desi-edr" / "coadd-sv3-dark-26065.fits"
    with fitsio.FITS(str(real_path)) as real, fitsio.FITS(str(small_files[0])) as ours:
        for arm in desi.ARMS:
            assert ours[f"{arm}_WAVELENGTH"].get_dims() == real[f"{arm}_WAVELENGTH"].get_dims()
            for kind in ("FLUX", "IVAR", "WAVELENGTH"):
                assert (
                    ours[f"{arm}_{kind}"].read_header()["BUNIT"]
                    == real[f"{arm}_{kind}"].read_header()["BUNIT"]
                )
        real_columns = set(real["FIBERMAP"].get_colnames())
        assert set(ours["FIBERMAP"].get_colnames()) <= real_columns


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [23, 24],
        "populations": {"LBG": {"n": 8, "z": [2, 4]}, "QSO": {"n": 4, "z": [2, 3]}},
    }
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate.simulate_dataset(
            spec, seed, "det", tmp_path / f"{name}.fits", tmp_path / f"{name}_t.fits", chunk_rows=5
        )
        runs[name] = _arrays(tmp_path / f"{name}.fits")
    for key in runs["a"]:
        assert runs["a"][key].tobytes() == runs["b"][key].tobytes()
        assert runs["a"][key].tobytes() != runs["c"][key].tobytes()
    truth_a = fitsio.read(str(tmp_path / "a_t.fits"), ext="TRUTH")
    truth_c = fitsio.read(str(tmp_path / "c_t.fits"), ext="TRUTH")
    np.testing.assert_array_equal(truth_a["TARGETID"], truth_c["TARGETID"])  # ids come from the name


def test_targetids_unique_across_datasets():
    ids = [simulate.draw_objects(SMALL, 1, name)["TARGETID"] for name in ("survey", "templates", "small")]
    assert len(set(np.concatenate(ids))) == sum(len(i) for i in ids)


def test_ivar_matches_the_drawn_noise():
    objects = simulate.draw_objects(SMALL, 11, "chi2")
    chunk = simulate.simulate_chunk(objects, np.random.default_rng(0))
    for arm, cut in simulate.instrument().slices.items():
        flux, ivar = chunk.arms[arm]
        chi2 = (flux - chunk.model[:, cut]) ** 2 * ivar
        assert chi2.mean() == pytest.approx(1.0, abs=0.02), arm


def test_model_is_normalised_to_mag_r():
    objects = simulate.draw_objects(SMALL, 2, "mags")
    model = simulate.render_model(objects, np.random.default_rng(1))
    np.testing.assert_allclose(simulate.ab_magnitude(model, "r"), objects["MAG_R"], atol=1e-3)


def test_emission_lines_land_at_redshifted_wavelengths():
    rows = [
        {
            "SPECTYPE": "ELG",
            "Z": 0.1,
            "TEMPLATE": -1,
            "LYA_EW": np.nan,
            "BETA": -1.2,
            "D4000": 1.1,
            "HALPHA_EW": 80.0,
            "LINE_SIGMA_KMS": 50.0,
            "FIBER_FRAC": 0.5,
        },
        {"SPECTYPE": "LBG", "Z": 3.0, "TEMPLATE": 3, "LYA_EW": 60.0, "LYA_VOFF_KMS": 300.0},
    ]
    model = simulate.render_model(_objects(rows), np.random.default_rng(2))
    wave = simulate.instrument().wave
    halpha = np.abs(wave - 6564.61 * 1.1) < 10  # ([NII] 6549/6585 sit 16-20 A away at z = 0.1)
    assert abs(wave[halpha][np.argmax(model[0][halpha])] - 6564.61 * 1.1) < 0.8
    oiii = np.abs(wave - 5008.24 * 1.1) < 10
    assert abs(wave[oiii][np.argmax(model[0][oiii])] - 5008.24 * 1.1) < 0.8
    lya_peak = wave[np.argmax(model[1])]
    assert abs(lya_peak - LYA * 4.0 * (1 + 300.0 / C_KMS)) < 2.0  # redshifted by +300 km/s


def test_interstellar_absorption_at_blueshifted_wavelength():
    rows = [
        {
            "SPECTYPE": "LBG",
            "Z": 2.5,
            "TEMPLATE": 1,
            "LYA_EW": 5.0,
            "ISM_VOFF_KMS": -150.0,
            "ISM_EW_SCALE": 1.5,
        }
    ]
    model = simulate.render_model(_objects(rows), np.random.default_rng(3))[0]
    wave = simulate.instrument().wave
    expected = 1334.53 * 3.5 * (1 - 150.0 / C_KMS)
    window = np.abs(wave - expected) < 15
    assert abs(wave[window][np.argmin(model[window])] - expected) < 1.0
    continuum = np.median(model[(wave > 1340 * 3.5) & (wave < 1380 * 3.5)])
    assert model[window].min() < 0.8 * continuum


def test_lyman_break():
    rows = [{"SPECTYPE": "LBG", "Z": z, "TEMPLATE": 0, "LYA_EW": -5.0} for z in (3.5, 3.6, 3.7, 3.8)]
    objects = _objects(rows)
    model = simulate.render_model(objects, np.random.default_rng(4))
    rest = simulate.instrument().wave[None, :] / (1 + objects["Z"].to_numpy()[:, None])
    below = model[(rest > 800) & (rest < 900)].mean()
    above = model[(rest > 1250) & (rest < 1500)].mean()
    assert below < 0.05 * above


def test_template_3_has_stronger_lya_than_template_0():
    objects = simulate.draw_objects(dict(TEMPLATES, copies=1, exptime=[7200]), 5, "ew")
    lbg = objects["SPECTYPE"] == "LBG"
    by_template = objects[lbg].groupby("TEMPLATE")["LYA_EW"]
    assert by_template.max()[0] < 0 < by_template.min()[1]
    assert by_template.min()[3] >= 30 and by_template.max()[3] <= 80
    rows = [
        {"SPECTYPE": "LBG", "Z": 3.0, "TEMPLATE": 0, "LYA_EW": -10.0},
        {"SPECTYPE": "LBG", "Z": 3.0, "TEMPLATE": 3, "LYA_EW": 50.0},
    ]
    model = simulate.render_model(_objects(rows), np.random.default_rng(6))
    wave = simulate.instrument().wave
    line = np.abs(wave - LYA * 4.0) < 20
    side = (wave > 1250 * 4) & (wave < 1290 * 4)
    ratio = model[:, line].sum(1) / np.median(model[:, side], axis=1)
    assert ratio[1] > 3 * ratio[0]


def test_templates_mode_counts_and_grid():
    objects = simulate.draw_objects(TEMPLATES, 1, "templates")
    assert len(objects) == 21 * 4 * 6 * 2 * 2
    assert (objects["SPECTYPE"] == "LBG").all()
    np.testing.assert_allclose(np.unique(objects["Z"]), np.round(np.arange(21) * 0.1 + 2.0, 10))
    np.testing.assert_array_equal(objects["Z"], objects["Z_GRID"])
    assert objects.groupby(["TEMPLATE", "MAG_R", "EXPTIME"]).size().eq(21 * 2).all()


def test_continuous_lbg_redshifts_follow_truncated_normal():
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [22.5, 24.5],
        "populations": {"LBG": {"n": 4000, "z": [2.2, 3.8], "z_mean": 3.0, "z_sigma": 0.22}},
    }
    objects = simulate.draw_objects(spec, 1, "normal")
    assert objects["Z"].between(2.2, 3.8).all()
    assert objects["Z"].mean() == pytest.approx(3.0, abs=0.02) and objects["Z"].std() == pytest.approx(
        0.22, abs=0.02
    )
    assert (objects["TEMPLATE"] == 0).mean() == pytest.approx(0.2, abs=0.03)


def test_overlap_regions_have_lower_ivar():
    inst = simulate.instrument()
    objects = _objects([{"SPECTYPE": "LBG", "Z": 2.5, "TEMPLATE": 1, "LYA_EW": 5.0, "MAG_R": 23.5}])
    model = simulate.render_model(objects, np.random.default_rng(7))
    ivar = {arm: simulate.observe(model, objects, np.random.default_rng(8))[arm][1][0] for arm in desi.ARMS}
    wave = {arm: inst.wave[cut] for arm, cut in inst.slices.items()}
    merged_overlap = sum(ivar[a][np.abs(wave[a] - 5780) < 5].mean() for a in ("B", "R"))
    beside = ivar["B"][(wave["B"] > 5500) & (wave["B"] < 5700)].mean()
    assert merged_overlap < 0.5 * beside
    merged_overlap = sum(ivar[a][np.abs(wave[a] - 7570) < 5].mean() for a in ("R", "Z"))
    assert merged_overlap < 0.5 * ivar["Z"][(wave["Z"] > 7700) & (wave["Z"] < 7900)].mean()


def test_lbg_signal_to_noise_is_desi_like():
    rows = [
        {"SPECTYPE": "LBG", "Z": 3.0, "TEMPLATE": 1, "LYA_EW": 5.0, "MAG_R": 24.0, "EXPTIME": t}
        for t in (7200, 1800)
    ]
    objects = _objects(rows)
    model = simulate.render_model(objects, np.random.default_rng(9))
    cut = simulate.instrument().slices["R"]
    snr = np.median(model[:, cut] * np.sqrt(1 / simulate.arm_variance(model, objects, "R")), axis=1)
    assert 0.3 < snr[0] < 3.0  # per 0.8 A pixel, r = 24, 2 h
    assert snr[1] < 0.6 * snr[0]


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "sideways"},
        dict(SMALL, populations={"STAR": {"n": 3, "z": [0, 0.1]}}),
        dict(SMALL, populations={"LBG": {"n": 3, "z": [4, 2]}}),
        dict(SMALL, exptime=[-5]),
        dict(TEMPLATES, templates=[5]),
    ],
)
def test_bad_config_raises_config_error(bad):
    with pytest.raises(ConfigError):
        simulate.draw_objects(bad, 1, "bad")


def test_failure_leaves_no_files(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(simulate.observing, "simulate_chunk", broken)  # where simulate_dataset looks it up
    with pytest.raises(RuntimeError):
        simulate.simulate_dataset(SMALL, 1, "x", tmp_path / "c.fits", tmp_path / "t.fits")
    assert list(tmp_path.iterdir()) == []


# --- contaminants a real LBG target selection lets in (issue 17, part 2) ----------------------

CONTAMINANTS = {
    "mode": "continuous",
    "exptime": [7200],
    "mag_r": [22.5, 24.5],
    "mag_slope": 0.35,
    "populations": {
        "LBG": {"n": 20, "z": [2.5, 3.5]},
        "QSO": {"n": 20, "z": [1.8, 4.0]},
        "GALAXY": {"n": 12, "z": [0.3, 1.6]},
        "STAR": {"n": 16, "mag_slope": 0.12},
    },
}


def _band_index(wave, flux, lo_band, hi_band):
    """Mean flux in hi_band over mean flux in lo_band (wavelength windows)."""
    mean = lambda band: flux[:, (wave >= band[0]) & (wave <= band[1])].mean(axis=1)  # noqa: E731
    return mean(hi_band) / mean(lo_band)


def test_bal_fraction_among_z_above_1p6_qsos():
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [22.5, 24.5],
        "populations": {"QSO": {"n": 6000, "z": [1.0, 4.0], "bal_fraction": 0.15}},
    }
    objects = simulate.draw_objects(spec, 3, "bal")
    high = objects["Z"] > 1.6
    bal = objects["SUBTYPE"] == "BAL"
    assert bal[high].mean() == pytest.approx(0.15, abs=0.015)
    assert not bal[~high].any()  # CIV leaves the DESI range below z ~ 1.6
    assert (
        objects.loc[bal, "BAL_DEPTH"].between(0.3, 0.95).all() and objects.loc[~bal, "BAL_DEPTH"].isna().all()
    )
    assert ((objects.loc[bal, "BAL_VMAX_KMS"] - objects.loc[bal, "BAL_VMIN_KMS"]) >= 2500).all()


def test_bal_trough_depth_and_position():
    base = {
        "SPECTYPE": "QSO",
        "Z": 2.5,
        "TEMPLATE": -1,
        "LYA_EW": np.nan,
        "BETA": -1.5,
        "LINE_SIGMA_KMS": 1900.0,
    }
    rows = [dict(base, SUBTYPE="BAL"), dict(base, SUBTYPE="")]
    objects = _objects(rows)
    objects["BAL_VMIN_KMS"], objects["BAL_VMAX_KMS"] = [3000.0, np.nan], [10000.0, np.nan]
    objects["BAL_DEPTH"] = [0.8, np.nan]
    model = simulate.render_model(objects, np.random.default_rng(0))
    wave = simulate.instrument().wave
    ratio = model[0] / model[1] * (model[1].sum() / model[0].sum())  # undo the r normalisation...
    ratio /= np.median(ratio[(wave > 1700 * 3.5) & (wave < 1850 * 3.5)])  # ...exactly, redward of CIV
    civ_mid = 1549.06 * 3.5 * (1 - 6500.0 / C_KMS)
    assert ratio[np.abs(wave - civ_mid) < 5].mean() == pytest.approx(0.2, abs=0.02)
    assert ratio[(wave > 1560 * 3.5) & (wave < 1700 * 3.5)].min() > 0.99  # nothing redward of CIV


def _stars(teffs):
    rows = [
        {"SPECTYPE": "STAR", "Z": 0.0, "TEMPLATE": -1, "LYA_EW": np.nan, "LINE_SIGMA_KMS": 40.0}
        for _ in teffs
    ]
    objects = _objects(rows)
    objects["SUBTYPE"] = ["M", "K", "G", "F"][: len(teffs)]
    objects["TEFF"] = teffs
    return objects, simulate.render_model(objects, np.random.default_rng(0))


def test_star_colours_and_molecular_bands():
    objects, model = _stars([3000.0, 4500.0, 5700.0, 6600.0])  # ~M4, K4, G2, F5
    g_r = simulate.ab_magnitude(model, "g") - simulate.ab_magnitude(model, "r")
    # Dwarf colours (Covey et al. 2007, AJ 134, 2398): g-r ~0.35 (F5), ~0.5 (G2), ~1.0 (K4), ~1.5 (M4).
    assert np.all(np.diff(g_r) < 0)  # redder towards M
    assert g_r[0] > 1.3 and 0.8 < g_r[1] < 1.2 and g_r[3] < 0.5
    wave = simulate.instrument().wave
    # TiO5 index (Reid, Hawley & Gizis 1995): flux 7126-7135 A over 7042-7046 A; ~0.3-0.5 at M4-M5.
    tio5 = _band_index(wave, model, (7042.0, 7046.0), (7126.0, 7135.0))
    assert tio5[0] < 0.5 and tio5[2] > 0.95 and tio5[3] > 0.95
    # Ca II K: deep in G/K dwarfs; H-beta: strongest in the F star.
    ca_k = _band_index(wave, model, (3905.0, 3915.0), (3932.0, 3937.0))
    assert ca_k[1] < 0.6 and ca_k[2] < 0.6
    h_beta = _band_index(wave, model, (4840.0, 4850.0), (4860.0, 4865.0))
    assert h_beta[3] < h_beta[2] < h_beta[1] and h_beta[3] < 0.75


def test_passive_galaxy_4000_break_and_weak_oii():
    rows = [{"SPECTYPE": "GALAXY", "Z": 0.6, "TEMPLATE": -1, "LYA_EW": np.nan, "LINE_SIGMA_KMS": 200.0}] * 2
    objects = _objects(rows)
    objects["SUBTYPE"], objects["D4000"], objects["BETA"], objects["OII_EW"] = (
        ["PASSIVE", "WEAKLINE"],
        [1.9, 1.3],
        [-0.6, -1.1],
        [1.0, 10.0],
    )
    model = simulate.render_model(objects, np.random.default_rng(0))
    wave = simulate.instrument().wave / 1.6
    f_nu = model * wave[None, :] ** 2
    # Dn4000 (Balogh et al. 1999): <f_nu> 4000-4100 A over 3850-3950 A, rest frame.
    dn4000 = _band_index(wave, f_nu, (3850.0, 3950.0), (4000.0, 4100.0))
    assert dn4000[0] > 1.7 and 1.2 < dn4000[1] < 1.5
    oii = _band_index(wave, model, (3700.0, 3715.0), (3724.0, 3733.0))
    assert oii[1] > 1.15 > oii[0]  # a weak but visible [OII] only in the weak-line galaxy
    assert _band_index(wave, model, (3905.0, 3915.0), (3932.0, 3937.0))[0] < 0.85  # Ca II K


def test_number_counts_slope_of_drawn_magnitudes():
    rng = np.random.default_rng(0)
    for slope in (0.35, 0.12, 0.0):
        mags = simulate.draw_magnitudes(rng, 40000, 22.5, 24.5, slope)
        assert mags.min() >= 22.5 and mags.max() <= 24.5
        counts, edges = np.histogram(mags, bins=10, range=(22.5, 24.5))
        fitted = np.polyfit(0.5 * (edges[1:] + edges[:-1]), np.log10(counts), 1)[0]
        assert fitted == pytest.approx(slope, abs=0.03)
    objects = simulate.draw_objects(
        dict(
            CONTAMINANTS,
            populations={"LBG": {"n": 4000, "z": [2.5, 3.5]}, "STAR": {"n": 4000, "mag_slope": 0.0}},
        ),
        1,
        "counts",
    )
    lbg = objects["SPECTYPE"] == "LBG"
    assert (objects.loc[lbg, "MAG_R"] > 23.5).mean() == pytest.approx(
        0.69, abs=0.03
    )  # 10^0.35 / (1 + 10^0.35)
    assert (objects.loc[~lbg, "MAG_R"] > 23.5).mean() == pytest.approx(0.5, abs=0.03)


def test_contaminant_dataset_truth_subtypes_and_select(tmp_path):
    from lymannet.selection import select_rows, validate_select

    summary = simulate.simulate_dataset(CONTAMINANTS, 5, "contam", tmp_path / "c.fits", tmp_path / "t.fits")
    assert summary["n_by_spectype"] == {"GALAXY": 12, "LBG": 20, "QSO": 20, "STAR": 16}
    truth = records_to_truth(fitsio.read(str(tmp_path / "t.fits"), ext="TRUTH"))
    assert set(truth.loc[truth["SPECTYPE"] == "STAR", "SUBTYPE"]) <= {"M", "K", "G", "F"}
    assert set(truth.loc[truth["SPECTYPE"] == "GALAXY", "SUBTYPE"]) == {"PASSIVE", "WEAKLINE"}
    assert set(truth.loc[truth["SPECTYPE"] == "QSO", "SUBTYPE"]) <= {"", "BAL"}
    assert (truth.loc[truth["SPECTYPE"] == "LBG", "SUBTYPE"] == "").all()
    assert truth.loc[truth["SPECTYPE"] == "STAR", "Z"].abs().max() < 0.002
    assert np.isfinite(truth.loc[truth["SPECTYPE"] == "STAR", "TEFF"]).all()
    with fitsio.FITS(str(tmp_path / "c.fits")) as fits:
        morph = np.char.strip(fits["FIBERMAP"].read()["MORPHTYPE"].astype(str))
    assert set(morph[(truth["SPECTYPE"] == "STAR").to_numpy()]) == {"PSF"}
    rng = np.random.default_rng(0)
    stars_gk = select_rows(truth, validate_select({"spectype": ["STAR"], "subtype": ["G", "K"]}, "t"), rng)
    assert stars_gk.sum() == truth["SUBTYPE"].isin(["G", "K"]).sum() > 0
    no_subtype = select_rows(truth, validate_select({"subtype": [""]}, "t"), rng)
    assert no_subtype.sum() == (truth["SUBTYPE"] == "").sum()
    assert select_rows(truth.drop(columns="SUBTYPE"), {"subtype": [""]}, rng).all()  # e.g. a real VI table


@pytest.mark.parametrize(
    "population, message",
    [
        (
            {"LBG": {"n": 5, "z": [2, 3], "bal_fraction": 0.1}},
            "populations.LBG: unknown key(s) ['bal_fraction']",
        ),
        (
            {"QSO": {"n": 5, "z": [2, 3], "bal_fraction": 1.5}},
            "populations.QSO.bal_fraction must be a number in [0, 1]",
        ),
        ({"STAR": {"n": 5, "subtypes": {"O": 1.0}}}, "populations.STAR.subtypes must map some of"),
        ({"GALAXY": {"n": 5, "z": [0.3, 2.5]}}, "outside the simulator's range"),
        (
            {"LBG": {"n": 5, "z": [2, 3], "mag_slope": 3}},
            "populations.LBG.mag_slope = 3.0 is outside [-1, 1]",
        ),
    ],
)
def test_contaminant_config_errors_name_the_key(population, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        simulate.draw_objects({"mode": "continuous", "populations": population}, 1, "bad")


def test_renderers_cover_every_spectype():
    assert set(simulate.RENDERERS) == set(simulate.SPECTYPES) == set(simulate.FIBRE_FRACTION)
    objects = simulate.draw_objects(CONTAMINANTS, 2, "all")
    model = simulate.render_model(objects, np.random.default_rng(1))
    assert np.isfinite(model).all()
    np.testing.assert_allclose(simulate.ab_magnitude(model, "r"), objects["MAG_R"], atol=1e-3)


# --- robustness options: physics and observing conditions training never sees (issue 17, part 4) --


def test_madau95_igm_values_and_difference_from_inoue14():
    from lymannet.igm import InoueIGM, MadauIGM

    wave = np.arange(3600.0, 9824.0, 0.8)
    madau = MadauIGM(wave)
    # Redward of Ly-beta (1+z) only Ly-alpha absorbs: tau = 3.6e-3 (lambda / 1215.67)^3.46 (Madau 1995 eq. 15).
    at = np.argmin(np.abs(wave - 5000.0))
    assert madau.tau(3.5)[0, at] == pytest.approx(3.6e-3 * (5000.0 / 1215.67) ** 3.46, rel=1e-9)
    assert madau.tau(3.5)[0, at] == pytest.approx(0.480, abs=0.002)
    assert madau.tau(3.5)[0, wave > 1215.67 * 4.5].max() == 0.0
    rest = wave / 4.0  # z = 3
    d_a = (
        lambda model: 1 - model(wave).transmission(3.0)[0, (rest > 1050) & (rest < 1170)].mean()
    )  # noqa: E731
    d_b = (
        lambda model: 1 - model(wave).transmission(3.0)[0, (rest > 920) & (rest < 1015)].mean()
    )  # noqa: E731
    assert d_a(MadauIGM) == pytest.approx(0.27, abs=0.02) and d_a(InoueIGM) == pytest.approx(0.25, abs=0.02)
    assert d_b(MadauIGM) - d_b(InoueIGM) > 0.08  # Madau's Ly-beta region is clearly more opaque


def test_igm_option_changes_only_the_forest():
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [23, 23],
        "populations": {"LBG": {"n": 40, "z": [3.2, 3.4]}},
    }
    inoue = simulate.draw_objects(spec, 1, "igm")
    madau = simulate.draw_objects(dict(spec, igm={"model": "madau95", "tau_scale": 1.5}), 1, "igm")
    assert set(inoue["IGM_MODEL"]) == {"inoue14"} and set(madau["IGM_MODEL"]) == {"madau95"}
    assert (madau["IGM_TAU_SCALE"] == 1.5).all()
    wave = simulate.instrument().wave
    a = simulate.render_model(inoue, np.random.default_rng(0))
    b = simulate.render_model(madau, np.random.default_rng(0))
    red = wave > LYA * 4.45
    forest = (wave > 1050 * 4.4) & (wave < 1170 * 4.2)
    ratio_red = b[:, red].sum(1) / a[:, red].sum(1)
    ratio_forest = b[:, forest].sum(1) / a[:, forest].sum(1) / ratio_red
    assert np.allclose(ratio_red, ratio_red[0], rtol=1e-3)  # only the r normalisation differs redward
    assert ratio_forest.mean() < 0.85  # 1.5 x Madau's tau: a darker forest


def test_sky_scale_multiplies_the_sky_variance():
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [24.5, 24.5],
        "populations": {"LBG": {"n": 4, "z": [3, 3]}},
    }
    dark = simulate.draw_objects(spec, 1, "sky")
    grey = simulate.draw_objects(dict(spec, sky_scale=2.0), 1, "sky")
    model = simulate.render_model(dark, np.random.default_rng(0)) * 0.0  # no object photons
    var_dark = simulate.arm_variance(model, dark, "R")
    var_grey = simulate.arm_variance(model, grey, "R")
    no_sky = simulate.arm_variance(model, dark.assign(SKY_SCALE=1e-9), "R")
    np.testing.assert_allclose(var_grey - no_sky, 2.0 * (var_dark - no_sky), rtol=3e-3)  # float32 differences
    assert (
        1.5 < np.median(var_grey / var_dark) < 2.0
    )  # sky ~2/3 of the no-object variance in R, read noise the rest


def test_exponential_lya_ew_distribution():
    spec = {
        "mode": "continuous",
        "exptime": [7200],
        "mag_r": [23, 24],
        "populations": {"LBG": {"n": 8000, "z": [2.5, 3.5]}, "QSO": {"n": 50, "z": [2, 3]}},
        "lya_ew": {"distribution": "exponential", "scale": 25.0, "absorber_fraction": 0.3},
    }
    objects = simulate.draw_objects(spec, 4, "ew")
    lbg = objects[objects["SPECTYPE"] == "LBG"]
    ew = lbg["LYA_EW"]
    assert (ew < 0).mean() == pytest.approx(0.3, abs=0.02)
    assert ew[ew > 0].mean() == pytest.approx(25.0, rel=0.05)
    assert (ew.abs() < 3).mean() > 0.1  # the weak-line gap the four templates never fill
    expected = np.select([ew < 0, ew < 10, ew < 30], [0, 1, 2], 3)
    np.testing.assert_array_equal(lbg["TEMPLATE"], expected)
    templates = simulate.draw_objects(dict(spec, lya_ew={}), 4, "ew")
    tew = templates.loc[templates["SPECTYPE"] == "LBG", "LYA_EW"]
    assert not (tew.abs() < 3).any()
    assert objects.loc[objects["SPECTYPE"] == "QSO", "LYA_EW"].isna().all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"igm": {"model": "meiksin"}},
            "datasets.bad.simulate.igm.model must be one of ['inoue14', 'madau95']",
        ),
        ({"igm": {"tau_scale": 0}}, "datasets.bad.simulate.igm.tau_scale must be a positive number"),
        ({"sky_scale": -1}, "datasets.bad.simulate.sky_scale must be a positive number"),
        (
            {"lya_ew": {"distribution": "gaussian"}},
            "lya_ew.distribution must be one of ['templates', 'exponential']",
        ),
    ],
)
def test_robustness_option_errors_name_the_key(extra, message):
    spec = {"mode": "continuous", "populations": {"LBG": {"n": 3, "z": [2, 3]}}, **extra}
    with pytest.raises(ConfigError, match=re.escape(message)):
        simulate.draw_objects(spec, 1, "bad")


def test_exponential_lya_ew_needs_continuous_mode():
    with pytest.raises(ConfigError, match="lya_ew.distribution 'exponential' needs mode continuous"):
        simulate.draw_objects(dict(TEMPLATES, lya_ew={"distribution": "exponential"}), 1, "bad")


def test_demo_config_has_the_contaminants_and_robustness_sets():
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    survey_spec = config["datasets"]["survey"]["simulate"]
    survey = simulate.draw_objects(survey_spec, config["seed"], "survey")
    share = survey["SPECTYPE"].value_counts(normalize=True)
    assert set(share.index) == set(simulate.SPECTYPES)
    assert 0.03 < share["STAR"] < 0.1 and 0.05 < share["GALAXY"] < 0.15
    qso = survey[(survey["SPECTYPE"] == "QSO") & (survey["Z"] > 1.6)]
    assert (qso["SUBTYPE"] == "BAL").mean() == pytest.approx(0.15, abs=0.035)
    assert (survey["MAG_R"] > 23.5).mean() > 0.6  # number counts: the faint half of the range dominates
    # Robustness sets: test-only, scored, and outside the training's choices.
    for name in ("robust_physics", "robust_observing"):
        assert config["holdout"][name]["fraction"] == 1.0
        assert {"dataset": name} in config["testsets"][f"test_{name}"]["members"]
    physics = config["datasets"]["robust_physics"]["simulate"]
    assert physics["igm"]["model"] == "madau95" and physics["lya_ew"]["distribution"] == "exponential"
    observing = config["datasets"]["robust_observing"]["simulate"]
    assert max(observing["exptime"]) < min(survey_spec["exptime"])
    assert observing["mag_r"][1] > survey_spec["mag_r"][1] and observing["sky_scale"] > 1.0


# --- domain randomisation (issue 26, part 3): free choices drawn per object, recorded in the truth --

RANDOMISE = {
    "igm_models": ["inoue14", "madau95"],
    "tau_scale": [0.8, 1.2],
    "lya_ew": {
        "distributions": ["templates", "exponential"],
        "scale": [15.0, 40.0],
        "absorber_fraction": [0.2, 0.4],
    },
    "line_width_scale": [0.8, 1.25],
    "ism_scale": [0.7, 1.4],
    "beta_shift": [-0.3, 0.3],
    "exptime": [5400, 9000],
    "sky_scale": [0.8, 1.25],
    "mag_faint": [24.25, 24.75],
}
RANDOMISED_SPEC = {
    "mode": "continuous",
    "exptime": [7200],
    "mag_r": [22.5, 24.5],
    "mag_slope": 0.35,
    "populations": {
        "LBG": {"n": 60, "z": [2.2, 3.8]},
        "QSO": {"n": 20, "z": [1.8, 4.0]},
        "ELG": {"n": 10, "z": [0.05, 0.2]},
        "STAR": {"n": 10},
        "GALAXY": {"n": 10, "z": [0.3, 1.6]},
    },
    "randomise": RANDOMISE,
}


def test_randomised_parameters_are_drawn_within_their_ranges_and_recorded(tmp_path):
    summary = simulate.simulate_dataset(
        RANDOMISED_SPEC, 3, "dr", tmp_path / "coadd.fits", tmp_path / "truth.fits", chunk_rows=40
    )
    assert summary["n_spectra"] == 110
    truth = records_to_truth(fitsio.read(tmp_path / "truth.fits", ext="TRUTH"))
    drawn = simulate.draw_objects(RANDOMISED_SPEC, 3, "dr")
    lbg, star, qso = (truth["SPECTYPE"] == k for k in ("LBG", "STAR", "QSO"))
    assert set(truth["IGM_MODEL"]) == {"inoue14", "madau95"}
    for column, key in (
        ("IGM_TAU_SCALE", "tau_scale"),
        ("SKY_SCALE", "sky_scale"),
        ("EXPTIME", "exptime"),
        ("MAG_FAINT", "mag_faint"),
    ):
        low, high = RANDOMISE[key]
        assert truth[column].between(low, high).all(), column
        assert truth[column].std() > 0.2 * (high - low) / np.sqrt(12), f"{column} is not drawn per object"
    for column, key, rows in (
        ("LINE_WIDTH_SCALE", "line_width_scale", ~star),
        ("ISM_SCALE", "ism_scale", lbg),
        ("BETA_SHIFT", "beta_shift", ~star),
    ):
        assert truth.loc[rows, column].between(*RANDOMISE[key]).all(), column
        assert truth.loc[rows, column].nunique() == rows.sum(), column
    # what does not apply stays neutral: star lines and slopes, non-LBG interstellar lines
    assert (truth.loc[star, "LINE_WIDTH_SCALE"] == 1).all() and (truth.loc[star, "BETA_SHIFT"] == 0).all()
    assert (truth.loc[~lbg, "ISM_SCALE"] == 1).all()
    assert (truth["MAG_R"] <= truth["MAG_FAINT"] + 1e-9).all() and (truth["MAG_R"] >= 22.5).all()
    assert truth["MAG_R"].max() > 24.5  # fainter than the set's own mag_r where the draw says so
    # Ly-alpha: both distributions; exponential rows carry their scale and absorber share
    model = truth.loc[lbg, "LYA_EW_MODEL"]
    assert set(model) == {"templates", "exponential"} and (truth.loc[~lbg, "LYA_EW_MODEL"] == "").all()
    exponential = lbg & (truth["LYA_EW_MODEL"] == "exponential")
    assert truth.loc[exponential, "LYA_EW_SCALE"].between(15.0, 40.0).all()
    assert truth.loc[exponential, "LYA_EW_ABSFRAC"].between(0.2, 0.4).all()
    assert truth.loc[lbg & ~exponential, "LYA_EW_SCALE"].isna().all()
    np.testing.assert_array_equal(
        truth.loc[lbg, "TEMPLATE"],
        np.select(
            [truth.loc[lbg, "LYA_EW"] < 0, truth.loc[lbg, "LYA_EW"] < 10, truth.loc[lbg, "LYA_EW"] < 30],
            [0, 1, 2],
            3,
        ),
    )
    # the slope and alpha_nu move together for QSOs; the coadd's exposure time is the drawn one
    np.testing.assert_allclose(truth.loc[qso, "BETA"], -2.0 - truth.loc[qso, "ALPHA_NU"], rtol=1e-6)
    fibermap = fitsio.read(tmp_path / "coadd.fits", ext="FIBERMAP")
    np.testing.assert_allclose(fibermap["COADD_EXPTIME"], truth["EXPTIME"], rtol=1e-6)
    np.testing.assert_allclose(drawn["EXPTIME"], truth["EXPTIME"])


def test_randomise_multiplies_the_data_sets_own_draws_and_leaves_the_rest_alone():
    spec = {key: value for key, value in RANDOMISED_SPEC.items() if key != "randomise"}
    plain = simulate.draw_objects(spec, 5, "same")
    assert plain.equals(simulate.draw_objects(dict(spec, randomise={}), 5, "same"))
    assert (plain["LINE_WIDTH_SCALE"] == 1).all() and (plain["BETA_SHIFT"] == 0).all()
    assert plain["MAG_FAINT"].isna().all() and set(plain.loc[plain["SPECTYPE"] == "LBG", "LYA_EW_MODEL"]) == {
        "templates"
    }
    knobs = {"line_width_scale": [0.8, 1.25], "ism_scale": [0.7, 1.4], "beta_shift": [-0.3, 0.3]}
    drawn = simulate.draw_objects(dict(spec, randomise=knobs), 5, "same")
    for column in ("Z", "SPECTYPE", "MAG_R", "TEMPLATE", "LYA_EW", "EXPTIME"):  # the main stream is untouched
        np.testing.assert_array_equal(drawn[column], plain[column])
    np.testing.assert_allclose(drawn["LINE_SIGMA_KMS"], plain["LINE_SIGMA_KMS"] * drawn["LINE_WIDTH_SCALE"])
    np.testing.assert_allclose(drawn["ISM_EW_SCALE"], plain["ISM_EW_SCALE"] * drawn["ISM_SCALE"])
    np.testing.assert_allclose(drawn["BETA"], plain["BETA"] + drawn["BETA_SHIFT"])
    # a single number fixes the value (how a robustness set leaves the training's ranges)
    fixed = simulate.draw_objects(dict(spec, randomise={"ism_scale": 0.5}), 5, "same")
    lbg = fixed["SPECTYPE"] == "LBG"
    np.testing.assert_allclose(fixed.loc[lbg, "ISM_EW_SCALE"], 0.5 * plain.loc[lbg, "ISM_EW_SCALE"])
    # and the renderer sees them: a bluer slope gives more blue flux relative to red
    wave = simulate.instrument().wave
    one = plain[plain["SPECTYPE"] == "LBG"].iloc[:5]
    bluer = one.assign(BETA=one["BETA"] - 0.5)
    a, b = (simulate.render_model(o, np.random.default_rng(0)) for o in (one, bluer))
    window = lambda m, lo, hi: m[:, (wave > lo) & (wave < hi)].sum(1)  # noqa: E731
    assert (
        window(b, 6000, 7000) / window(b, 8500, 9500) > window(a, 6000, 7000) / window(a, 8500, 9500)
    ).all()


def test_randomise_errors_name_the_knob():
    templates = dict(TEMPLATES, copies=1)
    for knob in ("exptime", "mag_faint", "lya_ew"):
        value = {"distributions": ["exponential"]} if knob == "lya_ew" else [24.0, 25.0]
        with pytest.raises(ConfigError, match=knob):
            simulate.draw_objects(dict(templates, randomise={knob: value}), 1, "t")
    bad = [
        ({"tau": [1, 2]}, "unknown knob"),
        ({"tau_scale": [1.2, 0.8]}, "tau_scale"),
        ({"sky_scale": [0.0, 1.0]}, "sky_scale"),
        ({"igm_models": ["haardt12"]}, "igm_models"),
        ({"lya_ew": {"distributions": ["gaussian"]}}, "distributions"),
        ({"mag_faint": [22.0, 22.4]}, "mag_faint"),
    ]
    for block, match in bad:
        with pytest.raises(ConfigError, match=match):
            simulate.draw_objects(dict(SMALL, randomise=block), 1, "s")


def test_each_robustness_set_changes_what_training_never_draws():
    """Every test-only data set of the demo has a simulator choice outside the union of what the
    data sets feeding its training sets draw (survey, templates: `randomise`)."""
    import yaml

    from lymannet.config import used_variants, variant_source_dataset, whole_holdout_datasets

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    training = {variant_source_dataset(config["variants"][v]["source"])[0] for v in used_variants(config)}
    assert training == {"survey", "templates"}
    trained = [simulate.simulator_choices(config["datasets"][d]["simulate"], d) for d in sorted(training)]
    robust = whole_holdout_datasets(config)
    assert set(robust) >= {"robust_physics", "robust_observing"}
    novel = {}
    for dataset in robust:
        mine = simulate.simulator_choices(config["datasets"][dataset]["simulate"], dataset)
        outside = []
        for knob, value in mine.items():
            seen = [t[knob] for t in trained if t[knob] is not None]
            if isinstance(value, set):
                if not value & set().union(*seen):
                    outside.append(knob)
            elif value is not None and seen:
                low, high = min(s[0] for s in seen), max(s[1] for s in seen)
                if value[1] < low or value[0] > high:
                    outside.append(knob)
        novel[dataset] = outside
    assert set(novel["robust_physics"]) == {"tau_scale", "ism_scale", "lya_ew_scale", "lya_absorber_fraction"}
    assert set(novel["robust_observing"]) == {"exptime", "sky_scale"}
    assert all(novel.values()), novel
