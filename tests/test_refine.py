"""Redshift refinement (lymannet.refine, chi2fit.refine_redshifts, rule predict_refined): a
network's redshifts moved to the chi-square minimum of learned templates near them."""

from __future__ import annotations

import numpy as np
import pytest

from lymannet.chi2fit import refine_redshifts
from lymannet.config import refined_runs
from lymannet.errors import ConfigError, InputFileError
from lymannet.learned_templates import learn_templates, save_learned
from lymannet.predict import read_catalogue, write_catalogue
from lymannet.refine import _lines_of, refine_catalogue
from lymannet.templatefit_learned import build_learned_template_set, predict_testset_learned
from conftest import GRID, REPO, copy_workflow, simulated, snakemake, write_simulated_set

TRAIN = {
    "LBG": {"n": 300, "z": [1.9, 4.1]},
    "QSO": {"n": 100, "z": [1.8, 4.0]},
    "ELG": {"n": 100, "z": [0.05, 0.2]},
}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine")
    result = learn_templates(
        write_simulated_set(folder / "train.fits", TRAIN, seed=31), {"components": 3, "iterations": 15}
    )
    path = folder / "templates.npz"
    save_learned(path, result)
    return {"path": path, "tset": build_learned_template_set(GRID, result), "folder": folder}


def test_near_misses_move_to_the_template_minimum(learned):
    """LBGs whose network redshift is 0.05-0.15 off (the line finder's near misses, outside dz_max
    0.05) come back to within 0.01 of the truth; redshifts farther off than the window stay as they
    were (not refined) where they lie beyond the learned templates' range, as does a spectrum
    without valid pixels."""
    flux, ivar, truth = simulated({"LBG": {"n": 60, "z": [2.3, 3.7]}}, seed=32, mag_r=(22.5, 23.5))
    z_true = truth["Z"].to_numpy()
    rng = np.random.default_rng(3)
    offset = rng.choice([-1, 1], z_true.size) * rng.uniform(0.05, 0.15, z_true.size)
    offset[:6] = 0.6 * (1 + z_true[:6])  # beyond the learned LBG range (z <= 4.1)
    ivar = ivar.copy()
    ivar[6] = 0.0
    z_network = z_true + offset
    z, zerr, refined = refine_redshifts(learned["tset"], flux, ivar, z_network, "LBG", window=0.05)
    near = np.arange(z_true.size) >= 7
    assert (np.abs(z - z_true)[near] < 0.01).mean() >= 0.9, np.abs(z - z_true)[near]
    assert np.median(np.abs(z - z_true)[near]) < 0.003
    assert refined[near].mean() >= 0.95
    assert not refined[6] and z[6] == z_network[6] and np.isnan(zerr[6])
    assert np.all(z[~refined] == z_network[~refined]) and np.isnan(zerr[~refined]).all()
    assert not refined[:6].any()
    good = refined & near
    assert np.all((zerr[good] > 0) & (zerr[good] < 0.05))
    # Delta chi2 = 1 errors of a fit whose templates are not the simulator's: an order of magnitude
    # right, not calibrated (the score's ZERR coverage says how far to trust them)
    assert np.median(np.abs(z - z_true)[good] / zerr[good]) < 10
    with pytest.raises(ConfigError, match="window"):
        refine_redshifts(learned["tset"], flux, ivar, z_network, "LBG", window=0.0)
    with pytest.raises(ConfigError, match="STAR"):
        refine_redshifts(learned["tset"], flux, ivar, z_network, "STAR")


def test_refined_catalogue_keeps_the_network_and_scores_better(learned, tmp_path):
    """A catalogue whose LBG redshifts are all 0.1 off: refined, Z_PRED is back near the truth,
    Z_NET keeps the network's, every confidence column is untouched, the header says how."""
    testset = write_simulated_set(
        tmp_path / "test.fits",
        {"LBG": {"n": 40, "z": [2.4, 3.6]}, "ELG": {"n": 20, "z": [0.05, 0.2]}},
        seed=33,
        mag_r=(22.5, 23.5),
    )
    network = tmp_path / "network.fits"
    predict_testset_learned(testset, learned["path"], network)
    catalogue = read_catalogue(network)
    table = catalogue.table.copy()
    table["Z_PRED"] = (table["Z_PRED"] + 0.1).astype(np.float32)
    header = [{"name": k, "value": catalogue.header[k], "comment": ""} for k in ("TARGCLS", "MINLINES")]
    write_catalogue(network, table, _lines_of(network), header, catalogue.provenance)
    out = tmp_path / "refined.fits"
    refined = refine_catalogue(network, testset, learned["path"], out, window=0.05, name="net.refined/c")
    back = read_catalogue(out)
    lbg = back.table["SPECTYPE"].to_numpy() == "LBG"
    dz_before = np.abs(table["Z_PRED"] - table["Z"]).to_numpy()[lbg]
    dz_after = np.abs(back.table["Z_PRED"] - back.table["Z"]).to_numpy()[lbg]
    assert (dz_before > 0.05).all() and (dz_after < 0.01).mean() >= 0.9
    np.testing.assert_allclose(back.table["Z_NET"], table["Z_PRED"])
    for column in [c for c in table if c.startswith("C_")]:
        np.testing.assert_array_equal(back.table[column], table[column])
    assert back.header["REFINE"] == 0.05 and len(back.header["TEMPLSHA"]) == 64
    assert back.provenance["config"]["window"] == 0.05 and refined["REFINED"].dtype == bool
    assert np.isnan(back.table["ZERR"][back.table["REFINED"]]).all()  # no ZERR calibration given
    # with calibrate_refined's coefficients (a, b): ZERR = (1 + z) sqrt(b^2 + (a ZERR_FIT / (1 + z))^2)
    record = tmp_path / "zerr.json"
    record.write_text('{"zerr": [1.5, 0.001]}')
    again = refine_catalogue(network, testset, learned["path"], out, 0.05, name="n", zerr_calibration=record)
    rows = again["REFINED"].to_numpy()
    z, fit = again["Z_PRED"].to_numpy(float)[rows], again["ZERR_FIT"].to_numpy(float)[rows]
    expected = (1 + z) * np.sqrt(0.001**2 + (1.5 * fit / (1 + z)) ** 2)
    np.testing.assert_allclose(again["ZERR"].to_numpy(float)[rows], expected, rtol=1e-5)
    # another test set than the catalogue's: named, never a half-written output
    other = write_simulated_set(tmp_path / "other.fits", {"LBG": {"n": 5, "z": [2.5, 3.0]}}, seed=34)
    bad = tmp_path / "bad.fits"
    with pytest.raises(InputFileError, match="other.fits"):
        refine_catalogue(network, other, learned["path"], bad)
    assert not bad.exists()


def test_refined_runs_are_planned_and_scored(tmp_path):
    config = {
        "runs": [
            {"model": "initial", "combo": "initial"},
            {"model": "classic", "combo": "data_to_train_1", "refine": True},
            {"model": "classic", "combo": "data_to_train_1", "refine": True},
        ]
    }
    assert refined_runs(config) == [("classic.refined", "data_to_train_1")]
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--cores", "2", "results/summary.md", timeout=300)
    for testset in ("test_z3", "test_lowz"):
        assert f"results/predictions/classic.refined/data_to_train_1/{testset}.fits" in result.stdout
        assert f"results/scores/classic.refined/data_to_train_1/{testset}.json" in result.stdout
    assert "results/predictions/initial.refined" not in result.stdout
    assert (REPO / "workflow" / "scripts" / "predict_refined.py").exists()
