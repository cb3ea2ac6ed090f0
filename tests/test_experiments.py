"""Experiments (config/experiments/*.yaml, lymannet.experiments, workflow/rules/experiments.smk):
every overlay validates over the demo config and plans its rules; chained searches; the numbers
and figures of kinds runs and search_chain on small synthetic inputs (gallery, seeds:
test_experiment_gallery.py, test_experiment_seeds.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, copy_workflow
from test_workflow import planned_jobs

from lymannet.config import expand_combos
from lymannet.errors import ConfigError
from lymannet.experiments import chain_table, run_metrics
from lymannet.metrics import ScoreOptions
from lymannet.plan import check_experiments, experiment_outputs, experiment_run_pairs
from lymannet.search import base_best_spec, check_tune_config, search_chain

OVERLAYS = sorted((REPO / "config" / "experiments").glob("*.yaml"))
# overlays that declare `experiments:` (others, e.g. online_augmentation.yaml, only add runs)
EXPERIMENT_OVERLAYS = [path for path in OVERLAYS if "experiments" in (yaml.safe_load(path.read_text()) or {})]
# A seeds experiment plans these (seeds.yaml, training_length.yaml).
SEEDS_RULES = {
    "train",
    "calibrate",
    "predict",
    "predict_ensemble",
    "score",
    "experiment_leakage",
    "experiment_seeds",
}
# What each overlay's dry run (target `experiments`, nothing built yet) must plan besides the demo's
# data stages, and the experiment outputs it must name.
EXPECTED_RULES = {
    "augmentation_gallery": {"augment", "experiment_gallery"},
    "redshift_coverage": {
        "augment",
        "combine",
        "train",
        "predict",
        "testset",
        "experiment_leakage",
        "experiment_runs",
    },
    "overlap_artefact": {"simulate", "augment", "combine", "train", "predict", "testset", "experiment_runs"},
    "gamma_sweep": {"train", "predict", "experiment_runs"},
    "chained_search": {
        "tune_worker",
        "tune_best",
        "train",
        "predict",
        "experiment_search_chain",
        "experiment_runs",
    },
    "transfer_learning": {"train", "predict", "experiment_runs"},
    "end_to_end": {"train", "predict", "experiment_runs"},
    "training_length": SEEDS_RULES | {"simulate", "resample_templates", "augment", "combine"},
    "seeds": SEEDS_RULES,
}


def merged_config(*overlays: Path) -> dict:
    """config/config.yaml with overlays merged as Snakemake merges --configfile files (mappings
    key by key, anything else replaced), validated with the schema's defaults, as the Snakefile
    sees it."""
    from snakemake.utils import update_config, validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for overlay in overlays:
        update_config(config, yaml.safe_load(overlay.read_text()))
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return expand_combos(config)


def test_every_experiment_overlay_is_expected():
    assert {path.stem for path in EXPERIMENT_OVERLAYS} == set(EXPECTED_RULES)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_every_overlay_validates(overlay):
    from lymannet.config import check_config

    config = merged_config(overlay)
    check_config(config)
    check_tune_config(config)
    check_experiments(config)


@pytest.mark.parametrize("overlay", EXPERIMENT_OVERLAYS, ids=lambda p: p.stem)
def test_experiment_overlay_validates_and_keeps_the_demo(overlay):
    from lymannet.config import check_config

    demo = merged_config()
    config = merged_config(overlay)
    check_config(config)
    check_tune_config(config)
    check_experiments(config)
    assert overlay.stem in config["experiments"]
    # an overlay adds; it never renames nor replaces what the demo defines
    assert config["runs"] == demo["runs"]
    for key in ("models", "combos", "variants", "testsets", "datasets"):
        for name in demo[key]:
            assert config[key][name] == demo[key][name], f"{overlay.stem} changes {key}.{name}"
    raw = yaml.safe_load(overlay.read_text())
    assert "runs" not in raw, "experiment runs go under experiments.<name>.runs (lists replace on merge)"
    for name, spec in raw.get("testsets", {}).items():
        assert spec.get("in_summary") is False, f"{name}: an experiment's test set stays out of the summary"


def test_all_experiment_overlays_together_validate():
    config = merged_config(*EXPERIMENT_OVERLAYS)
    check_experiments(config)
    check_tune_config(config)
    assert len(experiment_run_pairs(config)) >= 12
    outputs = experiment_outputs(config)
    assert "results/experiments/augmentation_gallery/shift.png" in outputs
    assert "results/experiments/overlap_artefact/figure.png" in outputs


@pytest.mark.parametrize("overlay", EXPERIMENT_OVERLAYS, ids=lambda p: p.stem)
def test_overlay_dry_run_plans_its_rules(overlay, tmp_path):
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(
        workdir,
        "--configfile",
        "config/config.yaml",
        f"config/experiments/{overlay.name}",
        "--",
        "experiments",
    )
    rules = {rule for rule, _ in jobs}
    assert EXPECTED_RULES[overlay.stem] <= rules, sorted(rules)
    # only what the experiment needs: no demo summary, no 4MOST, no survey catalogue
    assert not rules & {"compare", "fourmost_simulate", "classify"}
    experiments = {wc.get("experiment") for rule, wc in jobs if rule.startswith("experiment_")}
    assert experiments <= set(merged_config(overlay)["experiments"])


def test_training_data_is_the_demos_data_made_again():
    """training_data's extra data sets and variants are the demo's but their sizes and sources, so
    that its runs measure the amount of training data and nothing else."""
    demo = merged_config()
    config = merged_config(REPO / "config" / "experiments" / "training_length.yaml")
    survey, extra = demo["datasets"]["survey"]["simulate"], config["datasets"]["survey_extra"]["simulate"]
    assert {k: v for k, v in extra.items() if k != "populations"} == {
        k: v for k, v in survey.items() if k != "populations"
    }
    for spectype, population in survey["populations"].items():
        assert extra["populations"][spectype] == {**population, "n": 3 * population["n"]}
    templates, extra = (
        demo["datasets"]["templates"]["simulate"],
        config["datasets"]["templates_extra"]["simulate"],
    )
    assert {**templates, "copies": 3 * templates["copies"]} == extra
    assert (
        config["holdout"]["survey_extra"]["fraction"] == config["holdout"]["templates_extra"]["fraction"] == 0
    )
    base = demo["combos"]["data_to_train_1"]
    combo = config["combos"]["data_to_train_1_x4"]
    assert combo["members"] == base["members"] + [f"extra {name}" for name in base["members"]]
    assert combo["contaminant_fraction"] == base["contaminant_fraction"]
    # the variants spelled out by again_from, as the overlay wrote them before it had again_from
    # (the names fix the variants' random draws, so these are the files of docs/results.md)
    sources = {"survey": "survey_extra", "resampled:templates": "resampled:templates_extra"}
    for name in base["members"]:
        variant, extra_variant = demo["variants"][name], config["variants"][f"extra {name}"]
        assert extra_variant == {**variant, "source": sources[variant["source"]]}, name


def test_classic_long_snr_is_classic_long_with_the_snr_channel():
    """training_data_snr measures the S/N channel and nothing else."""
    models = merged_config(REPO / "config" / "experiments" / "training_length.yaml")["models"]
    assert models["classic_long"]["snr_channel"] is False
    assert models["classic_long_snr"] == {**models["classic_long"], "snr_channel": True}


def test_in_summary_false_test_sets_stay_out_of_the_demo_summary(tmp_path):
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(
        workdir, "--configfile", "config/config.yaml", "config/experiments/redshift_coverage.yaml"
    )
    scored = {wc["testset"] for rule, wc in jobs if rule == "score"}
    demo_testsets = set(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["testsets"])
    assert {"test_z3", "test_lowz", "test_highz", "test_robust_physics"} <= demo_testsets
    assert scored == demo_testsets  # the overlay's in_summary: false test sets are not scored
    assert ("experiment_runs", {"experiment": "redshift_coverage"}) in jobs


# ----------------------------------------------------------------------------------------------
# Config checks


def _config_with(experiment: dict) -> dict:
    config = merged_config()
    config["experiments"] = {"exp": experiment}
    return config


def test_experiment_checks_name_the_culprit():
    good = {"kind": "runs", "testset": "test_z3", "runs": [{"model": "initial", "combo": "initial"}]}
    check_experiments(_config_with(good))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        check_experiments(_config_with({**good, "runs": [{"model": "nope", "combo": "initial"}]}))
    with pytest.raises(ConfigError, match="unknown testset"):
        check_experiments(_config_with({**good, "testset": "nope"}))
    with pytest.raises(ConfigError, match="share a label"):
        check_experiments(_config_with({**good, "runs": [{"model": "initial", "combo": "initial"}] * 2}))
    with pytest.raises(ConfigError, match="unknown variant"):
        check_experiments(_config_with({"kind": "gallery", "panels": [{"name": "x", "variants": ["nope"]}]}))
    with pytest.raises(ConfigError, match="unknown search"):
        check_experiments(_config_with({"kind": "search_chain", "searches": ["nope"]}))


def test_a_search_can_start_from_a_searched_model():
    config = merged_config(REPO / "config" / "experiments" / "chained_search.yaml")
    assert search_chain(config, "chain_search2") == ["chain_search1", "chain_search2"]
    assert base_best_spec(config, "chain_search2") == "results/tune/chain_search1/best_model.yaml"
    assert base_best_spec(config, "chain_search1") is None
    check_tune_config(config)
    # a typo in the second search's space is caught against the chain's base spec
    bad = copy.deepcopy(config)
    bad["tune"]["searches"]["chain_search2"]["space"]["conv.filter"] = {"type": "int", "low": 1, "high": 2}
    with pytest.raises(ConfigError, match="conv.filter"):
        check_tune_config(bad)
    # searches that start from each other in a circle are refused
    circle = copy.deepcopy(config)
    circle["models"]["chain_base"] = {"from_search": "chain_search2"}
    with pytest.raises(ConfigError, match="circle"):
        check_tune_config(circle)
    # and an experiment's chain must follow the from_search links
    wrong = copy.deepcopy(config)
    wrong["experiments"]["chained_search"]["searches"] = ["chain_search2", "chain_search1"]
    with pytest.raises(ConfigError, match="must start from"):
        check_experiments(wrong)


# ----------------------------------------------------------------------------------------------
# Numbers and figures


def test_run_metrics_counts_a_pile_up_at_the_marked_redshift():
    rng = np.random.default_rng(1)
    n = 200
    z_true = rng.uniform(3.3, 4.3, n)
    z_pred = z_true + rng.normal(0, 0.005, n)
    z_pred[:20] = 3.77 + rng.uniform(-0.01, 0.01, 20)  # 20 wrong redshifts piled up at 3.77
    z_true[:20] = rng.uniform(3.9, 4.3, 20)
    table = pd.DataFrame(
        {
            "Z": np.r_[z_true, np.full(50, 1.0)],
            "Z_PRED": np.r_[z_pred, np.full(50, 2.0)],
            "SPECTYPE": ["LBG"] * n + ["QSO"] * 50,
        }
    )
    c_line = np.r_[np.full(n, 0.9), np.full(50, 0.1)][:, None]
    row, evaluation = run_metrics(table, c_line, ScoreOptions(), mark_z=3.77, mark_dz=0.03)
    assert row["n_wrong_into_mark"] == 20
    assert row["frac_dz_gt_max"] == pytest.approx(0.1)
    assert row["score"] == pytest.approx(evaluation.summary["score"]) and row["score"] == pytest.approx(0.9)


def test_chain_table_is_thesis_table_4_1():
    first = pd.DataFrame(
        {
            "hyper-parameter": ["conv.layers", "train.lr", "conv.stride"],
            "search range": ["[2, 20] (int)", "[0.0001, 0.1] (float, log)", "[1, 8] (int)"],
            "before search": ["4", "0.001", "2"],
            "best": ["8", "0.01", "2"],
        }
    )
    second = pd.DataFrame(
        {
            "hyper-parameter": ["conv.layers", "train.lr"],
            "search range": ["[2, 20] (int)", "x"],
            "before search": ["8", "0.01"],
            "best": ["10", "0.1"],
        }
    )
    table = chain_table(["s1", "s2"], [first, second])
    assert list(table.columns) == ["hyper-parameter", "search range", "before search", "s1", "s2"]
    assert table.set_index("hyper-parameter").loc["conv.stride", "s2"] == "X"
    assert table.set_index("hyper-parameter").loc["conv.layers", "before search"] == "4"
    assert table.set_index("hyper-parameter").loc["train.lr", "s2"] == "0.1"
    # ranges: one when the searches agree, one per search ("X": not searched) when they differ
    assert table.set_index("hyper-parameter").loc["conv.layers", "search range"] == "[2, 20] (int)"
    assert (
        table.set_index("hyper-parameter").loc["train.lr", "search range"] == "[0.0001, 0.1] (float, log) / x"
    )


def _catalogue(
    path: Path, z_true: np.ndarray, z_pred: np.ndarray, conf: np.ndarray, spectype: list[str]
) -> str:
    import fitsio

    records = np.zeros(
        len(z_true),
        dtype=[
            ("TARGETID", "i8"),
            ("Z", "f8"),
            ("SPECTYPE", "U8"),
            ("Z_PRED", "f8"),
            ("C_LYA", "f4"),
            ("Z_LYA", "f8"),
        ],
    )
    records["TARGETID"] = np.arange(len(z_true))
    records["Z"], records["Z_PRED"], records["C_LYA"], records["Z_LYA"] = z_true, z_pred, conf, z_pred
    records["SPECTYPE"] = spectype
    fitsio.write(str(path), records, extname="QN_RR", clobber=True)
    return str(path)


def test_compare_runs_writes_figure_and_table(tmp_path):
    from lymannet.experiments import compare_runs

    rng = np.random.default_rng(3)
    n_t, n_c = 120, 60
    z_true = np.r_[rng.uniform(2.9, 4.0, n_t), rng.uniform(0.1, 3.0, n_c)]
    spectype = ["LBG"] * n_t + ["QSO"] * n_c
    good = _catalogue(
        tmp_path / "good.fits",
        z_true,
        z_true + rng.normal(0, 0.01, n_t + n_c),
        np.r_[rng.uniform(0.7, 1, n_t), rng.uniform(0, 0.4, n_c)],
        spectype,
    )
    bad = _catalogue(
        tmp_path / "bad.fits", z_true, np.full(n_t + n_c, 2.5), rng.uniform(0, 1, n_t + n_c), spectype
    )
    history = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.4, 2.2]}).to_csv(
        history
    )
    spec = {
        "kind": "runs",
        "testset": "t",
        "title": "two runs",
        "mark_z": 3.77,
        "mark_dz": 0.03,
        "runs": [{"model": "m", "combo": "low", "label": "bad"}, {"model": "m", "combo": "high"}],
    }
    out = {name: str(tmp_path / name) for name in ("figure.png", "summary.md", "summary.csv")}
    table = compare_runs(
        spec,
        [bad, good],
        [str(history)] * 2,
        {},
        out["figure.png"],
        out["summary.md"],
        out["summary.csv"],
        name="exp",
    )
    assert list(table["run"]) == ["bad", "m/high"]
    assert table.loc[1, "score"] > 0.9 > 0.2 > table.loc[0, "score"]
    assert table.loc[0, "frac_dz_gt_max"] > 0.9 and table.loc[1, "frac_dz_gt_max"] < 0.05
    assert Path(out["figure.png"]).stat().st_size > 20_000
    text = Path(out["summary.md"]).read_text()
    assert "| bad |" in text and "wrong z_pred in 3.77+-0.03" in text
    # the score and the efficiency with the half-width of their bootstrap 68% interval
    assert "1000 resamples" in text
    row = table.loc[1]
    assert row["score_lo"] <= row["score"] <= row["score_hi"] and row["score_lo95"] <= row["score_lo"]
    assert f"| m/high | {row['score']:.3f} ± {0.5 * (row['score_hi'] - row['score_lo']):.3f} |" in text
