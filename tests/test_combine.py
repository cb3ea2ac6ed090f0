"""lymannet.combine: balancing, train/val split by parent, shuffling, summary; leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lymannet import augment
from lymannet.combine import balance_contaminants, combine, split_by_parent
from lymannet.config import slugify
from lymannet.errors import ConfigError
from lymannet.holdout import LeakageError, build_testset, check_no_leakage, split_holdout
from lymannet.spectra import SpectraFile, read_spectra
from conftest import make_truth, write_spectra_file


@pytest.mark.parametrize("n_lbg, n_contaminants", [(100, 300), (300, 40), (1000, 1000), (7, 3)])
def test_balance_reaches_the_fraction_within_one_object(n_lbg, n_contaminants):
    spectype = np.array(
        ["LBG"] * n_lbg + ["QSO", "ELG"] * (n_contaminants // 2) + ["QSO"] * (n_contaminants % 2)
    )
    keep = balance_contaminants(spectype, 0.48, np.random.default_rng(0))
    kept = spectype[keep]
    n_cont = (kept != "LBG").sum()
    assert abs(n_cont - 0.48 * len(kept)) <= 1
    # only the over-represented side lost objects
    too_many_contaminants = n_contaminants / (n_lbg + n_contaminants) > 0.48
    assert (kept == "LBG").sum() == n_lbg if too_many_contaminants else n_cont == n_contaminants


def test_balance_null_keeps_everything_and_bad_values_raise():
    spectype = np.array(["LBG", "QSO", "QSO"])
    assert balance_contaminants(spectype, None, np.random.default_rng(0)).all()
    only_lbg = np.array(["LBG"] * 5)  # nothing to balance against: keep, do not drop all
    assert balance_contaminants(only_lbg, 0.48, np.random.default_rng(0)).all()
    with pytest.raises(ConfigError):
        balance_contaminants(spectype, 1.5, np.random.default_rng(0))


def test_split_keeps_copies_of_one_parent_on_one_side():
    rng = np.random.default_rng(1)
    parent = np.repeat(np.arange(300), rng.integers(1, 8, 300))
    in_val = split_by_parent(parent, 0.1, np.random.default_rng(2))
    assert abs(in_val.sum() - 0.1 * len(parent)) <= 7  # within one group of the target
    assert set(parent[in_val]).isdisjoint(parent[~in_val])


def _variants(tmp_path):
    """A pool of 60 LBGs + 60 QSO/ELG, and three variants of it (two LBG copies, contaminants)."""
    truth = make_truth(
        120,
        z=np.r_[np.linspace(2.5, 3.5, 60), np.linspace(0.05, 3.0, 60)],
        spectype=["LBG"] * 60 + ["QSO", "ELG"] * 30,
    )
    pool = write_spectra_file(tmp_path / "pool.fits", truth)
    recipes = {
        "offset of 5/4": [{"select": {"spectype": ["LBG"]}}, {"shift": {"ratio": "5/4", "jitter": 0.1}}],
        "normal dataset with fake_noise": [
            {"select": {"spectype": ["LBG"]}},
            {"mask_region": {"center": 5800, "width": 40}},
        ],
        "QSO and ELG": [{"select": {"spectype": ["QSO", "ELG"]}}],
    }
    members = {}
    for name, ops in recipes.items():
        members[name] = str(tmp_path / f"{slugify(name)}.fits")
        augment.augment_variant(pool, members[name], {"source": "survey", "ops": ops}, 1, name)
    return pool, members


def _combine(tmp_path, members, spec, seed=1, folder="combo"):
    out = tmp_path / folder
    paths = {
        k: out / f"{k}.{ext}"
        for k, ext in (("train", "fits"), ("val", "fits"), ("summary", "csv"), ("plot", "png"))
    }
    summary = combine(
        members, spec, seed, "data_to_train_1", paths["train"], paths["val"], paths["summary"], paths["plot"]
    )
    return summary, read_spectra(paths["train"]), read_spectra(paths["val"]), paths


def test_combine_balances_splits_shuffles_and_summarises(tmp_path):
    _, members = _variants(tmp_path)
    summary, train, val, paths = _combine(
        tmp_path, members, {"contaminant_fraction": 0.2, "validation_fraction": 0.2}
    )
    both = pd.concat([train.truth, val.truth], ignore_index=True)
    n_cont = (both["SPECTYPE"] != "LBG").sum()
    assert abs(n_cont - 0.2 * len(both)) <= 1 and (both["SPECTYPE"] == "LBG").sum() == 120
    assert abs(len(val) - 0.2 * len(both)) <= 2  # groups are at most 2 rows (two LBG copies)
    assert set(train.truth["PARENT_TARGETID"]).isdisjoint(val.truth["PARENT_TARGETID"])
    assert both["TARGETID"].is_unique
    assert not train.truth["SOURCE"].is_monotonic_increasing  # shuffled across members
    with SpectraFile(paths["train"]) as spectra_file:
        assert not spectra_file.has_native and spectra_file.grid is not None
    # each row's spectrum is its member's row: match by TARGETID
    member = read_spectra(members["offset of 5/4"])
    row = int(np.flatnonzero(train.truth["SOURCE"] == "offset of 5/4")[0])
    source_row = int(np.flatnonzero(member.truth["TARGETID"] == train.truth["TARGETID"][row])[0])
    np.testing.assert_array_equal(train.flux[row], member.flux[source_row])
    np.testing.assert_array_equal(train.ivar[row], member.ivar[source_row])
    # summary: counts per member and type, totals consistent with the files
    csv = pd.read_csv(paths["summary"])
    assert list(csv.columns) == ["member", "spectype", "n_input", "n_train", "n_val", "n_total"]
    totals = csv[csv["member"] == "ALL"].set_index("spectype")
    assert totals["n_train"].sum() == len(train) and totals["n_val"].sum() == len(val)
    assert totals.loc["LBG", "n_input"] == 120 and totals[["n_input"]].sum().item() == 180
    per_member = csv[csv["member"] != "ALL"].groupby("member")["n_total"].sum()
    assert per_member["offset of 5/4"] == 60
    assert paths["plot"].stat().st_size > 1000
    pd.testing.assert_frame_equal(summary.reset_index(drop=True), csv, check_dtype=False)


def test_combine_is_deterministic_and_null_fraction_keeps_all(tmp_path):
    _, members = _variants(tmp_path)
    _, train_a, val_a, _ = _combine(tmp_path, members, {"contaminant_fraction": 0.48}, folder="a")
    _, train_b, val_b, _ = _combine(tmp_path, members, {"contaminant_fraction": 0.48}, folder="b")
    np.testing.assert_array_equal(train_a.flux, train_b.flux)
    pd.testing.assert_frame_equal(val_a.truth, val_b.truth)
    _, train, val, _ = _combine(tmp_path, members, {"contaminant_fraction": None}, folder="c")
    assert len(train) + len(val) == 180


def test_leakage_check_catches_a_planted_leak(tmp_path):
    truth = make_truth(80, z=np.linspace(2.5, 3.5, 80), spectype=["LBG", "QSO"] * 40)
    ingested = write_spectra_file(tmp_path / "ingested.fits", truth)
    pool, held = tmp_path / "pool.fits", tmp_path / "holdout.fits"
    split_holdout(ingested, pool, held, 0.25, 1, "survey")
    test = tmp_path / "test.fits"
    build_testset([{"dataset": "survey"}], {"survey": str(held)}, 1, "test", test)
    clean = tmp_path / "clean.fits"
    augment.augment_variant(pool, clean, {"ops": [{"shift": {"ratio": "5/4"}}]}, 1, "offset")
    report = check_no_leakage([clean], [test])
    assert report["leaked"] == 0 and report["test_rows"] == 20
    # plant: a shifted copy of a held-out object reaches a training set
    leaky = tmp_path / "leaky.fits"
    augment.augment_variant(
        held, leaky, {"ops": [{"select": {"fraction": 0.1}}, {"shift": {"ratio": "5/4"}}]}, 1, "leaky"
    )
    members = {"clean": str(clean), "leaky": str(leaky)}
    _, _, _, paths = _combine(tmp_path, members, {"validation_fraction": 0.0})
    with pytest.raises(LeakageError, match="2 test object"):
        check_no_leakage([paths["train"], paths["val"]], [test])


def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workflow_scripts_chain(tmp_path):
    """holdout -> testset -> resample_templates -> augment -> combine -> leakage, through main()."""
    survey = make_truth(60, z=np.linspace(2.5, 3.5, 60), spectype=["LBG", "LBG", "QSO"] * 20)
    templates = make_truth(
        40, z=np.repeat(np.round(np.arange(2.0, 4.0, 0.1), 1), 2), first_id=5000, TEMPLATE=1, EXPTIME=7200.0
    )
    paths = {
        "survey": write_spectra_file(tmp_path / "survey.fits", survey),
        "templates": write_spectra_file(tmp_path / "templates.fits", templates),
    }
    holdouts = {}
    for dataset, ingested in paths.items():
        holdouts[dataset] = str(tmp_path / f"holdout_{dataset}.fits")
        _script("holdout").main(
            str(ingested),
            {"fraction": 0.25},
            1,
            dataset,
            str(tmp_path / f"pool_{dataset}.fits"),
            holdouts[dataset],
        )
    n_test = _script("testset").main(
        [
            {"dataset": "templates", "select": {"z": [None, 2.6]}},
            {"dataset": "survey", "select": {"spectype": ["QSO"]}},
        ],
        holdouts,
        1,
        "test_lowz",
        str(tmp_path / "test.fits"),
    )
    assert n_test > 0
    _script("resample_templates").main(
        str(tmp_path / "pool_templates.fits"),
        {"offset_width": 0.1},
        1,
        "templates",
        str(tmp_path / "resampled.fits"),
        str(tmp_path / "z.png"),
    )
    variants = {
        "offset of 5/4": ("pool_survey", [{"select": {"spectype": ["LBG"]}}, {"shift": {"ratio": "5/4"}}]),
        "120min simu": ("resampled", [{"simulated": {"exptime": [7200]}}]),
        "QSO >=1.8": ("pool_survey", [{"select": {"spectype": ["QSO"], "z": [1.8, None]}}]),
    }
    members = {}
    for name, (source, ops) in variants.items():
        members[name] = str(tmp_path / f"{slugify(name)}.fits")
        _script("augment").main(
            str(tmp_path / f"{source}.fits"), {"source": "x", "ops": ops}, 1, name, members[name]
        )
    out = {
        k: str(tmp_path / f"{k}.{e}")
        for k, e in (("train", "fits"), ("val", "fits"), ("csv", "csv"), ("png", "png"))
    }
    n = _script("combine").main(
        members,
        {"members": list(members), "contaminant_fraction": 0.48},
        1,
        "c",
        out["train"],
        out["val"],
        out["csv"],
        out["png"],
    )
    assert n == len(read_spectra(out["train"])) + len(read_spectra(out["val"]))
    assert check_no_leakage([out["train"], out["val"]], [tmp_path / "test.fits"])["leaked"] == 0
