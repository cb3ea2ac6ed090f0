"""Runs trained with several seeds (runs[].seeds, .ensemble; config/experiments/seeds.yaml): the
config's expansion into model-name aliases, unchanged paths and jobs for the default `seeds: 1`,
distinct job seeds, the ensemble catalogue and the summary's spread columns (the experiment:
test_experiment_seeds.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow
from test_workflow import planned_jobs

from lymannet.config import (
    base_model,
    check_config,
    check_seeds,
    ensemble_members,
    ensemble_runs,
    job_seed,
    member_name,
    run_pairs,
    run_seeds,
    seed_groups,
)
from lymannet.ensemble import combine_members, ensemble_file
from lymannet.errors import ConfigError
from lymannet.lines import Line
from lymannet.predict import read_catalogue, write_catalogue
from lymannet.score import compare_scores, score_catalogue

SEEDS_OVERLAY = REPO / "config" / "experiments" / "seeds.yaml"


def demo_config() -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


# ----------------------------------------------------------------------------------------------
# Config expansion


def test_seeds_expand_into_member_aliases():
    assert run_seeds({"model": "m", "combo": "c"}) == [0]
    assert run_seeds({"model": "m", "combo": "c", "seeds": 3}) == [0, 1, 2]
    assert run_seeds({"model": "m", "combo": "c", "seeds": [2, 1, 2]}) == [2, 1]
    config = {
        "runs": [
            {"model": "initial", "combo": "initial"},
            {"model": "classic", "combo": "d1", "seeds": 3, "ensemble": True},
            {"model": "hyp", "combo": "initial", "seeds": [1, 4]},
        ]
    }
    assert run_pairs(config) == [
        ("initial", "initial"),
        ("classic", "d1"),
        ("classic.seed1", "d1"),
        ("classic.seed2", "d1"),
        ("hyp.seed1", "initial"),
        ("hyp.seed4", "initial"),
    ]
    assert ensemble_runs(config) == [("classic.ensemble", "d1")]
    groups = seed_groups(config["runs"])
    assert [(g["model"], g["seeds"], g["ensemble"]) for g in groups] == [
        ("classic", [0, 1, 2], True),
        ("hyp", [1, 4], False),
    ]
    models = ["initial", "classic", "hyp", "gamma_0.1"]
    assert base_model("classic", models) == ("classic", 0)
    assert base_model("classic.seed12", models) == ("classic", 12)
    assert base_model("classic.ensemble", models) == ("classic", None)
    assert base_model("gamma_0.1", models) == ("gamma_0.1", 0)  # a dot in a model's own name
    with pytest.raises(ConfigError, match="unknown model 'nope.seed1'"):
        base_model("nope.seed1", models)


def test_default_seeds_leave_the_demo_runs_as_they_were():
    config = demo_config()
    pairs = [(run["model"], run["combo"]) for run in config["runs"]]
    assert run_pairs(config) == pairs and ensemble_runs(config) == [] and seed_groups(config["runs"]) == []
    explicit = copy.deepcopy(config)
    for run in explicit["runs"]:
        run["seeds"] = 1
    assert run_pairs(explicit) == pairs
    assert "seeds" not in config["runs"][0]  # the schema fills no default: the config slices stay the same
    assert member_name("classic", 0) == "classic"


def test_seed_checks_name_the_culprit():
    config = demo_config()
    bad = copy.deepcopy(config)
    bad["runs"][0].update(ensemble=True)
    with pytest.raises(ConfigError, match=r"runs\[0\].*ensemble: true needs at least 2 seeds"):
        check_config(bad)
    clash = copy.deepcopy(config)
    clash["models"]["classic.seed2"] = clash["models"]["classic"]
    with pytest.raises(ConfigError, match="'classic.seed2' is the name of seed 2 of model 'classic'"):
        check_seeds(clash["runs"], clash["models"])
    with pytest.raises(ConfigError, match="seeds must be >= 1"):
        run_seeds({"model": "m", "combo": "c", "seeds": 0})
    both = copy.deepcopy(config)
    both["runs"][1].update(seeds=3, ensemble=True)
    both["experiments"] = {
        "s": {
            "kind": "seeds",
            "runs": [{"model": "classic", "combo": "data_to_train_1", "seeds": 5, "ensemble": True}],
        }
    }
    with pytest.raises(
        ConfigError, match="classic.ensemble/data_to_train_1: runs and experiments.s give it other"
    ):
        ensemble_members(both)


def test_seeds_experiment_checks():
    from lymannet.plan import check_experiments, experiment_outputs, experiment_testsets

    config = demo_config()
    config.update(yaml.safe_load(SEEDS_OVERLAY.read_text()))
    check_config(config)
    check_experiments(config)
    spec = config["experiments"]["seeds"]
    assert experiment_testsets(config, spec) == [
        "test_z3",
        "test_lowz",
        "test_highz",
        "test_robust_physics",
        "test_robust_observing",
    ]
    assert "results/experiments/seeds/summary.md" in experiment_outputs(config)
    assert set(ensemble_members(config)) == {
        ("initial.ensemble", "initial"),
        ("classic.ensemble", "data_to_train_1"),
    }
    one_seed = copy.deepcopy(config)
    one_seed["experiments"]["seeds"]["runs"] = [{"model": "initial", "combo": "initial"}]
    with pytest.raises(ConfigError, match="kind seeds needs a run with 2 seeds or more"):
        check_experiments(one_seed)
    wrong_test = copy.deepcopy(config)
    wrong_test["experiments"]["seeds"]["testsets"] = ["test_nope"]
    with pytest.raises(ConfigError, match="unknown testset 'test_nope'"):
        check_experiments(wrong_test)
    runs_kind = copy.deepcopy(config)
    runs_kind["experiments"]["seeds"].update(kind="runs", testset="test_z3")
    with pytest.raises(ConfigError, match="have seeds or ensemble: that is kind seeds"):
        check_experiments(runs_kind)


def test_distinct_seeds_give_distinct_job_seeds():
    """train_model seeds every draw with job_seed(config seed, model wildcard, combo): seed 0 keeps
    the demo's job seed, each alias gets its own."""
    seed = demo_config()["seed"]
    seeds = [job_seed(seed, member_name("classic", k), "data_to_train_1") for k in range(5)]
    assert seeds[0] == job_seed(seed, "classic", "data_to_train_1")
    assert len(set(seeds)) == 5
    source = (REPO / "src" / "lymannet" / "train.py").read_text()
    assert "rng_seed = job_seed(seed, model_name, combo)" in source
    script = (REPO / "workflow" / "scripts" / "train.py").read_text()
    assert "model_name=snakemake.wildcards.model" in script


def test_seeds_overlay_plans_one_train_job_per_seed(tmp_path):
    workdir = copy_workflow(tmp_path / "seeds")
    jobs = planned_jobs(
        workdir, "--configfile", "config/config.yaml", "config/experiments/seeds.yaml", "--", "experiments"
    )
    trained = sorted((wc["model"], wc["combo"]) for rule, wc in jobs if rule == "train")
    assert trained == sorted(
        [(member_name("initial", k), "initial") for k in range(5)]
        + [(member_name("classic", k), "data_to_train_1") for k in range(5)]
    )
    ensembles = {(wc["model"], wc["combo"], wc["testset"]) for rule, wc in jobs if rule == "predict_ensemble"}
    assert ("classic", "data_to_train_1", "test_lowz") in ensembles and len(ensembles) == 10
    scored = {wc["model"] for rule, wc in jobs if rule == "score"}
    assert {"initial.ensemble", "classic.ensemble", "classic.seed4"} <= scored
    assert ("experiment_seeds", {"experiment": "seeds"}) in jobs


def test_explicit_seeds_1_plans_the_demo_unchanged(tmp_path):
    workdir = copy_workflow(tmp_path / "demo")
    plain = planned_jobs(workdir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    for run in config["runs"]:
        run["seeds"] = 1
    (workdir / "config" / "seeds1.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    explicit = planned_jobs(workdir, "--configfile", "config/seeds1.yaml")
    assert sorted(map(repr, plain)) == sorted(map(repr, explicit))
    assert ("train", {"model": "classic", "combo": "data_to_train_1"}) in plain
    assert not any("seed" in wc.get("model", "") or "ensemble" in wc.get("model", "") for _, wc in plain)
    assert "predict_ensemble" not in {rule for rule, _ in plain}


# ----------------------------------------------------------------------------------------------
# The ensemble catalogue

LINE = Line("LYA", 1215.67, "emission")


def write_member(path: Path, prob, z_pred, zerr=None, target_ids=None) -> None:
    n = len(prob)
    table = pd.DataFrame(
        {
            "TARGETID": np.arange(n) if target_ids is None else target_ids,
            "Z": [3.0, 3.1, 2.9, 0.1, 0.2, 1.0][:n],
            "SPECTYPE": ["LBG", "LBG", "LBG", "ELG", "QSO", "STAR"][:n],
            "Z_PRED": z_pred,
            "BEST_LINE": "LYA",
            "C_BEST": prob,
            "IS_LBG": np.asarray(prob) > 0.5,
            "PROB": prob,
            "ZERR": np.full(n, 0.01) if zerr is None else zerr,
            "C_LYA": prob,
            "Z_LYA": z_pred,
        }
    )
    write_catalogue(
        path,
        table,
        (LINE,),
        [
            {"name": "MODEL", "value": str(path)},
            {"name": "MODELSHA", "value": "ab"},
            {"name": "TARGCLS", "value": "LBG"},
        ],
        {},
    )


def test_ensemble_averages_prob_and_takes_the_most_confident_members_redshift(tmp_path):
    probs = [[0.9, 0.2, 0.6, 0.1, 0.5, 0.0], [0.7, 0.8, 0.6, 0.3, 0.1, 0.0], [0.2, 0.5, 0.3, 0.2, 0.3, 0.0]]
    zs = [[3.0, 1.0, 2.9, 0.5, 2.0, 1.5], [2.0, 3.1, 1.1, 0.6, 2.1, 1.6], [2.5, 0.5, 3.3, 0.7, 2.2, 1.7]]
    zerrs = [np.full(6, 0.01), np.full(6, 0.02), np.full(6, 0.03)]
    members = []
    for seed, (prob, z, zerr) in enumerate(zip(probs, zs, zerrs)):
        members.append(tmp_path / f"seed{seed}.fits")
        write_member(members[-1], prob, z, zerr)
    ensemble_file(members, [0, 1, 4], tmp_path / "ens.fits", "m.ensemble/c")
    catalogue = read_catalogue(tmp_path / "ens.fits")
    table = catalogue.table
    assert catalogue.line_names == ["ENSEMBLE"]
    assert {
        "TARGETID",
        "Z",
        "SPECTYPE",
        "Z_PRED",
        "ZERR",
        "PROB",
        "PROB_STD",
        "BEST_SEED",
        "BEST_LINE",
        "IS_LBG",
        "C_ENSEMBLE",
        "Z_ENSEMBLE",
        "PROB_S0",
        "PROB_S1",
        "PROB_S4",
        "ZPRED_S4",
    } <= set(table.columns)
    assert table["PROB"].to_numpy() == pytest.approx(np.mean(probs, axis=0), abs=1e-6)
    assert table["C_ENSEMBLE"].to_numpy() == pytest.approx(table["PROB"].to_numpy())
    assert table["PROB_STD"].to_numpy() == pytest.approx(np.std(probs, axis=0, ddof=1), abs=1e-6)
    # most confident member per row: seeds 0, 1, 0 (tie 0.6/0.6: the first), 1, 0, 0 (all 0: the first)
    assert table["BEST_SEED"].tolist() == [0, 1, 0, 1, 0, 0]
    assert table["Z_PRED"].to_numpy() == pytest.approx([3.0, 3.1, 2.9, 0.6, 2.0, 1.5], abs=1e-6)
    assert table["ZERR"].to_numpy() == pytest.approx([0.01, 0.02, 0.01, 0.02, 0.01, 0.01], abs=1e-6)
    assert table["IS_LBG"].tolist() == [
        True,
        False,
        False,
        False,
        False,
        False,
    ]  # mean PROB 0.6, 0.5, 0.5, ...
    assert catalogue.header["ENSEMBLE"] == 3 and catalogue.header["CALIB"] is False
    assert [m["seed"] for m in catalogue.provenance["members"]] == [0, 1, 4]
    median = combine_members([read_catalogue(m).table for m in members], [0, 1, 4], z_rule="median")
    assert median["Z_PRED"].to_numpy() == pytest.approx(np.median(zs, axis=0), abs=1e-6)
    # the score stage reads it like any catalogue: the threshold scan runs over the mean PROB
    out = [str(tmp_path / f"s.{e}") for e in ("json", "csv", "png")]
    summary = score_catalogue(
        str(tmp_path / "ens.fits"),
        {"threshold_grid": {"start": 0, "stop": 1, "n": 11}},
        "m.ensemble",
        "c",
        "t",
        *out,
        calibration_figure=str(tmp_path / "cal.png"),
    )
    # targets 0 and 1 get a right redshift, 2 a right one too (2.9): at PROB > 0.35 two good of two
    assert summary["n_targets"] == 3 and np.isfinite(summary["score"])


def test_ensemble_refuses_members_of_other_spectra(tmp_path):
    write_member(tmp_path / "a.fits", [0.5] * 6, [3.0] * 6)
    write_member(tmp_path / "b.fits", [0.5] * 6, [3.0] * 6, target_ids=np.arange(6) + 10)
    from lymannet.errors import LymannetError

    with pytest.raises(LymannetError, match="TARGETIDs differ"):
        ensemble_file([tmp_path / "a.fits", tmp_path / "b.fits"], [0, 1], tmp_path / "e.fits", "x")


# ----------------------------------------------------------------------------------------------
# The summary's spread columns


def _scores(
    tmp_path: Path, models: dict[str, list[float]], testsets: list[str]
) -> tuple[list[str], list[str]]:
    """Score JSONs whose scores are given: catalogues that reach exactly that P = E score are
    not needed, the summary reads the JSON's numbers."""
    import json

    write_member(tmp_path / "pred.fits", [0.9, 0.8, 0.2, 0.6, 0.1, 0.0], [3.0, 3.1, 1.0, 0.1, 0.2, 1.0])
    scores, curves = [], []
    for model, values in models.items():
        for testset, value in zip(testsets, values):
            paths = [tmp_path / f"{model}_{testset}.{e}" for e in ("json", "csv", "png")]
            score_catalogue(
                str(tmp_path / "pred.fits"),
                {"threshold_grid": {"start": 0, "stop": 1, "n": 5}, "bootstrap": {"n_resamples": 0}},
                model,
                "c",
                testset,
                *map(str, paths),
            )
            record = json.loads(paths[0].read_text())
            record["score"] = value
            record["score_interval"] = {
                "value": value,
                "lo68": value - 0.01,
                "hi68": value + 0.01,
                "lo95": value - 0.02,
                "hi95": value + 0.02,
                "n_resamples": 100,
            }
            paths[0].write_text(json.dumps(record))
            scores.append(str(paths[0]))
            curves.append(str(paths[1]))
    return scores, curves


def test_summary_gives_the_seed_spread_beside_the_bootstrap(tmp_path):
    testsets = ["test_z3", "test_lowz"]
    models = {
        "m": [0.90, 0.50],
        "m.seed1": [0.92, 0.40],
        "m.seed2": [0.94, 0.60],
        "m.ensemble": [0.95, 0.58],
        "other": [0.80, 0.30],
    }
    scores, curves = _scores(tmp_path, models, testsets)
    figures = [str(tmp_path / f"cmp_{t}.png") for t in testsets]
    groups = seed_groups(
        [{"model": "m", "combo": "c", "seeds": 3, "ensemble": True}, {"model": "other", "combo": "c"}]
    )
    out = [str(tmp_path / "summary.csv"), str(tmp_path / "summary.md")]
    compare_scores(scores, curves, [], testsets, *out, figures, seed_groups=groups)
    table = pd.read_csv(out[0])
    spread = table[table["aggregate"] == "seeds"]
    assert len(spread) == 1 and spread["model"].iloc[0] == "m" and spread["n_seeds"].iloc[0] == 3
    row = spread.iloc[0]
    assert row["score_test_z3"] == pytest.approx(0.92) and row["score_test_z3_sd"] == pytest.approx(0.02)
    assert (row["score_test_lowz_min"], row["score_test_lowz_max"]) == pytest.approx((0.4, 0.6))
    assert row["score_test_z3_boot68"] == pytest.approx(0.01)
    assert row["ensemble_test_z3"] == pytest.approx(0.95) and row["best_member_test_z3"] == pytest.approx(
        0.94
    )
    assert row["ensemble_minus_best_test_lowz"] == pytest.approx(-0.02)
    # the members and the ensemble keep their own rows, with their bootstrap intervals
    members = table[table["aggregate"].isna()]
    assert members["model"].tolist() == ["m", "m.seed1", "m.seed2", "m.ensemble", "other"]
    assert members["score_test_z3_lo"].tolist() == pytest.approx([0.89, 0.91, 0.93, 0.94, 0.79])
    markdown = (tmp_path / "summary.md").read_text()
    assert "## Seeds: the spread between trainings" in markdown
    assert (
        "| m / c | 0 1 2 | 0.920 ± 0.020 [0.900, 0.940] (boot ± 0.010); ensemble 0.950 ± 0.010 (+0.010 vs"
        in markdown
    )
    # without seeds the summary has none of these columns
    plain = [str(tmp_path / "plain.csv"), str(tmp_path / "plain.md")]
    compare_scores(scores, curves, [], testsets, *plain, figures)
    assert not {"aggregate", "score_test_z3_sd", "n_seeds"} & set(pd.read_csv(plain[0]).columns)
    assert "Seeds" not in (tmp_path / "plain.md").read_text()
