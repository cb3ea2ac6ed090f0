"""config/thesis.yaml over config/config.yaml, merged as Snakemake merges --configfile files: the
thesis's sizes, the demo's class mix at thesis scale, table 5.1's networks, and a DAG that plans
(issue 26, part 1)."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO, copy_workflow
from test_workflow import planned_jobs

from lymannet.config import check_config, run_pairs

DEMO = REPO / "config" / "config.yaml"
THESIS = REPO / "config" / "thesis.yaml"


def merged(*overlays) -> dict:
    """config.yaml with the overlays merged by snakemake.utils.update_config (mappings key by key,
    lists and values replaced), then validated with the schema's defaults, as the Snakefile does."""
    from snakemake.utils import update_config, validate

    config = yaml.safe_load(DEMO.read_text())
    for overlay in overlays:
        update_config(config, yaml.safe_load(overlay.read_text()))
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def class_counts(config: dict, dataset: str) -> dict[str, int]:
    return {kind: pop["n"] for kind, pop in config["datasets"][dataset]["simulate"]["populations"].items()}


def fractions(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {kind: n / total for kind, n in counts.items()}


@pytest.mark.parametrize("dataset", ["survey", "robust_physics", "robust_observing"])
def test_thesis_keeps_the_demo_class_mix(dataset):
    demo, thesis = merged(), merged(THESIS)
    demo_counts, thesis_counts = class_counts(demo, dataset), class_counts(thesis, dataset)
    assert set(thesis_counts) == set(demo_counts) == {"LBG", "QSO", "ELG", "GALAXY", "STAR"}
    for kind, share in fractions(demo_counts).items():
        assert fractions(thesis_counts)[kind] == pytest.approx(share, abs=0.002), kind
    assert sum(thesis_counts.values()) >= 3.9 * sum(demo_counts.values())
    # the merge keeps everything else the demo says about each population
    for kind, pop in demo["datasets"][dataset]["simulate"]["populations"].items():
        assert {
            k: v for k, v in thesis["datasets"][dataset]["simulate"]["populations"][kind].items() if k != "n"
        } == {k: v for k, v in pop.items() if k != "n"}


def test_thesis_sizes_are_those_its_comment_states():
    from lymannet.simulate import template_z_grid

    config = merged(THESIS)
    survey = class_counts(config, "survey")
    held_out = config["holdout"]["survey"]["fraction"] * survey["LBG"]
    assert held_out == pytest.approx(1667, abs=20)  # the thesis's test set around z = 3
    assert survey["LBG"] - held_out == pytest.approx(3000, rel=0.05)  # "~3,000 observed LBGs"
    spec = config["datasets"]["templates"]["simulate"]
    n_templates = (
        len(template_z_grid(spec["z_grid"]))
        * len(spec["templates"])
        * len(spec["mag_levels"])
        * len(spec["exptime"])
        * spec["copies"]
    )
    assert n_templates == 25_200  # thesis 3.5.1
    assert sorted(spec["exptime"]) == [1800, 7200]  # data_to_train_2's 30-minute spectra
    check_config(config)


def test_thesis_networks_are_table_5_1():
    import torch  # noqa: F401  (build_model)

    from lymannet.grid import Grid
    from lymannet.models import build_model, count_parameters

    config = merged(THESIS)
    models, grid = config["models"], Grid.from_config(config["grid"])
    hyp_classic, hyp_snr = models["hyp_classic"], models["hyp_snr"]
    assert (hyp_classic["conv"]["layers"], hyp_classic["conv"]["filters"]) == (10, 420)
    assert hyp_classic["conv"]["dropout"] == 0.19 and hyp_classic["offset_activation"] == "sigmoid"
    assert (hyp_snr["conv"]["layers"], hyp_snr["conv"]["filters"], hyp_snr["conv"]["dropout"]) == (
        8,
        173,
        0.05,
    )
    assert (
        hyp_snr["offset_activation"] == "linear"
        and hyp_snr["snr_channel"]
        and hyp_snr["train"]["lr"] == 0.001
    )
    for name in ("initial", "classic"):
        assert (models[name]["conv"]["layers"], models[name]["conv"]["filters"]) == (4, 100)
    # the documented departures (thesis.yaml's table): lr 0.001 for Initial, Classic and Hyp Classic
    assert {models[name]["train"]["lr"] for name in ("initial", "classic", "hyp_classic")} == {0.001}
    counts = {
        name: count_parameters(build_model(models[name], grid.n_pixels))
        for name in ("hyp_classic", "hyp_snr")
    }
    assert counts["hyp_classic"] == pytest.approx(16.6e6, rel=0.05) and counts["hyp_snr"] == pytest.approx(
        2.45e6, rel=0.1
    )
    assert ("hyp_classic", "data_to_train_1") in run_pairs(config) and (
        "hyp_snr",
        "data_to_train_1",
    ) in run_pairs(config)


def test_thesis_overlay_dry_run_plans_every_run(tmp_path):
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(workdir, "--configfile", "config/config.yaml", "config/thesis.yaml")
    config = merged(THESIS)
    trained = {(wc["model"], wc["combo"]) for rule, wc in jobs if rule == "train"}
    assert trained == set(run_pairs(config))
    scored = {(wc["model"], wc["testset"]) for rule, wc in jobs if rule == "score"}
    for model, _ in run_pairs(config):
        for testset in config["testsets"]:
            assert (model, testset) in scored, (model, testset)
    simulated = {wc["dataset"] for rule, wc in jobs if rule == "simulate"}
    assert {"survey", "templates", "robust_physics", "robust_observing"} <= simulated


def test_merging_replaces_lists_and_merges_mappings():
    """Why thesis.yaml sets every population's n: a mapping it leaves out keeps the demo's value."""
    from snakemake.utils import update_config

    config = copy.deepcopy(yaml.safe_load(DEMO.read_text()))
    update_config(
        config, {"datasets": {"survey": {"simulate": {"populations": {"LBG": {"n": 1}}}}}, "runs": []}
    )
    assert class_counts(config, "survey")["STAR"] == 225 and config["runs"] == []


def test_thesis_networks_overlay_trains_and_scores_on_every_test_set(tmp_path):
    """config/experiments/thesis_networks.yaml: Hyp SNR with and without its S/N channel and
    classic_offline beside the demo's runs, each scored on every summary test set."""
    overlay = REPO / "config" / "experiments" / "thesis_networks.yaml"
    config = merged(overlay)
    models = config["models"]
    assert models["hyp_snr"]["snr_channel"] and not models["hyp_snr_nosnr"]["snr_channel"]
    for key in ("conv", "offset_activation", "dense_units", "n_boxes", "lines"):
        assert models["hyp_snr_nosnr"][key] == models["hyp_snr"][key], key
    assert models["hyp_snr_nosnr"]["train"] == models["hyp_snr"]["train"]
    assert not models["classic_offline"]["train"].get("online_augmentation")
    workdir = copy_workflow(tmp_path)
    jobs = planned_jobs(
        workdir, "--configfile", "config/config.yaml", "config/experiments/thesis_networks.yaml"
    )
    trained = {(wc["model"], wc["combo"]) for rule, wc in jobs if rule == "train"}
    new = {
        ("hyp_snr", "data_to_train_1"),
        ("hyp_snr_nosnr", "data_to_train_1"),
        ("classic_offline", "data_to_train_1"),
    }
    assert new <= trained and trained == set(run_pairs(config))
    scored = {(wc["model"], wc["testset"]) for rule, wc in jobs if rule == "score"}
    for model, _ in new:
        assert {(model, testset) for testset in config["testsets"]} <= scored
