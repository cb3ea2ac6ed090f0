"""DAG-time planning (lymannet.plan): the 4MOST wing's sizes, models, studies and rule inputs.
The experiments' and survey catalogues' planning is tested beside their stages
(test_experiments.py, test_seeds.py, test_classify.py) and through the workflow's dry runs."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from lymannet.errors import ConfigError
from lymannet.fourmost.settings import TRAIN_DEFAULTS
from lymannet.plan import FourmostPlan, experiments_of_kind


@pytest.fixture
def fourmost() -> dict:
    """The demo's `fourmost:` with the schema defaults the tests read filled in by hand."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["fourmost"]
    config.setdefault("enabled", True)
    config.setdefault("size", "demo")
    config["dla"].setdefault("bal", {}).setdefault("method", "mask")
    return config


def test_sizes_splits_and_epochs(fourmost):
    plan = FourmostPlan(fourmost)
    assert plan.size_spec("medium")["n_spectra"] == 3000
    assert plan.split("medium") == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert plan.split("demo") == fourmost["ingest"]["split"]  # no split of its own
    assert plan.train_settings("demo", "dense")["epochs"] == 2  # the size's epochs win
    with pytest.raises(ConfigError, match="unknown size 'huge'.*demo"):
        plan.size_spec("huge")


def test_localisers_follow_the_bal_method(fourmost):
    assert FourmostPlan(fourmost).localisers() == ["location"]
    fourmost["dla"]["bal"]["method"] = "best"
    plan = FourmostPlan(fourmost)
    assert plan.localisers() == ["location", "location_bal"]
    inputs = plan.score_dla_location_inputs("medium")
    assert inputs["localisers"] == [
        "results/fourmost/medium/models/location.pt",
        "results/fourmost/medium/models/location_bal.pt",
    ]
    assert plan.model_config("location_bal") == plan.model_config("location")


def test_presence_inputs_only_with_its_pipeline(fourmost):
    with_presence = FourmostPlan(fourmost).calibrate_dla_inputs("demo")
    fourmost["pipelines"]["dla_presence"] = False
    without = FourmostPlan(fourmost).calibrate_dla_inputs("demo")
    assert (
        with_presence["presence"] == "results/fourmost/demo/models/presence.pt" and "presence" not in without
    )
    summary = FourmostPlan(fourmost).summary_inputs("demo")
    assert (
        "presence" not in summary and summary["location"] == "results/fourmost/demo/dla_location/metrics.json"
    )


def test_a_study_variant_that_changes_nothing_is_the_main_model(fourmost):
    plan = FourmostPlan(fourmost)
    batch = (
        fourmost["models"].get("dense", {}).get("train", {}).get("batch_size", TRAIN_DEFAULTS["batch_size"])
    )
    same = "b64" if batch == 64 else "b32"
    assert plan.variant_is_base("demo", "dense", "batch_size", same)
    assert not plan.variant_is_base("demo", "dense", "sample_size", "n1000")
    inputs = plan.study_inputs("demo", "sample_size")
    assert "results/fourmost/demo/studies/sample_size/n1000/redshift/dense/metrics.json" in inputs["metrics"]
    assert (
        "results/fourmost/demo/redshift/dense/metrics.json" in inputs["metrics"]
    )  # n_train null: the main model
    with pytest.raises(ConfigError, match="unknown variant 'n5'"):
        plan.variant_settings("demo", "dense", "sample_size", "n5")


def test_outputs_only_when_enabled(fourmost):
    assert FourmostPlan(fourmost).outputs()[:2] == [
        "results/fourmost/demo/summary.md",
        "results/fourmost/demo/summary.csv",
    ]
    disabled = copy.deepcopy(fourmost)
    disabled["enabled"] = False
    assert FourmostPlan(disabled).outputs() == []


def test_experiments_of_kind_never_empty():
    config = {"experiments": {"a": {"kind": "runs"}, "b": {"kind": "seeds"}}}
    assert experiments_of_kind(config, "runs") == ["a"] and experiments_of_kind(config, "gallery") == ["none"]


def test_a_new_working_point_or_bal_handling_does_not_retrain(fourmost):
    """Training options leave out what only the catalogue reads, so Snakemake reruns calibration
    and scoring, not the networks, when a working point or the BAL handling changes."""
    fourmost["dla"]["bal"].setdefault("trough_windows", 4)
    before = FourmostPlan(fourmost).train_options("location")
    fourmost["dla"]["calibration"] = {"purity": 0.8}
    fourmost["dla"]["bal"]["method"] = "best"
    after = FourmostPlan(fourmost).train_options("location")
    assert before == after and "calibration" not in after and "bal" not in after
    assert after["windows_per_sightline"] == fourmost["dla"]["windows_per_sightline"]
    assert FourmostPlan(fourmost).train_options("location_bal")["bal_trough_windows"] == 4
