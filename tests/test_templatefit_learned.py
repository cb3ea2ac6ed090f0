"""The learned-template baseline (lymannet.learned_templates, lymannet.templatefit_learned):
templates learned from a training split only (never the simulator's renderers, never a test set),
fitted by lymannet.chi2fit's machinery, and planned by the workflow beside the oracle template fit
(learning's fill windows and options: test_learned_templates.py)."""

from __future__ import annotations

import numpy as np
import pytest

import lymannet.simulate as simulate
import lymannet.spectra as spectra_module
from lymannet.chi2fit import _chi2_basis, _prepare, chi2_scan, fit_spectra, legendre_basis
from lymannet.evaluation import evaluate
from lymannet.learned_templates import learn_templates, load_learned, save_learned
from lymannet.metrics import ScoreOptions
from lymannet.predict import read_catalogue
from lymannet.templatefit import TemplateSet
from lymannet.templatefit_learned import build_learned_template_set, predict_testset_learned
from conftest import DZ_MAX, GRID, simulated, write_simulated_set

TRAIN = {
    "LBG": {"n": 360, "z": [1.8, 4.2]},
    "QSO": {"n": 160, "z": [1.8, 4.0]},
    "ELG": {"n": 160, "z": [0.05, 0.2]},
    "GALAXY": {"n": 90, "z": [0.3, 1.6]},
    "STAR": {"n": 80, "z": [-0.001, 0.001]},
}
OPTIONS = {"components": 3, "iterations": 15}


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Templates learned from a simulated training split while every renderer and simulator entry
    point raises and every spectra file opened is recorded: only the training split may be read;
    building the template set and fitting with it need no simulator either."""
    folder = tmp_path_factory.mktemp("learned")
    train = write_simulated_set(folder / "train.fits", TRAIN, seed=21)
    # a test split beside it, which must stay unread
    decoy = write_simulated_set(folder / "test.fits", {"LBG": {"n": 5, "z": [2.5, 3.0]}}, seed=22)
    flux, ivar, _ = simulated({"LBG": {"n": 4, "z": [2.5, 3.0]}}, seed=22)

    def forbidden(*args, **kwargs):
        raise AssertionError("the learned baseline called the simulator")

    opened = []
    original_init = spectra_module.SpectraFile.__init__

    def recording_init(self, path):
        opened.append(str(path))
        original_init(self, path)

    with pytest.MonkeyPatch.context() as patch:
        for spectype in list(simulate.RENDERERS):
            patch.setitem(simulate.RENDERERS, spectype, forbidden)
        for name in (
            "draw_objects",
            "simulate_chunk",
            "instrument",
            "render_model",
            "_render_lbg",
            "_render_qso",
            "_render_elg",
            "_render_star",
            "_render_galaxy",
        ):
            if hasattr(simulate, name):
                patch.setattr(simulate, name, forbidden)
        patch.setattr(spectra_module.SpectraFile, "__init__", recording_init)
        result = learn_templates(train, OPTIONS)
        tset = build_learned_template_set(GRID, result)
        fit_spectra(tset, flux, ivar)
    assert opened == [str(train)] and str(decoy) not in opened, opened
    return {"learned": result, "tset": tset, "train": train, "folder": folder}


def test_every_training_class_gets_a_basis(learned):
    result, tset = learned["learned"], learned["tset"]
    assert set(result.classes) == set(TRAIN)
    for basis in result.bases:
        assert basis.basis.shape[0] == OPTIONS["components"] + 1 and np.isfinite(basis.basis).all()
        assert abs(float(basis.basis[0].mean()) - 1.0) < 1e-5  # the mean at unit mean flux
        assert np.all(
            np.abs(basis.basis[1:] @ basis.basis[0])
            < 1e-3 * np.linalg.norm(basis.basis[0]) * np.sqrt(basis.basis.shape[1])
        )  # eigenvectors orthogonal to the mean
        assert np.all(np.diff(basis.explained) <= 1e-12) and abs(basis.explained.sum() - 1) < 1e-6
        assert basis.n_spectra == TRAIN[basis.spectype]["n"]
    # redshift ranges come from the training split, not from the simulator's population limits
    lo, hi = tset.z["LBG"][0], tset.z["LBG"][-1]
    assert 1.8 <= lo < 2.0 and 4.0 < hi <= 4.2, (lo, hi)
    for spectype in tset.classes:
        assert tset.basis(spectype).shape[1:] == (
            OPTIONS["components"] + 1,
            tset.z[spectype].size,
            GRID.n_pixels,
        )
    # the LBG mean carries the IGM it learned: dark below the Lyman limit, bright redward of Ly-alpha
    lbg = result.of_class("LBG")[0]
    wave = lbg.rest_wave
    assert lbg.basis[0][wave < 900].mean() < 0.3 * lbg.basis[0][(wave > 1300) & (wave < 1500)].mean()


def test_the_basis_reproduces_held_out_spectra_better_than_the_mean(learned):
    """Held-out spectra (another draw of the simulator, never seen in learning) at their true
    redshift: the eigenvectors cut the chi2 several times more than fitting noise would (K - 1 per
    spectrum), and cut the mismatch of noiseless spectra by more than 15% (LBG 43%, QSO 24%, ELG 27%)."""
    tset = learned["tset"]
    mean_only = TemplateSet(
        tset.wavelength,
        tset.z,
        {c: tset.basis(c)[:, :1] for c in tset.classes},
        tset.labels,
        tset.coarse_factor,
        mean_amplitude="nonnegative",
        source="test",
    )
    n_extra = OPTIONS["components"]
    for spectype, z_range in (("LBG", [2.2, 3.8]), ("QSO", [2.0, 3.8]), ("ELG", [0.06, 0.19])):
        for noiseless in (True, False):
            flux, ivar, truth = simulated({spectype: {"n": 40, "z": z_range}}, seed=23, noiseless=noiseless)
            z, full = chi2_scan(tset, flux, ivar, spectype)
            _, mean = chi2_scan(mean_only, flux, ivar, spectype)
            at = np.abs(z[None, :] - truth["Z"].to_numpy()[:, None]).argmin(axis=1)
            rows = np.arange(len(at))
            gain = mean[rows, 0, at] - full[rows, 0, at]
            assert (gain >= -1e-6).all()
            assert np.median(gain) > 3 * n_extra, (spectype, noiseless, np.median(gain))
            if noiseless:  # the template mismatch itself, not the noise, shrinks
                assert np.median(full[rows, 0, at] / mean[rows, 0, at]) < 0.85, spectype


def test_learned_fit_finds_bright_lbgs(learned):
    tset = learned["tset"]
    flux, ivar, truth = simulated(
        {
            "LBG": {"n": 120, "z": [2.0, 4.0]},
            "QSO": {"n": 50, "z": [1.8, 4.0]},
            "ELG": {"n": 50, "z": [0.05, 0.2]},
            "GALAXY": {"n": 30, "z": [0.35, 1.5]},
            "STAR": {"n": 30, "z": [-0.001, 0.001]},
        },
        seed=24,
        mag_r=(22.5, 23.5),
    )
    fit = fit_spectra(tset, flux, ivar)
    spectype, z = truth["SPECTYPE"].to_numpy(), truth["Z"].to_numpy()
    lbg = spectype == "LBG"
    assert (np.abs(fit["z_pred"][lbg] - z[lbg]) < DZ_MAX).mean() >= 0.9
    assert (fit["spectype"][lbg] == "LBG").mean() >= 0.85
    assert (fit["confidence"][~lbg] < 0.5).mean() >= 0.85
    for key in ("confidence", "z_pred", "z", "chi2", "deltachi2"):
        assert np.isfinite(fit[key]).all(), key
    table = truth[["Z", "SPECTYPE"]].assign(Z_PRED=fit["z_pred"])
    assert evaluate(table, fit["confidence"][:, None], ScoreOptions()).summary["score"] > 0.85


def test_basis_chi2_is_the_least_squares_optimum(learned):
    """The vectorised Cholesky fit equals a direct weighted least squares, free and with the mean's
    amplitude >= 0 (a spectrum that is minus a template takes the eigenvectors alone)."""
    tset = learned["tset"]
    flux, ivar, truth = simulated({"LBG": {"n": 3, "z": [2.5, 3.5]}}, seed=25)
    flux = flux.copy()
    flux[1, :60] = np.nan
    j = len(tset.z["LBG"]) // 2
    flux[2] = -3 * tset.basis("LBG")[0, 0, j] + np.nan_to_num(flux[2]) * 0.1  # negative mean amplitude
    legendre = legendre_basis(GRID.n_pixels, 2)
    models = tset.basis("LBG")[0].astype(np.float64)  # (K, Z, P)
    branches = set()
    for mean_amplitude in ("nonnegative", "free"):
        tset.mean_amplitude = mean_amplitude
        _, chi2 = chi2_scan(tset, flux, ivar, "LBG")
        for row in range(3):
            f = np.nan_to_num(flux[row]).astype(float)
            w = np.where(np.isfinite(flux[row]), ivar[row], 0.0).astype(float)

            def lsq(columns):
                design = np.vstack(columns).T
                coef = np.linalg.lstsq(design * np.sqrt(w)[:, None], f * np.sqrt(w), rcond=None)[0]
                return float((w * (f - design @ coef) ** 2).sum()), coef

            for zi in (0, j, len(tset.z["LBG"]) - 1):
                expected, coef = lsq([*models[:, zi], *legendre])
                if mean_amplitude == "nonnegative" and coef[0] < 0:
                    expected, _ = lsq([*models[1:, zi], *legendre])
                    branches.add("bound")
                else:
                    branches.add("free")
                assert chi2[row, 0, zi] == pytest.approx(expected, rel=1e-7, abs=1e-6), (
                    mean_amplitude,
                    row,
                    zi,
                )
    tset.mean_amplitude = "nonnegative"
    assert branches == {"bound", "free"}
    # a basis vector without support in a spectrum drops out instead of breaking the solve
    s = _prepare(flux[:1], ivar[:1], legendre)
    b = np.zeros((1, 2, 3))
    a = np.zeros((1, 2, 6))
    a[..., 0] = 1.0  # only vector 0 has support
    b[..., 0] = 2.0
    c = np.zeros((1, 3, 2, 3))
    chi2 = _chi2_basis(s, b, a, c, "nonnegative")
    assert np.allclose(chi2, s.chi2_poly[0] - 4.0)


def test_catalogue_is_scored_like_a_network(learned, tmp_path):
    templates = tmp_path / "templates.npz"
    save_learned(templates, learned["learned"], {"note": "test"})
    again = load_learned(templates)
    assert [b.label for b in again.bases] == [b.label for b in learned["learned"].bases]
    np.testing.assert_array_equal(again.bases[0].basis, learned["learned"].bases[0].basis)
    testset = write_simulated_set(
        tmp_path / "testset.fits",
        {
            "LBG": {"n": 30, "z": [2.0, 4.0]},
            "QSO": {"n": 15, "z": [1.8, 4.0]},
            "ELG": {"n": 15, "z": [0.05, 0.2]},
        },
        seed=27,
    )
    output = tmp_path / "predictions.fits"
    predict_testset_learned(
        testset, templates, output, {"chunk_rows": 16, "mean_amplitude": "free"}, {"target_class": "LBG"}
    )
    catalogue = read_catalogue(output)
    table = catalogue.table
    assert len(table) == 60 and {"Z_PRED", "C_CLASS", "IS_LBG", "ZWARN", "SPECTYPE_FIT", "CHI2_STAR"} <= set(
        table
    )
    assert catalogue.header["MODEL"].startswith("template_fit_learned")
    assert evaluate(table, catalogue.c_line, ScoreOptions()).summary["score"] > 0.8


def test_the_dag_learns_from_the_train_split_and_scores_every_test_set(tmp_path):
    import re

    from conftest import copy_workflow
    from test_workflow import planned_jobs, snakemake, write_config
    from test_templatefit import yaml_config

    workdir = copy_workflow(tmp_path)
    config = yaml_config(workdir)
    learned_cfg = config["baseline"]["learned_templates"]
    name, combo = learned_cfg["name"], learned_cfg["combo"]
    testsets = {t for t, spec in config["testsets"].items() if spec.get("in_summary", True)}
    result = snakemake(workdir, "--dry-run", "--cores", "2", timeout=600)
    jobs = planned_jobs(workdir)
    assert [w for rule, w in jobs if rule == "learn_templates"] == [{"combo": combo}]
    assert {w["testset"] for rule, w in jobs if rule == "predict_templatefit_learned"} == testsets
    scored = {w["testset"] for rule, w in jobs if rule == "score" and w["model"] == name}
    assert scored == testsets and all(
        w["combo"] == combo for rule, w in jobs if rule == "score" and w["model"] == name
    )
    # the rule's only input is the combo's training split: no test set, no simulated data
    block = re.search(r"rule learn_templates:\n(.*?)\n\n", result.stdout, re.S).group(1)
    inputs = re.search(r"input: (.*)", block).group(1).split(", ")
    assert inputs == [f"results/combos/{combo}/train.fits"], inputs
    # the oracle row is still there, and the learned one goes with enabled: false
    assert {w["testset"] for rule, w in jobs if rule == "predict_templatefit"} == testsets

    def without_baseline(config, refine=True):
        config["baseline"]["learned_templates"].update(enabled=False)
        for run in config["runs"]:
            run["refine"] = run.get("refine", False) and refine

    edited = write_config(workdir, without_baseline)
    jobs = planned_jobs(workdir, "--configfile", edited)
    assert not [w for rule, w in jobs if rule == "predict_templatefit_learned" or w.get("model") == name]
    # a refined run still learns its combo's templates; without one, nothing learns any
    assert [w for rule, w in jobs if rule == "learn_templates"] == [{"combo": combo}]
    edited = write_config(workdir, lambda c: without_baseline(c, refine=False))
    jobs = planned_jobs(workdir, "--configfile", edited)
    assert not [w for rule, w in jobs if rule in ("learn_templates", "predict_templatefit_learned")]
