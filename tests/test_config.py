"""Configuration: schema validation with defaults, cross-reference errors, slugs, seeds."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.utils import validate

from lymannet.config import check_config, expand_combos, job_seed, load_config, slugify, used_variants
from lymannet.errors import ConfigError

from conftest import REPO

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture()
def raw_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_demo_config_validates_and_gets_defaults():
    config = load_config(REPO / "config" / "config.yaml")
    assert config["models"]["classic"]["train"]["schedule"] == "plateau"  # default from the schema
    assert config["ingest"]["missing_truth"] == "error"
    assert config["score"]["dz_max"] == 0.05
    assert config["models"]["hyp_snr"]["snr_channel"] is True


def test_thesis_subdatasets_and_combos_are_defined(raw_config):
    for name in [
        "offset of 5/4",
        "offset of 3/4",
        "normal dataset with fake_noise",
        "tmg with fake_noise",
        "offset of 5/4 boosted",
        "offset of 4.3/4 with 0.1 noise",
        "120min simu",
        "QSO >=1.8",
        "ELG in [0.05,0.2]",
        "1/2 120min simu",
        "30min simu",
        "1/3 30min simu",
        "1/4 QSO >=1.8",
    ]:
        assert name in raw_config["variants"], name
    for combo in [
        "data_to_train_1",
        "data_to_train_2",
        "data_to_train_7",
        "data_to_train_10",
        "data_to_train_13",
    ]:
        assert combo in raw_config["combos"]


def test_schema_rejects_bad_values(raw_config):
    bad = copy.deepcopy(raw_config)
    bad["models"]["classic"]["conv"]["padding"] = "circular"
    with pytest.raises(Exception, match="circular"):
        validate(bad, SCHEMA)
    bad = copy.deepcopy(raw_config)
    bad["variants"]["offset of 5/4"]["ops"].append({"rotate": {"angle": 3}})
    with pytest.raises(Exception):
        validate(bad, SCHEMA)


def test_unknown_variant_in_combo_names_combo_variant_and_valid_names(raw_config):
    config = copy.deepcopy(raw_config)
    config["combos"]["data_to_train_1"]["members"].append("offset of 9/4")
    validate(config, SCHEMA)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert "data_to_train_1" in message and "offset of 9/4" in message and "offset of 5/4" in message


def test_unknown_dataset_model_and_combo_are_reported(raw_config):
    for mutate, expected in [
        (lambda c: c["testsets"]["test_z3"]["members"].append({"dataset": "nowhere"}), "nowhere"),
        (lambda c: c["runs"].append({"model": "resnet", "combo": "initial"}), "resnet"),
        (lambda c: c["runs"].append({"model": "classic", "combo": "data_to_train_99"}), "data_to_train_99"),
        (lambda c: c["variants"]["tmg"].update(source="resampled:survey"), "resampled dataset"),
    ]:
        config = copy.deepcopy(raw_config)
        mutate(config)
        validate(config, SCHEMA)
        with pytest.raises(ConfigError, match=expected):
            check_config(config)


def test_slug_collisions_are_rejected(raw_config):
    config = copy.deepcopy(raw_config)
    config["variants"]["offset of 5_4"] = config["variants"]["offset of 5/4"]
    with pytest.raises(ConfigError, match="slug"):
        check_config(config)


def test_slugs_are_file_name_safe():
    assert slugify("offset of 5/4") == "offset-of-5_4"
    assert slugify("ELG in [0.05,0.2]") == "elg-in-0.05-0.2"
    assert slugify("QSO >=1.8") == "qso-ge1.8"
    assert all(c.isalnum() or c in "-_." for c in slugify("1/2 120min simu"))


def test_job_seed_is_stable_and_distinct():
    assert job_seed(1, "a", "b") == job_seed(1, "a", "b")
    assert job_seed(1, "a", "b") != job_seed(2, "a", "b") != job_seed(1, "ab")
    assert 0 <= job_seed(7, "x") < 2**63


def test_only_variants_of_used_combos_are_built(raw_config):
    config = load_config(REPO / "config" / "config.yaml")
    names = used_variants(config)
    assert "normal dataset" in names and "offset of 5/4" in names
    assert "offset of 2/4" not in names  # defined (appendix C) but in no run's combo


def test_a_test_only_data_set_cannot_feed_a_variant(raw_config):
    config = copy.deepcopy(raw_config)
    config["holdout"]["survey"]["fraction"] = 1.0  # the whole sample kept for testing
    validate(config, SCHEMA)
    with pytest.raises(
        ConfigError, match=r"variants\.'normal dataset' source: data set 'survey' is test-only"
    ):
        check_config(config)
    for variant in config["variants"].values():  # the same data set only in test sets: valid
        variant["source"] = variant["source"].replace("survey", "templates")
    check_config(config)
    config["holdout"]["templates"]["fraction"] = 1.0
    with pytest.raises(ConfigError, match="resample_templates.templates: data set 'templates' is test-only"):
        check_config(config)
    config["holdout"]["templates"]["fraction"] = 1.5
    with pytest.raises(Exception, match="1.5"):
        validate(config, SCHEMA)


def _with_again_from(raw_config: dict, again_from: dict) -> dict:
    config = copy.deepcopy(raw_config)
    config["datasets"]["survey_more"] = copy.deepcopy(config["datasets"]["survey"])
    config["datasets"]["templates_more"] = copy.deepcopy(config["datasets"]["templates"])
    config["resample_templates"]["templates_more"] = {"offset_width": 0.1}
    config["combos"]["more"] = {"members": ["offset of 5/4", "120min simu"], "again_from": again_from}
    validate(config, SCHEMA)
    return config


def test_again_from_makes_every_member_again_from_the_mapped_data_set(raw_config):
    again = {"prefix": "more ", "datasets": {"survey": "survey_more", "templates": "templates_more"}}
    config = expand_combos(_with_again_from(raw_config, again))
    check_config(config)
    combo = config["combos"]["more"]
    assert combo["members"] == ["offset of 5/4", "120min simu", "more offset of 5/4", "more 120min simu"]
    assert "again_from" not in combo  # spelled out: the combine stage sees plain members
    shifted, remade = config["variants"]["offset of 5/4"], config["variants"]["more offset of 5/4"]
    assert remade == {**shifted, "source": "survey_more"}
    assert config["variants"]["more 120min simu"]["source"] == "resampled:templates_more"
    assert remade["ops"] is not shifted["ops"]  # a copy: editing one never edits the other
    assert expand_combos(copy.deepcopy(config)) == config  # once spelled out, nothing left to do
    assert "more offset of 5/4" in used_variants({**config, "runs": [{"model": "classic", "combo": "more"}]})


def test_again_from_names_what_it_cannot_map(raw_config):
    config = _with_again_from(raw_config, {"prefix": "more ", "datasets": {"survey": "survey_more"}})
    with pytest.raises(
        ConfigError, match=r"combos.more.again_from: member '120min simu' comes from data set 'templates'"
    ):
        expand_combos(config)
    again = {"prefix": "more ", "datasets": {"survey": "survey_mor", "templates": "templates_more"}}
    config = expand_combos(_with_again_from(raw_config, again))
    with pytest.raises(ConfigError, match=r"unknown dataset 'survey_mor'"):
        check_config(config)  # the new sources are checked like any variant's
    config = _with_again_from(
        raw_config, {"prefix": "more ", "datasets": {"survey": "survey_more", "templates": "templates_more"}}
    )
    config["variants"]["more offset of 5/4"] = copy.deepcopy(config["variants"]["offset of 3/4"])
    with pytest.raises(ConfigError, match=r"variant 'more offset of 5/4' exists and is not 'offset of 5/4'"):
        expand_combos(config)
