"""Test sets that draw a `fraction` of one held-out pool (the demo's test_lowz and test_highz, 30%
of the held-out survey contaminants each) draw without replacement across the summary's test sets
(lymannet.holdout.prior_draws): no object in two draws, sizes as before."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from conftest import REPO, make_truth, write_spectra_file

from lymannet.errors import ConfigError
from lymannet.holdout import build_testset, prior_draws
from lymannet.spectra import read_spectra

CONTAMINANTS = {"spectype": ["QSO", "ELG", "GALAXY", "STAR"]}


def demo_like_testsets(fraction: float = 0.3) -> dict:
    """The demo's three survey test sets, and an experiment's (in_summary: false)."""
    return {
        "test_z3": {"members": [{"dataset": "survey"}]},
        "test_lowz": {
            "members": [
                {"dataset": "templates", "select": {"spectype": ["LBG"], "z": [None, 2.6]}},
                {"dataset": "survey", "select": {**CONTAMINANTS, "fraction": fraction}},
            ]
        },
        "test_highz": {
            "members": [
                {"dataset": "templates", "select": {"spectype": ["LBG"], "z": [3.4, None]}},
                {"dataset": "survey", "select": {**CONTAMINANTS, "fraction": fraction}},
            ]
        },
        "test_exp": {
            "in_summary": False,
            "members": [{"dataset": "survey", "select": {**CONTAMINANTS, "fraction": fraction}}],
        },
    }


@pytest.fixture()
def holdouts(tmp_path):
    survey = make_truth(200, z=0.5, spectype=["LBG", "QSO", "ELG", "GALAXY", "STAR"] * 40, first_id=1)
    templates = make_truth(40, z=np.linspace(2.0, 3.95, 40), first_id=5000)
    return {
        "survey": str(write_spectra_file(tmp_path / "survey.fits", survey, native=False)),
        "templates": str(write_spectra_file(tmp_path / "templates.fits", templates, native=False)),
    }


def build_all(tmp_path, holdouts, testsets, seed=7, disjoint=True):
    ids = {}
    for name, spec in testsets.items():
        prior = prior_draws(testsets, name) if disjoint else None
        output = tmp_path / f"{name}{'' if disjoint else '_independent'}.fits"
        build_testset(spec["members"], holdouts, seed, name, output, prior=prior)
        ids[name] = set(read_spectra(output).truth["TARGETID"].tolist())
    return ids


def test_prior_draws_order_the_summarys_fractional_draws():
    testsets = demo_like_testsets()
    assert prior_draws(testsets, "test_highz") == []  # first by name
    assert prior_draws(testsets, "test_lowz") == [
        {
            "testset": "test_highz",
            "index": 1,
            "dataset": "survey",
            "select": {**CONTAMINANTS, "fraction": 0.3},
        }
    ]
    assert prior_draws(testsets, "test_z3") == []  # takes the whole pool: no draw
    assert prior_draws(testsets, "test_exp") == []  # an experiment's test set moves nothing
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["testsets"]
    assert [d["testset"] for d in prior_draws(demo, "test_lowz")] == ["test_highz"]


def test_fractional_draws_are_disjoint_and_keep_their_sizes(tmp_path, holdouts):
    testsets = demo_like_testsets()
    disjoint = build_all(tmp_path, holdouts, testsets)
    independent = build_all(tmp_path, holdouts, testsets, disjoint=False)
    contaminants = set(range(1, 201)) - set(range(1, 201, 5))  # every 5th survey object is an LBG
    lowz, highz = (disjoint[n] & contaminants for n in ("test_lowz", "test_highz"))
    assert len(lowz) == len(highz) == round(0.3 * 160)
    assert not lowz & highz
    # sizes as drawn independently; the first draw by name is the very same draw
    for name in testsets:
        assert len(disjoint[name]) == len(independent[name])
    assert disjoint["test_highz"] == independent["test_highz"]
    assert disjoint["test_lowz"] != independent["test_lowz"]
    # test_z3 takes every held-out survey object, so it holds both draws (the README says so)
    assert lowz | highz <= disjoint["test_z3"]
    # the experiment's test set draws from the whole pool, as before
    assert disjoint["test_exp"] == independent["test_exp"]
    # a rebuild repeats (seeded), and an unrelated test set's edit does not move these draws
    again = build_all(tmp_path, holdouts, {**testsets, "test_z3": {"members": [{"dataset": "templates"}]}})
    assert again["test_lowz"] == disjoint["test_lowz"] and again["test_highz"] == disjoint["test_highz"]


def test_draws_that_exhaust_the_pool_fail_naming_the_test_set(tmp_path, holdouts):
    testsets = demo_like_testsets(fraction=0.6)
    build_testset(
        testsets["test_highz"]["members"],
        holdouts,
        7,
        "test_highz",
        tmp_path / "h.fits",
        prior=prior_draws(testsets, "test_highz"),
    )
    with pytest.raises(
        ConfigError, match=r"testset 'test_lowz', member #2: fraction 0.6 asks for 96 of 160 .* left 64"
    ):
        build_testset(
            testsets["test_lowz"]["members"],
            holdouts,
            7,
            "test_lowz",
            tmp_path / "l.fits",
            prior=prior_draws(testsets, "test_lowz"),
        )


def test_three_draws_from_one_pool_share_nothing(tmp_path, holdouts):
    testsets = {f"t{i}": {"members": [{"dataset": "survey", "select": {"fraction": 0.25}}]} for i in range(3)}
    ids = build_all(tmp_path, holdouts, testsets)
    assert all(len(v) == 50 for v in ids.values())
    assert all(not a & b for a, b in itertools.combinations(ids.values(), 2))
